"""The Jacobian probe of one model: measured log ||dh_t/dh_k||, its two bounds, the BPTT signal, and the numbers,
tables, step metrics and heatmap a run folder holds (docs/internals.md, "A run's folder").

The probe input is one sequence xs (T, d) from h0 (L, n). All logs are natural unless a name says log10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine import jacobian, lyapunov, spotcheck
from ..engine.rnn import RNN, loss_and_grads
from .files import save_model

JACOBIAN_COLUMNS = ("when", "layer", "t", "k", "lag", "log_norm", "log_bound_product", "log_bound_global")
SIGNAL_COLUMNS = ("when", "layer", "k", "log10_dE_dh")
SPOT_COLUMNS = ("when", "layer", "t", "k", "log_norm", "log_norm_fd", "abs_dlog")
REGIME_BAND = 0.01  # |slope| below this (nats per step) is "neutral"
RATE_ROUNDING = 1e-9  # |log(gamma_W gamma_phi)| below this is rounding of an exact 1
LN10 = math.log(10.0)


@dataclass(frozen=True)
class ProbeInput:
    """One probe sequence with the targets the BPTT signal is measured against."""

    xs: np.ndarray  # (T, d) inputs
    h0: np.ndarray  # (L, n) initial state
    targets: np.ndarray  # (T,) int classes (xent) or (T, o) reals (mse)
    mask: np.ndarray  # (T,) loss weights; at least one nonzero, so that a gradient flows
    loss_kind: str  # "xent" | "mse"


@dataclass(frozen=True)
class Probe:
    """Everything measured on one model ("init" or "final")."""

    when: str
    logmats: list[np.ndarray]  # per layer, (T+1, T+1) log ||dh_t/dh_k||, NaN where k >= t
    jacobian: pd.DataFrame  # JACOBIAN_COLUMNS, rows k < t, every layer
    signal: pd.DataFrame  # SIGNAL_COLUMNS, every layer, k = 0..T
    layers: list[dict]  # per layer: gamma_w, spectral_radius, log_rate, slope, lyapunov, violations
    spot: pd.DataFrame  # SPOT_COLUMNS, every layer: the independent finite-difference check of sampled pairs


def probe_model(model: RNN, probe: ProbeInput, when: str) -> Probe:
    """Measure every layer of `model` on the probe sequence."""
    logmats, tables, layers, spots = [], [], [], []
    for layer in range(model.layers):
        logmat = jacobian.log_norm_matrix(model, probe.xs, probe.h0, layer)
        product, global_ = jacobian.log_bound_matrices(model, probe.xs, probe.h0, layer)
        logmats.append(logmat)
        tables.append(jacobian_table(when, layer, logmat, product, global_))
        layers.append(layer_numbers(model, probe, layer, logmat, product, global_))
        spots.append(spot_table(when, layer, logmat, spotcheck.spot_log_norms(model, probe.xs, probe.h0, layer)))
    return Probe(when, logmats, pd.concat(tables, ignore_index=True), signal_table(model, probe, when), layers,
                 pd.concat(spots, ignore_index=True))


def jacobian_table(when: str, layer: int, logmat: np.ndarray, product: np.ndarray, global_: np.ndarray) -> pd.DataFrame:
    """Tidy rows (when, layer, t, k, lag, log_norm, log_bound_product, log_bound_global) for 0 <= k < t <= T."""
    t, k = np.tril_indices(logmat.shape[0], -1)  # strictly below the diagonal: k < t
    return pd.DataFrame({
        "when": when, "layer": layer, "t": t.astype(np.int64), "k": k.astype(np.int64), "lag": (t - k).astype(np.int64),
        "log_norm": logmat[t, k], "log_bound_product": product[t, k], "log_bound_global": global_[t, k],
    }, columns=list(JACOBIAN_COLUMNS))


def spot_table(when: str, layer: int, logmat: np.ndarray, spot: spotcheck.SpotCheck) -> pd.DataFrame:
    """Rows (when, layer, t, k, log_norm, log_norm_fd, abs_dlog) of the spot check: the probe's value, the finite-
    difference one (NaN where unresolved) and their distance in nats. abs_dlog is NaN (skipped) where the spot check
    is unresolved or the probe's value is NaN, and inf where the probe says exactly zero (-inf) but the differences
    resolved a finite norm: a mismatch, not a skip."""
    measured = logmat[spot.t, spot.k]
    checked = np.isfinite(spot.log_norm) & ~np.isnan(measured)
    gap = np.full(len(measured), np.nan)
    gap[checked] = np.abs(measured[checked] - spot.log_norm[checked])
    return pd.DataFrame({"when": when, "layer": layer, "t": spot.t, "k": spot.k, "log_norm": measured,
                         "log_norm_fd": spot.log_norm, "abs_dlog": gap}, columns=list(SPOT_COLUMNS))


def spot_numbers(probe: Probe) -> dict:
    """One probe's spot check (`spotcheck.summarize`), keyed by its `when` (a NaN largest difference is written null)."""
    return {f"{k}_{probe.when}": v for k, v in spotcheck.summarize(probe.spot["abs_dlog"].to_numpy()).items()}


