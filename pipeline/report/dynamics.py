"""Training dynamics in the report: does training move runs towards the edge of chaos (lambda_1 = 0)?

From each run's probe/dynamics.parquet (run/dynamics.py: the top layer's measured ||W_hh||_2, spectral radius,
lambda_1 and lambda_MF at the gradient checkpoints), for a study that `keeps_dynamics`: the table
tables/training_dynamics.csv, the headline numbers (docs/math.md 7.6), the finding's sentence and the figure.

A run counts when lambda_1 is finite at its first checkpoint (iteration 0) and its last (the last iteration it
completed), so the start and the end are always compared on the same runs. Runs are split by their init and the side of
the edge they started on, since "towards 0" means up from below and down from above: pooled, the two could cancel.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd

from ..run.dynamics import DYNAMICS_COLUMNS
from .document import Inline, Metric
from .reductions import rate

Tables = dict[str, pd.DataFrame]
TABLE = "training_dynamics"  # tables/training_dynamics.csv
FIGURE = "training_dynamics"
COLUMNS = ("run_id", "spec", "init", "seed", "w_norm_start", *DYNAMICS_COLUMNS)
SIDES = {"ordered": "started ordered (λ₁ < 0)", "chaotic": "started chaotic (λ₁ > 0)"}
UNIT_NORM = 1.0 + 1e-9  # ||W_hh||_2 at most this is "at most 1" (an orthogonal matrix's norm is 1 to rounding)


def top_layer_rows(runs: pd.DataFrame, dynamics: pd.DataFrame) -> pd.DataFrame:
    """The training_dynamics table: each run's top-layer rows in iteration order, with its init, seed and the
    measured ||W_hh||_2 it started at."""
    if dynamics.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    d = dynamics[dynamics["layer"] == dynamics.groupby("run_id")["layer"].transform("max")]
    d = d.sort_values(["run_id", "iter"], kind="stable")
    info = runs.set_index("run_id")
    start = d.groupby("run_id")["w_norm"].transform("first")
    out = d.assign(spec=d["run_id"].map(info["spec"]), init=d["run_id"].map(info.get("init")),
                   seed=d["run_id"].map(info.get("seed")), w_norm_start=start)
    order = out["run_id"].map({rid: i for i, rid in enumerate(runs["run_id"])})  # the results' run order
    out = out.assign(order=order).sort_values(["order", "iter"], kind="stable")
    return out[list(COLUMNS)].reset_index(drop=True)


def ends(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run with a finite lambda_1 at its first and last checkpoint: run_id, w_norm and lyap at the start
    (iteration 0) and the end (the last checkpoint), the last iteration."""
    rows = []
    for rid, g in table.groupby("run_id", sort=False):
        first, last = g.iloc[0], g.iloc[-1]
        if first["iter"] != 0 or len(g) < 2 or not (math.isfinite(first["lyap"]) and math.isfinite(last["lyap"])):
            continue
        rows.append({"run_id": rid, "init": str(first["init"]), "w_start": float(first["w_norm"]),
                     "w_end": float(last["w_norm"]), "lyap_start": float(first["lyap"]),
                     "lyap_end": float(last["lyap"]), "last_iter": int(last["iter"])})
    return pd.DataFrame(rows, columns=["run_id", "init", "w_start", "w_end", "lyap_start", "lyap_end", "last_iter"])


def side_numbers(e: pd.DataFrame) -> dict:
    """Of the runs `e` (one side of the edge, at least one): how many ended closer to lambda_1 = 0 than they started
    by more than their lambda_1's own spread (the difference between its two driven trajectories: a smaller move
    is not resolved), as a rate with its Wilson interval; how many moved less than that; how many ended farther
    from it by more than that (the three add up to the runs); how many crossed 0 (of any of the three); and
    lambda_1's median and quartiles at the start and the end (a run far from the edge and one near it may move
    opposite ways: the quartiles show the spread closing)."""
    spread = e["spread"].fillna(0.0).abs() if "spread" in e else pd.Series(0.0, index=e.index)
    move = e["lyap_start"].abs() - e["lyap_end"].abs()  # > 0: closer to the edge
    closer = int((move > spread).sum())
    crossed = int((np.sign(e["lyap_end"]) != np.sign(e["lyap_start"])).sum())
    out = {"closer": rate(closer, len(e)), "n_unresolved": int((move.abs() <= spread).sum()),
           "n_farther": int((-move > spread).sum()), "n_crossed": crossed}
    for end in ("start", "end"):
        q1, median, q3 = np.quantile(e[f"lyap_{end}"].to_numpy(float), [0.25, 0.5, 0.75])
        out |= {f"lyap_{end}": float(median), f"lyap_{end}_q1": float(q1), f"lyap_{end}_q3": float(q3)}
    return out


