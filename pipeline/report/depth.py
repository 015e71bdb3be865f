"""The depth study: the gradient of stacked RNNs along time and depth (docs/math.md, sections 3.7, 4.7 and 8.3).

Per run it reads probe/jacobian_depth.parquet (every source layer below the top), the top layer's own pairs from
probe/jacobian.parquet, probe/weight_gradients.parquet and the BPTT signal, and reduces them to small tables; across
runs, split by activation and depth, it states the rates through time (nats per step) and depth (nats per layer),
which vanishes faster, whether the input layer's larger signal is real, and how the learned fraction falls with
depth, every rate with its n and Wilson interval. The learned verdict is the runs table's (reductions.with_verdicts,
from run/verdicts.py), so it follows that definition wherever it is changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..engine.jacobian import exceeds
from ..run.depthprobe import BOUND_CHECKS, DEPTH_COLUMNS, WEIGHT_GRADIENT_COLUMNS
from .reductions import LN10, finite_median, numeric, rate, scored_runs, stacked

RUN_COLUMNS = ("run_id", "activation", "init", "layers", "seed", "T", "gamma_phi", "gamma_w", "gamma_x", "gamma_x_min", "gamma_x_max",
               "rate_time", "rate_depth", "rate_time_final", "rate_depth_final", "learned", "verdict",
               "val_over_chance", "val_accuracy", "signal_input_minus_top", "jacobian_input_minus_top",
               "log10_paths", "wgrad_input_minus_top", "n_cross_checks", "violations_cross")
GRID_COLUMNS = ("run_id", "activation", "layers", "when", "depth", "lag", "log10_norm")
CHAIN_COLUMNS = ("run_id", "activation", "layers", "when", "depth", "log10_norm", "log10_stepnorm", "log10_product",
                 "log10_global")
WEIGHT_COLUMNS = ("run_id", "activation", "layers", *WEIGHT_GRADIENT_COLUMNS)
TABLES = ("depth_runs", "depth_grid", "depth_chain", "depth_weights")  # tables/<name>.csv of `summarise`


@dataclass(frozen=True)
class RunDepth:
    """One run's probe across layers, reduced (log10 throughout)."""

    grid: pd.DataFrame  # when, depth, lag, log10_norm: mean over the pairs of each (depth, lag); depth 0 the top's own
    chain: pd.DataFrame  # when, depth, log10_norm and its three bounds: means over t of the pairs at lag 0
    longest: pd.DataFrame  # when, depth, log10_norm: the pair (T, 0) from each layer (depth 0: the top's own)
    weights: pd.DataFrame  # WEIGHT_GRADIENT_COLUMNS
    numbers: dict  # n_cross_checks, violations_cross, T, gamma_x (median over the layers above the first), min, max


def read_run(read, layers: int, summary: dict, within: pd.DataFrame | None) -> RunDepth:
    """A run's tables: `read(name, columns)` reads a file of its folder (None when missing, recorded as a problem),
    `within` is its probe/jacobian.parquet (None when unreadable)."""
    table = read("probe/jacobian_depth.parquet", DEPTH_COLUMNS) if layers > 1 else None
    weights = read("probe/weight_gradients.parquet", WEIGHT_GRADIENT_COLUMNS)
    table = table if table is not None else pd.DataFrame(columns=list(DEPTH_COLUMNS))
    own = pd.DataFrame(columns=list(DEPTH_COLUMNS))
    if within is not None and len(within):
        top = int(within["layer"].max())
        own = within[within["layer"] == top].assign(source_layer=top, depth=0)
    both = pd.concat([table, own], ignore_index=True)
    finite = both[np.isfinite(both["log_norm"].astype(float))].assign(log10_norm=lambda d: d["log_norm"] / LN10)
    grid = finite.groupby(["when", "depth", "lag"], as_index=False)["log10_norm"].mean()
    T = int(both["t"].max()) if len(both) else 0
    longest = finite[(finite["t"] == T) & (finite["k"] == 0)][["when", "depth", "log10_norm"]]
    return RunDepth(grid, chain_rows(table), longest.reset_index(drop=True),
                    weights if weights is not None else pd.DataFrame(columns=list(WEIGHT_GRADIENT_COLUMNS)),
                    {"n_cross_checks": len(table), "violations_cross": cross_violations(table), "T": T,
                     **gamma_x(summary)})


