"""An independent spot check of the norms across layers, log ||dh^top_t/dh^l_k||_2 (docs/math.md, section 4.8).

`depth.log_norm_grid` multiplies edge Jacobians built from phi' (`rnn.forward`'s D), and its bounds are built from
the same phi': a wrong vertical factor (phi' dropped, or taken at the wrong step) would cancel out of the bound
check. This module never touches phi'. From the states of the forward pass, it differentiates each layer's own
step equation as a function of both the states it reads,

    elman:   F(z, y) = phi(W_hh z + W_xh y + b_h)      pascanu: F(z, y) = W_hh phi(z) + W_xh y + b_h

(z the layer's previous state, y the state of the layer below at the same step), along both directions at once:
forward mode through the (time, layer) grid from the source node (l, k),

    V(l, k) = I,   V(j, k) = D_y F . V(j-1, k)  (k >= 1),   V(j, s) = D F . (V(j, s-1), V(j-1, s))  (s > k),

each directional derivative by central differences with Richardson extrapolation, as `spotcheck` does within a
layer (its step, resolution and tolerance); every V is divided by its largest entry after each node, its log scale
carried apart. ||V(top, t)||_2 by SVD. No vertical edge leaves step 0: from k = 0 the layers above l start at 0. A
node that differences to exactly zero (all its units flat: relu below 0, or saturated beyond what differences
resolve) passes nothing on, so only the paths through it drop out; a pair none of whose paths survive is unresolved,
as are pairs through a non-finite state or with an accumulated error estimate above `spotcheck.SPOT_RESOLVE`.
Pure numpy, no random state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import forward
from .rnn import RNN, check_inputs, is_token_ids, validate_model
from .spotcheck import SPOT_RESOLVE, SPOT_STEP, _OFFSETS


@dataclass(frozen=True)
class CrossSpot:
    """log ||dh^top_t/dh^source_k||_2 by finite differences for a list of (source, t, k)."""

    source: np.ndarray  # (m,) int, source layer < top
    t: np.ndarray  # (m,) int
    k: np.ndarray  # (m,) int, k <= t, t >= 1
    log_norm: np.ndarray  # (m,) natural log; NaN where unresolved
    error: np.ndarray  # (m,) accumulated relative error estimate (inf where unresolved)


def cross_spot_pairs(T: int) -> np.ndarray:
    """(m, 2) pairs [t, k] per source layer: the longest lag (T, 0), half of it from 0, (T, T // 2), and the depth
    chain t = k at T // 2 and at T; fewer when T is short (duplicates dropped), sorted by k then t."""
    if T < 1:
        raise ValueError(f"a spot check needs T >= 1 steps, got {T}")
    half = max(1, T // 2)
    chosen = {(T, 0), (half, 0), (T, half), (half, half), (T, T)}
    return np.array(sorted(chosen, key=lambda p: (p[1], p[0])), dtype=np.int64)


def cross_spot_sources(top: int) -> list[int]:
    """The source layers checked below layer `top`: the input layer, the middle one and the one just below the top
    (every layer below a top of 3 or less). The cost of a source grows with the layers above it."""
    return sorted({0, top // 2, top - 1}) if top > 0 else []


def spot_cross_layer(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1,
                     pairs: np.ndarray | None = None, sources: list[int] | None = None,
                     step: float = SPOT_STEP) -> CrossSpot:
    """Finite-difference log ||dh^layer_t/dh^l_k||_2 for the source layers `sources` (default: cross_spot_sources)
    below `layer` and `pairs` (m, 2) [t, k] (default: cross_spot_pairs(T)); xs (T, d) or (T,) token ids and h0 (L, n)
    as for `depth.log_norm_grid`."""
    validate_model(model)
    if not -model.layers <= layer < model.layers:
        raise ValueError(f"layer must be in [{-model.layers}, {model.layers - 1}], got {layer}")
    xs, h0 = check_inputs(model, xs, h0, batched=False)
    trace = forward(model, xs[:, None] if is_token_ids(xs) else xs[:, None, :], h0[:, None, :])
    top = layer % model.layers
    states = [np.array(trace.h[j][:, 0, :]) for j in range(top + 1)]  # (T+1, n) per layer
    T = states[0].shape[0] - 1
    pairs = cross_spot_pairs(T) if pairs is None else np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and not (np.all(pairs[:, 1] <= pairs[:, 0]) and np.all(pairs[:, 1] >= 0)
                           and np.all((pairs[:, 0] >= 1) & (pairs[:, 0] <= T))):
        raise ValueError(f"pairs must satisfy 0 <= k <= t, 1 <= t <= T = {T}")
    sources = cross_spot_sources(top) if sources is None else list(sources)
    if any(not 0 <= l < top for l in sources):
        raise ValueError(f"sources must be layers below layer {top}, got {sources}")
    rows = []
    for source in sources:
        for k in np.unique(pairs[:, 1]):
            targets = pairs[pairs[:, 1] == k, 0]
            found = _grid_forward(model, states, trace.inputs[0][:, 0], top, source, int(k), set(targets.tolist()),
                                  step)
            rows += [(source, t, int(k), *found.get(int(t), (np.nan, np.inf))) for t in targets]
    source, t, k, log_norm, error = (np.array(c) for c in zip(*rows)) if rows else [np.zeros(0)] * 5
    unresolved = ~(np.asarray(error, dtype=np.float64) <= SPOT_RESOLVE)
    log_norm = np.where(unresolved, np.nan, log_norm).astype(np.float64)
    error = np.where(unresolved, np.inf, error).astype(np.float64)
    return CrossSpot(source.astype(np.int64), t.astype(np.int64), k.astype(np.int64), log_norm, error)


@dataclass
class _Direction:
    """dh^j_s/dh^source_k as rows (one per direction of the source state) / exp(scale), with an error estimate."""

    V: np.ndarray  # (n, n)
    scale: float
    error: float


def _grid_forward(model: RNN, states: list[np.ndarray], inputs: np.ndarray, top: int, source: int, k: int,
                  targets: set[int], step: float) -> dict[int, tuple[float, float]]:
    """{t: (log ||dh^top_t/dh^source_k||_2, error)} for the targets a run from (source, k) resolved."""
    n, found = states[0].shape[1], {}
    last: dict[int, _Direction | None] = {}
    for s in range(k, max(targets) + 1):
        this: dict[int, _Direction | None] = {}
        for j in range(source, top + 1):
            if (j, s) == (source, k):
                this[j] = _Direction(np.eye(n), 0.0, 0.0)
                continue
            along = last.get(j) if s > k else None  # the horizontal input: this layer at s - 1
            below = this.get(j - 1) if j > source and s >= 1 else None  # the vertical input: layer j - 1 at s
            this[j] = _node(model, j, s, states, inputs, along, below, step)
        if s in targets and this.get(top) is not None and np.isfinite(this[top].error):
            sigma = np.linalg.svd(this[top].V, compute_uv=False)[0]
            found[s] = (this[top].scale + np.log(sigma), this[top].error) if sigma > 0 else (np.nan, np.inf)
        last = this
    return found


def _node(model: RNN, j: int, s: int, states, inputs, along: _Direction | None, below: _Direction | None,
          step: float) -> _Direction | None:
    """Node (j, s)'s derivative from its two inputs' (None: no dependence) by one joint central difference of
    layer j's step equation at its forward-pass arguments; an unresolved node has error inf."""
    if along is None and below is None:
        return None
    if any(d is not None and not np.isfinite(d.error) for d in (along, below)):
        return _Direction(np.zeros((states[0].shape[1],) * 2), 0.0, np.inf)
    n = states[0].shape[1]
    scales = [d.scale for d in (along, below) if d is not None]
    top = max(scales)
    u = along.V * np.exp(along.scale - top) if along is not None else np.zeros((n, n))  # (dirs, n)
    w = below.V * np.exp(below.scale - top) if below is not None else np.zeros((n, n))
    z, y = states[j][s - 1], states[j - 1][s] if j > 0 else inputs[s - 1]
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(y))):
        return _Direction(np.zeros((n, n)), 0.0, np.inf)
    product, error = _joint_difference(model, j, z, y, u, w, step)
    size = np.max(np.abs(product))
    if size == 0:  # every unit flat here (relu below 0, or saturated beyond what differences see): passes nothing on
        return None
    if not (np.isfinite(size) and np.isfinite(error)):
        return _Direction(np.zeros((n, n)), 0.0, np.inf)
    inherited = max(d.error for d in (along, below) if d is not None)
    return _Direction(product / size, top + float(np.log(size)), inherited + error)


def _joint_difference(model: RNN, j: int, z: np.ndarray, y: np.ndarray, u: np.ndarray, w: np.ndarray,
                      step: float) -> tuple[np.ndarray, float]:
    """Rows r of (D_z F u_r + D_y F w_r) (dirs, n) by central differences of F along the joint unit direction
    (u_r, w_r) / |(u_r, w_r)| at steps h and h/2, Richardson-extrapolated; and the relative error estimate of
    `spotcheck._one_step` (the two central differences against each other, and the one-sided mismatch)."""
    p = model.params
    W, U, b = p[f"W_hh_{j}"], p[f"W_xh_{j}"], p[f"b_h_{j}"]
    norms = np.sqrt(np.einsum("rn,rn->r", u, u) + np.einsum("rn,rn->r", w, w))  # (dirs,)
    safe = np.where(norms > 0, norms, 1.0)[:, None]
    h = step * max(1.0, float(np.max(np.abs(z))), float(np.max(np.abs(y))) if j > 0 else 1.0)
    offsets = _OFFSETS[:, None, None] * h  # (4, 1, 1)
    zs = np.concatenate([(z + offsets * (u / safe)[None]).reshape(-1, z.size), z[None]])  # (4 dirs + 1, n)
    ys = np.concatenate([(y + offsets * (w / safe)[None]).reshape(-1, w.shape[1]), y[None]]) if j > 0 else \
        np.broadcast_to(y, (zs.shape[0], y.size))
    with np.errstate(all="ignore"):  # an exploding state overflows; the estimate below makes it unresolved
        drive = (ys @ U.T if j > 0 else np.broadcast_to(U @ y if y.ndim else U[:, y], (zs.shape[0], W.shape[0]))) + b
        F = model.act.phi(zs @ W.T + drive) if model.form == "elman" else model.act.phi(zs) @ W.T + drive
        f0, F = F[-1], F[:-1].reshape(4, u.shape[0], -1)
        wide, narrow = (F[0] - F[1]) / (2 * h), (F[2] - F[3]) / h
        product = (4.0 * narrow - wide) / 3.0 * norms[:, None]
        kink = ((F[0] - 2 * f0 + F[1]) - 4.0 * (F[2] - 2 * f0 + F[3])) / h
        estimate = np.linalg.norm((wide - narrow) * norms[:, None]) + np.linalg.norm(kink * norms[:, None])
        error = estimate / np.linalg.norm(product)
    return product, float(error) if np.isfinite(error) else float("inf")