def headline(table: pd.DataFrame, spreads: pd.Series | None = None) -> dict:
    """metrics.json specs.<spec>.headline.training: n_runs (runs with a dynamics table), n_matched (a finite lambda_1
    at both ends), `by_init.<init>.<side>` the `side_numbers` of each init and side of the edge (a Gaussian and an
    orthogonal W_hh of one norm train differently: pooled, their answers would mix), and the runs that started at
    ||W_hh||_2 <= 1: how many, the range of the norm they ended at, and their median lambda_1 at the end."""
    e = ends(table)
    if spreads is not None:  # each run's lambda_1 spread between its two trajectories (runs.csv, initial model)
        e = e.assign(spread=e["run_id"].map(spreads).astype(float))
    out: dict = {"n_runs": int(table["run_id"].nunique()), "n_matched": len(e), "by_init": {}}
    for init, part in e.groupby("init", sort=True):
        for side, rows in (("ordered", part[part["lyap_start"] < 0]), ("chaotic", part[part["lyap_start"] > 0])):
            if len(rows):
                out["by_init"].setdefault(str(init), {})[side] = side_numbers(rows)
    small = e[e["w_start"] <= UNIT_NORM]
    if len(small):
        out["unit_start"] = {"n": len(small), "w_end_low": float(small["w_end"].min()),
                             "w_end_high": float(small["w_end"].max()), "lyap_end": float(small["lyap_end"].median())}
    return out


def summary(runs: pd.DataFrame, dynamics: pd.DataFrame) -> tuple[pd.DataFrame, dict | None]:
    """(the training_dynamics table, the headline's `training` numbers or None when no run has a dynamics table)."""
    table = top_layer_rows(runs, dynamics)
    spreads = (pd.to_numeric(runs.set_index("run_id")["lyapunov_spread_init"], errors="coerce")
               if "lyapunov_spread_init" in runs else None)
    return table, (headline(table, spreads) if len(table) else None)


def direction(r: dict) -> str:
    """The answer one side's rate gives: a sign test of "closer" against 1/2 by its Wilson interval."""
    if r.get("low") is not None and r["low"] > 0.5:
        return "training moved them towards the edge"
    if r.get("high") is not None and r["high"] < 0.5:
        return "training moved them away from the edge"
    return "no direction is established at this n"


def side_parts(key: str, s: dict, kind: str, words: str) -> list[Inline]:
    """"of the n <kind> runs that <words>, k ended closer to lambda_1 = 0 (rate, CI; c crossed it), median lambda_1
    a -> b nats/step: <the answer>"."""
    runs = [f"the one {kind} run that "] if s["closer"].get("n") == 1 else [
        "the ", Metric(f"{key}.closer.n"), f" {kind} runs that "]
    return ["of "] + runs + [
        f"{words}, ", Metric(f"{key}.closer.k"), " ended closer to λ₁ = 0 by more than their λ₁'s own spread (",
        Metric(f"{key}.closer.rate"), ", 95% CI ", Metric(f"{key}.closer.low"), "–", Metric(f"{key}.closer.high"),
        "; ", Metric(f"{key}.n_unresolved"), " moved less than that spread; ", Metric(f"{key}.n_farther"),
        " ended farther from it by more than that; ", Metric(f"{key}.n_crossed"), " crossed 0), median λ₁ ",
        Metric(f"{key}.lyap_start"), " → ", Metric(f"{key}.lyap_end"), " nats/step: ",
        direction(s["closer"])]


