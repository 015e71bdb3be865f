"""An independent spot check of log ||dh_t/dh_k||_2: the Jacobian recomputed from the forward map alone.

`jacobian.log_norm_matrix` multiplies step Jacobians built from phi' (`rnn.step_factors`), and the bounds it is
checked against are built from the same phi' values: a wrong phi' or a shifted time index would cancel out of the
bound check. This module never touches phi'. It perturbs the state and runs the layer's own step equation

    elman:   h_s = phi(W_hh h_{s-1} + W_xh x_s + b_h)      pascanu: h_s = W_hh phi(h_{s-1}) + W_xh x_s + b_h

(with phi only) from the forward pass's states, and differentiates numerically (docs/math.md, section 4.5). For an
LSTM the state is (h, c) and the step is the cell's own equation (sigmoid and tanh only, never
`lstm.step_jacobians`): the check is of the norms of state "full"; for a GRU the state is h and the step is
`gru.step`, never `gru.step_jacobians`. An expRNN is checked as the vanilla RNN it computes.

- forward mode: V_k = I, V_s = J_s V_{s-1} for s = k+1..t, so V_t = dh_t/dh_k; each product J_s V is taken by
  central differences of one step along the (normalised) columns of V, with Richardson extrapolation over the
  steps h and h/2. V is renormalised after every step and its log scale carried, so a product of any magnitude
  is resolved (no underflow or overflow of the perturbation, unlike differencing the whole map h_k -> h_t);
- every pair with the same k comes from one run that records each t it needs, and all runs advance together:
  at each step one batched evaluation of the step equation on 4 perturbations of every direction of every run;
- ||V_t||_2 by SVD.

The states are those of `rnn.forward` (whose phi' output is not used): the same trajectory the probe measured. A
forward pass of its own with different rounding would drift away from it in a chaotic network.

Where finite differences cannot resolve a pair, it is reported as unresolved (NaN), never as agreement: a state or
step that is not finite, a product that differences to exactly zero, or a per-step error estimate that adds up to
more than SPOT_RESOLVE. The estimate compares the two central differences (a kink of relu, leaky_relu or hard_tanh
straddled by one of them) and the one-sided differences (a kink exactly at the state).

Pure numpy, no random state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import gru
from .cells import as_vanilla, forward
from .lstm import LSTM, sigmoid
from .rnn import RNN, is_token_ids

SPOT_PAIRS = 16  # pairs per probe and layer (fewer only when the sequence has fewer)
SPOT_STEP = 1e-5  # difference step relative to max(1, max |h_{s-1}|): rounding ~1e-11 per step, truncation below
# that after Richardson, and kinks (relu & co.) are rarely straddled; a larger step straddles more, a smaller one rounds
# more
SPOT_RESOLVE = 1e-5  # a pair whose accumulated relative error estimate exceeds this is unresolved (the estimate is
# dominated by rounding and sits about 100 times above the error actually found against log_norm_matrix)
SPOT_TOLERANCE = 1e-4  # |log_norm - log_norm_fd| (nats) above this is a mismatch: ten times what SPOT_RESOLVE admits
_OFFSETS = np.array([1.0, -1.0, 0.5, -0.5])  # the perturbations, in units of the step


@dataclass(frozen=True)
class SpotCheck:
    """log ||dh_t/dh_k||_2 by finite differences for a list of pairs of one layer."""

    t: np.ndarray  # (m,) int
    k: np.ndarray  # (m,) int, k < t
    log_norm: np.ndarray  # (m,) natural log; NaN where unresolved
    error: np.ndarray  # (m,) accumulated relative error estimate of the product (inf where unresolved)


def spot_pairs(T: int, count: int = SPOT_PAIRS) -> np.ndarray:
    """(m, 2) int pairs [t, k] with 0 <= k < t <= T, m = min(count, T (T + 1) / 2), sorted by k then t.

    Half the pairs are the k = 0 row at evenly spread t (lags 1..T, always the longest lag (T, 0)), a quarter each
    start at k = T // 3 and 2T // 3 with evenly spread t up to T. Three starting points keep the cost at about 2T
    steps of forward mode. Short sequences are topped up from the remaining pairs in order."""
    if T < 1:
        raise ValueError(f"a spot check needs T >= 1 steps, got {T}")
    every = [(t, k) for k in range(T) for t in range(k + 1, T + 1)]
    if len(every) <= count:
        return np.array(every, dtype=np.int64).reshape(-1, 2)
    half, quarter = count // 2, count // 4
    chosen: dict[tuple[int, int], None] = {(T, 0): None}
    for k, c in ((0, half), (T // 3, quarter), (2 * T // 3, count - half - quarter)):
        for t in np.round(np.linspace(k + 1, T, c)).astype(int):
            chosen.setdefault((int(t), k), None)
    starts = {k for _, k in chosen}
    for t, k in sorted(every, key=lambda p: (p[1] not in starts, p[1], -p[0])):
        if len(chosen) >= count:
            break
        chosen.setdefault((t, k), None)
    return np.array(sorted(chosen, key=lambda p: (p[1], p[0])), dtype=np.int64)


def spot_log_norms(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1,
                   pairs: np.ndarray | None = None, step: float = SPOT_STEP) -> SpotCheck:
    """Finite-difference log ||dh_t/dh_k||_2 of `layer` for `pairs` (m, 2) [t, k] (default: spot_pairs(T)).

    xs (T, d) or (T,) token ids is one sequence, h0 (L, n) the initial states (zeros if None), as for
    `jacobian.log_norm_matrix`."""
    model = as_vanilla(model)
    xs = np.asarray(xs)
    batched_xs = xs[:, None] if is_token_ids(xs) else np.asarray(xs, dtype=np.float64)[:, None, :]
    batched_h0 = None if h0 is None else np.asarray(h0, dtype=np.float64)[:, None, :]
    trace = forward(model, batched_xs, batched_h0)
    if not -model.layers <= layer < model.layers:
        raise ValueError(f"layer must be in [{-model.layers}, {model.layers - 1}], got {layer}")
    l = layer % model.layers
    states = np.array(trace.h[l][:, 0, :])  # (T+1, n); an LSTM's state is (h, c): (T+1, 2n)
    if isinstance(model, LSTM):
        states = np.concatenate([states, trace.c[l][:, 0, :]], axis=1)
    drive = _input_drive(model, l, trace.inputs[l])
    T = drive.shape[0]
    pairs = spot_pairs(T) if pairs is None else np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    t, k = pairs[:, 0], pairs[:, 1]
    if pairs.size and not (np.all(0 <= k) and np.all(k < t) and np.all(t <= T)):
        raise ValueError(f"pairs must satisfy 0 <= k < t <= T = {T}")
    log_norm, error = _forward_mode(model, l, states, drive, t, k, step)
    unresolved = ~(error <= SPOT_RESOLVE)
    log_norm[unresolved] = np.nan
    error[unresolved] = np.inf
    return SpotCheck(t.copy(), k.copy(), log_norm, error)


def _input_drive(model: RNN, layer: int, inputs: np.ndarray) -> np.ndarray:
    """(T, n) W_xh x_s + b_h of `layer` from what it read in the forward pass ((T, 1) ids or (T, 1, d) vectors);
    an LSTM's (T, 4n) W_ih x_s + b, a GRU's (T, 3n) W_ih x_s + b_ih."""
    if isinstance(model, LSTM):
        U, b = model.params[f"W_ih_{layer}"], model.params[f"b_{layer}"]
    elif isinstance(model, gru.GRU):
        U, b = model.params[f"W_ih_{layer}"], model.params[f"b_ih_{layer}"]
    else:
        U, b = model.params[f"W_xh_{layer}"], model.params[f"b_h_{layer}"]
    if inputs.ndim == 2:  # token ids stand for one-hot vectors: W_xh one_hot(id) is column `id` of W_xh
        return U[:, inputs[:, 0]].T + b
    return inputs[:, 0, :] @ U.T + b


def _step(model: RNN | LSTM | gru.GRU, W: np.ndarray, drive: np.ndarray, z: np.ndarray, layer: int) -> np.ndarray:
    """The layer's step equation on rows z (r, n) with the input drive of that step (n,): only phi, no phi'.
    An LSTM's rows are states (h, c) (r, 2n), its drive (4n,), and it returns the next (h, c); a GRU's drive is
    (3n,) and its step adds the layer's hidden bias b_hh."""
    if isinstance(model, gru.GRU):
        return gru.step(W, model.params[f"b_hh_{layer}"], drive, z)
    if isinstance(model, LSTM):
        n = W.shape[1]
        a = z[:, :n] @ W.T + drive
        i, f, o = sigmoid(a[:, :n]), sigmoid(a[:, n : 2 * n]), sigmoid(a[:, 3 * n :])
        c = f * z[:, n:] + i * np.tanh(a[:, 2 * n : 3 * n])
        return np.concatenate([o * np.tanh(c), c], axis=1)
    phi = model.act.phi
    if model.form == "elman":
        return phi(z @ W.T + drive)
    return phi(z) @ W.T + drive


