"""Batched Lanczos: the largest singular value of each matrix in a stack, for `jacobian.log_norms_from_factors`.

Pure numpy. Why Lanczos: at short lags sigma_2/sigma_1 is close to 1 and power iteration needs hundreds of
steps; the Lanczos tridiagonal gives sigma_1^2 as its top eigenvalue after a few dozen.
"""

from __future__ import annotations

import numpy as np

CLUSTER_GAP = 1e-3  # a top Ritz value within this (relative) of the next is in a cluster Lanczos cannot certify
MATVEC_CHUNK_BYTES = 2**20  # products per pass of `_normal_matvecs`: about a megabyte of them (a core's L2 cache)
LANCZOS_TOL = 1e-12  # stop when the estimated relative error of sigma_1^2 is below this
LANCZOS_MAX_STEPS = 60  # pairs not converged by then get an exact SVD
WARM_START_NOISE = 1e-2  # weight of a fixed pseudo-random vector mixed into every warm start
# `_Lanczos.compact` drops finished rows once fewer than this share are alive: the copy costs about a pass over the
# live rows, a finished row left in a matvec pass per step (the value measured best in `rnngrad bench --only
# crosslayer`; never compacting was slower)
COMPACT_ALIVE = 0.3


def top_singular_values(
    stack: np.ndarray, start: np.ndarray, tol: float, max_steps: int, first_check: int, counts: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sigma_1 of every P_k, stack[k] = P_k^T (m, n, n), by Lanczos on A_k = P_k^T P_k from unit start (m, n).

    Returns (sigma (m,), right singular vector estimates (m, n), Lanczos steps used (m,)).
    Why Lanczos: at short lags sigma_2/sigma_1 is close to 1 and power iteration needs hundreds of steps; the
    Lanczos tridiagonal T_j gives sigma_1^2 as its top eigenvalue theta after a few dozen. Stopping rule: the
    residual r = |beta_j s_j| of the top Ritz pair bounds the error by min(r, r^2 / gap) with gap = theta_1 -
    theta_2; a pair stops when that is below tol * theta. The r^2 / gap bound is only as good as the Ritz gap,
    which over-estimates the true one while the second value is still converging; and two Ritz values within
    1e-10 of each other are either a ghost (a converged value found twice after orthogonality is lost) or a
    genuine cluster. So a pair that stops with its top two Ritz values within CLUSTER_GAP (relative) of each
    other is not certified: it gets an exact SVD, as do pairs that do not stop within max_steps. Converged pairs
    leave the batch, so stragglers run alone.
    """
    m, n, _ = stack.shape
    sigma, vectors, steps = np.zeros(m), start.copy(), np.full(m, max_steps)
    run = _Lanczos(stack, start, max_steps)
    check = max(2, first_check - 1)
    while run.j < max_steps:
        run.step()
        if run.j < check and run.j < max_steps:
            continue
        ids, theta, ritz, clustered = run.finish_converged(tol)
        sigma[ids], vectors[ids], steps[ids] = np.sqrt(np.maximum(theta, 0.0)), ritz, run.j
        if clustered.any():  # not certified: exact
            exact = ids[clustered]
            sigma[exact] = np.linalg.svd(stack[exact], compute_uv=False)[:, 0]
            counts["exact_clusters"] = counts.get("exact_clusters", 0) + exact.size
        if not run.alive.any():
            break
        run.compact()
        check = run.j + max(1, run.j // 6)
    rest = run.ids[run.alive]
    if rest.size:  # not converged within max_steps: exact
        sigma[rest] = np.linalg.svd(stack[rest], compute_uv=False)[:, 0]
        counts["exact_fallbacks"] += rest.size
    counts["lanczos_steps"] += int(steps.sum())
    return sigma, vectors, steps


class _Lanczos:
    """Plain (non-reorthogonalised) Lanczos on A_k = P_k^T P_k for a batch of products, stack[k] = P_k^T."""

    def __init__(self, stack: np.ndarray, start: np.ndarray, max_steps: int):
        m, n, _ = stack.shape
        self.ids = np.arange(m)  # row -> pair of the caller's batch
        self.alive = np.ones(m, dtype=bool)  # rows still iterating (finished rows may linger until compact)
        self.stack = stack
        self.basis: list[np.ndarray] = []  # Lanczos vectors (a, n), one per step, for the Ritz vectors
        self.alpha, self.beta = np.zeros((m, max_steps)), np.zeros((m, max_steps))
        self.v, self.v_prev, self.j = start.copy(), np.zeros_like(start), 0

    def step(self) -> None:
        """One three-term recurrence step: two batched matvecs, P v then P^T (P v)."""
        j, v = self.j, self.v
        self.basis.append(v)
        w = _normal_matvecs(self.stack, v)  # (a, n) = A v
        a = np.einsum("an,an->a", v, w)
        w -= a[:, None] * v + (self.beta[:, j - 1, None] * self.v_prev if j else 0.0)
        b = np.sqrt(np.einsum("an,an->a", w, w))
        self.alpha[:, j], self.beta[:, j] = a, b
        self.v_prev, self.v = v, w / np.where(b > 0, b, 1.0)[:, None]
        self.j = j + 1

    def finish_converged(self, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mark converged rows finished; return their pair ids, theta_1, unit Ritz vectors (c, n) and whether
        each stopped inside a cluster (top two Ritz values within CLUSTER_GAP: not certified)."""
        j, rows = self.j, np.flatnonzero(self.alive)
        alpha, beta = self.alpha[rows, :j], self.beta[rows, : j - 1]
        theta = np.linalg.eigvalsh(_tridiagonal(alpha, beta))  # about half eigh's time: no vectors
        top = theta[:, -1]
        gap = top - theta[:, -2] if j > 1 else np.zeros_like(top)
        s_top, reliable = _top_eigenvectors(alpha, beta, top)
        odd = np.flatnonzero(~reliable | (gap <= CLUSTER_GAP * top))  # the eigensolver's vectors there
        if odd.size:
            theta, s = np.linalg.eigh(_tridiagonal(alpha[odd], beta[odd]))
            top[odd], s_top[odd] = theta[:, -1], s[:, :, -1]
            if j > 1:
                gap[odd] = theta[:, -1] - theta[:, -2]
        residual = np.abs(self.beta[rows, j - 1] * s_top[:, -1])
        with np.errstate(divide="ignore", invalid="ignore"):
            error = np.fmin(residual, residual**2 / gap)
        ghost = (gap <= 1e-10 * top) & (top > 0) & (j > 1)
        done = (error <= tol * top) | ghost
        finished = rows[done]
        ritz = sum(s_top[done, i, None] * self.basis[i][finished] for i in range(j))  # (c, n)
        size = np.linalg.norm(ritz, axis=1, keepdims=True)
        ritz = np.where(size > 0, ritz / np.where(size > 0, size, 1.0), self.basis[0][finished])  # 0: zero P
        self.alive[finished] = False
        clustered = (gap[done] <= CLUSTER_GAP * top[done]) & (residual[done] > tol * top[done])
        return self.ids[finished], top[done], ritz, clustered

    def compact(self) -> None:
        """Drop finished rows once fewer than COMPACT_ALIVE of them are alive: copying the live rows costs about a
        pass over them, a finished row left in costs a matvec pass per step."""
        keep = self.alive
        if keep.sum() >= COMPACT_ALIVE * keep.size:
            return
        self.stack, self.basis = self.stack[keep], [v[keep] for v in self.basis]
        self.ids, self.alive = self.ids[keep], keep[keep]
        self.alpha, self.beta, self.v, self.v_prev = self.alpha[keep], self.beta[keep], self.v[keep], self.v_prev[keep]


def _normal_matvecs(stack: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(a, n): P_k^T P_k v_k for stack[k] = P_k^T (a, n, n), a few products at a time, so that the second pass over a
    product finds it still in cache (a stack of a whole lag is tens of MB): the same matmul per product as over the
    whole stack, so the same bits, about 1.4 times faster at n = 128."""
    a, n, _ = stack.shape
    w = np.empty((a, n))
    step = max(1, MATVEC_CHUNK_BYTES // max(1, 8 * n * n))
    for start in range(0, a, step):
        part = stack[start : start + step]
        Pv = np.matmul(part.transpose(0, 2, 1), v[start : start + step, :, None])  # (c, n, 1)
        w[start : start + step] = np.matmul(part, Pv)[:, :, 0]
    return w


TWIST_MIN_FIRST = 1e-3  # `_top_eigenvectors` trusts its vector when its first component is at least this


def _top_eigenvectors(alpha: np.ndarray, beta: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s (r, j), reliable (r,)): unit eigenvectors of the tridiagonals (alpha, beta) for their top eigenvalues theta,
    from the factorisation twisted at the first index: with x_1 = 1, rows 2..j of (T - theta I) x = 0 give
    x_i / x_{i-1} = -beta_{i-1} / p_i, p_j = alpha_j - theta, p_i = alpha_i - theta - beta_i^2 / p_{i+1} (the
    pivots of T[1:, 1:] - theta I from the bottom). theta lies above every eigenvalue of T[1:, 1:] (interlacing),
    so those pivots are negative: no growth, and an error d in theta moves the vector by about d / (s_1 gap).
    A row is reliable where theta > 0, every pivot is negative and s_1 >= TWIST_MIN_FIRST (a warm start near the
    top vector keeps s_1 near 1); elsewhere (zero or split matrices, poor starts) its vector is NaN. The recurrence
    runs on T / theta (entries at most about 1: nothing overflows), each ratio and entry capped at 2 / TWIST_MIN_FIRST
    (a row that needs more is not reliable). tests/test_linalg_twisted.py holds it to np.linalg.eigh."""
    r, j = alpha.shape
    reliable = theta > 0
    scale = 1.0 / np.where(reliable, theta, 1.0)
    a, b = alpha * scale[:, None], beta * scale[:, None]
    cap = 2.0 / TWIST_MIN_FIRST
    ratios = np.empty((r, j - 1))
    p = a[:, j - 1] - 1.0
    for i in range(j - 1, 0, -1):
        negative = p < 0
        p = np.where(negative, p, -1.0)
        ratio = -b[:, i - 1] / p
        reliable &= negative & (np.abs(ratio) <= cap)
        ratios[:, i - 1] = np.clip(ratio, -cap, cap)
        if i > 1:
            p = a[:, i - 1] - 1.0 - b[:, i - 1] * (b[:, i - 1] / p)
    x = np.ones((r, j))
    for i in range(1, j):  # an entry above 1 / TWIST_MIN_FIRST already makes the row unreliable
        np.clip(x[:, i - 1] * ratios[:, i - 1], -cap, cap, out=x[:, i])
    size = np.sqrt(np.einsum("ri,ri->r", x, x))
    reliable &= size * TWIST_MIN_FIRST <= 1.0
    s = np.where(reliable[:, None], x / np.where(reliable, size, 1.0)[:, None], np.nan)
    return s, reliable


def _tridiagonal(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Dense symmetric tridiagonals (r, j, j) from diagonals alpha (r, j) and off-diagonals beta (r, j-1)."""
    r, j = alpha.shape
    T = np.zeros((r, j, j))
    i = np.arange(j)
    T[:, i, i] = alpha
    T[:, i[:-1], i[1:]] = beta
    T[:, i[1:], i[:-1]] = beta
    return T