def signal_table(model: RNN, probe: ProbeInput, when: str) -> pd.DataFrame:
    """log10 ||dE/dh_k|| per layer for k = 0..T (-inf where the gradient is exactly zero)."""
    targets = probe.targets[:, None]  # (T, 1) or (T, 1, o): a batch of one
    _, _, signal, _ = loss_and_grads(model, probe.xs[:, None, :], targets, probe.mask[:, None], probe.loss_kind,
                                     probe.h0[:, None, :])
    with np.errstate(divide="ignore"):
        log10 = np.log10(signal)  # (L, T+1)
    L, K = log10.shape
    return pd.DataFrame({"when": when, "layer": np.repeat(np.arange(L), K), "k": np.tile(np.arange(K), L),
                         "log10_dE_dh": log10.ravel()}, columns=list(SIGNAL_COLUMNS))


def layer_numbers(model: RNN, probe: ProbeInput, layer: int, logmat, product, global_) -> dict:
    """The scalar summary of one layer: realised norms, the bound's rate, the fitted and the Lyapunov rates."""
    W = model.W_hh(layer)
    gamma_w, rho = float(jacobian.spectral_norm(W)), float(jacobian.spectral_radius(W))
    with np.errstate(divide="ignore"):
        log_rate = float(np.log(gamma_w * model.act.gamma))
    return {
        "gamma_w": gamma_w,
        "spectral_radius": rho,
        "log_rate": log_rate,  # log(gamma_W gamma_phi): the global bound's slope per step
        "slope": float(jacobian.decay_slope(logmat)),
        "lyapunov": float(lyapunov.top_lyapunov(model, probe.xs, probe.h0, layer)),
        "violations": len(jacobian.bound_violations(logmat, product, global_)),
    }


PREDICTED_REGIMES = ("vanishing", "bounded", "unconstrained")  # what predicted_regime returns (docs/math.md 6)


def predicted_regime(log_rate: float) -> str | None:
    """What Pascanu et al. (2013) predict from log(gamma_W gamma_phi): `vanishing` below 0 (gamma_W gamma_phi < 1 is
    sufficient for vanishing), `bounded` at 0 within rounding (the bound is 1 at every lag: no growth is possible;
    an orthogonal or identity W at gamma_w = 1 lands here), `unconstrained` above (gamma_W gamma_phi > 1 is only
    necessary for exploding: the theorem predicts nothing). None when the rate is NaN."""
    if math.isnan(log_rate):
        return None
    if log_rate < -RATE_ROUNDING:
        return "vanishing"
    return "unconstrained" if log_rate > RATE_ROUNDING else "bounded"


def observed_regime(slope: float) -> str | None:
    """From the fitted slope of log ||dh_t/dh_k|| per step of lag; None when there is no finite slope."""
    if math.isnan(slope):
        return None
    if slope < -REGIME_BAND:
        return "vanishing"
    return "exploding" if slope > REGIME_BAND else "neutral"


def summary_numbers(init: Probe, final: Probe) -> dict:
    """summary.json's probe part: the top layer's numbers at the top level, every layer's under `layers`."""
    layers = []
    for l, (a, b) in enumerate(zip(init.layers, final.layers)):
        row = {"layer": l}
        for name in ("gamma_w", "spectral_radius", "log_rate", "slope", "lyapunov"):
            row[f"{name}_init"], row[f"{name}_final"] = a[name], b[name]
        row["predicted_regime"] = predicted_regime(a["log_rate"])
        row["observed_regime"] = observed_regime(a["slope"])
        row["violations_init"], row["violations_final"] = a["violations"], b["violations"]
        layers.append(row)
    top = {k: v for k, v in layers[-1].items() if k != "layer"}
    return {**top, **spot_numbers(init), **spot_numbers(final), "layers": layers}


def step_series(init: Probe, final: Probe) -> pd.DataFrame:
    """The probe's step metrics (key, step, value), top layer, log10: decay curves and their bounds by lag
    (`by_lag/...`, step = t - k), the BPTT signal by timestep (`by_k/...`, step = k). Measurement and bounds share
    a prefix, so the MLflow UI draws them in one chart section."""
    top = len(init.layers) - 1
    a = init.jacobian[init.jacobian["layer"] == top].groupby("lag")
    b = final.jacobian[final.jacobian["layer"] == top].groupby("lag")
    sig = final.signal[final.signal["layer"] == top]
    parts = [
        series_rows("by_lag/log10_norm_init", a["log_norm"].mean() / LN10),
        series_rows("by_lag/log10_norm_final", b["log_norm"].mean() / LN10),
        series_rows("by_lag/log10_bound_product_init", a["log_bound_product"].mean() / LN10),
        series_rows("by_lag/log10_bound_global_init", a["log_bound_global"].mean() / LN10),
        series_rows("by_k/log10_dE_dh", pd.Series(sig["log10_dE_dh"].to_numpy(), index=sig["k"].to_numpy())),
    ]
    return pd.concat(parts, ignore_index=True)