def finding(h: str, head: dict) -> list[Inline] | None:
    """The answer to "does training move runs towards the edge of chaos?", per side, with n and intervals."""
    t = head.get("training")
    if not isinstance(t, dict) or not t.get("n_matched"):
        return None
    k = f"{h}.training"
    parts: list[Inline] = ["during training (top layer, λ₁ at the first and the last gradient checkpoint, on the ",
                           Metric(f"{k}.n_matched"), " of ", Metric(f"{k}.n_runs"),
                           " runs where both are finite): "]
    for init, sides in (t.get("by_init") or {}).items():
        for side, words in SIDES.items():
            if isinstance(sides.get(side), dict):
                parts += ([] if parts[-1].endswith(": ") else ["; "]) + side_parts(f"{k}.by_init.{init}.{side}",
                                                                                 sides[side], f"{init}-init", words)
    if isinstance(t.get("unit_start"), dict):
        u = f"{k}.unit_start"
        parts += ["; the ", Metric(f"{u}.n"), " runs that started at ‖W_hh‖₂ ≤ 1 ended at ‖W_hh‖₂ ",
                  Metric(f"{u}.w_end_low"), "–", Metric(f"{u}.w_end_high"), " (median λ₁ ", Metric(f"{u}.lyap_end"),
                  ")"]
    return parts


# ---- the figure -----------------------------------------------------------------------------------------------


def drawers(new_figure: Callable) -> dict[str, Callable[[Tables], tuple | None]]:
    """name -> draw(tables) for figures.py's DRAWERS: (figure, caption, run IDs) or None without the table."""
    return {FIGURE: lambda tables: draw(tables, new_figure)}


def draw(tables: Tables, new_figure: Callable) -> tuple | None:
    """||W_hh||_2 and lambda_1 against the iteration, one line per run (top layer, at the gradient checkpoints),
    coloured by the measured ||W_hh||_2 it started at (log scale), solid for an orthogonal init and dashed for the
    others; the edge of chaos (lambda_1 = 0) and ||W_hh||_2 = 1 marked."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    t = tables.get(TABLE)
    if t is None or t.empty:
        return None
    starts = t.groupby("run_id", sort=False)["w_norm_start"].first().astype(float)
    starts = starts[np.isfinite(starts) & (starts > 0)]
    if starts.empty:
        return None
    norm = LogNorm(vmin=starts.min(), vmax=max(starts.max(), starts.min() * 1.01))
    cmap = colormaps["viridis"]
    fig = new_figure(9.0, 3.4)
    ax_w, ax_l = fig.subplots(1, 2)
    for rid, g in t[t["run_id"].isin(starts.index)].groupby("run_id", sort=False):
        style = dict(color=cmap(norm(starts[rid])), lw=1.0, alpha=0.85, marker="o", ms=2.5,
                     ls="-" if str(g["init"].iloc[0]) == "orthogonal" else "--")
        ax_w.plot(g["iter"], g["w_norm"], gid=f"run:{rid}", **style)
        ax_l.plot(g["iter"], g["lyap"], gid=f"run:{rid}", **style)
    ax_w.axhline(1.0, color="0.4", lw=0.8, ls=":")
    ax_l.axhline(0.0, color="0.4", lw=0.8, ls=":")
    ax_w.set(xlabel="iteration", ylabel="measured ‖W_hh‖₂", yscale="log", title="‖W_hh‖₂ through training")
    ax_l.set(xlabel="iteration", ylabel="λ₁ (nats/step)", title="top Lyapunov exponent λ₁ through training")
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax_l, label="‖W_hh‖₂ at iteration 0")
    plain = FuncFormatter(lambda v, _: f"{v:.3g}")  # 2 and 0.5, not 2 x 10^0
    for axis in (bar.ax.yaxis, ax_w.yaxis):  # ticks at the starting norms
        axis.set_major_locator(FixedLocator(sorted(set(starts.round(3)))))
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    specs = ", ".join(sorted(set(t["spec"].astype(str))))
    points = int(t.groupby("run_id")["iter"].nunique().max())
    caption = (f"Training dynamics ({specs}; {starts.size} runs, one line each, top layer): the measured ‖W_hh‖₂ "
               "(left) and the top Lyapunov exponent λ₁ along two driven trajectories (right) at the run's "
               f"{points} gradient checkpoints (iteration 0, the last, and evenly between), coloured by the ‖W_hh‖₂ a run started at; solid lines orthogonal init, dashed the "
               "others. Dotted: ‖W_hh‖₂ = 1 and the edge of chaos λ₁ = 0. A diverged run's line stops at its last "
               "checkpoint before the divergence.")
    return fig, caption, list(starts.index)
