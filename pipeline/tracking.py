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
SUMMARY_TAGS = ("outcome", "learned", "predicted_regime")  # what a runs table filters on (and the regimes below)
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
    _skip_absent_modules(DATABRICKS_ONLY_MODULES)
    import mlflow

    # "Creating initial MLflow database tables..." and "Updating database tables" on stderr for a new store: noise
    # in a command's output (warnings and errors still show)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

    return mlflow


# Modules MLflow's client tries to import on every request to a tracking server, to detect a Databricks notebook or
# Spark task: absent here, each try scans sys.path again, about half of what logging a cell costs the driver's CPU.
DATABRICKS_ONLY_MODULES = ("dbruntime", "pyspark", "IPython")


@functools.cache  # once per process: _mlflow() is called for every tracking call
def _skip_absent_modules(names: tuple[str, ...]) -> None:
    """Record modules that are not installed as absent (None in sys.modules), so that importing them fails at
    once, as it would anyway; installed ones are left alone."""
    import importlib.util
    import sys

    for name in names:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = None


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
    run_tags |= regime_tags(summary)
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
    """(key, step, value): top-level numbers as `summary/<name>` at step 0, rounded to SUMMARY_DIGITS significant
    digits, and per-layer numbers as `by_layer/<name>` at step = layer index (one chart per quantity rather than
    one key per layer) for stacks of 2 or more layers (a single layer's numbers are the top-level ones).

    The prefix puts the single numbers, which the UI's chart view draws as one bar chart each, in one section of
    their own below the curves (`by_lag/`, `by_k/`, `by_iter/`), and names them apart from the step metrics in
    the runs table; rounding keeps that table's columns legible (summary.json keeps every digit)."""
    for k, v in summary.items():
        if _is_number(v):
            yield f"{SUMMARY_PREFIX}{k}", 0, round_significant(float(v))
    ratio = val_over_chance(summary)
    if ratio is not None:
        yield f"{SUMMARY_PREFIX}val_over_chance", 0, round_significant(ratio)
    layers = summary.get("layers") or []
    for layer, row in enumerate(layers if len(layers) > 1 else []):
        for k, v in (row.items() if isinstance(row, dict) else ()):
            if _is_number(v) and k != "layer":
                yield f"by_layer/{k}", layer, float(v)


def _series_metrics(path: Path):
    if not path.exists():
        return
    import pyarrow.parquet as pq  # a third of pandas' time for a table this small

    table = pq.ParquetFile(path).read(columns=["key", "step", "value"]).to_pydict()
    # rounded as the summaries are: the runs table shows each curve's last value (series.parquet keeps them all)
    yield from zip(map(str, table["key"]), map(int, table["step"]),
                   (round_significant(float(v)) for v in table["value"]))


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


# ---- what a person sees in the MLflow UI ------------------------------------------------------------------------
# Each function below is self-contained: the sweep, the report stage and `rnngrad train` call them beside the
# logging above, so that the runs table, the run pages and the links printed by the commands tell the story.

SUMMARY_PREFIX = "summary/"  # single numbers (step 0): one chart-view section of bar charts, apart from the curves
SUMMARY_DIGITS = 4  # significant digits of a metric as logged (summary.json and series.parquet keep them all)
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves unless told otherwise
# MLflow 3 opens an experiment on its GenAI overview (traces) unless the link asks for the runs table
RUNS_VIEW = "workflowType=machine_learning"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # the UI opens a "custom_model_development" experiment on its runs
SUMMARY_TABLE = "summary_table.json"  # the parent run's table of its cells (mlflow.log_table: the UI renders it)


def round_significant(x: float, digits: int = SUMMARY_DIGITS) -> float:
    """x to `digits` significant digits; NaN, inf and 0 as they are."""
    import math

    if not math.isfinite(x) or x == 0:
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def val_over_chance(summary: dict) -> float | None:
    """Final validation loss over the task's chance loss (below 0.9: learned), None when either is missing."""
    loss, chance = summary.get("final_val_loss"), summary.get("chance_loss")
    if not (_is_number(loss) and _is_number(chance)) or not chance > 0:
        return None
    return float(loss) / float(chance)


def regime_tags(summary: dict) -> dict:
    """The observed regime of both probes, named for their probe: the regime after training is the final
    model's (from slope_final), so a trained run that no longer explodes does not show only its initial label."""
    from .run.probe import observed_regime

    tags = {}
    for when in ("init", "final"):
        slope = summary.get(f"slope_{when}")
        label = summary.get("observed_regime") if when == "init" else None  # the runner's label of the init probe
        if label is None and _is_number(slope):
            label = observed_regime(float(slope))
        if label is not None:
            tags[f"observed_regime_{when}"] = label
    return tags