def series_rows(key: str, values: pd.Series) -> pd.DataFrame:
    """Tidy (key, step, value) rows from a Series indexed by step; non-finite points are left out (MLflow
    charts cannot draw them, and the parquet tables keep them)."""
    values = values[np.isfinite(values.to_numpy(dtype=np.float64))]
    return pd.DataFrame({"key": key, "step": values.index.to_numpy(dtype=np.int64),
                         "value": values.to_numpy(dtype=np.float64)}, columns=["key", "step", "value"])


HEATMAP_LABEL = "log10 ‖∂h_t/∂h_k‖"
# A diverging scale centred at 0 (norm 1): red where the norm grows with the lag, blue where it decays, white
# where it neither grows nor decays, so an exploding and a vanishing run read apart at a glance.
HEATMAP_COLOURS = "RdBu_r"
MIN_COLOUR_RANGE = 0.1  # decades: a matrix of exact ones (rounding around 0) is drawn white, not as noise


def centred_range(vmin: float, vmax: float) -> tuple[float, float]:
    """The symmetric colour range [-m, m] around 0 that holds [vmin, vmax] (m at least MIN_COLOUR_RANGE)."""
    m = max(abs(vmin), abs(vmax), MIN_COLOUR_RANGE)
    return -m, m


def draw_heatmap_panel(ax, log10: np.ndarray, title: str, vmin: float | None = None, vmax: float | None = None,
                       colorbar: bool = True) -> None:
    """Draw log10 ||dh_t/dh_k|| on the matplotlib axes `ax`: a (T+1, T+1) matrix indexed [t, k], t down the rows
    and k across; cells that are not finite (k >= t, NaN, -inf) are left blank. The colour scale is centred at 0
    (`centred_range`) and holds [vmin, vmax], by default this matrix's finite range. The one heatmap drawing of the package: a run's
    figures/jacobian_heatmap.png and the report's heatmaps figure both come from here.

    Plain matplotlib (imshow), no seaborn: run/ must not need it. Nothing is imported until a heatmap is drawn, so
    importing run/ does not import matplotlib."""
    from matplotlib.ticker import MaxNLocator

    data = np.asarray(log10, dtype=np.float64)
    shown = np.isfinite(data)
    if vmin is None or vmax is None:
        lo, hi = (data[shown].min(), data[shown].max()) if shown.any() else (-1.0, 1.0)  # all hidden: empty panel
        vmin, vmax = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
    vmin, vmax = centred_range(vmin, vmax)
    image = ax.imshow(np.ma.masked_array(data, ~shown), cmap=HEATMAP_COLOURS, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.set(title=title + ("" if shown.any() else " (no finite values)"), xlabel="k", ylabel="t")
    ax.grid(False)  # a style's grid (the report's whitegrid) would be drawn over the cells
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=HEATMAP_LABEL)


def draw_heatmap(init: Probe, final: Probe, path: Path) -> None:
    """log10 ||dh_t/dh_k|| of the top layer, init and final side by side (PNG), each in its own colour range.

    Drawn on a bare `matplotlib.figure.Figure` with an Agg canvas rather than through pyplot: no global backend
    switch, no figure left open, safe in worker processes. No layout engine: it would triple the drawing time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.12, top=0.9, wspace=0.25)
    for ax, probe in zip(fig.subplots(1, 2), (init, final)):
        draw_heatmap_panel(ax, probe.logmats[-1] / LN10, f"{probe.when}: layer {len(probe.logmats) - 1}")
    fig.savefig(path)


def write_probe(folder: Path, model_init: RNN, model_final: RNN, probe: ProbeInput, init: Probe, final: Probe) -> None:
    """probe/{model_init,model_final}.npz, inputs.npy, h0.npy, jacobian.parquet, signal.parquet, spot_checks.parquet
    and figures/jacobian_heatmap.png under `folder` (a run folder being built)."""
    (folder / "probe").mkdir(parents=True, exist_ok=True)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    save_model(model_init, folder / "probe" / "model_init.npz")
    save_model(model_final, folder / "probe" / "model_final.npz")
    np.save(folder / "probe" / "inputs.npy", probe.xs)
    np.save(folder / "probe" / "h0.npy", probe.h0)
    pd.concat([init.jacobian, final.jacobian], ignore_index=True).to_parquet(folder / "probe" / "jacobian.parquet",
                                                                            index=False)
    pd.concat([init.signal, final.signal], ignore_index=True).to_parquet(folder / "probe" / "signal.parquet",
                                                                          index=False)
    pd.concat([init.spot, final.spot], ignore_index=True).to_parquet(folder / "probe" / "spot_checks.parquet",
                                                                      index=False)
    draw_heatmap(init, final, folder / "figures" / "jacobian_heatmap.png")
