"""The appendix's runs, grouped: one row per spec and cell (the grid values but the seed), with how its seeds ended,
what they reached and their short run IDs. The PDF prints this table in place of the table of every run, which the
HTML prints (each full ID a link to its MLflow run page) and tables/runs.csv holds.
"""

from __future__ import annotations

import pandas as pd

from .document import Table

SHORT_ID = 8  # characters of a run ID shown (as RunRef shows them)


def tally(values: pd.Series) -> str:
    """'3 ok' or '2 ok, 1 diverged': each value with its count, in the order they first occur."""
    counts = values.astype(str).value_counts(sort=False)
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def cell_name(runs: pd.DataFrame) -> pd.Series:
    """A run's cell without its seed (the label), else its cell, else its name."""
    for column in ("label", "cell", "name"):
        if column in runs:
            return runs[column].astype(str)
    return pd.Series("–", index=runs.index)


def grouped_runs_table(runs: pd.DataFrame) -> Table:
    """One row per (spec, cell) in the order the runs come: its number of runs, their outcomes and learning verdicts
    tallied, and their run IDs' first characters."""
    frame = pd.DataFrame({"spec": runs["spec"].astype(str), "cell": cell_name(runs),
                          "outcome": runs["outcome"].astype(str),
                          "verdict": runs["verdict"].astype(str) if "verdict" in runs else "–",
                          "id": runs["run_id"].astype(str).str[:SHORT_ID]})
    rows = [[spec, cell, str(len(g)), tally(g["outcome"]), tally(g["verdict"]), " ".join(g["id"])]
            for (spec, cell), g in frame.groupby(["spec", "cell"], sort=False)]
    return Table(["spec", "cell (grid values but the seed)", "runs", "outcomes", "learning", "run IDs (first 8)"],
                 rows, "The runs grouped by spec and cell: how its seeds ended and what they reached", only_in="pdf")