def chain_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The depth chain dh^top_t/dh^l_t: per probe and depth, the means over t of log10 of the measured norm and its
    step-norm, product and global bounds (pairs with all four finite)."""
    cols = ["log_norm", "log_bound_stepnorm", "log_bound_product", "log_bound_global"]
    chain = table[table["lag"] == 0]
    chain = chain[np.isfinite(chain[cols].astype(float)).all(axis=1)]
    means = chain.groupby(["when", "depth"], as_index=False)[cols].mean()
    return pd.DataFrame({"when": means["when"], "depth": means["depth"], "log10_norm": means["log_norm"] / LN10,
                         "log10_stepnorm": means["log_bound_stepnorm"] / LN10,
                         "log10_product": means["log_bound_product"] / LN10,
                         "log10_global": means["log_bound_global"] / LN10})


def cross_violations(table: pd.DataFrame) -> int:
    """Pairs across layers above one of their bounds beyond rounding (jacobian.exceeds, as within a layer)."""
    return int(sum(exceeds(table[a].to_numpy(float), table[b].to_numpy(float)).sum() for _, a, b in BOUND_CHECKS))


def gamma_x(summary: dict) -> dict:
    """||W_xh^l||_2 at init over the layers above the first (summary.json's layers): median, min, max."""
    values = [r.get("gamma_x_init") for r in summary.get("layers", [])[1:] if isinstance(r, dict)]
    values = np.array([v for v in values if isinstance(v, (int, float))], float)
    if not values.size:
        return {"gamma_x": math.nan, "gamma_x_min": math.nan, "gamma_x_max": math.nan}
    return {"gamma_x": float(np.median(values)), "gamma_x_min": float(values.min()), "gamma_x_max": float(values.max())}


def log10_paths(T: int, depth: int) -> float:
    """log10 of the number of paths from (l, 0) to (l + depth, T): the first edge horizontal (docs/math.md 3.7)."""
    return math.log10(math.comb(T - 1 + depth, depth)) if T >= 1 else math.nan


# ---- across runs ------------------------------------------------------------------------------------------------


def run_table(runs: pd.DataFrame, signal: pd.DataFrame, per_run: dict[str, RunDepth]) -> pd.DataFrame:
    """One row per run (RUN_COLUMNS): its rates, verdict, and the input layer against the top layer at the deepest
    reach: the BPTT signal at k = 0, ||dh^top_T/dh^l_0|| and the weight gradient at iteration 0 (decades)."""
    r = numeric(runs, ["layers", "seed", "gamma_phi", "gamma_w_init", "rate_time_init", "rate_depth_init", "rate_time_final",
                       "rate_depth_final", "final_val_loss", "chance_loss", "val_accuracy"])
    rows = []
    for row, scored in zip(r.to_dict("records"), scored_runs(runs)):
        d = per_run.get(row["run_id"])
        numbers = d.numbers if d is not None else {}
        top = int(row["layers"]) - 1 if math.isfinite(row["layers"]) else 0
        rows.append({
            "run_id": row["run_id"], "activation": row.get("activation"), "init": row.get("init"),
            "layers": row["layers"],
            "seed": row["seed"], "T": numbers.get("T"), "gamma_phi": row["gamma_phi"], "gamma_w": row["gamma_w_init"],
            **{k: numbers.get(k, math.nan) for k in ("gamma_x", "gamma_x_min", "gamma_x_max")},
            "rate_time": row["rate_time_init"], "rate_depth": row["rate_depth_init"],
            "rate_time_final": row["rate_time_final"], "rate_depth_final": row["rate_depth_final"],
            "learned": bool(row["learned"]) if scored else None, "verdict": row.get("verdict"),
            "val_over_chance": row["final_val_loss"] / row["chance_loss"], "val_accuracy": row["val_accuracy"],
            "signal_input_minus_top": input_minus_top(signal, row["run_id"], top),
            "jacobian_input_minus_top": longest_input_minus_top(d, top),
            "log10_paths": log10_paths(int(numbers.get("T") or 0), top) if top else math.nan,
            "wgrad_input_minus_top": weight_input_minus_top(d, top),
            "n_cross_checks": numbers.get("n_cross_checks", 0), "violations_cross": numbers.get("violations_cross", 0),
        })
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def input_minus_top(signal: pd.DataFrame, run_id: str, top: int) -> float:
    """log10 ||dE/dh^0_0|| - log10 ||dE/dh^top_0|| of the initial model (NaN for one layer)."""
    s = signal[(signal["run_id"] == run_id) & (signal["when"] == "init") & (signal["k"] == 0)]
    by = s.set_index("layer")["log10_dE_dh"]
    return float(by.get(0, math.nan) - by.get(top, math.nan)) if top else math.nan


def longest_input_minus_top(d: RunDepth | None, top: int) -> float:
    """log10 ||dh^top_T/dh^0_0|| - log10 ||dh^top_T/dh^top_0||, initial model (NaN for one layer)."""
    if d is None or not top:
        return math.nan
    at = d.longest[d.longest["when"] == "init"].set_index("depth")["log10_norm"]
    return float(at.get(top, math.nan) - at.get(0, math.nan))


def weight_input_minus_top(d: RunDepth | None, top: int) -> float:
    """log10 ||dE/dW_hh^0|| - log10 ||dE/dW_hh^top|| at iteration 0 (NaN for one layer)."""
    if d is None or not top or not len(d.weights):
        return math.nan
    w = d.weights[(d.weights["iter"] == d.weights["iter"].min()) & (d.weights["param"] == "W_hh")]
    by = w.set_index("layer")["log10_norm"]
    return float(by.get(0, math.nan) - by.get(top, math.nan))


def tagged(runs: pd.DataFrame, per_run: dict[str, RunDepth], part: str, columns) -> pd.DataFrame:
    """One of RunDepth's frames of every run, tagged with run_id, activation and layers."""
    info = runs.set_index("run_id")
    return stacked([getattr(d, part).assign(run_id=rid, activation=info.at[rid, "activation"],
                                            layers=info.at[rid, "layers"])
                    for rid, d in per_run.items() if rid in info.index], columns)[list(columns)]


def by_layers(table: pd.DataFrame) -> dict:
    """metrics.json `depth`: per activation and L, {n, rate_time, rate_depth (medians, nats per step and per layer,
    initial model), learned {k, n, rate, low, high} over the scored runs}."""
    out: dict = {}
    for (act, L), g in table.groupby(["activation", "layers"], sort=True):
        scored = g["learned"].notna()
        out.setdefault(str(act), {})[str(int(L))] = {
            "n": len(g), "rate_time": finite_median(g["rate_time"]), "rate_depth": finite_median(g["rate_depth"]),
            "learned": rate(int(g.loc[scored, "learned"].astype(bool).sum()), int(scored.sum()))}
    return out


def headline(table: pd.DataFrame, chains: pd.DataFrame) -> dict:
    """specs.depth.headline: per activation, over the stacked runs (L >= 2), how the two rates compare, and at the
    deepest L how the input layer's gradient compares with the top layer's."""
    head: dict = {}
    for act, g in table.groupby("activation", sort=True):
        stacked_runs = g[(g["layers"] > 1) & np.isfinite(g["rate_time"].astype(float))
                         & np.isfinite(g["rate_depth"].astype(float))]
        difference = (stacked_runs["rate_depth"] - stacked_runs["rate_time"]).astype(float)
        deepest = g[g["layers"] == g["layers"].max()]
        signal = deepest["signal_input_minus_top"].astype(float).dropna()
        scored = g[g["learned"].notna()]
        first, last = (scored[scored["layers"] == L] for L in (scored["layers"].min(), scored["layers"].max()))
        chain = deepest_chain(chains, deepest)
        head[str(act)] = {
            "n_stacked": len(stacked_runs), "rate_time": finite_median(stacked_runs["rate_time"]),
            "rate_depth": finite_median(stacked_runs["rate_depth"]),
            "depth_faster": rate(int((difference < 0).sum()), len(difference)),
            "difference": finite_median(difference), "difference_min": difference.min() if len(difference) else None,
            "difference_max": difference.max() if len(difference) else None,
            "max_layers": g["layers"].max(), "gamma_x": finite_median(g["gamma_x"]),
            "T": finite_median(pd.to_numeric(g["T"], errors="coerce")) if "T" in g else None,
            "input_larger": rate(int((signal > 0).sum()), len(signal)),
            **{k: finite_median(deepest[k]) for k in ("signal_input_minus_top", "jacobian_input_minus_top",
                                                      "log10_paths", "wgrad_input_minus_top")},
            "per_path_input_minus_top": finite_median(deepest["jacobian_input_minus_top"] - deepest["log10_paths"]),
            "min_layers": scored["layers"].min() if len(scored) else None,
            "learned_shallowest": rate(int(first["learned"].astype(bool).sum()), len(first)),
            "learned_deepest": rate(int(last["learned"].astype(bool).sum()), len(last)),
            **chain,
        }
    return head


def deepest_chain(chains: pd.DataFrame, deepest: pd.DataFrame) -> dict:
    """The depth chain from the input layer to the top of the deepest stack, initial model, in decades: the measured
    norm, its global bound, and the gap split into saturation (global -> product), the edges' own norms (product ->
    step-norm) and alignment (step-norm -> measured); each the mean of its log10 over the runs where all four logs
    are finite (n_chain of them), so the three parts add up to the gap (medians taken one by one need not: at 10
    sigmoid seeds they missed it by 0.06 decades)."""
    c = chains[chains["run_id"].isin(deepest["run_id"]) & (chains["when"] == "init")]
    c = c[c["depth"] == c["depth"].max()] if len(c) else c
    logs = ["log10_norm", "log10_global", "log10_product", "log10_stepnorm"]
    c = c[np.isfinite(c[logs].to_numpy(float)).all(axis=1)] if len(c) else c
    if not len(c):
        return {k: None for k in ("chain", "chain_bound", "chain_saturation", "chain_own_norms", "chain_alignment")
                } | {"n_chain": 0}
    norm, bound, product, stepnorm = (float(c[k].astype(float).mean()) for k in logs)
    return {"chain": norm, "chain_bound": bound, "chain_saturation": bound - product,
            "chain_own_norms": product - stepnorm, "chain_alignment": stepnorm - norm, "n_chain": len(c)}


def summarise(runs: pd.DataFrame, signal: pd.DataFrame, per_run: dict[str, RunDepth]
              ) -> tuple[dict[str, pd.DataFrame], dict]:
    """The depth study's tables (tables/depth_*.csv) and its headline, the per-L `depth` metrics under "by_layers"
    with the cross-layer bound check's counts (lifted to metrics.json's top level by `lift_metrics`)."""
    table = run_table(runs, signal, per_run)
    tables = dict(zip(TABLES, (table, tagged(runs, per_run, "grid", GRID_COLUMNS),
                               tagged(runs, per_run, "chain", CHAIN_COLUMNS),
                               tagged(runs, per_run, "weights", WEIGHT_COLUMNS))))
    metrics = {"n_checks": int(table["n_cross_checks"].sum()), "violations": int(table["violations_cross"].sum()),
               **by_layers(table)}
    return tables, headline(table, tables["depth_chain"]) | {"by_layers": metrics}


def lift_metrics(spec_heads: dict) -> dict:
    """metrics.json's top-level `depth` (moved out of the depth spec's headline); {} without a depth study."""
    head = spec_heads.get("depth", {}).get("headline")
    return head.pop("by_layers", {}) if isinstance(head, dict) else {}

