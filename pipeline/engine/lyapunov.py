"""Lyapunov exponents of one layer's state trajectory: the asymptotic rates of log ||dh_t/dh_k|| per step.

QR re-orthonormalisation (Benettin et al.): carry an orthonormal frame Q (n, k) along the trajectory,
Z = J_t Q, Z = Q' R, and average log |R_ii| over the steps. The frame never grows, so no lag overflows.
Step Jacobians come from `rnn.step_factors`: elman J_t = diag(D[t-1]) W, pascanu J_t = W diag(D[t-1]).
"""

from __future__ import annotations

import numpy as np

from .jacobian import check_factors
from .rnn import RNN, step_factors


def lyapunov_spectrum(
    model: RNN,
    xs: np.ndarray,
    h0: np.ndarray | None = None,
    layer: int = -1,
    k: int | None = None,
    discard: int = 0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The k largest Lyapunov exponents (natural log per step), descending; k = None gives all n.

    xs (T, d) drives the network from h0 (L, n) (zeros if None). The first `discard` steps move the frame but
    are not averaged (a transient). The starting frame is a random orthonormal (n, k) from `rng`
    (default: a fixed seed, so the result is deterministic). An exponent is -inf when the frame is
    annihilated (e.g. every unit's phi' = 0 at some step).
    """
    W, D = step_factors(model, xs, h0, layer)
    return spectrum_from_factors(W, D, model.form, k=k, discard=discard, rng=rng)


def top_lyapunov(
    model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1, discard: int = 0
) -> float:
    """The largest Lyapunov exponent (natural log per step): lyapunov_spectrum with k = 1."""
    return float(lyapunov_spectrum(model, xs, h0, layer, k=1, discard=discard)[0])


def top_lyapunov_from_steps(J: np.ndarray, discard: int = 0) -> float:
    """The largest Lyapunov exponent from dense step Jacobians J (T, m, m) (an LSTM's, `lstm.step_jacobians`):
    the same QR iteration as `spectrum_from_factors` with a frame of one vector, so log ||J_t q|| averaged."""
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 3 or J.shape[1] != J.shape[2] or J.shape[0] < 1:
        raise ValueError(f"J must have shape (T, m, m) with T >= 1, got {J.shape}")
    if not 0 <= discard < J.shape[0]:
        raise ValueError(f"discard must be in [0, {J.shape[0] - 1}], got {discard}")
    if not np.all(np.isfinite(J)):
        return float("nan")
    q = np.random.default_rng(0).standard_normal(J.shape[1])
    q /= np.linalg.norm(q)
    total = 0.0
    for t, step in enumerate(J):
        z = step @ q
        size = np.linalg.norm(z)
        if size == 0:
            return float("-inf")
        q = z / size
        if t >= discard:
            total += np.log(size)
    return float(total / (J.shape[0] - discard))


def spectrum_from_factors(
    W: np.ndarray, D: np.ndarray, form: str, k: int | None = None, discard: int = 0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """`lyapunov_spectrum` from step factors W (n, n) and D (T, n)."""
    W, D = check_factors(W, D, form)
    T, n = D.shape
    k = n if k is None else k
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the number of hidden units), got {k}")
    if not 0 <= discard < T:
        raise ValueError(f"discard must be in [0, {T - 1}] (fewer than the T = {T} steps), got {discard}")
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(D))):
        return np.full(k, np.nan)  # the weights or the state diverged: the frame would be NaN
    rng = np.random.default_rng(0) if rng is None else rng
    Q = np.linalg.qr(rng.standard_normal((n, k)))[0]  # (n, k) orthonormal frame
    log_growth = np.zeros(k)  # sum over counted steps of log |R_ii|
    for t in range(T):
        d = D[t]  # step t + 1
        Z = d[:, None] * (W @ Q) if form == "elman" else W @ (d[:, None] * Q)  # (n, k) = J Q
        Q, R = np.linalg.qr(Z)
        if t >= discard:
            with np.errstate(divide="ignore"):
                log_growth += np.log(np.abs(np.diagonal(R)))
    return np.sort(log_growth / (T - discard))[::-1]