def ui_address(store: Store) -> str:
    """The address the UI of this store answers at: the tracking server itself, or `mlflow ui`'s default."""
    return store.tracking_uri.rstrip("/") if not store.is_embedded else UI_ADDRESS


def experiment_link(store: Store, experiment_id: str) -> str:
    """A link that opens the experiment's runs table (not MLflow 3's GenAI overview)."""
    return f"{ui_address(store)}/#/experiments/{experiment_id}?{RUNS_VIEW}"


def run_link(store: Store, experiment_id: str, run_id: str) -> str:
    """A link that opens one run's page."""
    return f"{ui_address(store)}/#/experiments/{experiment_id}/runs/{run_id}?{RUNS_VIEW}"


def describe_experiment(store: Store, experiment_id: str, description: str) -> None:
    """Set the experiment's description (shown above its runs) and mark it a model-training experiment, so that the
    UI opens it on the runs table."""
    c = client(store)
    if description:
        c.set_experiment_tag(experiment_id, "mlflow.note.content", _text(" ".join(description.split()), MAX_TAG_CHARS))
    c.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, "custom_model_development")


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def source_tags(command: str) -> dict:
    """MLflow's own tags for who ran what (the runs table's User and Source columns): the user, the command, and
    the git commit of the working directory when it is a git checkout."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the column stays empty
        user = None
    tags = {"mlflow.source.name": command, "mlflow.source.type": "LOCAL"}
    if user:
        tags["mlflow.user"] = user
    if _git_commit():
        tags["mlflow.source.git.commit"] = _git_commit()
    return tags


# How a grid axis reads in a run name: (label, how its value reads); "{v}" is the value as `_short_value` writes it.
# An axis not listed reads "<key>=<value>".
_AXIS_LABELS = {
    "gamma_w": "γW={v}", "seq_len": "T={v}", "task": "{v}", "activation": "{v}", "init": "{v}", "form": "{v}",
    "clip_mode": "{v}", "clip_threshold": "·{v}", "layers": "L={v}", "hidden": "n={v}", "seed": "s{v}",
    "optimizer": "{v}", "lr": "lr={v}", "batch": "B={v}", "iters": "{v} it", "weight_decay": "wd={v}",
}
_VALUE_WORDS = {"elementwise": "elem", "global": "global", "none": "no clip", "orthogonal": "orth",
                "gaussian": "gauss", "leaky_relu": "leaky", "hard_tanh": "hardtanh", "temporal_order": "order"}


def _short_value(v) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:g}"
    return _VALUE_WORDS.get(v, str(v)) if isinstance(v, str) else str(v)


def short_run_names(grid: list[dict], base: str = "base") -> list[str]:
    """One short, readable name per grid cell from the axes whose values differ between cells (e.g. `γW=3 s1`,
    `elem·100 s2`, `copy T=40`): the runs table cuts long names, so an axis every cell shares is left out.
    A clipping threshold joins its mode (`elem·100`). A grid of one cell is `base`."""
    keys = list(dict.fromkeys(k for cell in grid for k in cell))
    varying = [k for k in keys if len({json.dumps(cell.get(k), sort_keys=True, default=str) for cell in grid}) > 1]
    names = []
    for cell in grid:
        parts = {k: _AXIS_LABELS.get(k, f"{k}={{v}}").format(v=_short_value(cell[k])) for k in varying if k in cell}
        if "clip_threshold" in parts:
            threshold = parts.pop("clip_threshold")
            if "clip_mode" in parts:
                parts["clip_mode"] += threshold  # "elem" + "·100"
            else:
                parts["clip_threshold"] = "clip " + threshold.lstrip("·")
        parts = list(parts.values())
        names.append(" ".join(parts) or base)
    return names


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a run reads, as MLflow's Dataset column shows it (no data: name, digest and where it lives)."""

    name: str  # e.g. adding_T30_N1000_s0
    digest: str  # the file's sha256, cut to 12 characters (MLflow shows it beside the name)
    source: str  # where the data lives, e.g. a file path
    profile: dict  # what it is: task, T, count, seed (shown on the run page)
    context: str = "validation"  # the role MLflow shows as a tag: the held-out set, or "training"