def _forward_mode(model: RNN, layer: int, states: np.ndarray, drive: np.ndarray, t: np.ndarray, k: np.ndarray,
                  step: float) -> tuple[np.ndarray, np.ndarray]:
    """(log ||V_t||_2, error estimate) per pair; error is inf where the run could not resolve the pair."""
    W, n = model.W_hh(layer), states.shape[1]
    starts = np.unique(k)
    ends = np.array([t[k == s].max() for s in starts])
    R = len(starts)
    V = np.zeros((R, n, n))  # rows are the directions: V[r] = (dh_s/dh_k)^T / exp(scale[r])
    scale, err = np.zeros(R), np.zeros(R)
    alive = np.ones(R, dtype=bool)
    held: list[np.ndarray] = []  # a copy of V for each pair, in `recorded` order
    recorded, recorded_scale, recorded_err = [], [], []
    for s in range(1, int(ends.max(initial=0)) + 1):
        active = np.flatnonzero((starts < s) & (ends >= s) & alive)
        if active.size == 0:
            continue
        V[active[starts[active] == s - 1]] = np.eye(n)
        x = states[s - 1]
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(drive[s - 1]))):
            alive[active] = False
            continue
        new, e = _one_step(model, layer, W, drive[s - 1], x, V[active], step)
        size = np.max(np.abs(new), axis=(1, 2))
        ok = np.isfinite(size) & (size > 0) & np.isfinite(e)
        alive[active[~ok]] = False
        active, new, size, e = active[ok], new[ok], size[ok], e[ok]
        V[active] = new / size[:, None, None]
        scale[active] += np.log(size)
        err[active] += e
        for r in active:
            for i in np.flatnonzero((k == starts[r]) & (t == s)):
                held.append(V[r].copy())
                recorded.append(i)
                recorded_scale.append(scale[r])
                recorded_err.append(err[r])
    log_norm, error = np.full(len(t), np.nan), np.full(len(t), np.inf)
    if recorded:
        sigma = np.linalg.svd(np.stack(held), compute_uv=False)[:, 0]
        log_norm[recorded] = np.log(sigma) + np.array(recorded_scale)
        error[recorded] = recorded_err
    return log_norm, error


