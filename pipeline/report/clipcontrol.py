"""The clipping control: clipping told apart from a smaller step (docs/math.md 10.5).

A clipped SGD step moves the weights by lr * s_i * g_i, with s_i the step's clip_scale (history.csv; for the global
norm min(1, c / ||g_i||)), so a clipped run's mean effective step is the mean of lr * s_i over its steps. The control
arm trains unclipped at a learning rate equal to that mean: if clipping helped only by taking smaller steps on
average, the control would do as well. A control run is an unclipped run whose learning rate differs from the
clipped runs' and lies below the largest of them (the spec's plain unclipped arm shares their rate); it is compared with the clipped arm whose measured
mean effective step is nearest to its rate (on a log scale; global-norm arms only: an elementwise cap also turns
the step, so a matched rate alone does not mimic it), on the same seeds, and the ratio of the two is shown,
so a control whose rate no longer matches (a changed spec, another profile) is visible rather than assumed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .document import Inline, Metric, Table, frame_table
from .reductions import finite_median, rate

MATCHED_MODE = "global"  # the controls match arms of this mode: an elementwise cap also turns the step
TABLE = "clip_control"  # tables/clip_control.csv: one row per arm compared
COLUMNS = ("pair", "arm", "clip_mode", "clip_threshold", "lr", "mean_effective_step", "n_runs", "n_learned",
           "learned_low", "learned_high", "n_blew_up", "blew_up_low", "blew_up_high", "final_val_loss")


def effective_step(history: pd.DataFrame, lr: float) -> float:
    """The mean over a run's completed steps of lr * clip_scale (a diverged step's NaN scale is left out); NaN when
    no step has a finite scale."""
    scale = pd.to_numeric(history.get("clip_scale", pd.Series(dtype=float)), errors="coerce").to_numpy(float)
    scale = scale[np.isfinite(scale)]
    return float(lr * scale.mean()) if scale.size else math.nan


def is_control(runs: pd.DataFrame) -> pd.Series:
    """The control runs: unclipped, at a learning rate none of the clipped runs has and below the largest of theirs
    (an effective step is at most its lr; an unclipped run at a larger rate is an arm of its own, not a control)."""
    clipped_rates = set(runs.loc[runs["clip_mode"] != "none", "lr"].astype(float))
    lr = runs["lr"].astype(float)
    return (runs["clip_mode"] == "none") & ~lr.isin(clipped_rates) & (lr < max(clipped_rates, default=-math.inf))


def arm_row(rows: pd.DataFrame, steps: pd.Series, pair: int, arm: str) -> dict:
    """One arm of a pair: its settings, mean effective step (mean over its runs), learned and blown-up counts with
    Wilson intervals, and its median final validation loss."""
    learned = rate(int(rows["learned"].fillna(False).astype(bool).sum()), len(rows))
    blew = rate(int(rows["outcome"].isin(["diverged", "unstable"]).sum()), len(rows))
    first = rows.iloc[0]
    return {"pair": pair, "arm": arm, "clip_mode": str(first["clip_mode"]),
            "clip_threshold": float(first["clip_threshold"]) if first["clip_mode"] != "none" else math.nan,
            "lr": float(first["lr"]), "mean_effective_step": float(steps[rows["run_id"]].mean()),
            "n_runs": len(rows), "n_learned": learned["k"], "learned_low": learned["low"],
            "learned_high": learned["high"], "n_blew_up": blew["k"], "blew_up_low": blew["low"],
            "blew_up_high": blew["high"],
            "final_val_loss": finite_median(pd.to_numeric(rows["final_val_loss"], errors="coerce"))}


def summary(runs: pd.DataFrame, histories: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict]:
    """(tables/clip_control.csv, the headline's `control_<i>` entries): each control lr's runs beside the clipped
    arm it matches, on the seeds both have."""
    if "lr" not in runs or not is_control(runs).any():
        return pd.DataFrame(columns=list(COLUMNS)), {}
    steps = pd.Series({rid: effective_step(histories[rid], float(lr)) if rid in histories else math.nan
                       for rid, lr in zip(runs["run_id"], runs["lr"])}, dtype=float)
    clipped = runs[runs["clip_mode"] == MATCHED_MODE]
    arms = {key: rows for key, rows in clipped.groupby(["clip_mode", "clip_threshold"], sort=True)}
    arm_steps = {key: float(steps[rows["run_id"]].mean()) for key, rows in arms.items()}
    arm_steps = {key: s for key, s in arm_steps.items() if math.isfinite(s) and s > 0}
    rows, head = [], {}
    controls = runs[is_control(runs)]
    for pair, (lr, control) in enumerate(sorted(controls.groupby(controls["lr"].astype(float)), reverse=True), 1):
        if not arm_steps:
            break
        key = min(arm_steps, key=lambda k: abs(math.log(arm_steps[k] / lr)))
        seeds = set(control["seed"]) & set(arms[key]["seed"])
        a = arm_row(arms[key][arms[key]["seed"].isin(seeds)], steps, pair, f"{key[0]} clip {key[1]:g}")
        b = arm_row(control[control["seed"].isin(seeds)], steps, pair, f"unclipped, lr {lr:g}")
        rows += [a, b]
        head[f"control_{pair}"] = {
            "threshold": key[1], "effective_step": a["mean_effective_step"], "lr": lr,
            "lr_over_step": lr / a["mean_effective_step"], "n_seeds": len(seeds),
            "clipped": {"learned": rate(a["n_learned"], a["n_runs"]), "blew_up": rate(a["n_blew_up"], a["n_runs"]),
                        "final_val_loss": a["final_val_loss"]},
            "control": {"learned": rate(b["n_learned"], b["n_runs"]), "blew_up": rate(b["n_blew_up"], b["n_runs"]),
                        "final_val_loss": b["final_val_loss"]},
            "p_learned": fisher_p(a["n_learned"], a["n_runs"], b["n_learned"], b["n_runs"]),
            "p_blew_up": fisher_p(a["n_blew_up"], a["n_runs"], b["n_blew_up"], b["n_runs"])}
    return pd.DataFrame(rows, columns=list(COLUMNS)), head


def fisher_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Fisher's exact test, two-sided, of k1 of n1 against k2 of n2: at a few seeds per arm a difference of counts
    can be chance, and this says how likely (NaN when an arm has no runs)."""
    from scipy.stats import fisher_exact

    if n1 <= 0 or n2 <= 0:
        return math.nan
    return float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


def finding_parts(h: str, head: dict) -> list[Inline]:
    """"; clipped at c (mean effective step s), k of n learned and k blew up; unclipped at lr s, ..." per pair."""
    parts: list[Inline] = []
    for name in sorted(k for k in head if k.startswith("control_")):
        key = f"{h}.{name}"
        parts += [f"; against a smaller step: clipped ({MATCHED_MODE} norm at ", Metric(f"{key}.threshold"),
                  ", mean effective step ", Metric(f"{key}.effective_step"), ") ", Metric(f"{key}.clipped.learned.k"),
                  " of ", Metric(f"{key}.clipped.learned.n"), " learned and ", Metric(f"{key}.clipped.blew_up.k"),
                  " blew up; unclipped at that step (lr ", Metric(f"{key}.lr"), ", "]
        ratio = head[name].get("lr_over_step") if isinstance(head[name], dict) else None
        parts += (["equal to it to 3 digits"] if ratio is not None and round(ratio, 3) == 1  # not "1 times it"
                  else [Metric(f"{key}.lr_over_step"), " times it"])
        parts += [", same ", Metric(f"{key}.n_seeds"), " seeds) ",
                  Metric(f"{key}.control.learned.k"), " of ", Metric(f"{key}.control.learned.n"), " learned and ",
                  Metric(f"{key}.control.blew_up.k"), " blew up"]
        p = [head[name].get(k) if isinstance(head[name], dict) else None for k in ("p_blew_up", "p_learned")]
        if all(isinstance(x, float) and math.isfinite(x) for x in p):
            parts += [" (Fisher's exact test, two-sided: p = ", Metric(f"{key}.p_blew_up"), " for blowing up, ",
                      Metric(f"{key}.p_learned"), " for learning",
                      ": at these seeds no difference is established)" if min(p) >= 0.05 else ")"]
    return parts


def blocks(table: pd.DataFrame | None) -> list[Table]:
    """The section's table of the pairs."""
    if table is None or not len(table):
        return []
    return [frame_table(table, {
        "arm": "arm", "lr": "lr", "mean_effective_step": "mean effective step", "n_runs": "runs",
        "n_learned": "learned", "learned_low": "learned 95% CI low", "learned_high": "learned 95% CI high",
        "n_blew_up": "blew up", "blew_up_low": "blew up 95% CI low", "blew_up_high": "blew up 95% CI high",
        "final_val_loss": "val loss (median)"},
        "Clipping against a smaller step: each clipped arm beside an unclipped arm trained at its mean effective "
        "step (the mean over steps and runs of lr × clip_scale), on the same seeds; 'blew up' is diverged or "
        "unstable.")]
