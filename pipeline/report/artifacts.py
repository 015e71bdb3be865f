"""What sweeps wrote, read within limits: the results tables (`results/<spec>.parquet`) and the files of a run's
folder. Every size is read from the file's header or size first (run/headers.py), and every name that will become
a folder, a section id or a link (a spec, a config hash, a run id) is checked to be one a sweep writes: a results
table is a file anyone can hand over.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..errors import UserError, shown
from ..run.headers import (RESULTS_MAX_ROWS, RUN_TABLE_MAX_ROWS, HeaderError, check_columns, parquet_header,
                           text_size)
from ..run.rates import STAGE_SUFFIX
from ..run.spec import check_spec_name

RESULT_COLUMNS = ("run_id", "config_hash", "outcome")
CONFIG_HASH = re.compile(r"[0-9a-f]{1,64}")  # a run folder's name: config_hash's hex digits, nothing a path reads
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # an MLflow run id (32 hex digits; fakes in tests are shorter)


def result_tables(results_dir: Path) -> list[Path]:
    """results/<spec>.parquet, then each learning-rate selection's results/<name>/<name>_rates.parquet (its runs in
    results/<name>/<name>_rates/runs/, rates.stage_results_dir); a folder that is a link is not entered."""
    if not results_dir.is_dir():
        return []
    nested = [f for f in results_dir.glob(f"*/*{STAGE_SUFFIX}.parquet")
              if f.stem == f.parent.name + STAGE_SUFFIX and not f.parent.is_symlink()]
    return sorted(results_dir.glob("*.parquet")) + sorted(nested)


def load_results(results_dir: Path) -> pd.DataFrame:
    """Every results table stacked (`result_tables`; a missing `spec` column is the file stem), a selection's
    run_dir made relative to results/; UserError when no runs, or for a table that is too large, holds nested
    columns, or names a spec, run or folder rnngrad would not write."""
    frames = []
    for f in result_tables(results_dir):
        check_spec_name(f.stem, f"{f}: the file name")
        try:
            check_columns(parquet_header(f, RESULTS_MAX_ROWS), text=RESULT_COLUMNS + ("spec", "run_dir"))
            df = pd.read_parquet(f)
        except (OSError, ValueError) as e:
            raise UserError(f"{f}: cannot be read ({e}); re-run `rnngrad sweep experiments/{f.stem}.yaml`") from None
        lacking = [c for c in RESULT_COLUMNS if c not in df.columns]
        if lacking and len(df):
            raise UserError(f"{f}: lacks columns {', '.join(lacking)}; a results table has {', '.join(RESULT_COLUMNS)}")
        df = df.assign(spec=df["spec"]) if "spec" in df else df.assign(spec=f.stem)
        _check_rows(f, df)
        if f.parent != results_dir and len(df):  # its run_dir is relative to results/<name>/, where it was swept
            given = df["run_dir"] if "run_dir" in df else df["spec"] + "/runs/" + df["config_hash"]
            df = df.assign(run_dir=f"{f.parent.name}/" + given.astype(str))
        frames.append(df)
    frames = [f for f in frames if len(f)]
    if not frames:
        raise UserError(f"{results_dir}/: no runs found; run `rnngrad sweep experiments/<spec>.yaml` first")
    return pd.concat(frames, ignore_index=True).drop_duplicates("run_id", keep="last")


def _check_rows(path: Path, df: pd.DataFrame) -> None:
    """Each row's spec (SPEC_NAME), config_hash (a run folder's name) and run id (text, no markup) are what a sweep
    writes: they become folder names, section ids and links."""
    for i, row in enumerate(df[[c for c in ("spec", "config_hash", "run_id") if c in df]].to_dict("records")):
        check_spec_name(row["spec"], f"{path}: row {i}: spec")
        if "config_hash" in row and not (isinstance(row["config_hash"], str) and CONFIG_HASH.fullmatch(row["config_hash"])):
            raise UserError(f"{path}: row {i}: config_hash {shown(row['config_hash'])} is not a run's hash "
                            "(hex digits); re-run the sweep")
        if "run_id" in row and not (isinstance(row["run_id"], str) and RUN_ID.fullmatch(row["run_id"])):
            raise UserError(f"{path}: row {i}: run_id {shown(row['run_id'])} is not an MLflow run id; re-run the "
                            "sweep")


def run_folder(results_dir: Path, row: dict) -> Path:
    """results/<spec>/runs/<config_hash>; else the row's run_dir, relative to results/ and inside it (a folder
    elsewhere, or reached through a link out of results/, is never read)."""
    canonical = results_dir / str(row["spec"]) / "runs" / str(row["config_hash"])
    given = row.get("run_dir")
    if canonical.is_dir() or not isinstance(given, str) or not given or Path(given).is_absolute():
        return canonical
    candidate = results_dir / given
    inside = Path(os.path.realpath(candidate)).is_relative_to(os.path.realpath(results_dir))
    return candidate if inside and candidate.is_dir() else canonical


TEXT_COLUMNS = ("when", "kind", "key", "param")  # the text columns of a run's tables; their others hold numbers


def read_artifact(path: Path, columns: Iterable[str] = (), nonempty: bool = False) -> tuple[Any, str | None]:
    """(content, None) or (None, what is wrong): missing, unreadable, too large (headers.py's limits, read from the
    file's size or parquet footer first), of the wrong column types, lacking columns, or empty when `nonempty`."""
    if not path.exists():
        return None, "missing"
    columns = tuple(columns)
    try:
        if path.suffix == ".parquet":
            header = parquet_header(path, RUN_TABLE_MAX_ROWS)
            check_columns(header, numeric=tuple(c for c in columns if c not in TEXT_COLUMNS),
                          text=tuple(c for c in columns if c in TEXT_COLUMNS))
            value = pd.read_parquet(path)
        else:
            text_size(path)
            text = path.read_text(encoding="utf-8")
            value = json.loads(text) if path.suffix == ".json" else pd.read_csv(io.StringIO(text))
    except HeaderError as e:
        return None, f"refused ({e})"
    except (OSError, ValueError, UnicodeDecodeError, RecursionError, pd.errors.ParserError) as e:
        return None, f"unreadable ({type(e).__name__}: {str(e)[:120]})"
    lacking = [c for c in columns if c not in getattr(value, "columns", ())]
    if lacking:
        return None, f"lacks columns {', '.join(lacking)}"
    if nonempty and not len(value):
        return None, "empty"
    return value, None
