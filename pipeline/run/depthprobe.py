"""The probe across layers of a stacked vanilla RNN (docs/math.md, sections 3.7, 4.7, 4.8 and 8.3): every
log ||dh^top_t/dh^l_k||_2 with l below the top and k <= t, its three bounds, the cross-layer spot check, the decay
rates through time and through depth, the run's figure and step metrics of it; and the per-layer weight-gradient
norms at the gradient checkpoints. What a run folder holds of it is in docs/internals.md
(probe/jacobian_depth.parquet, probe/weight_gradients.parquet, figures/jacobian_depth.png).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine import depth, depthcheck, gridpairs, jacobian
from ..engine.cells import Model, as_vanilla, loss_and_grads
from ..engine.rnn import RNN
from .probe import HEATMAP_COLOURS, LN10, SPOT_COLUMNS, Probe, ProbeInput, centred_range, series_rows

DEPTH_COLUMNS = ("when", "source_layer", "layer", "t", "k", "lag", "depth", "log_norm", "log_bound_stepnorm",
                 "log_bound_product", "log_bound_global")
WEIGHT_GRADIENT_COLUMNS = ("iter", "layer", "param", "log10_norm")
WEIGHT_GRADIENT_BATCH = 64  # the first validation sequences: one fixed batch, so the checkpoints compare alike
DEPTH_FIGURE = "jacobian_depth.png"  # under a run folder's figures/
BOUND_CHECKS = (("measured>stepnorm", "log_norm", "log_bound_stepnorm"),
                ("stepnorm>product", "log_bound_stepnorm", "log_bound_product"),
                ("product>global", "log_bound_product", "log_bound_global"))


@dataclass(frozen=True)
class Across:
    """A run's two probes with the cross-layer spot rows added, and what the probe across layers measured."""

    init: Probe
    final: Probe
    tables: list[pd.DataFrame]  # DEPTH_COLUMNS per probe (empty for one layer or a gated cell)
    summary: dict  # summary.json's keys of it
    series: pd.DataFrame  # by_lag/log10_norm_from_layer_<l>_init (key, step, value)


def across_layers(model_init: Model, model_final: Model, probe: ProbeInput, init: Probe, final: Probe) -> Across:
    """Probe both models across layers (nothing for one layer or a gated cell but the time rate)."""
    probes, tables, summary = [], [], {}
    for model, at in ((as_vanilla(model_init), init), (as_vanilla(model_final), final)):
        numbers = {"rate_time": through_origin(jacobian.lag_profile(at.logmats[-1]))}
        spots = [at.spot.assign(source_layer=at.spot["layer"])]  # the spot rows within a layer: source = target
        if isinstance(model, RNN) and model.layers > 1:
            table, spot = cross_layer(model, probe, at.when)
            tables.append(table)
            spots.append(spot)
            numbers |= depth_numbers(table, spot)
        probes.append(replace(at, spot=pd.concat(spots, ignore_index=True)))
        summary |= {f"{name}_{at.when}": value for name, value in numbers.items()}
    series = depth_series(tables[0]) if tables else pd.DataFrame(columns=["key", "step", "value"])
    return Across(probes[0], probes[1], tables, summary, series)


