"""A sweep's results folder on disk: one sweep of a spec at a time (an flock on `results/<spec>/.lock`), the temp
folders killed workers left removed, the outcome a run folder's summary.json gives (none: no result), and the
results table `results/<spec>.parquet`.

The results table has one row per cell with a finished run: `spec, cell, run_id, config_hash, outcome, run_dir`
(relative to the results dir, e.g. `weight_norms/runs/<hash>`), `description` (the spec's, for the report) +
config.json flattened + summary.json's numbers and regime labels + `environment`, where the run was computed in
one line (run/environment.describe).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError
from ..run.environment import describe
from ..run.files import atomic_file, remove_stale_temp_folders
from ..run.headers import RESULTS_MAX_ROWS, check_columns, parquet_header
from ..run.verdicts import OUTCOMES
from ..tracking import values
from .plan import Cell


# runner.execute_run's temp folders (.<config_hash>.<8 hex digits>.tmp) and files.move_into_place's (mkdtemp, .old)
RUNNER_TEMP_FOLDER = re.compile(r"\.[0-9a-f]{12}\.[a-z0-9_]{8}\.(tmp|old)")
# What a sweep writes in its lock file, and so the only content it will overwrite there
LOCK_NOTE = re.compile(r"pid [0-9]+ on [^\n]{0,255}\n?")
LOCK_NOTE_BYTES = 300
FAILED = "failed"  # the outcome of a run an exception stopped: no result, so the next sweep computes it again
SUMMARY_LABELS = ("outcome", "predicted_regime", "observed_regime")
RUN_ID_FORM = re.compile(r"[0-9a-f]{32}")  # an MLflow run id


@contextmanager
def _one_sweep_per_spec(spec_dir: Path):
    """Hold an exclusive lock on <results>/<spec>/.lock while the sweep runs. A second sweep of the same spec
    would end the first one's in-flight runs KILLED and delete its temp folders, so it is refused instead. The
    kernel drops the lock when the holder exits, however it exits (SIGKILL included): no stale lock to clear.
    The lock file is never a symbolic link followed (the sweep would write its pid into whatever file the link
    names) nor a file some other program wrote: both are refused."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one sweep of a spec at a time is then up to the user
        yield
        return
    lock = spec_dir / ".lock"
    try:
        spec_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:  # not a folder, read-only, no permission, a symbolic link: no results can go here
        if lock.is_symlink():
            raise UserError(f"{lock}: is a symbolic link, which the sweep will not write through; remove it "
                            "(the sweep makes its own lock file)") from None
        raise UserError(f"{spec_dir}: cannot write the sweep's results there ({e.strerror}); give a writable "
                        "--results-dir") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{lock}: is not a regular file; remove it (the sweep makes its own lock file)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _short_text(os.read(fd, 200).decode(errors="replace").strip()) or "another process"
            raise UserError(f"{spec_dir}: another `rnngrad sweep` of this spec is running ({holder}); wait for it "
                            "to finish or stop it, then run this again") from None
        held = os.read(fd, LOCK_NOTE_BYTES + 1).decode(errors="replace")
        if held and not LOCK_NOTE.fullmatch(held):
            raise UserError(f"{lock}: a file the sweep did not write ({_short_text(held)}); move it aside "
                            "(the sweep makes its own lock file)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _short_text(text: str, limit: int = 60) -> str:
    """`text` on one line, cut to `limit` characters for a message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def _remove_runner_temp_folders(runs_dir: Path) -> None:
    """Clear what killed workers left in a spec's runs folder (the runner clears its own otherwise): a run folder
    a worker killed mid-swap left in its .old folder is put back, temp and .old folders removed. Only names the
    runner makes: anything else in the folder is not ours to delete."""
    remove_stale_temp_folders(runs_dir, r"[0-9a-f]{12}")


def folder_outcome(run_dir: Path) -> str | None:
    """The `outcome` in a run folder's summary.json, or None when the file is missing, does not parse, or has no
    outcome (a disk that filled up, a hand edit): such a folder is no result."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    outcome = summary.get("outcome") if isinstance(summary, dict) else None
    return outcome if outcome in OUTCOMES else None


def earlier_run_ids(path: Path) -> dict[str, str]:
    """{config_hash: run_id} of the MLflow runs the spec's results table at `path` lists (none when there is no
    readable table): a sweep without MLflow keeps them for the cells it finds done, so the report still links those
    runs. Only text that has a run id's form is kept; the table is checked again where it is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        check_columns(parquet_header(path, RESULTS_MAX_ROWS), text=("config_hash", "run_id"))
        table = pq.read_table(path, columns=["config_hash", "run_id"]).to_pydict()
    except (OSError, ValueError, KeyError, pa.ArrowException):  # HeaderError is a ValueError
        return {}
    return {h: r for h, r in zip(table["config_hash"], table["run_id"])
            if isinstance(h, str) and values.is_tracked(r) and RUN_ID_FORM.fullmatch(r)}


def write_results_table(spec, cells: list[Cell], run_ids: dict[str, str], results_dir: Path, path: Path):
    """One row per cell with a finished run, written to a temp file and renamed into place; returns the table."""
    import pandas as pd

    rows = [_result_row(spec, c, run_ids[c.config_hash], results_dir) for c in cells if c.config_hash in run_ids]
    table = pd.DataFrame(rows)
    with atomic_file(path) as f:  # a new temp file (never one that is there, nor a link's target), renamed
        table.to_parquet(f, index=False)
    return table


def _result_row(spec, cell: Cell, run_id: str, results_dir: Path) -> dict:
    config = json.loads((cell.run_dir / "config.json").read_text(encoding="utf-8"))
    summary = json.loads((cell.run_dir / "summary.json").read_text(encoding="utf-8"))
    row = {"spec": spec.name, "cell": cell.name, "run_id": run_id, "config_hash": cell.config_hash,
           "outcome": summary.get("outcome"), "run_dir": cell.run_dir.relative_to(results_dir).as_posix(),
           "description": getattr(spec, "description", "")}  # the report's section opens with it
    row |= {k: v for k, v in values.flatten_json(config).items() if k not in row}
    for k, v in summary.items():  # numbers (None where a number is missing) and the regime labels
        if (v is None or isinstance(v, (int, float)) or k in SUMMARY_LABELS) and k not in row:
            row[k] = v
    row["environment"] = describe(summary.get("environment"))  # one line: the table holds no nested column
    return row