def _one_step(model: RNN, layer: int, W: np.ndarray, drive: np.ndarray, x: np.ndarray, V: np.ndarray, step: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """J_s V for a stack V (r, n, n) of direction rows, by central differences of the step equation at the state x
    with Richardson extrapolation; and each product's relative error estimate (r,).

    Each row v is normalised to u = v / |v| and differenced at x +- h u and x +- h/2 u (h = step * max(1, max|x|)):
    C(h) = (F(h) - F(-h)) / 2h, Richardson (4 C(h/2) - C(h)) / 3. The estimate adds |C(h) - C(h/2)| (small for a
    smooth phi, O(1) where a kink lies between the two steps) and |Delta(h) - 2 Delta(h/2)| with the one-sided
    mismatch Delta(h) = (F(h) - 2 F(0) + F(-h)) / h (O(h^3) for a smooth phi, the jump at a kink exactly at x)."""
    r, n, _ = V.shape
    norms = np.sqrt(np.einsum("rij,rij->ri", V, V))  # (r, n)
    U = V / np.where(norms > 0, norms, 1.0)[..., None]
    h = step * max(1.0, float(np.max(np.abs(x))))
    z = np.empty((4 * r * n + 1, n))
    np.multiply(_OFFSETS[:, None, None, None] * h, U[None], out=z[:-1].reshape(4, r, n, n))
    z[:-1] += x
    z[-1] = x
    with np.errstate(all="ignore"):  # an exploding state overflows; the estimate below turns it into "unresolved"
        F = _step(model, W, drive, z, layer)
        f0, F = F[-1], F[:-1].reshape(4, r, n, n)
        wide, narrow = (F[0] - F[1]) / (2 * h), (F[2] - F[3]) / h
        product = (4.0 * narrow - wide) / 3.0 * norms[..., None]
        kink = ((F[0] - 2 * f0 + F[1]) - 4.0 * (F[2] - 2 * f0 + F[3])) / h
        estimate = (np.linalg.norm(((wide - narrow) * norms[..., None]).reshape(r, -1), axis=1)
                    + np.linalg.norm((kink * norms[..., None]).reshape(r, -1), axis=1))
        e = estimate / np.linalg.norm(product.reshape(r, -1), axis=1)
    return product, np.where(np.isfinite(e), e, np.inf)


def summarize(abs_dlog: np.ndarray) -> dict[str, float]:
    """Spot checks (|log_norm - log_norm_fd| per pair, NaN where skipped) reduced: pairs checked and skipped, pairs
    that disagree by more than SPOT_TOLERANCE (inf: the probe says zero, the differences do not), and the largest
    difference in nats (NaN when no pair was checked)."""
    gap = np.asarray(abs_dlog, dtype=np.float64)
    checked = ~np.isnan(gap)
    return {"spot_checks": int(checked.sum()), "spot_skipped": int((~checked).sum()),
            "spot_mismatches": int((gap[checked] > SPOT_TOLERANCE).sum()),
            "spot_max_abs_dlog": float(gap[checked].max()) if checked.any() else float("nan")}