def cross_layer(model, probe: ProbeInput, when: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(DEPTH_COLUMNS rows of every pair across layers, the cross-layer spot check's SPOT_COLUMNS + source_layer rows)."""
    F = depth.grid_factors(model, probe.xs, probe.h0)
    grid = gridpairs.log_norms_of_grid(F, with_top=False)  # the top layer's own pairs are jacobian.parquet's
    bounds = depth.log_bounds_from_factors(F)
    top = F.top
    l, t, k = np.nonzero(~np.isnan(grid[:top]))
    table = pd.DataFrame({
        "when": when, "source_layer": l.astype(np.int64), "layer": np.int64(top), "t": t.astype(np.int64),
        "k": k.astype(np.int64), "lag": (t - k).astype(np.int64), "depth": (top - l).astype(np.int64),
        "log_norm": grid[l, t, k], "log_bound_stepnorm": bounds.stepnorm[l, t, k],
        "log_bound_product": bounds.product[l, t, k], "log_bound_global": bounds.global_[l, t, k],
    }, columns=list(DEPTH_COLUMNS))
    check = depthcheck.spot_cross_layer(model, probe.xs, probe.h0)
    measured = grid[check.source, check.t, check.k]
    checked = np.isfinite(check.log_norm) & ~np.isnan(measured)
    gap = np.full(len(measured), np.nan)
    gap[checked] = np.abs(measured[checked] - check.log_norm[checked])
    spot = pd.DataFrame({"when": when, "layer": np.int64(top), "t": check.t, "k": check.k, "log_norm": measured,
                         "log_norm_fd": check.log_norm, "abs_dlog": gap, "source_layer": check.source},
                        columns=[*SPOT_COLUMNS, "source_layer"])
    return table, spot


def through_origin(profile: dict[str, np.ndarray], x: str = "lag", y: str = "mean") -> float:
    """The least-squares slope of profile[y] against profile[x] through the origin, over the finite points: the rate
    per factor of a log norm that is 0 at no factors (docs/math.md 8.3); NaN without a finite point."""
    xs, ys = np.asarray(profile[x], np.float64), np.asarray(profile[y], np.float64)
    ok = np.isfinite(ys) & (xs > 0)
    return float(np.sum(xs[ok] * ys[ok]) / np.sum(xs[ok] ** 2)) if ok.any() else math.nan


def depth_numbers(table: pd.DataFrame, spot: pd.DataFrame) -> dict:
    """One probe's numbers across layers: the depth chain's rate per layer, its mean log norm from the input layer
    to the top and that pair's global bound, the bound check of every pair, the spot pairs checked."""
    chain = table[table["lag"] == 0]
    by_depth = chain.groupby("depth")["log_norm"].agg(lambda v: _finite_mean(v.to_numpy()))
    full = chain[chain["source_layer"] == 0]
    return {
        "rate_depth": through_origin({"depth": by_depth.index.to_numpy(), "mean": by_depth.to_numpy()}, "depth"),
        "depth_chain": _finite_mean(full["log_norm"].to_numpy()),  # log ||dh^top_t/dh^0_t||, mean over t
        "depth_chain_bound": _finite_mean(full["log_bound_global"].to_numpy()),
        "violations_cross": int(sum(jacobian.exceeds(table[a].to_numpy(), table[b].to_numpy()).sum()
                                    for _, a, b in BOUND_CHECKS)),
        "cross_pairs": len(table),
        "spot_cross_layer": int(spot["abs_dlog"].notna().sum()),
    }


def _finite_mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def depth_series(table: pd.DataFrame) -> pd.DataFrame:
    """by_lag/log10_norm_from_layer_<l>_init: per source layer below the top, the mean over pairs at each lag
    (step = lag, 0 the depth chain) of log10 ||dh^top_t/dh^l_k|| of the initial model."""
    parts = []
    for l, rows in table.groupby("source_layer"):
        finite = rows[np.isfinite(rows["log_norm"])]
        parts.append(series_rows(f"by_lag/log10_norm_from_layer_{l}_init",
                                 finite.groupby("lag")["log_norm"].mean() / LN10))
    return pd.concat(parts, ignore_index=True)


def cross_decay_grid(table: pd.DataFrame) -> pd.DataFrame:
    """Mean log10 norm per (depth, lag) over pairs, finite values only: the grid the figures draw."""
    finite = table[np.isfinite(table["log_norm"])]
    return finite.assign(log10_norm=finite["log_norm"] / LN10).groupby(["depth", "lag"], as_index=False)[
        "log10_norm"].mean()


def write_across(folder: Path, across: Across, within: pd.DataFrame) -> None:
    """probe/jacobian_depth.parquet and figures/jacobian_depth.png (with `within`, jacobian.parquet's rows, for the
    top layer's own row of the figure); nothing for one layer or a gated cell."""
    if not across.tables:
        return
    table = pd.concat(across.tables, ignore_index=True)
    table.to_parquet(folder / "probe" / "jacobian_depth.parquet", index=False)
    draw_depth_heatmap(table, within, folder / "figures" / DEPTH_FIGURE)


def draw_depth_heatmap(table: pd.DataFrame, within: pd.DataFrame, path: Path) -> None:
    """Mean log10 ||dh^top_t/dh^l_k|| over the (lag, depth) grid, depth = top - l (0: the top layer's own pairs),
    init and final side by side on one colour scale centred at 0 (red grows, blue decays)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    top = int(table["layer"].max())
    own = within[within["layer"] == top].assign(depth=0)
    grids = {}
    for when in ("init", "final"):
        g = cross_decay_grid(pd.concat([table[table["when"] == when], own[own["when"] == when]], ignore_index=True))
        grids[when] = g.pivot(index="depth", columns="lag", values="log10_norm").sort_index()
    values = np.concatenate([g.to_numpy().ravel() for g in grids.values()])
    values = values[np.isfinite(values)]
    vmin, vmax = centred_range(float(values.min()), float(values.max())) if values.size else (-1.0, 1.0)
    fig = Figure(figsize=(10, 3.0 + 0.1 * top), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.08, right=0.9, bottom=0.16, top=0.82, wspace=0.12)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (when, g) in zip(axes, grids.items()):
        image = ax.pcolormesh(g.columns.to_numpy(), g.index.to_numpy(), np.ma.masked_invalid(g.to_numpy()),
                              cmap=HEATMAP_COLOURS, vmin=vmin, vmax=vmax, shading="nearest")
        ax.set(title="at init" if when == "init" else "after training", xlabel="lag t − k")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(f"layers crossed {top} − l")
    fig.suptitle(f"Mean log10 ‖∂h^L_t/∂h^l_k‖ over pairs, L = layer {top} (the top); row 0: the top layer's own",
                 fontsize=10)
    fig.colorbar(image, ax=list(axes), label="log10 norm")
    fig.savefig(path)


# ---- weight gradients through training ------------------------------------------------------------------------


def weight_gradient_table(model: Model, batch: tuple, loss_kind: str, iteration: int) -> pd.DataFrame:
    """Rows (iter, layer, param, log10_norm): log10 ||dE/dW_hh^l||_F and ||dE/dW_xh^l||_F (an LSTM's W_ih^l) of the
    mean loss on `batch` (xs, targets, mask), the first WEIGHT_GRADIENT_BATCH of them, at one iteration."""
    xs, targets, mask = (np.asarray(a)[:, :WEIGHT_GRADIENT_BATCH] for a in batch[:3])
    model = as_vanilla(model)  # an expRNN's dE/dW_hh, not its dE/dA
    _, grads, _, _ = loss_and_grads(model, xs, targets, mask, loss_kind)
    rows = []
    for l in range(model.layers):
        inputs = grads.get(f"W_xh_{l}", grads.get(f"W_ih_{l}"))
        for param, g in (("W_hh", grads[f"W_hh_{l}"]), ("W_xh", inputs)):
            with np.errstate(divide="ignore"):
                rows.append((np.int64(iteration), l, param, float(np.log10(np.linalg.norm(g)))))
    return pd.DataFrame(rows, columns=list(WEIGHT_GRADIENT_COLUMNS))


def write_weight_gradients(folder: Path, tables: list[pd.DataFrame]) -> None:
    """probe/weight_gradients.parquet (nothing when no checkpoint recorded one)."""
    if tables:
        pd.concat(tables, ignore_index=True).to_parquet(folder / "probe" / "weight_gradients.parquet", index=False)
