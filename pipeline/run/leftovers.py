"""What a killed command leaves beside its outputs, and how the next run of that command clears it.

`files` writes a file through a temp file `.<name>.<token>.tmp` beside it, builds a folder in a temp folder
`.<name>.<token>.tmp/`, and replaces a folder by first renaming the old one into `.<name>.<token>.old/<name>`. Each
of these is flock-ed by its writer for as long as it has that name. The kernel drops the lock when the writer exits
however it exits (SIGKILL, the OOM killer), so an unlocked one is a leftover. A live writer's is left alone, and so
is anything that is not ours: another name, a link, a file where we make folders (or the reverse).

A `.old/` folder holds the previous complete result. When the result itself is missing (the writer was killed
between its two renames), the `.old/` is put back, never deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

# secrets.token_hex(4) now; tempfile.mkdtemp's eight characters in the versions that named .old folders with it
TOKEN = r"[a-z0-9_]{8}"


@dataclass
class Cleared:
    """What `clear_killed_writes` did in one folder."""

    removed: list[Path] = field(default_factory=list)  # leftover temp and .old folders deleted
    restored: list[Path] = field(default_factory=list)  # results put back from the .old folder of a killed swap


def lock_nowait(path: Path, folder: bool) -> int | None:
    """An fd holding an exclusive flock on `path`, a real folder (folder=True) or regular file, never reached
    through a symbolic link; None when another process holds the lock, or `path` is gone or not of that kind."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock, so no way to tell a leftover from a live write
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if folder else os.O_NONBLOCK)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        if not folder and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Remove the temp files (`.<path's name>.<token>.tmp`, regular files) that killed writers of `path` left
    beside it; returns them."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{TOKEN}\.tmp", re.DOTALL)
    removed = []
    for entry in _entries(path.parent):
        if not (pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)):
            continue
        fd = lock_nowait(Path(entry.path), folder=False)
        if fd is None:
            continue
        try:
            if os.stat(entry.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:  # still the one we locked
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def clear_killed_writes(parent: Path, names: str) -> Cleared:
    """In `parent`, put back every result a killed folder swap left only in its `.old/` folder, then remove the
    unlocked `.old/` and temp folders of results whose name matches the regular expression `names`."""
    cleared = Cleared()
    for suffix in ("old", "tmp"):  # .old first: a killed swap's result is back before its new folder is dropped
        pattern = re.compile(rf"\.(?:{names})\.{TOKEN}\.{suffix}", re.DOTALL)
        for entry in _entries(parent):
            if pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                _clear_folder(Path(entry.path), suffix, cleared)
    return cleared


def _clear_folder(folder: Path, suffix: str, cleared: Cleared) -> None:
    fd = lock_nowait(folder, folder=True)
    if fd is None:  # a live writer's
        return
    try:
        if suffix == "old":
            name = folder.name[1:-len(".12345678.old")]
            kept, dest = folder / name, folder.parent / name
            if not os.path.lexists(dest) and kept.is_dir() and not kept.is_symlink():
                os.rename(kept, dest)
                cleared.restored.append(dest)
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.lexists(folder):
            cleared.removed.append(folder)
    finally:
        os.close(fd)


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except OSError:  # no such folder, or not one: nothing left there
        return []
