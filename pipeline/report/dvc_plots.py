"""The study's curves as DVC plots them: one CSV per line, reports/plots/<plot>/<group>.csv, each with one row per x
value in increasing order. dvc.yaml's plots name several such files in one plot's `y`; DVC then draws each file as
its own line (its own dash) and each revision in its own colour, so `dvc plots show` has one line per task, arm and
phase and `dvc plots diff` overlays two experiments group by group. tables/*.csv stay one row per run for the
report: a plot of those joins every run's rows into one zigzag.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..run.files import write_atomic

PLOTS = "plots"  # reports/plots/<plot>/<group>.csv
NAME_PART = re.compile(r"[^A-Za-z0-9_-]+")  # what a group's file name keeps of a task, arm or label
Lines = dict[str, pd.DataFrame]  # {group (the file's stem): x, y columns, n_runs}


def file_part(value) -> str:
    """A task, arm or label as a piece of a file name: runs of other characters become one '_'."""
    return NAME_PART.sub("_", str(value)).strip("_")[:60] or "none"


def median_lines(table: pd.DataFrame | None, keys: list[str], x: str, y: str) -> Lines:
    """{".".join(keys' values): one row per x (ascending): the median of y over the rows there, and their count}."""
    if table is None or not len(table) or not {*keys, x, y} <= set(table.columns):
        return {}
    t = table.assign(**{x: pd.to_numeric(table[x], errors="coerce"), y: pd.to_numeric(table[y], errors="coerce")})
    t = t.dropna(subset=[x, y])
    lines = {}
    for group, rows in t.groupby(keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        line = rows.groupby(x, sort=True)[y].agg(["median", "size"]).reset_index()
        lines[".".join(file_part(g) for g in group)] = line.rename(columns={"median": y, "size": "n_runs"})
    return lines


def decay_lines(decay: pd.DataFrame | None) -> Lines:
    """Per spec and phase (init, final): the median over the spec's runs of log10 ||dh_t/dh_k|| at each lag, so
    that a spec's curve moves when its runs change (the report splits them by γ_W and activation)."""
    return median_lines(decay, ["spec", "when"], "lag", "log10_norm")


def success_lines(success: pd.DataFrame | None) -> Lines:
    """Per task (and label, when the table has one): the fraction of runs that learned at each T, with its Wilson
    interval and count."""
    if success is None or not len(success) or "learned_rate" not in success:
        return {}
    keys = ["task", "label"] if "label" in success else ["task"]
    cols = ["T", "learned_rate", "learned_rate_low", "learned_rate_high", "n_scored"]
    lines = {}
    for group, rows in success.groupby(keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        line = rows[[c for c in cols if c in rows]].assign(T=pd.to_numeric(rows["T"], errors="coerce"))
        lines[".".join(file_part(g) for g in group)] = line.dropna(subset=["T"]).sort_values("T")
    return lines


def text_lines(curve: pd.DataFrame | None) -> Lines:
    """Per text spec, arm (rnn, lstm) and read (state carried or windows from h = 0): the median over seeds of the
    validation loss (nats/char) at each count of characters seen."""
    return median_lines(curve, ["spec", "arm", "read"], "chars", "val_loss")


def plot_lines(tables: dict[str, pd.DataFrame]) -> dict[str, Lines]:
    """{plot: its lines} from the analysis's tables."""
    return {"decay": decay_lines(tables.get("decay")), "success_vs_T": success_lines(tables.get("success_vs_T")),
            "text_val_curve": text_lines(tables.get("text_val_curve"))}


def write_plots(tables: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, list[str]]:
    """reports/plots/<plot>/<group>.csv for every line, and a file of an earlier analysis that is no line now
    removed; {plot: the groups written}."""
    root, every = out_dir / PLOTS, plot_lines(tables)
    for folder in [root] + [root / plot for plot in every]:
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise UserError(f"--out {out_dir}: {folder} is a file or a link; the analysis writes its DVC plots in a "
                            "folder there: move it aside")
    written = {}
    for plot, lines in every.items():
        folder = root / plot
        for group, line in lines.items():
            write_atomic(folder / f"{group}.csv", line.to_csv(index=False))
        for stale in folder.glob("*.csv") if folder.is_dir() else []:
            if stale.stem not in lines and stale.is_file() and not stale.is_symlink():
                stale.unlink()
        written[plot] = sorted(lines)
    return written