def log_datasets(store: Store, run_id: str, datasets: list[DatasetRef]) -> None:
    """Log `datasets` as the run's inputs, in one request, so the runs table's Dataset column fills and filters."""
    if not datasets:
        return
    e = _mlflow().entities
    inputs = [e.DatasetInput(e.Dataset(d.name, d.digest, "local", json.dumps({"uri": d.source}),
                                       profile=json.dumps(d.profile)),
                             tags=[e.InputTag("mlflow.data.context", d.context)]) for d in datasets]
    client(store).log_inputs(run_id, datasets=inputs)


def log_summary_table(store: Store, run_id: str, table, artifact_file: str = SUMMARY_TABLE) -> None:
    """A table (pandas DataFrame) as a run artifact the UI renders as a table (mlflow.log_table). An existing
    table of that name is replaced, not appended to (log_table appends), so a resumed sweep logs its table once."""
    import tempfile

    c = client(store)
    with tempfile.TemporaryDirectory(prefix="rnngrad-table-") as tmp:
        # log_table's own file format (a pandas "split" JSON with the table marker) written here, since
        # MlflowClient.log_table appends to a table already logged under that name
        path = Path(tmp) / Path(artifact_file).name
        path.write_text(table.to_json(orient="split", index=False, date_format="iso"))
        parent = str(Path(artifact_file).parent) if Path(artifact_file).parent != Path(".") else None
        c.log_artifact(run_id, str(path), parent)
    tags = dict(c.get_run(run_id).data.tags)
    logged = json.loads(tags.get("mlflow.loggedArtifacts", "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in logged:
        c.set_tag(run_id, "mlflow.loggedArtifacts", json.dumps(logged + [entry]))


def log_files(store: Store, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    """Log existing files under `artifact_path` of a run (the report's figures and documents on a sweep's parent)."""
    c = client(store)
    for path in paths:
        c.log_artifact(run_id, str(path), artifact_path)


def parents_of(store: Store, run_ids: list[str]) -> dict[str, str]:
    """{parent run id: experiment id} of the sweeps these child runs belong to (one lookup per experiment seen)."""
    c, parents, seen = client(store), {}, set()
    for run_id in run_ids:
        try:
            run = c.get_run(run_id)
        except _mlflow().exceptions.MlflowException:  # not in this store (e.g. logged to another tracking server)
            continue
        if run.info.experiment_id in seen:
            continue
        seen.add(run.info.experiment_id)
        parent = run.data.tags.get(PARENT_TAG)
        if parent:
            parents[parent] = run.info.experiment_id
    return parents


def hide_empty_default_experiment(store: Store) -> None:
    """Move MLflow's "Default" experiment (id 0, which creating a store makes) to the trash while it holds no run,
    so the experiment list shows only rnngrad's experiments. A tracking server's Default is left alone: it is
    not ours."""
    if not store.is_embedded:
        return
    c = client(store)
    try:
        default = c.get_experiment("0")
    except _mlflow().exceptions.MlflowException:
        return
    if default is None or default.lifecycle_stage != "active" or default.name != "Default":
        return
    if not c.search_runs(["0"], max_results=1, run_view_type=3):  # ViewType.ALL: a deleted run still counts
        c.delete_experiment("0")


def link_lines(store: Store, sweeps: list[tuple[str, str, str | None]]) -> list[str]:
    """What a command prints last: per (experiment name, experiment id, parent run id or None) the link to its
    runs table and to its sweep's run page, then how to start the UI the links open in (embedded store)."""
    lines = []
    for name, experiment_id, parent in sweeps:
        lines.append(f"MLflow {name}: {experiment_link(store, experiment_id)}")
        if parent:
            lines.append(f"  sweep run: {run_link(store, experiment_id, parent)}")
    if store.is_embedded:
        lines.append(f"open the links after starting the UI: {store.ui_command()}")
    return lines


def existing_store(project_root: str | Path) -> Store | None:
    """The store `open_store` would open, but only if it already exists and answers: None for an embedded store
    not yet created (nothing to link to; none is created) or a tracking server that does not answer."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri or uri.startswith("sqlite:///"):
        db = _sqlite_path(uri) if uri else Path(project_root).resolve() / "mlflow.db"
        if not db.is_file():
            return None
    try:
        return open_store(project_root)
    except UserError:
        return None


def experiment_ids(store: Store, names: list[str]) -> dict[str, str]:
    """{name: id} of the active experiments among `names` (absent or deleted ones are left out)."""
    c, ids = client(store), {}
    for name in names:
        exp = c.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage == "active":
            ids[name] = exp.experiment_id
    return ids
