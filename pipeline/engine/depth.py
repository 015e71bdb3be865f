"""Jacobians across layers and time of a stacked vanilla RNN and their bounds (docs/math.md, sections 3.7 and 4.7):
log ||dh^L_t/dh^l_k||_2 for every source layer l <= L and pair k <= t, the depth chain dh^L_t/dh^l_t among them.

dh^L_t/dh^l_k is the sum over the monotone paths of the (time, layer) grid from node (l, k) to node (L, t) of the
products of their edge Jacobians (`gridpairs`, which computes all pairs lag by lag); each bound sums, over the same
paths, products of one bound per edge: its own norm, ||W||_2 max|phi'|, or gamma_W gamma_phi and gamma_X gamma_phi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gridpairs import GridFactors, log_norms_of_grid, path_log_sums
from .rnn import RNN, check_inputs, forward, is_token_ids, validate_model


@dataclass(frozen=True)
class GridBounds:
    """Bounds on every [l, t, k] of `log_norm_grid`, natural log, each a sum over paths of per-edge bounds."""

    stepnorm: np.ndarray  # per edge its own norm ||H||_2, ||V||_2
    product: np.ndarray  # per edge ||W||_2 max|phi'| (pascanu vertical: ||W_xh||_2)
    global_: np.ndarray  # per edge gamma_W gamma_phi, gamma_X gamma_phi (pascanu vertical: gamma_X)


def check_layers(model: RNN, layer: int, source_layer: int) -> tuple[int, int]:
    """(top, source) as indices 0..L-1; ValueError unless both are layers of `model` and source <= top."""
    L = model.layers
    for name, value in (("layer", layer), ("source_layer", source_layer)):
        if not -L <= value < L:
            raise ValueError(f"{name} must be in [{-L}, {L - 1}], got {value}")
    top, source = layer % L, source_layer % L
    if source > top:
        raise ValueError(f"source_layer {source_layer} lies above layer {layer}: a layer's state does not depend on "
                         f"the states of the layers above it; valid: source_layer <= layer")
    return top, source


def grid_factors(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1) -> GridFactors:
    """The edge factors of layers 0..`layer` on one sequence xs (T, d) (or (T,) token ids) from h0 (L, n)."""
    validate_model(model)
    top, _ = check_layers(model, layer, 0)
    xs, h0 = check_inputs(model, xs, h0, batched=False)
    batched = xs[:, None] if is_token_ids(xs) else xs[:, None, :]
    trace = forward(model, batched, h0[:, None, :])
    p = model.params
    d = np.stack([trace.d[l][:, 0, :] for l in range(top + 1)])  # (top+1, T, n)
    return GridFactors(model.form, [p[f"W_hh_{l}"] for l in range(top + 1)], [p[f"W_xh_{l}"] for l in range(top + 1)],
                       d, d if model.form == "elman" else np.ones_like(d), model.act.gamma)


# ---- all pairs ------------------------------------------------------------------------------------------------


def cross_layer_log_norms(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1,
                          source_layer: int = -1) -> np.ndarray:
    """(T+1, T+1): [t, k] = log ||dh^layer_t/dh^source_layer_k||_2 for k <= t (k < t within one layer), NaN elsewhere
    and at [0, 0]. `jacobian.log_norm_matrix(..., source_layer=)` is this."""
    top, source = check_layers(model, layer, source_layer)
    return log_norm_grid(model, xs, h0, top, lowest=source)[source]


def log_norm_grid(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1, lowest: int = 0,
                  stats: dict | None = None) -> np.ndarray:
    """(top+1, T+1, T+1) float64: [l, t, k] = log ||dh^top_t/dh^l_k||_2 of every source layer l >= `lowest` (NaN
    below it), top = `layer`. Defined for k <= t, t >= 1 when l < top and for k < t when l = top; NaN elsewhere."""
    return log_norms_of_grid(grid_factors(model, xs, h0, layer), lowest, stats=stats)


# ---- the bounds: sums over paths of per-edge bounds ---------------------------------------------------------------


def log_bound_grid(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1) -> GridBounds:
    """The three bounds of every pair of `log_norm_grid` (docs/math.md 4.7)."""
    return log_bounds_from_factors(grid_factors(model, xs, h0, layer))


def log_bounds_from_factors(F: GridFactors) -> GridBounds:
    """`log_bound_grid` from the edge factors: per edge a bound, summed over paths by `path_log_sums`. The vertical
    edge's diagonal v is phi' (elman, at most gamma_phi) or 1 (pascanu)."""
    top, T = F.top, F.steps
    sup_v = F.gamma_phi if F.form == "elman" else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_w = np.log([_norm2(W) for W in F.W])[:, None]  # (top+1, 1)
        log_x = np.log([_norm2(U) for U in F.U])[:, None]
        log_d, log_v = (np.log(np.max(np.abs(D), axis=2)) for D in (F.d, F.v))  # (top+1, T); +inf made NaN below
        product = (log_w + log_d, log_x + log_v)
        global_ = (np.broadcast_to(log_w + np.log(F.gamma_phi), (top + 1, T)),
                   np.broadcast_to(log_x + np.log(sup_v), (top + 1, T)))
        stepnorm = _edge_log_norms(F)
    sums = [path_log_sums(*(np.where(np.isposinf(e), np.nan, e) for e in edges), top)
            for edges in (stepnorm, product, global_)]
    return GridBounds(*sums)


def _norm2(M: np.ndarray) -> float:
    """||M||_2; NaN when M is not finite."""
    return float(np.linalg.norm(M, 2)) if np.all(np.isfinite(M)) else float("nan")


def _edge_log_norms(F: GridFactors) -> tuple[np.ndarray, np.ndarray]:
    """(log ||H(l, s)||_2, log ||V(l, s)||_2), each (top+1, T), by exact SVD (NaN where not finite; row 0 of the
    vertical unused and NaN-free)."""
    top, T = F.top, F.steps
    h, v = np.full((top + 1, T), np.nan), np.zeros((top + 1, T))
    for l in range(top + 1):
        d = F.d[l]  # (T, n)
        H = d[:, :, None] * F.W[l] if F.form == "elman" else F.W[l] * d[:, None, :]
        h[l] = _log_norms(H)
        if l > 0:
            v[l] = _log_norms(F.v[l][:, :, None] * F.U[l])
    return h, v


def _log_norms(stack: np.ndarray) -> np.ndarray:
    """log ||M||_2 of every matrix of a stack (m, n, n): exact, NaN for a non-finite one, -inf for a zero one."""
    out = np.full(stack.shape[0], np.nan)
    finite = np.all(np.isfinite(stack), axis=(1, 2))
    if finite.any():
        with np.errstate(divide="ignore"):
            out[finite] = np.log(np.linalg.svd(stack[finite], compute_uv=False)[:, 0])
    return out
