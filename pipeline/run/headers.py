"""Sizes read from a file's headers before the file is read, each against a limit stated here.

A compressed file says little of what it holds: a 2 MB .npz of deflated zeros declared a 2.2 GB array, a 1.3 MB
parquet file 100 million rows. numpy and pyarrow allocate what the header declares, so the header is read first:
an .npz's member headers (each member's `.npy` header, read from the start of its stream; nothing else is
decompressed) and a parquet file's footer (row count and column types). A file over its limit, or that lies in its
headers, is refused before anything is allocated.
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIB, GIB = 2**20, 2**30
# An .npz that rnngrad reads: members, and the bytes all its arrays take once loaded. The largest model the config
# allows for a probe that finishes (a few hundred MB) and the largest validation set a machine of 24 GiB can train
# on fit well inside.
NPZ_MAX_MEMBERS = 256
NPZ_MAX_BYTES = 4 * GIB
NPY_MAX_HEADER = 10_000  # bytes of one .npy header (numpy's own default limit)
# A results table (results/<spec>.parquet): one row per cell
RESULTS_MAX_ROWS = 1_000_000
# A run's probe tables (probe/*.parquet) and series: rows. jacobian.parquet has one row per (probe, layer, t, k):
# two probes of 2,000 steps (probe_len's maximum) on 4 layers
RUN_TABLE_MAX_ROWS = 16_000_000
# Files read whole as text (JSON of a run folder or of data/, CSV tables of an analysis)
TEXT_MAX_BYTES = 256 * MIB


class HeaderError(ValueError):
    """A file whose headers declare more than its limit, or something other than what it should hold."""


@dataclass(frozen=True)
class ArrayHeader:
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def regular_file(path: Path | str) -> os.stat_result:
    """stat of `path` if it is a regular file (a link to one is followed); HeaderError for a FIFO, a device, a
    socket or a folder, which would block a read or never end (FileNotFoundError when missing)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise HeaderError("not a regular file (a FIFO, device, socket or folder)")
    return info


def npz_headers(path: Path | str, max_bytes: int = NPZ_MAX_BYTES) -> dict[str, ArrayHeader]:
    """{key: dtype and shape} of every array in an .npz, from the member headers alone; HeaderError for a file that
    is no .npz of plain arrays (object arrays, other members), or whose arrays would take more than `max_bytes`."""
    regular_file(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if len(members) > NPZ_MAX_MEMBERS:
                raise HeaderError(f"{len(members)} members, more than {NPZ_MAX_MEMBERS}")
            headers = {}
            for info in members:
                if not info.filename.endswith(".npy"):
                    raise HeaderError(f"a member {info.filename[:40]!r} that is not an array")
                with zf.open(info) as member:
                    headers[info.filename[:-4]] = _npy_header(member)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        if isinstance(e, HeaderError):
            raise
        raise HeaderError(f"not a readable .npz ({type(e).__name__})") from None
    total = sum(h.nbytes for h in headers.values())
    if total > max_bytes:
        raise HeaderError(f"its arrays would take {total / GIB:.3g} GiB, more than the {max_bytes / GIB:.3g} GiB "
                          "rnngrad reads from one file")
    return headers


def _npy_header(member) -> ArrayHeader:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member, max_header_size=NPY_MAX_HEADER)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member, max_header_size=NPY_MAX_HEADER)
    else:
        raise HeaderError(f"an .npy format {version} rnngrad does not read")
    if dtype.hasobject:
        raise HeaderError("an array of Python objects (pickles are never loaded)")
    return ArrayHeader(dtype, tuple(int(n) for n in shape))


@dataclass(frozen=True)
class TableHeader:
    rows: int
    types: dict[str, str]  # column -> "number" | "text" | "bool" | "nested" | "other"


def parquet_header(path: Path | str, max_rows: int) -> TableHeader:
    """Row count and column kinds of a parquet file from its footer; HeaderError above `max_rows` or for a file
    that is no parquet table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    regular_file(path)
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, ValueError, pa.ArrowException) as e:
        raise HeaderError(f"not a readable parquet table ({type(e).__name__})") from None
    if meta.num_rows > max_rows:
        raise HeaderError(f"{meta.num_rows:,} rows, more than the {max_rows:,} rnngrad reads from such a table")
    return TableHeader(meta.num_rows, {field.name: _kind(field.type) for field in schema})


def _kind(t) -> str:
    import pyarrow.types as pt

    if pt.is_boolean(t):
        return "bool"
    if pt.is_integer(t) or pt.is_floating(t) or pt.is_decimal(t):
        return "number"
    if pt.is_string(t) or pt.is_large_string(t) or pt.is_dictionary(t) and pt.is_string(t.value_type):
        return "text"
    if pt.is_nested(t):
        return "nested"
    if pt.is_null(t):
        return "null"
    return "other"


def check_columns(header: TableHeader, numeric: tuple[str, ...] = (), text: tuple[str, ...] = ()) -> None:
    """HeaderError for a nested column (a list, struct or map: no table rnngrad writes has one), a `numeric`
    column that holds no numbers or a `text` column that holds no text (an all-null column, or any column of an
    empty table, whose type pandas guessed, passes both)."""
    if header.rows == 0:
        return
    for name, kind in header.types.items():
        if kind == "nested":
            raise HeaderError(f"column {name[:40]!r} holds lists or records; rnngrad's tables hold plain values")
    for name in numeric:
        if header.types.get(name, "number") not in ("number", "null", "bool"):
            raise HeaderError(f"column {name[:40]!r} holds {header.types[name]}, not numbers")
    for name in text:
        if header.types.get(name, "text") not in ("text", "null"):
            raise HeaderError(f"column {name[:40]!r} holds {header.types[name]}, not text")


def text_size(path: Path | str, max_bytes: int = TEXT_MAX_BYTES) -> int:
    """The size of a file about to be read whole as text; HeaderError for more than `max_bytes` or a FIFO."""
    size = regular_file(path).st_size
    if size > max_bytes:
        raise HeaderError(f"{size / MIB:.1f} MiB, more than the {max_bytes / MIB:.0f} MiB rnngrad reads as text")
    return size
