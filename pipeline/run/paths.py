"""Checks on the folders a command reads and writes, made before it opens a store or starts a run (nothing is
created here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UserError


NAME_MAX = 255  # bytes in one file name: the limit of ext4, XFS, btrfs, APFS and NTFS
PATH_MAX = 4096  # bytes in a whole path (Linux)


def check_path_names(path: Path, label: str) -> None:
    """A path the file system could not even look up (a name of more than NAME_MAX bytes, a path of more than
    PATH_MAX) is refused before it is used: os.stat would raise ENAMETOOLONG instead of answering."""
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise UserError(f"{label}: a name of {len(os.fsencode(part))} bytes ({part[:20]}...); file systems allow "
                            f"{NAME_MAX}: give a shorter path")
    if len(os.fsencode(os.path.abspath(path))) > PATH_MAX:
        raise UserError(f"{label}: the path is longer than {PATH_MAX} bytes; give a shorter one")


def check_data_dir(data_dir: Path, option: str = "--data-dir") -> None:
    """A data folder that exists must be a folder (a missing one is fine: datasets are then built in memory), and
    its manifest.json, if any, the JSON object `rnngrad generate` writes."""
    check_path_names(data_dir, f"{option} {_short(data_dir)}")
    check_not_linked(data_dir, f"{option} {_short(data_dir)}")
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"{option} {data_dir}: is a file; give the data folder written by `rnngrad generate`")
    read_manifest(data_dir)


MAX_MANIFEST_BYTES = 16 * 1024**2  # a manifest lists a few hundred files: a few hundred KB at most
MANIFEST_SECTIONS = ("datasets", "corpora", "files")  # each {name: {...}}, as `rnngrad generate` writes them


def read_manifest(data_dir: Path) -> dict:
    """data_dir/manifest.json as the object `rnngrad generate` writes ({} when there is none); UserError, naming
    the file, for anything else: not a regular file, too large, not UTF-8 JSON, nested too deep to read, or JSON
    that is not an object (`[]`, a string)."""
    path = Path(data_dir) / "manifest.json"
    if not os.path.lexists(path):
        return {}
    fix = "rerun `rnngrad generate` to write it again"
    if path.is_symlink() or not path.is_file():
        raise UserError(f"{path}: not a regular file; {fix}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise UserError(f"{path}: {path.stat().st_size} bytes; a manifest is at most "
                        f"{MAX_MANIFEST_BYTES // 1024**2} MiB; {fix}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise UserError(f"{path}: nested too deep to read; {fix}") from None
    except (ValueError, OSError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UserError(f"{path}: not the JSON `rnngrad generate` writes ({type(e).__name__}); {fix}") from None
    if not isinstance(manifest, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(manifest), "a number")
        raise UserError(f"{path}: {kind}, not the JSON object `rnngrad generate` writes; {fix}")
    for key in MANIFEST_SECTIONS:
        section = manifest.get(key, {})
        if not isinstance(section, dict) or not all(isinstance(entry, dict) for entry in section.values()):
            raise UserError(f"{path}: its {key!r} is not an object of entries as `rnngrad generate` writes; {fix}")
    return manifest


def check_not_linked(folder: Path, label: str) -> None:
    """No folder the user named (`folder` and, for a relative path, each folder on the way to it) is a symbolic
    link: a command never writes through one (`--out runs` with runs -> /etc would write into /etc). Folders above
    the working folder, or above an absolute path's last part, are the system's to arrange."""
    folder = Path(folder)
    named = [folder]
    if not folder.is_absolute():
        named += [parent for parent in folder.parents if parent != Path(".")]
    for path in named:
        if path.is_symlink() and not path.exists():
            raise UserError(f"{label}: {path} is a broken symbolic link; remove it or give another folder")
        if path.is_symlink():
            raise UserError(f"{label}: {path} is a symbolic link (to {os.readlink(path)}), which rnngrad does not "
                            "read or write through; give the folder it points to, or a folder of the project")


def check_output_folder(folder: Path, label: str) -> None:
    """`folder` must be a folder this process can write in, or one it can create: its nearest existing ancestor
    is then a writable folder, and no folder named is a symbolic link. `label` starts the message, e.g.
    "--out runs/train"."""
    check_path_names(folder, label)
    check_not_linked(folder, label)
    for parent in (folder, *folder.parents):
        if parent.is_symlink() and not parent.exists():
            raise UserError(f"{label}: {parent} is a broken symbolic link; remove it or give another folder")
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise UserError(f"{label}: {parent} is a file, not a folder; give a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"{label}: {parent} is not writable (permissions or a read-only file system); "
                            "give a folder you can write in")
        return


def _short(path: Path) -> str:
    """A path as a message shows it: at most 60 characters."""
    text = str(path)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} characters)"


def option_label(option: str, path: Path) -> str:
    """'--out <path>' for a message, the path shortened (a 300-character path must not fill the line)."""
    return f"{option} {_short(path)}"


def check_output_files(folder: Path, files: tuple[str, ...], folders: tuple[str, ...], label: str) -> None:
    """Each of `files` in `folder` is absent or a regular file and each of `folders` absent or a folder (no link,
    device or FIFO in either): checked before anything is computed, so a command never writes half its outputs and
    then fails on the last."""
    for name in files + folders:
        path = folder / name
        if not os.path.lexists(path):
            continue
        ok = path.is_dir() if name in folders else path.is_file()
        if path.is_symlink() or not ok:
            kind = "folder" if name in folders else "regular file"
            raise UserError(f"{label}: {path} is in the way (not a {kind}, or a link); move it aside")
