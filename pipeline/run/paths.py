"""Checks on the folders a command reads and writes, made before it opens a store or starts a run (nothing is
created here)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError


def check_data_dir(data_dir: Path, option: str = "--data-dir") -> None:
    """A data folder that exists must be a folder (a missing one is fine: datasets are then built in memory)."""
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"{option} {data_dir}: is a file; give the data folder written by `rnngrad generate`")


def check_output_folder(folder: Path, label: str) -> None:
    """`folder` must be a folder this process can write in, or one it can create: its nearest existing ancestor
    is then a writable folder. `label` starts the message, e.g. "--out runs/train"."""
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
