"""A spec's learning-rate selection (run/rates.py) as the report shows it: per task and arm, each candidate rate's
runs, how many learned, their median final validation loss over chance, and the rate `rnngrad sweep` chose, ranked
by the same function (`rates.rank`) on the same numbers (each run's summary), so the table shows why."""

from __future__ import annotations

import pandas as pd

from ..run import rates
from .document import Paragraph, Table, cell

SELECTION_COLUMNS = ["task", "arm", "arm_name", "T", "lr", "n_runs", "n_learned", "median_loss_over_chance",
                     "chosen", "seeds"]


def selection_table(runs: pd.DataFrame, arms: pd.Series, names: dict[str, str]) -> pd.DataFrame:
    """SELECTION_COLUMNS, one row per task, arm (`arms`, aligned with `runs`; `names` its display names) and rate,
    in the runs' order of first appearance; `chosen` marks each task and arm's rate."""
    rows = []
    for (task, arm), group in runs.groupby([runs["task"].astype(str), arms], sort=False):
        by_lr: dict[float, list[dict]] = {}
        for r in group.to_dict("records"):
            by_lr.setdefault(float(r["lr"]), []).append(r)
        ranks = {lr: rates.rank(rs, lr) for lr, rs in by_lr.items()}
        chosen = min(ranks, key=ranks.get)
        for lr in sorted(by_lr):
            learned, median, _ = ranks[lr]
            rows.append({"task": task, "arm": arm, "arm_name": names.get(arm, arm),
                         "T": int(pd.to_numeric(group["seq_len"]).max()), "lr": lr, "n_runs": len(by_lr[lr]),
                         "n_learned": -learned, "median_loss_over_chance": median, "chosen": lr == chosen,
                         "seeds": " ".join(str(int(s)) for s in sorted({r["seed"] for r in by_lr[lr]}))})
    return pd.DataFrame(rows, columns=SELECTION_COLUMNS)


def selection_blocks(table: pd.DataFrame) -> list[Table | Paragraph]:
    """The table as the section shows it (the chosen rate marked), and how the choice was made."""
    if table is None or not len(table):
        return []
    lines = [[str(r["task"]).replace("_", " "), str(r["arm_name"]), cell(int(r["T"])), cell(r["lr"]),
              f"{int(r['n_learned'])} of {int(r['n_runs'])}", cell(r["median_loss_over_chance"]),
              "chosen" if bool(r["chosen"]) else "", str(r["seeds"])] for r in table.to_dict("records")]
    heading = ["task", "arm", "T", "learning rate", "learned", "median val loss / chance", "", "seeds"]
    how = Paragraph(["Each arm's rate is the one with the most runs that learned; ties go to the lower median final "
                     "validation loss over chance (a diverged or failed run counts as infinite), then to the lower "
                     "rate. The seeds here are not the seeds of the runs reported in the remedies section."])
    return [Table(heading, lines, "Learning-rate selection: every arm at every candidate rate on its own seeds"), how]


def chosen_rates(table: pd.DataFrame | None) -> dict:
    """What the remedies section says of a selection: {rates, seeds, T, by_arm: {arm: {task: lr}}}; {} without one."""
    if table is None or not len(table):
        return {}
    picked = table[table["chosen"].astype(bool)]
    by_arm: dict[str, dict[str, float]] = {}
    for r in picked.to_dict("records"):
        by_arm.setdefault(str(r["arm"]), {})[str(r["task"])] = float(r["lr"])
    seeds = sorted({int(s) for text in table["seeds"] for s in str(text).split()})
    return {"rates": sorted({float(x) for x in table["lr"]}), "seeds": seeds,
            "T": sorted({int(x) for x in table["T"]}), "by_arm": by_arm}
