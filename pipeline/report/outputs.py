"""The analysis's outputs as one set: `analyze` writes `tables/*.csv` and `metrics.json`, then `analysis.json`, which
records the sha256 of each of them; `report` reads the set only when every file is the one recorded. A stopped
analyze (SIGTERM between two files) so leaves a set `report` refuses in one line, never a mix it renders.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..errors import UserError, shown
from ..run.files import write_atomic
from ..run.headers import HeaderError, text_size
from ..run.spec import check_spec_name
from .artifacts import RUN_ID, read_artifact

# The layout of analysis.json: raised whenever its keys change, so that `report` refuses one an older `analyze`
# wrote instead of printing n/a for what it lacks
ANALYSIS_FORMAT = 6  # 6: metrics.json has `environment`, which the report states


def write_set(out_dir: Path, tables: dict[str, pd.DataFrame], metrics: dict, report: dict,
              known_tables: Iterable[str] = ()) -> None:
    """reports/metrics.json, reports/tables/<name>.csv (stale `known_tables` removed), then reports/analysis.json,
    which records the sha256 of every other file of the set: written last, it makes the set whole, and `report`
    refuses a folder where a stopped analyze left new tables beside an older analysis.json (or the reverse)."""
    check_analysis_outputs(out_dir)
    digests = {}
    for name, table in tables.items():
        digests[f"tables/{name}.csv"] = _write(out_dir / "tables" / f"{name}.csv", table.to_csv(index=False))
    for name in set(known_tables) - set(tables):
        (out_dir / "tables" / f"{name}.csv").unlink(missing_ok=True)
    digests["metrics.json"] = _write(out_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False))
    _write(out_dir / "analysis.json", json.dumps(report | {"files": digests}, indent=1, allow_nan=False))


def _write(path: Path, text: str) -> str:
    """Write `text` atomically; its sha256."""
    data = text.encode("utf-8")
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def check_analysis_outputs(out_dir: Path) -> None:
    """UserError, before anything is computed or written, when an output of the analysis would land on something
    that is not ours to replace: tables/ a file or a link, a JSON output a folder, a link or a device."""
    where = out_dir / "tables"
    if where.is_symlink() or (where.exists() and not where.is_dir()):
        raise UserError(f"--out {out_dir}: {where} is a file or a link; the analysis writes its tables in a folder "
                        "there: move it aside")
    for name in ("metrics.json", "analysis.json"):
        if os.path.lexists(out_dir / name) and not (out_dir / name).is_file() or (out_dir / name).is_symlink():
            raise UserError(f"--out {out_dir}: {out_dir / name} is not a regular file; move it aside")


def read_analysis(analysis_dir: Path) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
    """(metrics, analysis.json, tables) as `rnngrad analyze` wrote them, checked whole against the digests
    analysis.json records; UserError naming what is missing, mixed or not rnngrad's."""
    hint = "run `rnngrad analyze` first"
    report, problem = read_artifact(analysis_dir / "analysis.json")
    if problem:
        raise UserError(f"{analysis_dir / 'analysis.json'}: {problem}; {hint}")
    if not isinstance(report, dict) or report.get("format") != ANALYSIS_FORMAT or \
            not isinstance(report.get("files"), dict):
        raise UserError(f"{analysis_dir / 'analysis.json'}: not written by this version of `rnngrad analyze`; {hint}")
    names = ["metrics.json"] + [f"tables/{name}.csv" for name in report.get("tables") or []]
    for name in names:
        _check_digest(analysis_dir, name, report["files"])
    metrics, problem = read_artifact(analysis_dir / "metrics.json")
    if problem:
        raise UserError(f"{analysis_dir / 'metrics.json'}: {problem}; {hint}")
    tables = {}
    for name in report.get("tables", []):
        value, problem = read_artifact(analysis_dir / "tables" / f"{name}.csv")
        if problem:
            raise UserError(f"{analysis_dir / 'tables' / name}.csv: {problem}; {hint}")
        tables[name] = value
    _check_names(analysis_dir, metrics, report, tables)
    return metrics, report, tables


def _check_digest(analysis_dir: Path, name: str, digests: dict) -> None:
    path = analysis_dir / name
    try:
        text_size(path)
        found = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise UserError(f"{path}: missing; run `rnngrad analyze` again") from None
    except (OSError, HeaderError) as e:
        raise UserError(f"{path}: cannot be read ({e}); run `rnngrad analyze` again") from None
    if found != digests.get(name):
        raise UserError(f"{path}: not the file analysis.json records (an analyze stopped midway, or an edit): the "
                        f"folder mixes two analyses; run `rnngrad analyze` again")


def _check_names(analysis_dir: Path, metrics: dict, report: dict, tables: dict[str, pd.DataFrame]) -> None:
    """The spec names and run ids the report will print, link and use in file names are what analyze writes."""
    where = analysis_dir / "analysis.json"
    for spec in [*(report.get("specs") or {}), *((metrics.get("specs") or {}) if isinstance(metrics, dict) else {})]:
        check_spec_name(spec, f"{where}: specs")
    runs = tables.get("runs")
    if runs is not None:
        for i, (spec, run_id) in enumerate(zip(runs.get("spec", []), runs.get("run_id", []))):
            check_spec_name(spec, f"{analysis_dir / 'tables' / 'runs.csv'}: row {i}: spec")
            if not RUN_ID.fullmatch(str(run_id)):
                raise UserError(f"{analysis_dir / 'tables' / 'runs.csv'}: row {i}: run_id {shown(run_id)} is not an "
                                "MLflow run id; run `rnngrad analyze` again")
