"""Files a reader never sees half-written, and the run layer's file formats.

A file is written to a temp file beside it and renamed over it (`os.replace` is atomic within a file system); a
folder of files is built in a temp folder beside its destination and swapped in once complete. On top of that:
strict JSON, byte-reproducible .npz files, and model*.npz files (the arrays of `engine.rnn.model_arrays`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from ..engine.cells import Model, model_arrays, model_from_arrays
from .leftovers import clear_killed_writes, remove_stale_temp_files
from .modelcheck import check_model_headers, check_model_values

try:
    import fcntl

    _LOCKS = True
except ImportError:  # Windows: no flock, so leftovers are not recognised as such
    _LOCKS = False

_FIXED_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # zip timestamps pinned so that rewriting the same arrays gives the same bytes


# ---- one file -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(path: Path | str) -> Iterator[BinaryIO]:
    """A new binary file that becomes `path` when the block ends without an exception, and is removed otherwise.

    It is .<name>.<8 hex digits>.tmp in path's folder (made if missing), created with the umask's permissions and
    flock-ed until it has become `path`: the temp files killed writers of `path` left (unlocked) go first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    tmp, f = _new_file(path)
    try:
        with f:
            yield f
            f.flush()
            if _LOCKS:  # renamed while still locked: no one takes it for a leftover in between
                os.replace(tmp, path)
        if not _LOCKS:  # Windows cannot rename an open file
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _new_file(path: Path) -> tuple[Path, BinaryIO]:
    """(name, open file, locked) of a file created beside `path` under a name no one else holds."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            f = open(tmp, "xb")
        except FileExistsError:
            continue
        if not _LOCKS:
            return tmp, f
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # waits out a `remove_stale_temp_files` that took it for a leftover
        if os.fstat(f.fileno()).st_nlink:
            return tmp, f
        f.close()  # that one removed it before the lock was ours


def write_atomic(path: Path | str, data: bytes | str) -> None:
    """Write `data` (a str as UTF-8) to `path` via `atomic_file`."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def jsonable(value: Any) -> Any:
    """numpy scalars to Python, non-finite floats to None (strict JSON), recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path | str, obj: Any) -> Any:
    """Write `jsonable(obj)` as strict JSON (indent 2, UTF-8, a final newline), atomically; returns what was written."""
    clean = jsonable(obj)
    write_atomic(path, json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return clean


def save_npz(path: Path | str, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed, but byte-identical for identical arrays (fixed zip dates and attributes), atomically."""
    with atomic_file(path) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)


# ---- model files ----------------------------------------------------------------------------------------------


def save_model(model: Model, path: Path | str) -> None:
    """Write `model` as a model*.npz file, atomically. Vanilla keys: form, activation, leaky_slope, W_hh_l, W_xh_l,
    b_h_l, W_hy, b_y; LSTM keys: cell ("lstm"), W_ih_l, W_hh_l, b_l, W_hy, b_y (engine/cells.py)."""
    arrays = model_arrays(model)  # validates the model before anything is written
    with atomic_file(path) as f:
        np.savez(f, **arrays)


def load_model(path: Path | str) -> Model:
    """Read a model*.npz file of either cell; ValueError naming the file and what is wrong with it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"model file {path!r} does not exist or is not a file")
    try:
        check_model_headers(path)  # sizes and types from the headers, before anything is loaded
    except ValueError as e:
        raise ValueError(f"model file {path!r}: {e}") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/format errors: say which file and why
        raise ValueError(f"model file {path!r} is not a readable .npz archive ({e})") from None
    try:
        check_model_values(arrays)
        return model_from_arrays(arrays)
    except ValueError as e:
        raise ValueError(f"model file {path!r}: {e}") from None


# ---- a folder of files ----------------------------------------------------------------------------------------


# The temp folders this process is building, each held by an flock on the folder itself: the kernel drops it when
# the process exits however it exits (SIGKILL included), so an unlocked temp folder is one whose builder is gone.
_HELD: dict[Path, int] = {}


def temp_folder(parent: Path, name: str) -> Path:
    """A new, empty parent/.<name>.<8 random hex digits>.tmp with the umask's permissions (tempfile.mkdtemp's are
    0700, which the folder renamed from it would keep: unreadable to the group that shares the results), locked by
    this process until it is moved into place or removed (`remove_stale_temp_folders`)."""
    _release_removed()
    tmp, fd = _locked_folder(parent, name, "tmp")
    if fd is not None:
        _HELD[tmp] = fd
    return tmp


def _locked_folder(parent: Path, name: str, suffix: str) -> tuple[Path, int | None]:
    """(parent/.<name>.<8 random hex digits>.<suffix>, just made, and an fd holding its flock: None where there
    is no flock). It is locked before it gets that name, the one `leftovers` looks for."""
    while True:
        token = secrets.token_hex(4)
        folder, new = parent / f".{name}.{token}.{suffix}", parent / f".{name}.{token}.new"
        try:
            new.mkdir()
        except FileExistsError:
            continue
        fd = _locked(new)
        if folder.exists():  # 2**32 tokens: all but never
            new.rmdir()
            if fd is not None:
                os.close(fd)
            continue
        os.rename(new, folder)
        return folder, fd


def _locked(folder: Path) -> int | None:
    """An fd holding an exclusive flock on `folder`, just made by this process; None where there is no flock
    (Windows: leftover temp folders are then not recognised as such)."""
    if not _LOCKS:
        return None
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _release(folder: Path) -> None:
    fd = _HELD.pop(folder, None)
    if fd is not None:
        os.close(fd)


def _release_removed() -> None:
    """Drop the locks of temp folders that are gone (a failed run's caller removes its folder with rmtree): a
    removed folder has no links left."""
    for folder, fd in list(_HELD.items()):
        if os.fstat(fd).st_nlink == 0:
            _release(folder)


def remove_stale_temp_folders(parent: Path, names: str) -> list[Path]:
    """Clear what killed writers of folders named like the regular expression `names` left in `parent`
    (`leftovers.clear_killed_writes`: a result left only in a killed swap's .old folder is put back first); returns
    the folders removed. A folder another process is still building or swapping is locked and left alone."""
    return clear_killed_writes(parent, names).removed


def move_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished folder `tmp` to `dest` (same parent). An existing `dest` is replaced only now: it is
    renamed aside into a new, locked .<name>.<8 hex digits>.old/ folder, put back if `tmp` cannot take its place,
    and deleted once it has. A process killed between the two renames leaves the previous `dest` in the .old
    folder, where the next `clear_killed_writes` puts it back (`stopping.signals_held` keeps SIGINT and SIGTERM
    from landing there)."""
    if not dest.exists():
        os.replace(tmp, dest)
        _release(tmp)
        return
    old, fd = _locked_folder(dest.parent, dest.name, "old")
    try:
        os.replace(dest, old / dest.name)
        try:
            os.replace(tmp, dest)
        except OSError:
            os.replace(old / dest.name, dest)
            raise
        _release(tmp)
    finally:
        if dest.exists():  # else the previous result is only in `old`: left for `clear_killed_writes` to put back
            shutil.rmtree(old)
        if fd is not None:
            os.close(fd)
