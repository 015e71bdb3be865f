"""The Jacobian probe of one model: measured log ||dh_t/dh_k||, its two bounds, the BPTT signal, and the numbers,
tables, step metrics and heatmap a run folder holds (docs/internals.md, "A run's folder").

The probe input is one sequence xs (T, d) from h0 (L, n). All logs are natural unless a name says log10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine import jacobian, lyapunov, meanfield, spotcheck
from ..engine import gru
from ..engine.cells import GATED_CELLS, Model, as_vanilla, forward, loss_and_grads, model_arrays
from ..engine.lstm import LSTM, step_jacobians
from ..engine.rnn import Trace, one_hot
from . import plots
from .files import save_model

# log_norm is ||dh_t/dh_k|| (an LSTM's: of its whole state (h, c)); log_norm_cell an LSTM's ||dc_t/dc_k||, NaN for
# the vanilla cell. log_bound_global is NaN for the LSTM (docs/math.md, section 13.4), and its step-norm bound is its
# product bound (the product of its step norms is the only bound defined for it).
JACOBIAN_COLUMNS = ("when", "layer", "t", "k", "lag", "log_norm", "log_bound_product", "log_bound_global",
                    "log_bound_stepnorm", "log_norm_cell")
# what a reader needs: run folders written before the step-norm bound and the LSTM lack the last two
JACOBIAN_REQUIRED = JACOBIAN_COLUMNS[:-2]
SPECTRA_COLUMNS = ("when", "layer", "kind", "i", "value")  # kind: lyapunov | lyapunov_spread | log_singular
GRADIENT_COLUMNS = ("iter", "layer", "k", "log10_dE_dh")
SIGNAL_COLUMNS = ("when", "layer", "k", "log10_dE_dh")
SPOT_COLUMNS = ("when", "layer", "t", "k", "log_norm", "log_norm_fd", "abs_dlog")
REGIME_BAND = 0.01  # |slope| below this (nats per step) is "neutral"
RATE_ROUNDING = 1e-9  # |log(gamma_W gamma_phi)| below this is rounding of an exact 1
LN10 = math.log(10.0)


@dataclass(frozen=True)
class ProbeInput:
    """One probe sequence with the targets the BPTT signal is measured against."""

    xs: np.ndarray  # (T, d) inputs
    h0: np.ndarray  # (L, n) initial state; an LSTM's (L, 2n), h then c
    targets: np.ndarray  # (T,) int classes (xent) or (T, o) reals (mse)
    mask: np.ndarray  # (T,) loss weights; at least one nonzero, so that a gradient flows
    loss_kind: str  # "xent" | "mse"


@dataclass(frozen=True)
class Drive:
    """Input streams from the task's distribution that drive the Lyapunov trajectories and set the mean-field
    input variance (docs/math.md 7.3, 7.5): task sequences drawn from a seeded stream, joined end to end."""

    xs: np.ndarray  # (T, B, d): B trajectories of T = burn_in + steps inputs
    burn_in: int  # steps before the exponents are averaged
    k: int  # Lyapunov exponents estimated


@dataclass(frozen=True)
class Probe:
    """Everything measured on one model ("init" or "final")."""

    when: str
    logmats: list[np.ndarray]  # per layer, (T+1, T+1) log ||dh_t/dh_k||, NaN where k >= t
    jacobian: pd.DataFrame  # JACOBIAN_COLUMNS, rows k < t, every layer
    signal: pd.DataFrame  # SIGNAL_COLUMNS, every layer, k = 0..T
    layers: list[dict]  # per layer: gamma_w, spectral_radius, log_rate, slope, lyapunov, violations, ...
    spot: pd.DataFrame  # SPOT_COLUMNS, every layer: the independent finite-difference check of sampled pairs
    spectra: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(SPECTRA_COLUMNS)))
    # SPECTRA_COLUMNS, every layer: Lyapunov exponents, their spread, singular values


def probe_model(model: Model, probe: ProbeInput, when: str, drive: Drive | None = None) -> Probe:
    """Measure every layer of `model` on the probe sequence (an LSTM: both of its states, docs/math.md 13.3; an
    expRNN: the vanilla RNN it computes); with a `drive`, also a vanilla model's Lyapunov spectrum along the driven
    trajectories and its mean-field rate (NaN without one, and for the gated cells, which neither is defined for
    here)."""
    logmats, tables, layers, spots, spectra = [], [], [], [], []
    model = as_vanilla(model)
    gated = model.cell in GATED_CELLS  # a gated cell: dense step Jacobians, the product bound only
    trace = forward(model, drive.xs) if drive is not None and not gated else None
    for layer in range(model.layers):
        if gated:
            logmat, cellmat, product, global_, lyap = _gated_layer(model, probe, layer)
            stepnorm, log_sigma = product, np.full(0, np.nan)
        else:
            logmat = jacobian.log_norm_matrix(model, probe.xs, probe.h0, layer)
            product, global_ = jacobian.log_bound_matrices(model, probe.xs, probe.h0, layer)
            stepnorm = jacobian.log_stepnorm_bound_matrix(model, probe.xs, probe.h0, layer)
            log_sigma = jacobian.log_singular_spectrum(model, probe.xs, probe.h0, layer)
            cellmat, lyap = None, lyapunov.top_lyapunov(model, probe.xs, probe.h0, layer)
        logmats.append(logmat)
        tables.append(jacobian_table(when, layer, logmat, product, global_, stepnorm, cellmat))
        # a gated cell's step-norm bound is its product bound: checked once, with no gap between them to split
        numbers = layer_numbers(model, probe, layer, logmat, product, global_, lyap, cellmat,
                                None if gated else stepnorm)
        dynamics, rows = dynamics_numbers(model, trace, drive, layer)
        layers.append(numbers | dynamics | spectrum_numbers(log_sigma))
        spectra.append(spectra_table(when, layer, rows | {"log_singular": log_sigma}))
        spots.append(spot_table(when, layer, logmat, spotcheck.spot_log_norms(model, probe.xs, probe.h0, layer)))
    return Probe(when, logmats, pd.concat(tables, ignore_index=True), signal_table(model, probe, when), layers,
                 pd.concat(spots, ignore_index=True), pd.concat(spectra, ignore_index=True))


def same_model(a: Model, b: Model) -> bool:
    """Whether two models are one model: the same cell, settings and parameters, bit for bit."""
    x, y = model_arrays(a), model_arrays(b)  # the cell and its settings are entries too
    return x.keys() == y.keys() and all(np.array_equal(v, y[k]) for k, v in x.items())


def relabelled(probe: Probe, when: str) -> Probe:
    """`probe` as the probe of `when`: what `probe_model` returns for the same model (it is deterministic), without
    measuring it again. A run whose final model is its initial one (iters 0, or a divergence at the first step)
    probes it once."""
    tables = {name: getattr(probe, name).assign(when=when) for name in ("jacobian", "signal", "spot", "spectra")}
    return replace(probe, when=when, **tables)


def _gated_layer(model: LSTM | gru.GRU, probe: ProbeInput, layer: int) -> tuple:
    """A gated layer's (full-state log norms, an LSTM's cell-state log norms (None for a GRU), product bound, global
    bound (NaN), top Lyapunov exponent on the probe sequence), all from one set of step Jacobians and one pass of
    products."""
    if isinstance(model, gru.GRU):
        J = gru.step_jacobians(model, probe.xs, probe.h0, layer)
        full, cell = jacobian.log_norms_from_steps(J, [None])[0], None
    else:
        J = step_jacobians(model, probe.xs, probe.h0, layer)
        full, cell = jacobian.log_norms_from_steps(J, [jacobian.state_block(model, s) for s in ("full", "cell")])
    product, global_ = jacobian.log_step_bounds(J)
    return full, cell, product, global_, lyapunov.top_lyapunov_from_steps(J)


def jacobian_table(when: str, layer: int, logmat: np.ndarray, product: np.ndarray, global_: np.ndarray,
                   stepnorm: np.ndarray | None = None, cellmat: np.ndarray | None = None) -> pd.DataFrame:
    """Tidy rows (when, layer, t, k, lag, log_norm, log_bound_product, log_bound_global, log_bound_stepnorm,
    log_norm_cell) for 0 <= k < t <= T; the step-norm bound NaN when not given, log_norm_cell from `cellmat` (an
    LSTM's), NaN without it."""
    t, k = np.tril_indices(logmat.shape[0], -1)  # strictly below the diagonal: k < t
    return pd.DataFrame({
        "when": when, "layer": layer, "t": t.astype(np.int64), "k": k.astype(np.int64), "lag": (t - k).astype(np.int64),
        "log_norm": logmat[t, k], "log_bound_product": product[t, k], "log_bound_global": global_[t, k],
        "log_bound_stepnorm": stepnorm[t, k] if stepnorm is not None else np.nan,
        "log_norm_cell": np.nan if cellmat is None else cellmat[t, k],
    }, columns=list(JACOBIAN_COLUMNS))


def driving_inputs(draw, rng: np.random.Generator, steps: int, trajectories: int, input_dim: int) -> np.ndarray:
    """(steps, trajectories, d): task sequences from `draw(rng)` (a Source's minibatch draw, time-major (S, B, d),
    or token ids (S, B) that are one-hot encoded to `input_dim`), each trajectory the next unused sequences joined end
    to end, so that every step's input is from the task's distribution and the state runs on across sequence
    boundaries, as in a stream."""
    pool, need = [], trajectories * steps
    while sum(x.shape[0] for x in pool) < need:
        xs = np.asarray(draw(rng)[0])
        xs = one_hot(xs, input_dim) if xs.ndim == 2 else xs.astype(np.float64)  # (S, B, d)
        pool += [xs[:, b] for b in range(xs.shape[1])]
    stream = np.concatenate(pool, axis=0)[:need]  # (trajectories * steps, d)
    return np.ascontiguousarray(stream.reshape(trajectories, steps, -1).transpose(1, 0, 2))


def training_gradient_table(model: Model, probe: ProbeInput, iteration: int) -> pd.DataFrame:
    """Rows (iter, layer, k, log10_dE_dh): the BPTT signal ||dE/dh_k|| of `model` on the probe sequence, at one
    iteration of training."""
    table = signal_table(model, probe, "")
    return pd.DataFrame({"iter": np.int64(iteration), "layer": table["layer"], "k": table["k"],
                         "log10_dE_dh": table["log10_dE_dh"]}, columns=list(GRADIENT_COLUMNS))


def spectra_table(when: str, layer: int, values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows (when, layer, kind, i, value): value i (from 0) of each named vector."""
    rows = [pd.DataFrame({"when": when, "layer": layer, "kind": kind, "i": np.arange(len(v), dtype=np.int64),
                          "value": np.asarray(v, dtype=np.float64)}, columns=list(SPECTRA_COLUMNS))
            for kind, v in values.items()]
    return pd.concat(rows, ignore_index=True)


def dynamics_numbers(model: Model, trace: Trace | None, drive: Drive | None, layer: int
                     ) -> tuple[dict, dict[str, np.ndarray]]:
    """({lyapunov, lyapunov_spread, meanfield_rate, meanfield_q, sigma_w, input_var}, {lyapunov: top-k exponents,
    lyapunov_spread: their spread}) of one layer along the driven trajectories; NaN without a drive."""
    if drive is None or trace is None:
        nan = math.nan
        return ({"lyapunov": nan, "lyapunov_spread": nan, "meanfield_rate": nan, "meanfield_q": nan,
                 "sigma_w": nan, "input_var": nan}, {})
    spectrum = lyapunov.spectrum_from_trace(model, trace, layer, k=drive.k, burn_in=drive.burn_in, xs=drive.xs)
    mf = meanfield.model_meanfield(model, trace, layer)
    numbers = {
        "lyapunov": float(spectrum.mean[0]),  # lambda_1: mean over the trajectories
        "lyapunov_spread": float(spectrum.spread[0]),  # max - min of lambda_1 over the trajectories
        "meanfield_rate": mf.rate,
        "meanfield_q": mf.q_star,
        "sigma_w": mf.sigma_w,
        "input_var": mf.input_var,
    }
    return numbers, {"lyapunov": spectrum.mean, "lyapunov_spread": spectrum.spread}


def spectrum_numbers(log_sigma: np.ndarray) -> dict:
    """The singular spectrum of dh_T/dh_0: its spread in decades over the resolved values, and how many are
    resolved (above jacobian.SPECTRUM_FLOOR of sigma_1; the spread is a lower bound when some are not)."""
    return {"spectrum_spread": jacobian.spectrum_spread_decades(log_sigma),
            "spectrum_resolved": int(np.isfinite(log_sigma).sum())}


def gap_decomposition(logmat: np.ndarray, product: np.ndarray, global_: np.ndarray, stepnorm: np.ndarray) -> dict:
    """The bound's gap split into its causes, each the mean over the pairs where all four logs are finite, in
    decades (means, so that the three parts add up to the mean gap global - measured; docs/math.md 4.6):
    global -> product (sup|phi'| against the realised max|phi'|: saturation), product -> step-norm (||W||_2 max|phi'|
    against ||diag(phi') W||_2), step-norm -> measured (the product of step norms against the norm of the product:
    alignment). NaN where no pair is finite."""
    ok = np.isfinite(logmat) & np.isfinite(product) & np.isfinite(global_) & np.isfinite(stepnorm)
    names = ("gap_global_to_product", "gap_product_to_stepnorm", "gap_stepnorm_to_measured")
    if not ok.any():
        return dict.fromkeys(names, math.nan)
    parts = (global_ - product, product - stepnorm, stepnorm - logmat)
    return {name: float(np.mean(part[ok]) / LN10) for name, part in zip(names, parts)}


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


def signal_table(model: Model, probe: ProbeInput, when: str) -> pd.DataFrame:
    """log10 ||dE/dh_k|| per layer for k = 0..T (-inf where the gradient is exactly zero)."""
    targets = probe.targets[:, None]  # (T, 1) or (T, 1, o): a batch of one
    _, _, signal, _ = loss_and_grads(model, probe.xs[:, None, :], targets, probe.mask[:, None], probe.loss_kind,
                                     probe.h0[:, None, :])
    with np.errstate(divide="ignore"):
        log10 = np.log10(signal)  # (L, T+1)
    L, K = log10.shape
    return pd.DataFrame({"when": when, "layer": np.repeat(np.arange(L), K), "k": np.tile(np.arange(K), L),
                         "log10_dE_dh": log10.ravel()}, columns=list(SIGNAL_COLUMNS))


def layer_numbers(model: Model, probe: ProbeInput, layer: int, logmat, product, global_, lyap: float,
                  cellmat: np.ndarray | None = None, stepnorm: np.ndarray | None = None) -> dict:
    """The scalar summary of one layer: realised norms, the bound's rate, the fitted slope, the power-iteration
    rate `lyap` on the probe sequence, the bound check (all three bounds) and the gap decomposition.

    For an LSTM: W_hh (4n, n) has no spectral radius and the cell no gamma_phi bound (NaN for both and for
    log_rate); slope_cell is the fitted slope of ||dc_t/dc_k|| (NaN for the vanilla cell), and the violations
    count both states against the product bound, the only bound defined for it."""
    gamma_w, rho = weight_numbers(model.W_hh(layer))
    with np.errstate(divide="ignore"):
        log_rate = float("nan") if model.cell in GATED_CELLS else float(np.log(gamma_w * model.act.gamma))
    violations = len(jacobian.bound_violations(logmat, product, global_, stepnorm=stepnorm))
    if cellmat is not None:
        violations += len(jacobian.bound_violations(cellmat, product, global_))
    return {
        "gamma_w": gamma_w,
        "gamma_x": float(jacobian.spectral_norm(model.params.get(f"W_xh_{layer}", model.params.get(f"W_ih_{layer}")))),
        "spectral_radius": rho,
        "log_rate": log_rate,  # log(gamma_W gamma_phi): the global bound's slope per step
        "slope": float(jacobian.decay_slope(logmat)),
        "slope_cell": float("nan") if cellmat is None else float(jacobian.decay_slope(cellmat)),
        # (1/T) log ||dh_T/dh_0 q_0|| on the probe's own sequence from h0, no burn-in: a finite-T estimate that
        # carries the transient; the Lyapunov exponent itself is `lyapunov`, from the driven trajectories
        "lyapunov_probe": float(lyap),
        "violations": violations,
        **(gap_decomposition(logmat, product, global_, stepnorm) if stepnorm is not None else {}),
    }


def weight_numbers(W: np.ndarray) -> tuple[float, float]:
    """(||W||_2, spectral radius) of a layer's recurrent matrix as measured; the radius is NaN for a W that is not
    square (an LSTM's (4n, n), a GRU's (3n, n))."""
    rho = float(jacobian.spectral_radius(W)) if W.shape[0] == W.shape[1] else float("nan")
    return float(jacobian.spectral_norm(W)), rho


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


PER_PROBE = ("gamma_w", "gamma_x", "spectral_radius", "log_rate", "slope", "slope_cell", "lyapunov", "lyapunov_spread",
             "lyapunov_probe", "meanfield_rate", "meanfield_q", "sigma_w", "input_var", "gap_global_to_product",
             "gap_product_to_stepnorm", "gap_stepnorm_to_measured", "spectrum_spread", "spectrum_resolved")


def summary_numbers(init: Probe, final: Probe) -> dict:
    """summary.json's probe part: the top layer's numbers at the top level, every layer's under `layers`."""
    layers = []
    for l, (a, b) in enumerate(zip(init.layers, final.layers)):
        row = {"layer": l}
        for name in PER_PROBE:
            row[f"{name}_init"], row[f"{name}_final"] = a.get(name, math.nan), b.get(name, math.nan)
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
        series_rows("by_lag/log10_bound_stepnorm_init", a["log_bound_stepnorm"].mean() / LN10),
        series_rows("by_k/log10_dE_dh", pd.Series(sig["log10_dE_dh"].to_numpy(), index=sig["k"].to_numpy())),
    ]
    if init.jacobian["log_norm_cell"].notna().any():  # an LSTM: the cell state's decay too
        parts += [series_rows("by_lag/log10_norm_cell_init", a["log_norm_cell"].mean() / LN10),
                  series_rows("by_lag/log10_norm_cell_final", b["log_norm_cell"].mean() / LN10)]
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
                       colorbar: bool = True):
    """Draw log10 ||dh_t/dh_k|| on the matplotlib axes `ax`: a (T+1, T+1) matrix indexed [t, k], t down the rows
    and k across; cells that are not finite (k >= t, NaN, -inf) are left blank. The colour scale is centred at 0
    (`centred_range`) and holds [vmin, vmax], by default this matrix's finite range; with `colorbar`, a colour bar
    beside `ax`. Returns the image (a colour bar built once can follow it: `Colorbar.update_normal`). The one
    heatmap drawing of the package: a run's figures/jacobian_heatmap.png and the report's heatmaps figure both come
    from here.

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
        axis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 5, 10], integer=True))
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=HEATMAP_LABEL)
    return image


def draw_heatmap(init: Probe, final: Probe, path: Path) -> None:
    """log10 ||dh_t/dh_k|| of the top layer, init and final side by side (PNG), each in its own colour range.

    Drawn on a bare `matplotlib.figure.Figure` with an Agg canvas rather than through pyplot: no global backend
    switch, no figure left open, safe in worker processes. No layout engine: it would triple the drawing time. The
    figure, its axes and colour bars are built once per process (`plots.reused`): building them cost most of the
    drawing."""
    fig, (axes, bars) = plots.reused(("heatmap",), _heatmap_figure)
    for ax, bar, probe in zip(axes, bars, (init, final)):
        image = draw_heatmap_panel(ax, probe.logmats[-1] / LN10, f"{probe.when}: layer {len(probe.logmats) - 1}",
                                   colorbar=False)
        bar.update_normal(image)
        plots.few_ticks(bar.ax.yaxis, 5)
    plots.save(fig, path)


def _heatmap_figure() -> tuple:
    """The two panels and their colour bars, placed as `Figure.colorbar(image, ax=panel)` places them."""
    from matplotlib.cm import ScalarMappable

    fig = plots.new_figure(10, 4.2)
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.12, top=0.9, wspace=0.25)
    axes = fig.subplots(1, 2)
    plots.fixed_titles(axes)
    bars = [fig.colorbar(ScalarMappable(cmap=HEATMAP_COLOURS), ax=ax, label=HEATMAP_LABEL) for ax in axes]
    return fig, (axes, bars)


def write_probe(folder: Path, model_init: Model, model_final: Model, probe: ProbeInput, init: Probe,
                final: Probe) -> None:
    """probe/{model_init,model_final}.npz, inputs.npy, h0.npy, jacobian.parquet, signal.parquet, spot_checks.parquet,
    spectra.parquet and figures/jacobian_heatmap.png under `folder` (a run folder being built)."""
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
    pd.concat([init.spectra, final.spectra], ignore_index=True).to_parquet(folder / "probe" / "spectra.parquet",
                                                                            index=False)
    draw_heatmap(init, final, folder / "figures" / "jacobian_heatmap.png")
