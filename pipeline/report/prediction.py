"""Prediction versus measurement: the mean-field rate, the driven Lyapunov exponent and the bound's rate against the
measured decay slope; the bound's gap split into its causes; the tables the report's figures of them read.

Pure reductions of the runs table and the run folders' probe tables (docs/math.md 7 and 8.2). All rates are of the
initial model's top layer, in nats per step; gaps are in decades.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..engine.init import INITS
from .reductions import finite_median, numeric, rate

LN10 = math.log(10.0)
GAP_PARTS = ("global_to_product", "product_to_stepnorm", "stepnorm_to_measured")  # gap_<part>_init per run
SPIKE_RUNS = 3  # runs drawn in the gradient-spike figure: the spikiest of each clip mode
SPECTRUM_RUNS = 3  # runs whose singular spectrum is drawn


def abs_distance(runs: pd.DataFrame, a: str, b: str) -> pd.Series:
    """|a - b| over the runs where both are finite numbers."""
    r = numeric(runs, [a, b])
    d = (r[a] - r[b]).abs()
    return d[np.isfinite(d.to_numpy(float))]


MATCHED_ACTIVATION = "tanh"  # the activation every init of the study runs with: the inits compared on it alone


def rate_metrics(runs: pd.DataFrame) -> dict:
    """metrics.json `rate`, the part beside `reductions.rate_comparison`: the measured slope against the mean-field
    rate (all runs, and per init), the driven Lyapunov exponent's trajectory spread, how often the slope lies within
    that spread of lambda_1, and the same distances over the runs with the longest probe."""
    out: dict = {}
    mf = abs_distance(runs, "slope_init", "meanfield_rate_init")
    out["median_abs_slope_minus_meanfield"], out["n_meanfield"] = finite_median(mf), len(mf)
    init = runs["init"].astype(str) if "init" in runs else pd.Series("", index=runs.index)
    act = runs["activation"].astype(str) if "activation" in runs else pd.Series("", index=runs.index)
    for name in INITS:
        part = abs_distance(runs[init == name], "slope_init", "meanfield_rate_init")
        out[f"median_abs_slope_minus_meanfield_{name}"], out[f"n_meanfield_{name}"] = finite_median(part), len(part)
        # the inits' runs span different activations: on one activation the inits compare like with like
        part = abs_distance(runs[(init == name) & (act == MATCHED_ACTIVATION)], "slope_init", "meanfield_rate_init")
        out[f"median_abs_slope_minus_meanfield_{MATCHED_ACTIVATION}_{name}"] = finite_median(part)
        out[f"n_meanfield_{MATCHED_ACTIVATION}_{name}"] = len(part)
    out["median_abs_lyapunov_minus_meanfield"] = finite_median(
        abs_distance(runs, "lyapunov_init", "meanfield_rate_init"))
    spread = numeric(runs, ["lyapunov_spread_init"])["lyapunov_spread_init"].to_numpy(float)
    spread = spread[np.isfinite(spread)]
    out["lyapunov_trajectory_spread"] = finite_median(spread)
    out["lyapunov_trajectory_spread_max"] = float(spread.max()) if spread.size else math.nan
    cols = ["slope_init", "lyapunov_init", "lyapunov_spread_init"]
    r = numeric(runs, cols)[cols]
    r = r[np.isfinite(r.to_numpy(float)).all(axis=1)]
    within = int(((r["slope_init"] - r["lyapunov_init"]).abs() <= r["lyapunov_spread_init"]).sum())
    out["slope_within_lyapunov_spread"] = rate(within, len(r))
    # the sign of slope - lambda_1: a one-sided offset is a bias of the finite-T slope, not scatter
    out["slope_above_lyapunov"] = rate(int((r["slope_init"] > r["lyapunov_init"]).sum()), len(r))
    out |= longest_probe_metrics(runs)
    return out


def longest_probe_metrics(runs: pd.DataFrame) -> dict:
    """|slope - lambda_1| and |slope - lambda_MF| over the runs whose probe is the study's longest (the finite-T
    slope should be closest to its asymptotic value there), with lambda_1's trajectory spread on those runs."""
    steps = numeric(runs, ["probe_steps"])["probe_steps"]
    if not np.isfinite(steps.to_numpy(float)).any():
        return {"longest_probe_steps": math.nan, "n_longest": 0, "median_abs_slope_minus_lyapunov_longest": math.nan,
                "median_abs_slope_minus_meanfield_longest": math.nan, "lyapunov_trajectory_spread_longest": math.nan}
    longest = runs[steps == steps.max()]
    lyap = abs_distance(longest, "slope_init", "lyapunov_init")
    return {"longest_probe_steps": float(steps.max()), "n_longest": len(lyap),
            "median_abs_slope_minus_lyapunov_longest": finite_median(lyap),
            "median_abs_slope_minus_meanfield_longest": finite_median(
                abs_distance(longest, "slope_init", "meanfield_rate_init")),
            "lyapunov_trajectory_spread_longest": finite_median(
                numeric(longest, ["lyapunov_spread_init"])["lyapunov_spread_init"])}


