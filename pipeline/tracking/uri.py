"""The one parser of a tracking URI (MLFLOW_TRACKING_URI): a plain SQLite file path, an http(s) tracking server, or a
PostgreSQL database; anything else is refused in one line. Every command that reads the variable reads it here.

Strict on purpose. SQLAlchemy and MLflow accept far more than a file path after `sqlite:///`: a query
(`?mode=ro`), `:memory:`, a device or FIFO that a zero size makes look like an empty database. Each of those let
MLflow create or replace a file the user never meant to be a store (`sqlite:////dev/null` replaced the machine's
/dev/null). So a SQLite URI names a file by path alone, and `safe_sqlite_path` checks what is there before the
store touches it. No mlflow here: parsing costs nothing.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import UserError, clip
from ..run.paths import check_path_names

SQLITE_PREFIX = "sqlite:///"
MAX_URI_CHARS = 2048  # longer than any real URL or path; a message shows at most 120 of it
VALID = ("use sqlite:////abs/path/mlflow.db (a file path, nothing after it), an http(s)://host:port tracking "
         "server, postgresql://user@host:port/database, or unset it for the embedded store")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_POSTGRES = re.compile(r"postgresql(\+[a-z0-9_]+)?")
# files SQLite keeps beside a database (journal, write-ahead log, shared memory): checked like the database itself
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


@dataclass(frozen=True)
class TrackingUri:
    kind: str  # "sqlite" | "server" | "postgresql"
    uri: str  # what MLflow is given: sqlite:////abs/path for a file, else the URI as the user wrote it
    path: Path | None = None  # sqlite: the database file, absolute (links not followed)


def parse_tracking_uri(text: str | None, project_root: Path) -> TrackingUri:
    """The store `text` names ("" or None: the embedded `<project_root>/mlflow.db`); UserError in one line
    naming the variable for anything but a plain SQLite file path, an http(s) URL with a host, or PostgreSQL."""
    text = (text or "").strip()
    if not text:
        return _sqlite(Path(project_root) / "mlflow.db", "the embedded store")
    label = f"MLFLOW_TRACKING_URI={clip(text, 80)!r}"
    if len(text) > MAX_URI_CHARS:
        raise UserError(f"{label}: {len(text)} characters, more than the {MAX_URI_CHARS} a tracking URI may have; "
                        f"{VALID}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise UserError(f"{label}: holds a control character (NUL, a newline, ...); {VALID}")
    scheme = (m.group(1).lower() if (m := _SCHEME.match(text)) else "")
    if scheme == "sqlite":
        return _sqlite_uri(text, label)
    if scheme in ("http", "https"):
        return _server(text, label)
    if _POSTGRES.fullmatch(scheme):
        return _postgres(text, label)
    hint = " (MLflow 3.13+ refuses the file store)" if scheme in ("", "file") else ""
    raise UserError(f"{label}: not a store rnngrad can use{hint}; {VALID}")


def _sqlite_uri(text: str, label: str) -> TrackingUri:
    if not text.startswith(SQLITE_PREFIX):
        raise UserError(f"{label}: a SQLite URI is sqlite:/// followed by the file's path; {VALID}")
    raw = text[len(SQLITE_PREFIX):]
    if "?" in raw or "#" in raw:
        raise UserError(f"{label}: a query or fragment after the path (?mode=..., ?uri=...) is not a plain file "
                        f"path; {VALID}")
    path = unquote(raw)
    if not path or path.endswith("/") or path in (":memory:", ".", "..") or "\x00" in path:
        raise UserError(f"{label}: does not name a database file; {VALID}")
    return _sqlite(Path(path), label)


def _sqlite(path: Path, label: str) -> TrackingUri:
    check_path_names(path, label)
    absolute = Path(os.path.abspath(path))  # not resolve(): a link at the path is refused, never followed
    return TrackingUri("sqlite", f"{SQLITE_PREFIX}{absolute}", absolute)


def _server(text: str, label: str) -> TrackingUri:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as e:
        raise UserError(f"{label}: not a URL ({e}); {VALID}") from None
    if not parts.hostname or any(ch.isspace() for ch in text):
        raise UserError(f"{label}: no host name, or a space in the URL; {VALID}")
    if any(len(label_part) > 63 for label_part in parts.hostname.split(".")) or len(parts.hostname) > 253:
        raise UserError(f"{label}: a host name longer than DNS allows (63 characters a label, 253 in all); {VALID}")
    return TrackingUri("server", text.rstrip("/"))


def _postgres(text: str, label: str) -> TrackingUri:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018
    except ValueError as e:
        raise UserError(f"{label}: not a URL ({e}); {VALID}") from None
    if not parts.hostname or not parts.path.strip("/") or any(ch.isspace() for ch in text):
        raise UserError(f"{label}: a PostgreSQL URI names a host and a database (postgresql://user@host/db); "
                        f"{VALID}")
    return TrackingUri("postgresql", text)


def check_store_file(path: Path) -> None:
    """The SQLite file (and the journal, log and shared-memory files SQLite keeps beside it) must be absent or a
    regular file, never a link, device, FIFO or socket, and `mlartifacts/` beside it absent or a folder, never a
    link: the store writes and replaces these. UserError otherwise; nothing is created here."""
    for candidate in (path, *(path.with_name(path.name + side) for side in SQLITE_SIDE_FILES)):
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise UserError(f"{clip(str(candidate))}: cannot be checked ({e.strerror}); give another store") from None
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{clip(str(candidate))}: is {_kind(info.st_mode)}, not a regular file; the MLflow "
                            "store writes there, so rnngrad refuses it: give a plain file path (or unset "
                            "MLFLOW_TRACKING_URI)")
    artifacts = path.parent / "mlartifacts"
    if artifacts.is_symlink() or (artifacts.exists() and not artifacts.is_dir()):
        kind = "a symbolic link" if artifacts.is_symlink() else "a file"
        raise UserError(f"{clip(str(artifacts))}: is {kind}, but the MLflow store keeps run artifacts in a folder "
                        "of its own there; move it aside")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"
