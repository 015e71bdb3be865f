"""Opening the store runs are logged to: MLFLOW_TRACKING_URI (an `http(s)://` server, checked to answer as one, or a
`sqlite:///` file), else the embedded store `<root>/mlflow.db` with artifacts in `<root>/mlartifacts`, both absolute
because relative paths break in `dvc exp` temp dirs. The SQLite store is made whole or not at all (created and
migrated under a temp name, killed creations' leftovers removed), refused if it is another application's, and put
in WAL mode.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import time
from pathlib import Path

from ..errors import UserError
from .artifacts import adopt_proxy_layout
from .connection import ARTIFACTS_FOLDER, Store, _mlflow, client
from .server import SERVER_HTTP_SETTINGS, _check_server_answers
from .uri import check_store_file, parse_tracking_uri


STORE_LOCK_SECONDS = 20  # how long opening the sqlite store waits for another writer (MLflow's busy timeout)
STALE_CREATION_SECONDS = 600  # a temp store older than this is a killed creation's leftover, not another's work


def default_project_root(cwd: str | Path | None = None) -> Path:
    """Where the embedded store lives: the working directory, except inside a `dvc exp run --temp` / queue
    workspace (`<repo>/.dvc/tmp/exps/<tmp>/`), whose runs belong in the real repo's store."""
    cwd = Path(cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def open_store(project_root: str | Path, tracking_uri: str | None = None) -> Store:
    """Open (and, for sqlite, create now: before any run is logged) the store runs are logged to. Only the process
    that logs opens it: a sweep's workers, which may start before it is opened, never touch it (nor inherit a
    connection to it: they are spawned, not forked). `tracking_uri` overrides MLFLOW_TRACKING_URI; "" means the
    embedded store in `project_root`."""
    root = Path(project_root).resolve()
    parsed = parse_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") if tracking_uri is None else tracking_uri,
                                root)
    uri, artifact_root = parsed.uri, None
    if parsed.kind == "sqlite":
        db = parsed.path
        check_store_file(db)
        artifact_root = (db.parent / ARTIFACTS_FOLDER).as_uri()
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{db.parent}: cannot make the store's folder ({e.strerror}); give a writable "
                            "place for MLFLOW_TRACKING_URI") from None
        ensure_sqlite_store(db)
        _use_write_ahead_log(db)
        adopt_proxy_layout(db, STORE_LOCK_SECONDS)  # a store of an earlier rnngrad: its artifacts made portable
    elif parsed.kind == "postgresql":
        artifact_root = (root / ARTIFACTS_FOLDER).as_uri()
    else:
        for name, value in SERVER_HTTP_SETTINGS.items():  # the user's own settings win
            os.environ.setdefault(name, value)
        _check_server_answers(uri)
    store = Store(uri, artifact_root)
    try:
        client(store).search_experiments(max_results=1)  # creates the tables / checks the server answers
    except UserError:
        raise
    except Exception as e:
        if parsed.kind == "sqlite":
            raise _unusable_store(uri, e) from None
        reason = " ".join(str(e).split(". Response body")[0].split())[:120]
        if parsed.kind == "postgresql":
            raise UserError(f"MLFLOW_TRACKING_URI: the PostgreSQL store does not answer as MLflow's "
                            f"({type(e).__name__}: {reason}); check the host, the database and the user, or unset "
                            "the variable") from None
        if re.search(r"error code (401|403)\b", reason):  # MLflow's basic-auth app (docs/cluster.md)
            raise UserError(f"MLFLOW_TRACKING_URI={uri}: the server refuses this client ({reason}); set "
                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user it knows") from None
        raise UserError(f"MLFLOW_TRACKING_URI={uri}: the server answers, but not as an MLflow tracking server "
                        f"({type(e).__name__}: {reason}); give the URL of an `mlflow server`, or unset the "
                        "variable") from None
    return store


def existing_store(project_root: str | Path) -> Store | None:
    """The store `open_store` would open, but only if it already exists and answers: None for an embedded store
    not yet created (nothing to link to; none is created) or a tracking server that does not answer."""
    parsed = parse_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"), Path(project_root).resolve())
    if parsed.kind == "sqlite" and not parsed.path.is_file():
        return None
    try:
        return open_store(project_root)
    except UserError:
        return None


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
