"""Where a run's artifacts live, and how they get there: a portable layout for the embedded store.

MLflow records artifact locations as absolute `file://` URIs for a local store, so a study folder copied or moved
elsewhere shows "No Artifacts Recorded" on every run. The embedded store's experiments are therefore created with
artifact locations under MLflow's artifact proxy, `mlflow-artifacts:/rnngrad/<spec>` (its runs' under
`mlflow-artifacts:/rnngrad/<spec>/<run_id>/artifacts`), which name a place relative to an artifact root the UI is
given when it starts (`mlflow ui ... --artifacts-destination <study>/mlartifacts`): wherever the study folder goes,
the UI finds every figure. The files themselves sit where they always did, `<study>/mlartifacts/rnngrad/<spec>/...`.

MLflow's client resolves `mlflow-artifacts:` only against a tracking server, so with the embedded store rnngrad
reads and writes a run's artifacts in that folder itself (`run_folder`); against a tracking server every call goes
to the server as before. A store made by an earlier rnngrad, with absolute `file://` locations, is rewritten to
the proxy layout when a command opens it (`adopt_proxy_layout`).
"""

from __future__ import annotations

import functools
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import UserError
from .connection import ARTIFACTS_FOLDER, Store, client

PROXY_SCHEME = "mlflow-artifacts:"


def experiment_location(store: Store, name: str) -> str | None:
    """The artifact location a new experiment gets: under the proxy for the embedded store (portable), the
    server's own choice (None) for a tracking server."""
    return f"{PROXY_SCHEME}/{name}" if store.is_embedded else None


def run_folder(store: Store, artifact_uri: str) -> Path | None:
    """The folder on disk of an embedded store's run whose artifact URI is under the proxy; None for any other
    (a tracking server's run, or a location MLflow resolves itself). A URI that would leave the artifact root
    (`..`) is refused: the store is a file anyone can hand over."""
    if not (store.is_embedded and artifact_uri.startswith(PROXY_SCHEME)):
        return None
    root = store.artifacts_folder
    relative = unquote(artifact_uri[len(PROXY_SCHEME):]).lstrip("/")
    if ".." in Path(relative).parts:
        raise UserError(f"{store.tracking_uri}: a run's artifact location {artifact_uri!r} leaves {root}; the "
                        "store was edited by hand or is not rnngrad's")
    return root / relative


@functools.lru_cache(maxsize=1024)
def _artifact_uri(store: Store, run_id: str) -> str:
    return client(store).get_run(run_id).info.artifact_uri  # fixed when the run is created


def _local_repo(store: Store, run_id: str):
    """The run's artifacts as a LocalArtifactRepository when they live in the embedded store's folder, else None."""
    folder = run_folder(store, _artifact_uri(store, run_id))
    if folder is None:
        return None
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    return LocalArtifactRepository(str(folder))


def log_folder(store: Store, run_id: str, folder: str | Path, artifact_path: str | None = None) -> None:
    """Every file under `folder`, at its path relative to it (under `artifact_path`)."""
    repo = _local_repo(store, run_id)
    if repo is None:
        client(store).log_artifacts(run_id, str(folder), artifact_path)
    else:
        repo.log_artifacts(str(folder), artifact_path)


def log_file(store: Store, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    """One file, under `artifact_path`."""
    repo = _local_repo(store, run_id)
    if repo is None:
        client(store).log_artifact(run_id, str(path), artifact_path)
    else:
        repo.log_artifact(str(path), artifact_path)


def log_text(store: Store, run_id: str, text: str, artifact_file: str) -> None:
    """`text` as the artifact `artifact_file` (e.g. "samples.txt"), UTF-8."""
    with tempfile.TemporaryDirectory(prefix="rnngrad-text-") as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_text(text, encoding="utf-8")
        parent = Path(artifact_file).parent
        log_file(store, run_id, path, None if parent == Path(".") else parent.as_posix())


def list_files(store: Store, run_id: str, path: str | None = None) -> list:
    """MLflow's FileInfo of each artifact directly under `path` (the run's top level by default)."""
    repo = _local_repo(store, run_id)
    return client(store).list_artifacts(run_id, path) if repo is None else repo.list_artifacts(path)


def download(store: Store, run_id: str, path: str, dst: str | Path) -> Path:
    """Copy one artifact (file or folder) into the existing folder `dst`; returns its local path."""
    repo = _local_repo(store, run_id)
    if repo is None:
        return Path(client(store).download_artifacts(run_id, path, str(dst)))
    return Path(repo.download_artifacts(path, str(dst)))


def adopt_proxy_layout(db: Path, lock_seconds: float) -> int:
    """Rewrite the artifact locations an earlier rnngrad stored as absolute file URIs,
    `file:///<old place>/mlartifacts/<experiment name>`, to the proxy's `mlflow-artifacts:/<experiment name>`
    (the experiment's and each of its runs'), so the store opens with its artifacts wherever it now is. Only such
    experiments are touched, and only when their folder is this store's (`<db folder>/mlartifacts/<name>`, where
    it is now or was then); the files stay where they are. One transaction; returns how many experiments moved."""
    folder = db.parent / ARTIFACTS_FOLDER
    con = sqlite3.connect(db, timeout=lock_seconds)
    try:
        with con:  # commits the whole rewrite, or nothing
            moved = 0
            for experiment_id, name, location in con.execute(
                    "SELECT experiment_id, name, artifact_location FROM experiments").fetchall():
                if not _earlier_layout(location, name, folder):
                    continue
                new = f"{PROXY_SCHEME}/{name}"
                con.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE experiment_id = ? "
                            "AND substr(artifact_uri, 1, ?) = ?",
                            (new, len(location) + 1, experiment_id, len(location) + 1, f"{location}/"))
                con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                            (new, experiment_id))
                moved += 1
            return moved
    except sqlite3.Error as e:
        raise UserError(f"{db}: cannot update the store's artifact locations ({e}); check that no other process "
                        "holds it and that the file is writable") from None
    finally:
        con.close()


def _earlier_layout(location: str | None, name: str, folder: Path) -> bool:
    """Whether an experiment's location is one an earlier rnngrad gave it in this store's artifact folder."""
    if not location or not location.startswith("file:") or not name:
        return False
    path = unquote(urlparse(location).path)
    if not path.endswith(f"/{ARTIFACTS_FOLDER}/{name}"):
        return False
    here = folder / name
    return Path(path) == here or here.is_dir()
