"""The MLflow seam: the only module in rnngrad that imports mlflow.

A `Store` names where runs go. `open_store(root)` honours MLFLOW_TRACKING_URI (an `http(s)://` server or a
`sqlite:///` file) and otherwise uses the embedded store: `<root>/mlflow.db` with artifacts in
`<root>/mlartifacts`, both absolute because relative paths break in `dvc exp` temp dirs.
`log_run_folder` turns a finished run folder (docs/internals.md) into params, tags, metrics and artifacts,
all scalars and step metrics in one `MlflowClient.log_batch` call (which splits itself into requests).

mlflow is imported lazily: it costs about a second, and other commands never pay it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from .errors import UserError

STATUSES = ("FINISHED", "FAILED", "KILLED")
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under this parent
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_TAG_CHARS = 8000  # and on a tag value
SUMMARY_TAGS = ("outcome", "learned", "predicted_regime", "observed_regime")  # what a runs table filters on
STORE_LOCK_SECONDS = 20  # how long opening the sqlite store waits for another writer (MLflow's busy timeout)


@dataclass(frozen=True)
class Store:
    tracking_uri: str  # sqlite:////abs/mlflow.db or http(s)://host:port
    artifact_root: str | None  # file URI that experiment artifacts go under; None: the server decides

    @property
    def is_embedded(self) -> bool:
        return self.tracking_uri.startswith("sqlite:")

    def ui_command(self) -> str:
        """The one command that opens these runs in a browser."""
        if self.is_embedded:
            return f"mlflow ui --backend-store-uri {self.tracking_uri}"
        return f"open {self.tracking_uri} (the MLflow server in MLFLOW_TRACKING_URI)"


@dataclass(frozen=True)
class RunRecord:
    """What the sweep needs to know about an existing run, without mlflow types."""

    run_id: str
    run_name: str
    status: str  # RUNNING | SCHEDULED | FINISHED | FAILED | KILLED
    start_time: int  # ms since the epoch
    tags: dict


def _mlflow():
    # Telemetry is a network call from inside a pipeline stage; off unless the user asked for it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Ending a run on a server otherwise prints two "View run/experiment at" lines and costs one more request per
    # run: a sweep prints where its runs are once.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow

    # "Creating initial MLflow database tables..." and "Updating database tables" on stderr for a new store: noise
    # in a command's output (warnings and errors still show)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

    return mlflow


@functools.lru_cache(maxsize=8)
def _client_for(tracking_uri: str):
    inner = _mlflow().MlflowClient(tracking_uri=tracking_uri)
    return inner if tracking_uri.startswith("sqlite:") else _ServerClient(inner, tracking_uri)


def client(store: Store):
    """The MlflowClient for a store (cached per URI)."""
    return _client_for(store.tracking_uri)


def _sqlite_path(uri: str) -> Path:
    return Path(unquote(uri[len("sqlite:///") :])).resolve()


def default_project_root(cwd: str | Path | None = None) -> Path:
    """Where the embedded store lives: the working directory, except inside a `dvc exp run --temp` / queue
    workspace (`<repo>/.dvc/tmp/exps/<tmp>/`), whose runs belong in the real repo's store."""
    cwd = Path(cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def _resolve_uri(project_root: Path, uri: str | None) -> tuple[str, str | None]:
    uri = (uri if uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")).strip()
    if not uri:
        db = project_root / "mlflow.db"
    elif uri.startswith("sqlite:///"):
        db = _sqlite_path(uri)
    elif uri.startswith(("http://", "https://")):
        return uri, None
    else:
        raise UserError(
            f"MLFLOW_TRACKING_URI={uri}: not a store rnngrad can use (MLflow 3.13+ refuses the file store); "
            "use sqlite:////abs/path/mlflow.db, an http(s):// server URL, or unset it for the embedded store"
        )
    return f"sqlite:///{db}", (db.parent / "mlartifacts").as_uri()


def open_store(project_root: str | Path, tracking_uri: str | None = None) -> Store:
    """Open (and, for sqlite, create now: before any worker exists) the store runs are logged to.
    `tracking_uri` overrides MLFLOW_TRACKING_URI; "" means the embedded store in `project_root`."""
    uri, artifact_root = _resolve_uri(Path(project_root).resolve(), tracking_uri)
    if uri.startswith("sqlite:///"):
        db = _sqlite_path(uri)
        artifacts = db.parent / "mlartifacts"
        if artifacts.exists() and not artifacts.is_dir():
            raise UserError(f"{artifacts}: is a file, but the MLflow store keeps run artifacts in a folder there; "
                            "move the file aside")
        db.parent.mkdir(parents=True, exist_ok=True)
        ensure_sqlite_store(db)
        _use_write_ahead_log(db)
    else:
        for name, value in SERVER_HTTP_SETTINGS.items():  # the user's own settings win
            os.environ.setdefault(name, value)
        _check_server_answers(uri)
    store = Store(uri, artifact_root)
    try:
        client(store).search_experiments(max_results=1)  # creates the tables / checks the server answers
    except Exception as e:
        if store.is_embedded:
            raise _unusable_store(uri, e) from None
        if not isinstance(e, _mlflow().exceptions.MlflowException):
            raise
        reason = " ".join(str(e).split(". Response body")[0].split())[:120]
        if re.search(r"error code (401|403)\b", reason):  # MLflow's basic-auth app (docs/cluster.md)
            raise UserError(f"MLFLOW_TRACKING_URI={uri}: the server refuses this client ({reason}); set "
                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user it knows") from None
        raise UserError(f"MLFLOW_TRACKING_URI={uri}: the server answers, but not as an MLflow tracking server "
                        f"({reason}); give the URL of an `mlflow server`, or unset the variable") from None
    return store


# ---- the embedded store: made whole or not at all -------------------------------------------------------------

STALE_CREATION_SECONDS = 600  # a temp store older than this is a killed creation's leftover, not another's work


def ensure_sqlite_store(db: Path) -> None:
    """Make sure `db` is an MLflow store: create it if missing (or an empty file), refuse it if it is another
    application's database (tables, but no MLflow migration record), and touch nothing in that case.

    MLflow creates a store in place: its tables, then some forty schema migrations, over seconds. A process killed
    meanwhile left a half-migrated `mlflow.db` that every later command failed on ("table ... already exists").
    So the store is created and migrated under a temporary name beside `db` and linked into place only when
    complete; `os.link` never replaces, so of two processes creating it at once, the first one's stands."""
    tables = _sqlite_tables(db)
    if tables and "alembic_version" not in tables:
        raise UserError(f"{db}: an SQLite database of another application ({len(tables)} tables, none of them "
                        "MLflow's migration record); rnngrad leaves it as it is: move it aside, or set "
                        "MLFLOW_TRACKING_URI to another store")
    if tables:
        return
    _remove_stale_creations(db)
    tmp = db.with_name(f".{db.name}.{secrets.token_hex(4)}.tmp")
    try:
        _create_tables(f"sqlite:///{tmp}")
        if db.exists() and not _sqlite_tables(db):  # an empty file (a creation killed under an older rnngrad)
            os.replace(tmp, db)
        else:
            try:
                os.link(tmp, db)
            except FileExistsError:  # another process finished first: its store is as good as this one
                pass
    except (OSError, sqlite3.Error) as e:
        raise UserError(f"{db}: cannot create the MLflow store there ({getattr(e, 'strerror', None) or e}); "
                        "check that the folder is writable and the disk not full") from None
    finally:
        for leftover in db.parent.glob(f"{tmp.name}*"):  # the temp store and its rollback journal
            leftover.unlink(missing_ok=True)


def _sqlite_tables(db: Path) -> set[str]:
    """The tables of an existing SQLite file, read without writing to it (none for a missing or empty file)."""
    if not db.exists() or db.stat().st_size == 0:
        return set()
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=STORE_LOCK_SECONDS)
    except sqlite3.Error as e:
        raise UserError(f"{db}: cannot open the MLflow store ({e}); check the file's permissions") from None
    try:
        return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.OperationalError as e:  # locked by another writer past the busy timeout, unreadable
        raise UserError(f"{db}: cannot write the MLflow store ({e}); check that no other process holds it and "
                        "that the file and its folder are writable") from None
    except sqlite3.DatabaseError as e:  # not an SQLite file at all
        raise UserError(f"{db}: not an SQLite database ({e}); move it aside or set MLFLOW_TRACKING_URI") from None
    finally:
        con.close()


def _create_tables(uri: str) -> None:
    """Create and migrate MLflow's schema in the (new) SQLite file at `uri`, and close every connection to it."""
    _mlflow()  # its settings (telemetry off, quiet creation) first
    from mlflow.store.db import utils as db_utils

    engine = db_utils.create_sqlalchemy_engine(uri)
    try:
        db_utils._initialize_tables(engine)  # the tables, then every migration up to this MLflow's head
    finally:
        engine.dispose()


def _remove_stale_creations(db: Path) -> None:
    """Delete temp stores that killed creations left beside `db` (only old ones: a young one may be another
    process's creation under way)."""
    for leftover in db.parent.glob(f".{db.name}.*.tmp*"):
        try:
            if time.time() - leftover.stat().st_mtime > STALE_CREATION_SECONDS:
                leftover.unlink()
        except OSError:
            pass


def _unusable_store(uri: str, error: Exception) -> UserError:
    """One line for an embedded store MLflow cannot use (a schema of another MLflow version, a damaged file)."""
    reason = " ".join(str(error).split())[:160]
    return UserError(f"{uri}: MLflow cannot use this store ({type(error).__name__}: {reason}); if an older MLflow "
                     f"made it, run `mlflow db upgrade {uri}`, else move the file aside")


def _use_write_ahead_log(db: Path) -> None:
    """Put the sqlite file in WAL mode (a property of the file: set once, kept). Readers such as `mlflow ui`
    then never block the sweep's writes, and a commit appends to the log instead of rewriting a journal:
    logging a run costs half as much on a busy disk. WAL needs a local disk; on a network filesystem, use a
    tracking server instead (MLFLOW_TRACKING_URI)."""
    import sqlite3

    try:
        con = sqlite3.connect(db, timeout=STORE_LOCK_SECONDS)
    except sqlite3.Error as e:
        raise UserError(f"{db}: cannot open the MLflow store ({e}); check the folder's permissions") from None
    try:
        con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as e:  # locked by another writer, read-only file or folder, disk full, ...
        raise UserError(f"{db}: cannot write the MLflow store ({e}); check that no other process holds it and "
                        "that the file and its folder are writable") from None
    except sqlite3.DatabaseError as e:  # the file exists but is something else
        raise UserError(f"{db}: not an SQLite database ({e}); move it aside or set MLFLOW_TRACKING_URI") from None
    finally:
        con.close()


def _check_server_answers(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when nothing listens at the server URL."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri, timeout=10).close()
    except urllib.error.HTTPError:
        pass  # something answered; MLflow's own request says whether it is an MLflow server
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"MLFLOW_TRACKING_URI={uri}: no server answers ({reason}); start `mlflow server` there, "
                        "or unset the variable to use the embedded store") from None


# ---- a tracking server: bounded waits ----------------------------------------------------------------------------

SERVER_PATIENCE_SECONDS = 60  # the longest one call waits for a tracking server that stopped answering
# MLflow's HTTP settings for a tracking server unless the user set them: at most 3 attempts of at most 15 s, 1 + 2 s
# apart (about 50 s, within SERVER_PATIENCE_SECONDS). MLflow's own, 7 retries with exponential backoff and a 120 s
# timeout, wait about 4 minutes on a server that refuses connections and a quarter of an hour on one that hangs.
SERVER_HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5"}
# ... and while a stopping sweep ends its runs KILLED: one attempt of 3 s (MLflow reads them for every request)
HURRIED_HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "3", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
_server_calls = 0  # tracking-server calls under way in this process (a signal may interrupt those at once)


class ServerUnreachable(UserError):
    """The tracking server stopped answering: the sweep ends, its finished run folders stay for the next one."""


class _ServerClient:
    """An MlflowClient for a tracking server whose calls fail in one line, naming the URI, once the server does not
    answer within SERVER_PATIENCE_SECONDS; after that every call on it fails at once, so that a sweep ending its
    runs does not wait that long again for each of them."""

    def __init__(self, inner, uri: str) -> None:
        self._inner, self._uri, self._dead = inner, uri, ""

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            global _server_calls
            if self._dead:
                raise ServerUnreachable(self._dead)
            _server_calls += 1
            try:
                return attr(*args, **kwargs)
            except Exception as e:
                reason = _unreachable_reason(e)
                if reason is None:
                    raise
                self._dead = (f"MLFLOW_TRACKING_URI={self._uri}: the tracking server stopped answering ({reason}); "
                              "the run folders computed stay under the results folder, and the next sweep logs "
                              "them once the server is back")
                raise ServerUnreachable(self._dead) from None
            finally:
                _server_calls -= 1

        return call


def _unreachable_reason(error: BaseException) -> str | None:
    """A short reason when `error` (or what caused it) is a failed HTTP exchange: refused, timed out, or too many
    retries; None for an answer the server gave (an MLflow error such as a missing run)."""
    import requests

    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, (requests.exceptions.RequestException, ConnectionError, TimeoutError)):
            kind = "no answer in time" if isinstance(seen, (requests.exceptions.Timeout, TimeoutError)) else \
                "connection refused or lost"
            return f"{kind}, gave up after {SERVER_PATIENCE_SECONDS} s at most"
        seen = seen.__cause__ or seen.__context__
    return None


def in_server_call() -> bool:
    """Whether this process is waiting on a tracking server now (a signal handler may stop such a wait at once:
    unlike an sqlite call, it holds no lock that the cleanup after it would need)."""
    return _server_calls > 0


@contextlib.contextmanager
def hurry():
    """Calls to a tracking server in this block try once, for 3 s (HURRIED_HTTP_SETTINGS): for ending runs KILLED
    while a sweep stops, which must take seconds even if the server is gone."""
    saved = {name: os.environ.get(name) for name in HURRIED_HTTP_SETTINGS}
    os.environ.update(HURRIED_HTTP_SETTINGS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ensure_experiment(store: Store, name: str) -> str:
    """The id of experiment `name`, created (or restored from the trash) if needed."""
    c = client(store)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        location = f"{store.artifact_root}/{name}" if store.artifact_root else None
        return c.create_experiment(name, artifact_location=location)
    if exp.lifecycle_stage == "deleted":
        c.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def start_run(store: Store, experiment_id: str, run_name: str, parent_run_id: str | None = None,
              tags: dict | None = None) -> str:
    """Create a RUNNING run (nested under `parent_run_id` if given); returns its id."""
    tags = {k: _text(v, MAX_TAG_CHARS) for k, v in (tags or {}).items()}
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id
    return client(store).create_run(experiment_id, tags=tags, run_name=run_name).info.run_id


def reopen_run(store: Store, run_id: str) -> None:
    """Mark an ended run RUNNING again (a resumed sweep's parent)."""
    client(store).update_run(run_id, status="RUNNING")


def end_run(store: Store, run_id: str, status: str = "FINISHED") -> None:
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: expected one of {STATUSES}")
    client(store).set_terminated(run_id, status)


def find_runs(store: Store, experiment_id: str, filter_string: str = "") -> list[RunRecord]:
    """Every run of the experiment matching an MLflow filter (e.g. "attributes.status = 'RUNNING'"),
    newest first, across result pages."""
    c, records, token = client(store), [], None
    while True:
        page = c.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        records += [RunRecord(r.info.run_id, r.info.run_name, r.info.status, r.info.start_time, dict(r.data.tags))
                    for r in page]
        token = page.token
        if not token:
            return records


def finished_runs(store: Store, experiment_id: str) -> dict[str, str]:
    """{config_hash: run_id} of the FINISHED runs that carry a config_hash (the newest wins)."""
    done: dict[str, str] = {}
    for r in find_runs(store, experiment_id, "attributes.status = 'FINISHED'"):
        if "config_hash" in r.tags:
            done.setdefault(r.tags["config_hash"], r.run_id)
    return done


def end_stale_runs(store: Store, experiment_id: str) -> int:
    """End as KILLED every run still RUNNING (left by a killed sweep); returns how many."""
    stale = find_runs(store, experiment_id, "attributes.status = 'RUNNING'")
    for r in stale:
        end_run(store, r.run_id, "KILLED")
    return len(stale)


def log_values(store: Store, run_id: str, metrics: dict | None = None, tags: dict | None = None,
               params: dict | None = None) -> None:
    """Scalars, tags and params in one batch (for a sweep's parent run)."""
    m = _mlflow().entities
    now = _now_ms()
    client(store).log_batch(
        run_id,
        metrics=[m.Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[m.Param(k, _text(v, MAX_PARAM_CHARS)) for k, v in (params or {}).items()],
        tags=[m.RunTag(k, _text(v, MAX_TAG_CHARS)) for k, v in (tags or {}).items()],
    )


def log_artifact(store: Store, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    client(store).log_artifact(run_id, str(path), artifact_path)


def log_run_folder(store: Store, run_id: str, run_dir: str | Path, tags: dict | None = None) -> None:
    """Log a finished run folder: config.json as params, summary.json as tags + metrics, series.parquet as
    step metrics (one log_batch for all of it), every file as an artifact at its relative path."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    run_tags = {"config_hash": summary.get("config_hash", run_dir.name)}
    run_tags |= {k: summary[k] for k in SUMMARY_TAGS + ("error",) if summary.get(k) is not None}
    run_tags |= tags or {}
    # Artifacts first: finding a run's artifact folder reads the whole run back, which is cheapest before its
    # metrics are in.
    client(store).log_artifacts(run_id, str(run_dir))
    if (run_dir / "samples.json").exists():
        client(store).log_text(run_id, _samples_text(run_dir / "samples.json"), "samples.txt")
    m, now = _mlflow().entities, _now_ms()
    metrics = [m.Metric(k, v, now, step) for k, step, v in _summary_metrics(summary)]
    metrics += [m.Metric(k, v, now, step) for k, step, v in _series_metrics(run_dir / "series.parquet")]
    client(store).log_batch(
        run_id,
        metrics=metrics,
        params=[m.Param(k, _text(v, MAX_PARAM_CHARS)) for k, v in flatten_json(config).items()],
        tags=[m.RunTag(k, _text(v, MAX_TAG_CHARS)) for k, v in run_tags.items()],
    )


def log_folder_and_end(store: Store, run_id: str, run_dir: str | Path) -> None:
    """`log_run_folder`, then end the run FINISHED (whatever the run's outcome: that is a tag). If logging is
    interrupted the run ends KILLED, if it fails FAILED, so no run is left RUNNING."""
    try:
        log_run_folder(store, run_id, run_dir)
    except BaseException as e:
        with hurry():  # seconds, even when a tracking server is gone
            try:
                end_run(store, run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            except ServerUnreachable:
                pass  # the run stays RUNNING until the next sweep ends it; `e` is the error to report
        raise
    end_run(store, run_id, "FINISHED")


def flatten_json(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars stay values."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten_json(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _summary_metrics(summary: dict):
    """(key, step, value): top-level numbers at step 0, and per-layer numbers as `layers/<name>` at
    step = layer index (one chart per quantity rather than one key per layer) for stacks of 2 or more layers
    (a single layer's numbers are the top-level ones)."""
    for k, v in summary.items():
        if _is_number(v):
            yield k, 0, float(v)
    layers = summary.get("layers") or []
    for layer, row in enumerate(layers if len(layers) > 1 else []):
        for k, v in (row.items() if isinstance(row, dict) else ()):
            if _is_number(v) and k != "layer":
                yield f"layers/{k}", layer, float(v)


def _series_metrics(path: Path):
    if not path.exists():
        return
    import pyarrow.parquet as pq  # a third of pandas' time for a table this small

    table = pq.ParquetFile(path).read(columns=["key", "step", "value"]).to_pydict()
    yield from zip(map(str, table["key"]), map(int, table["step"]), map(float, table["value"]))


def _samples_text(path: Path) -> str:
    samples = json.loads(path.read_text())
    return "\n\n".join(f"--- iter {s.get('iter')} ---\n{s.get('text', '')}" for s in samples)


def _is_number(v) -> bool:
    return isinstance(v, (int, float))  # NaN and inf included: MLflow stores them, and overflow is data


def _text(v, limit: int) -> str:
    """MLflow stores strings: keep strings as they are, write everything else as JSON (null, true, 0.5)."""
    s = v if isinstance(v, str) else json.dumps(v)
    return s[:limit]


def _now_ms() -> int:
    return int(time.time() * 1000)
