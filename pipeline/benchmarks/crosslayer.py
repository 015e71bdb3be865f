"""Benchmark: every cross-layer pair log ||dh^L_t/dh^l_k||_2 of a stack (`depth.log_norm_grid`) against the dense route.

The dense route treats the state of all L layers at step s as one vector H_s of L n entries. Its step Jacobian
dH_s/dH_{s-1} = (I - V_s)^{-1} B_s is block lower-triangular (B_s holds the horizontal edges H(l, s) on its diagonal,
V_s the vertical edges V(l, s) below it, and (I - V_s)^{-1} = I + V_s + V_s^2 + ... sums the vertical chains within
the step). For every k it forms the products P = dH_t/dH_k (I - V_k)^{-1} explicitly, incrementally over t (an
(L n)^3 gemm per pair), and takes np.linalg.norm(B, 2), an SVD, of each block (top, l). Both routes run in the same
process on the same edge factors and on one BLAS thread (as a run computes: run/runner.BLAS_THREADS), so the ratio is
measured under the same machine load. time.perf_counter and time.process_time are the only side channels.
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from ..engine.depth import grid_factors
from ..engine.gridpairs import GridFactors, _sized, adjoint_of, log_norms_of_grid
from ..engine.rnn import RNN


def bench_stack(layers: int, n: int, d: int, rng: np.random.Generator, spectral_norm: float = 1.2) -> RNN:
    """An elman/tanh stack: Gaussian W_hh rescaled to ||W_hh||_2 = spectral_norm, W_xh N(0, 1/fan-in)."""
    params = {}
    for l in range(layers):
        W = rng.standard_normal((n, n))
        fan_in = d if l == 0 else n
        params |= {f"W_hh_{l}": W * (spectral_norm / np.linalg.norm(W, 2)),
                   f"W_xh_{l}": rng.standard_normal((n, fan_in)) / np.sqrt(fan_in), f"b_h_{l}": np.zeros(n)}
    return RNN("elman", "tanh", 0.01, params | {"W_hy": np.zeros((1, n)), "b_y": np.zeros(1)})


def full_state_steps(F: GridFactors) -> tuple[np.ndarray, np.ndarray]:
    """(M (T, Ln, Ln), C (T, Ln, Ln)): the full state's step Jacobians M_s = C_s B_s and the vertical chains within a
    step C_s = (I - V_s)^{-1} (elman form)."""
    L, T, n = F.top + 1, F.steps, F.d.shape[2]
    M, C = np.zeros((T, L * n, L * n)), np.zeros((T, L * n, L * n))
    for s in range(T):
        B, V = np.zeros((L * n, L * n)), np.zeros((L * n, L * n))
        for l in range(L):
            block = slice(l * n, (l + 1) * n)
            B[block, block] = F.d[l, s][:, None] * F.W[l]
            if l > 0:
                V[block, slice((l - 1) * n, l * n)] = F.d[l, s][:, None] * F.U[l]
        C[s] = np.linalg.inv(np.eye(L * n) - V)
        M[s] = C[s] @ B
    return M, C


def dense_grid_norms(F: GridFactors) -> np.ndarray:
    """The dense route: [l, t, k] = log ||dh^top_t/dh^l_k||_2 for l < top (NaN elsewhere), from explicit products."""
    L, T, n = F.top + 1, F.steps, F.d.shape[2]
    M, C = full_state_steps(F)
    out = np.full((L, T + 1, T + 1), np.nan)
    top_rows = slice((L - 1) * n, L * n)
    for k in range(T + 1):
        P = np.eye(L * n) if k == 0 else C[k - 1]  # dH_k/dh^l_k for every l: the vertical chains of step k
        for t in range(k, T + 1):
            if t > k:
                P = M[t - 1] @ P
            if t == 0:
                continue
            for l in range(L - 1):
                out[l, t, k] = np.log(np.linalg.norm(P[top_rows, l * n : (l + 1) * n], 2))
    return out


def adjoint_products(F: GridFactors) -> None:
    """The fast route's matrix products alone: every layer's stack at every lag formed by the same recursion as
    `log_norms_of_grid`, each sized by `gridpairs._sized` (one pass over it) instead of measured by Lanczos. Its time
    is a floor under the fast route's, so dense / products is a ceiling on the speedup of any measurement of these
    products: per pair they cost 7 n^3 multiply-adds at L = 4 (the top layer's own stack n^3, each layer below 2 n^3)
    against the dense route's (L n)^3 = 64 n^3 and three SVDs."""
    adjoint, top, T = adjoint_of(F), F.top, F.steps
    last: dict = {}
    for lag in range(T + 1):
        this: dict = {}
        for l in range(top, -1, -1):
            stack = (adjoint.identity(T + 1) if lag == 0 and l == top
                     else _sized(*adjoint.layer_stack(l, lag, last.get(l), this.get(l + 1))))
            this[l] = adjoint.store(l, lag, stack)
        last = this


def bench_crosslayer(layers: int = 4, n: int = 64, T: int = 128, seed: int = 0, repeats: int = 2) -> dict:
    """Time every cross-layer pair (source l < top, k <= t) by `log_norms_of_grid` (best of `repeats`) against the
    dense route (run once), wall-clock and CPU seconds.

    Returns crosslayer_seconds, crosslayer_baseline_seconds, crosslayer_speedup (wall), crosslayer_cpu_speedup,
    crosslayer_max_abs_log_diff (natural log, over every cross-layer pair), and L, n, T, pairs, Lanczos counts; and
    crosslayer_products_seconds (`adjoint_products`, best of `repeats`) with crosslayer_products_speedup and
    crosslayer_products_cpu_speedup, the dense route against those products alone: the ceiling for the fast route."""
    rng = np.random.default_rng(seed)
    F = grid_factors(bench_stack(layers, n, 8, rng), rng.standard_normal((T, 8)))
    best, best_cpu, stats = np.inf, np.inf, {}
    floor, floor_cpu = np.inf, np.inf
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            fast = log_norms_of_grid(F, stats=stats, with_top=False)
            best, best_cpu = min(best, time.perf_counter() - wall), min(best_cpu, time.process_time() - cpu)
            wall, cpu = time.perf_counter(), time.process_time()
            adjoint_products(F)
            floor, floor_cpu = min(floor, time.perf_counter() - wall), min(floor_cpu, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        slow = dense_grid_norms(F)
        baseline, baseline_cpu = time.perf_counter() - wall, time.process_time() - cpu
    pairs = ~np.isnan(slow)
    return {
        "crosslayer_seconds": best,
        "crosslayer_baseline_seconds": baseline,
        "crosslayer_speedup": baseline / best,
        "crosslayer_cpu_speedup": baseline_cpu / best_cpu,
        "crosslayer_max_abs_log_diff": float(np.max(np.abs(fast[pairs] - slow[pairs]))),
        "crosslayer_products_seconds": floor,
        "crosslayer_products_speedup": baseline / floor,
        "crosslayer_products_cpu_speedup": baseline_cpu / floor_cpu,
        "crosslayer_L": layers, "crosslayer_n": n, "crosslayer_T": T, "crosslayer_pairs": int(pairs.sum()),
        "crosslayer_lanczos_steps": stats["lanczos_steps"], "crosslayer_exact_fallbacks": stats["exact_fallbacks"],
    }
