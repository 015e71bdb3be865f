"""Benchmark: all-pairs Jacobian norms (`jacobian.log_norm_matrix`) against the obvious dense route.

The baseline forms every product dh_t/dh_k densely (incrementally over t for each k) and takes
np.linalg.norm(P, 2), an SVD per pair. Both run in the same process on the same step factors, so the speedup
is measured under the same machine load. Pure numpy; time.perf_counter is the only side channel.
"""

from __future__ import annotations

import time

import numpy as np

from ..engine.jacobian import log_norms_from_factors
from ..engine.rnn import RNN, step_factors


def bench_model(n: int, d: int, rng: np.random.Generator, spectral_norm: float = 1.2) -> RNN:
    """One-layer elman/tanh RNN with gaussian W_hh rescaled to ||W_hh||_2 = spectral_norm."""
    W = rng.standard_normal((n, n))
    W *= spectral_norm / np.linalg.norm(W, 2)
    params = {"W_hh_0": W, "W_xh_0": rng.standard_normal((n, d)) / np.sqrt(d), "b_h_0": np.zeros(n)}
    params |= {"W_hy": np.zeros((1, n)), "b_y": np.zeros(1)}  # readout unused: keys of rnn.param_keys(1)
    return RNN("elman", "tanh", 0.01, params)


def dense_log_norms(W: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Baseline (elman): for every k, P = J_t P for t = k+1..T, and log np.linalg.norm(P, 2) of every P."""
    T, n = D.shape
    out = np.full((T + 1, T + 1), np.nan)
    for k in range(T):
        P = np.eye(n)
        for t in range(k + 1, T + 1):
            P = D[t - 1][:, None] * (W @ P)  # (n, n) = dh_t/dh_k
            out[t, k] = np.log(np.linalg.norm(P, 2))
    return out


def bench_allpairs(T: int = 128, n: int = 128, seed: int = 0, repeats: int = 3) -> dict:
    """Time log-norms of all T(T+1)/2 pairs (best of `repeats`) against the dense baseline (run once).

    Returns allpairs_seconds, allpairs_baseline_seconds, speedup, max_abs_log_diff (over all pairs, natural
    log), and T, n, lanczos_steps, exact_fallbacks for context.
    """
    rng = np.random.default_rng(seed)
    model = bench_model(n, d=8, rng=rng)
    W, D = step_factors(model, rng.standard_normal((T, 8)))
    best, stats = np.inf, {}
    for _ in range(repeats):
        start = time.perf_counter()
        fast = log_norms_from_factors(W, D, model.form, stats=stats)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    slow = dense_log_norms(W, D)
    baseline = time.perf_counter() - start
    pairs = ~np.isnan(slow)
    return {
        "allpairs_seconds": best,
        "allpairs_baseline_seconds": baseline,
        "speedup": baseline / best,
        "max_abs_log_diff": float(np.max(np.abs(fast[pairs] - slow[pairs]))),
        "T": T,
        "n": n,
        "lanczos_steps": stats["lanczos_steps"],
        "exact_fallbacks": stats["exact_fallbacks"],
    }
