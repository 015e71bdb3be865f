"""Lyapunov exponents of one layer's state trajectory: the asymptotic rates of log ||dh_t/dh_k|| per step.

QR re-orthonormalisation (Benettin et al.): carry an orthonormal frame Q (n, k) along the trajectory,
Z = J_t Q, Z = Q' R, and average log |R_ii| over the steps. The frame never grows, so no lag overflows.
Step Jacobians come from `rnn.step_factors`: elman J_t = diag(D[t-1]) W, pascanu J_t = W diag(D[t-1]).

`lyapunov_spectrum` measures along one given sequence (from its start, as the Jacobian probe sees it); the
estimate of the exponents themselves is `driven_spectrum`: a burn-in, a long measurement and several seeded
trajectories driven by inputs from the task's distribution, all advanced in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .jacobian import check_factors
from .rnn import RNN, Trace, forward, step_factors
from .scaled import SCALABLE, scaled_factors


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


# ---- the top k exponents from driven trajectories, with their spread -------------------------------------------

BURN_IN = 200  # steps a driven trajectory runs before its exponents are averaged: the transient from h0 and Q_0
MEASURE_STEPS = 1000  # steps averaged after the burn-in
TRAJECTORIES = 2  # independent driven trajectories; their spread says how far one estimate can be trusted
TOP_K = 4  # exponents estimated (at most 8 by convention, at most n)
QR_EVERY = 4  # steps between re-orthonormalisations: the frame's columns may drift apart by at most
# exp(QR_EVERY (lambda_1 - lambda_k)) in between, far inside float64 for rates of a few nats per step


@dataclass(frozen=True)
class DrivenSpectrum:
    """The top k Lyapunov exponents of one layer, from B driven trajectories (natural log per step)."""

    per_trajectory: np.ndarray  # (B, k), each row descending
    mean: np.ndarray  # (k,) mean over the trajectories
    spread: np.ndarray  # (k,) max - min over the trajectories
    burn_in: int  # steps not averaged
    steps: int  # steps averaged


def spectra_from_factors(
    W: np.ndarray, D: np.ndarray, form: str, k: int = TOP_K, burn_in: int = BURN_IN, qr_every: int = QR_EVERY,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """(B, k): the k largest exponents of each of B trajectories with step factors W (n, n) and D (T, B, n).

    All trajectories advance together: one batched product W Q_b per step and one batched QR every `qr_every`
    steps (Benettin et al. 1980 with a longer interval between orthonormalisations; the products of the R factors
    telescope just the same). Only the log |R_ii| of the QRs after the first `burn_in` steps are averaged, so
    `burn_in` must be a multiple of `qr_every` and at most T - qr_every. A trajectory whose W or D is not finite
    gets NaN; an annihilated frame (every unit's phi' = 0 at a step) -inf."""
    W, D = np.asarray(W, dtype=np.float64), np.asarray(D, dtype=np.float64)
    if D.ndim != 3:
        raise ValueError(f"D must have shape (T, B, n), got {D.shape}")
    T, B, n = D.shape
    check_factors(W, D[:, 0, :], form)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the number of hidden units), got {k}")
    if qr_every < 1 or burn_in < 0 or burn_in % qr_every or burn_in + qr_every > T:
        raise ValueError(f"burn_in ({burn_in}) must be a multiple of qr_every ({qr_every}) >= 1 and leave at least "
                         f"qr_every of the T = {T} steps")
    rng = np.random.default_rng(0) if rng is None else rng
    Q = np.linalg.qr(rng.standard_normal((B, n, k)))[0]  # (B, n, k) orthonormal frames
    log_growth, counted = np.zeros((B, k)), 0
    finite_w = bool(np.all(np.isfinite(W)))
    bad = ~np.all(np.isfinite(D), axis=(0, 2)) | (not finite_w)  # (B,)
    D = np.where(bad[None, :, None], 0.0, D)
    W = W if finite_w else np.zeros_like(W)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        for t in range(T - (T - burn_in) % qr_every):
            d = D[t][:, :, None]  # (B, n, 1): step t + 1
            Q = d * np.matmul(W, Q) if form == "elman" else np.matmul(W, d * Q)
            if (t + 1) % qr_every == 0:
                Q, R = np.linalg.qr(Q)
                if t + 1 > burn_in:
                    log_growth += np.log(np.abs(np.diagonal(R, axis1=1, axis2=2)))
                    counted += qr_every
    out = -np.sort(-(log_growth / counted), axis=1)
    out[bad] = np.nan
    return out


def driven_spectrum(
    model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1, k: int = TOP_K,
    burn_in: int = BURN_IN, qr_every: int = QR_EVERY, rng: np.random.Generator | None = None,
) -> DrivenSpectrum:
    """The top k exponents of `layer` along B trajectories driven by xs (T, B, d) (or (T, B) token ids) from h0
    (L, B, n) (zeros if None): `spectra_from_factors` on one batched forward pass, averaged and spread over B."""
    trace = forward(model, xs, h0)
    return spectrum_from_trace(model, trace, layer, k, burn_in, qr_every, rng, xs=xs, h0=h0)


def spectrum_from_trace(
    model: RNN, trace: Trace, layer: int = -1, k: int = TOP_K, burn_in: int = BURN_IN, qr_every: int = QR_EVERY,
    rng: np.random.Generator | None = None, xs: np.ndarray | None = None, h0: np.ndarray | None = None,
) -> DrivenSpectrum:
    """`driven_spectrum` from a forward pass already made (`rnn.forward`) on xs from h0. A trajectory whose states
    overflowed in this layer or one below is driven again with its states' scale carried in log space
    (`scaled.scaled_factors`, given xs; relu, leaky_relu, linear and softplus), so its exponents stay finite
    wherever its Jacobians are; without xs, or for another activation, it gets NaN: past an overflow the phi' the
    forward pass reads from a NaN state is no derivative of anything (relu's is 0, leaky_relu's its slope)."""
    l = layer % model.layers
    overflowed = np.zeros(trace.d[l].shape[1], dtype=bool)
    for h in trace.h[: l + 1]:
        overflowed |= ~np.all(np.isfinite(h), axis=(0, 2))
    D = np.where(overflowed[None, :, None], np.nan, trace.d[l])
    if overflowed.any() and xs is not None and model.activation in SCALABLE and _finite_weights(model):
        starts = None if h0 is None else np.asarray(h0)[:, overflowed]
        D[:, overflowed] = scaled_factors(model, np.asarray(xs)[:, overflowed], starts, layer)
    per = spectra_from_factors(model.W_hh(layer), D, model.form, min(k, model.hidden), burn_in, qr_every, rng)
    steps = D.shape[0] - burn_in - (D.shape[0] - burn_in) % qr_every
    with np.errstate(invalid="ignore"):
        return DrivenSpectrum(per, per.mean(axis=0), per.max(axis=0) - per.min(axis=0), burn_in, steps)


def _finite_weights(model: RNN) -> bool:
    return all(np.all(np.isfinite(p)) for p in model.params.values())