def spectrum_metrics(runs: pd.DataFrame) -> dict:
    """metrics.json `spectrum`: the median spread in decades of the singular values of dh_T/dh_0 (initial model, top
    layer) over the runs, and how many runs had every singular value resolved (above jacobian.SPECTRUM_FLOOR of
    sigma_1; where not, the run's spread is a lower bound)."""
    r = numeric(runs, ["spectrum_spread_init", "spectrum_resolved_init", "hidden"])
    r = r[np.isfinite(r["spectrum_spread_init"].to_numpy(float))]
    whole = r["spectrum_resolved_init"] >= r["hidden"]
    # a run with directions lost below the floor has only a lower bound of its spread: never pooled with the others
    return {"median_spread_decades": finite_median(r["spectrum_spread_init"]), "n_runs": len(r),
            "n_fully_resolved": int(whole.sum()),
            "median_spread_resolved_decades": finite_median(r.loc[whole, "spectrum_spread_init"]),
            "median_spread_censored_decades": finite_median(r.loc[~whole, "spectrum_spread_init"]),
            "n_censored": int((~whole).sum())}


def gap_columns() -> list[str]:
    return [f"gap_{p}_init" for p in GAP_PARTS]


def gap_metrics(runs: pd.DataFrame) -> dict:
    """metrics.json `gap_decades`: the median over runs of each part of the gap decomposition (initial model, top
    layer; each run's part is a mean over its finite pairs), and the runs counted."""
    cols = gap_columns()
    r = numeric(runs, cols)[cols]
    r = r[np.isfinite(r.to_numpy(float)).all(axis=1)]
    return {part: finite_median(r[col]) for part, col in zip(GAP_PARTS, cols)} | {"n_runs": len(r)}


def gap_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per spec: the mean over runs of each gap part (means add up, so a stacked bar shows the whole gap), n, ids."""
    cols = gap_columns()
    r = numeric(runs, cols)
    r = r[np.isfinite(r[cols].to_numpy(float)).all(axis=1)]
    if r.empty:
        return pd.DataFrame(columns=["spec", *GAP_PARTS, "n_runs", "run_ids"])
    return r.groupby("spec", as_index=False).agg(**{p: (c, "mean") for p, c in zip(GAP_PARTS, cols)},
                                                 n_runs=("run_id", "size"), run_ids=("run_id", ";".join))


def prediction_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with the four rates (slope, lambda_MF, lambda_1 and its spread, log gamma_W gamma_phi) of the
    initial model, its activation, init and gamma_W: the prediction figure's points."""
    cols = ["slope_init", "meanfield_rate_init", "lyapunov_init", "lyapunov_spread_init", "log_rate_init",
            "gamma_w_init"]
    keep = ["run_id", "spec", "activation", "init"]
    r = numeric(runs, cols)
    for c in keep:
        r[c] = r[c] if c in r else None
    return r.loc[np.isfinite(r["slope_init"].to_numpy(float)), keep + cols]


PHASE_COLUMNS = ("run_id", "spec", "activation", "init", "gamma_w", "w_norm_init", "gamma_phi", "log_rate_init",
                 "slope_init")


def phase_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The phase diagram's points: one row per run with a finite measured log(gamma_W gamma_phi) (log_rate_init, from
    ||W_hh||_2 of the actual initial matrix, w_norm_init) and a finite slope, beside the config's gamma_w (what the
    init fixed: the norm, or for a sparse init the spectral radius)."""
    r = numeric(runs, ["gamma_w", "w_norm_init", "gamma_phi", "log_rate_init", "slope_init"])
    for c in ("activation", "init"):
        r[c] = r[c] if c in r else None
    r = r[np.isfinite(r[["log_rate_init", "slope_init"]].to_numpy(float)).all(axis=1)]
    return r[list(PHASE_COLUMNS)].reset_index(drop=True)


def edge_of_chaos(runs: pd.DataFrame) -> pd.DataFrame:
    """Per activation and init: where the median mean-field rate over the runs of each grid point crosses 0, along
    the measured log(gamma_W gamma_phi) (linear interpolation between the two grid points around the sign change),
    with the measured gamma_W there."""
    need = ["log_rate_init", "meanfield_rate_init", "gamma_phi"]
    columns = ["activation", "init", "log_rate", "gamma_w"]
    if not all(c in runs for c in ["activation", "init"]):
        return pd.DataFrame(columns=columns)
    r = numeric(runs, need)
    r = r[np.isfinite(r[need].to_numpy(float)).all(axis=1) & (r["gamma_phi"] > 0)]
    rows = []
    for (act, init), g in r.groupby([r["activation"].astype(str), r["init"].astype(str)]):
        m = g.groupby(g["log_rate_init"].round(9))["meanfield_rate_init"].median().sort_index()
        x, y = m.index.to_numpy(float), m.to_numpy(float)
        for i in np.flatnonzero(np.sign(y[:-1]) * np.sign(y[1:]) < 0)[:1]:
            at = float(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i]))
            rows.append({"activation": act, "init": init, "log_rate": at,
                         "gamma_w": math.exp(at) / float(g["gamma_phi"].iloc[0])})
    return pd.DataFrame(rows, columns=columns)


def spike_runs(runs: pd.DataFrame, histories: dict[str, pd.DataFrame]) -> list[str]:
    """Up to SPIKE_RUNS trained runs, the spikiest (largest max / median pre-clip gradient norm) of each clip mode,
    from the studies that vary the clip mode most when any varies it (the clipping study's runs differ in clipping
    alone)."""
    modes = runs.get("clip_mode", pd.Series("", index=runs.index)).astype(str)
    if "spec" in runs:  # the spec(s) with the most clip modes: the remedies' unclipped arm makes two there, too
        n_modes = modes.groupby(runs["spec"]).transform("nunique")
        if n_modes.max() > 1:
            runs = runs[n_modes == n_modes.max()]
    picks = []
    for mode, g in runs.groupby(runs.get("clip_mode", pd.Series("", index=runs.index)).astype(str)):
        best, score = None, 0.0
        for rid in g["run_id"]:
            h = histories.get(rid)
            if h is None or "grad_norm" not in h or len(h) < 2:
                continue
            norms = pd.to_numeric(h["grad_norm"], errors="coerce").to_numpy(float)
            norms = norms[np.isfinite(norms) & (norms > 0)]
            ratio = float(norms.max() / np.median(norms)) if norms.size else 0.0
            if ratio > score:
                best, score = rid, ratio
        if best is not None:
            picks.append((score, best))
    return [rid for _, rid in sorted(picks, reverse=True)[:SPIKE_RUNS]]


def spike_rows(runs: pd.DataFrame, histories: dict[str, pd.DataFrame], ids: list[str]) -> pd.DataFrame:
    """Every iteration's pre-clip gradient norm of the picked runs, with their clip mode and threshold."""
    info = runs.set_index("run_id")
    frames = []
    for rid in ids:
        h = histories[rid]
        frames.append(pd.DataFrame({"run_id": rid, "iter": h["iter"], "grad_norm": h["grad_norm"],
                                    "clip_mode": info.at[rid, "clip_mode"] if "clip_mode" in info else None,
                                    "clip_threshold": info.at[rid, "clip_threshold"] if "clip_threshold" in info
                                    else math.nan}))
    columns = ["run_id", "iter", "grad_norm", "clip_mode", "clip_threshold"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def spectrum_rows(spectra: pd.DataFrame) -> pd.DataFrame:
    """The top layer's singular values of dh_T/dh_0 (log10, descending; unresolved ones left out) per probe."""
    top = spectra[(spectra["layer"] == spectra["layer"].max()) & (spectra["kind"] == "log_singular")]
    top = top[np.isfinite(top["value"].to_numpy(float))]
    return pd.DataFrame({"when": top["when"], "i": top["i"], "log10_sigma": top["value"] / LN10})


def gradient_rows(gradients: pd.DataFrame) -> pd.DataFrame:
    """The top layer's log10 ||dE/dh_k|| by k at each recorded iteration."""
    top = gradients[gradients["layer"] == gradients["layer"].max()]
    return top[["iter", "k", "log10_dE_dh"]]
