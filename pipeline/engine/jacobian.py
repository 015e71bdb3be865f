"""Jacobian norms log ||dh_t/dh_k||_2 of one layer of a vanilla RNN, an LSTM or a GRU, their bounds, and summaries.

Indexing (docs/math.md, section 3.1): dh_t/dh_k = J_t J_{t-1} ... J_{k+1} for 0 <= k < t <= T, with the step
Jacobians of `rnn.step_factors`: elman J_t = diag(D[t-1]) W, pascanu J_t = W diag(D[t-1]). Every (T+1, T+1) matrix here
holds its value at [t, k] for k < t and NaN elsewhere; all logs are natural.

Long products overflow or underflow float64, so every running product is kept renormalised and its log scale
is carried separately. A pair is -inf only when its product is exactly the zero matrix (a step with phi' = 0 in
every unit), and NaN only when a step itself is not finite (the state overflowed).

All pairs (`log_norm_matrix`) are computed lag by lag: the products P_{k+lag,k} for every k sit in one stack,
each lag advance is one gemm plus a diagonal scaling, and the spectral norms of a whole lag come from batched
Lanczos iterations warm-started from the previous lag's singular vectors (see `linalg.top_singular_values`).
"""

from __future__ import annotations

import numpy as np

from . import gru
from .depth import check_layers, cross_layer_log_norms
from .exprnn import ExpRNN
from .linalg import LANCZOS_MAX_STEPS, LANCZOS_TOL, WARM_START_NOISE, top_singular_values
from .lstm import LSTM, step_jacobians
from .rnn import FORMS, RNN, step_factors

STATES = ("full", "cell")  # which state an LSTM's norms are of: (h, c) together, or c alone (h held fixed)

BOUND_RTOL = 1e-9  # rounding allowed in measured <= product <= global, relative to the magnitudes (docs/math.md 4.3)
_SAFE_SIGMA = (1e-150, 1e150)  # sigma^2 stays a normal float64; outside, a product is rescaled and re-measured


# ---- norms of one matrix -----------------------------------------------------------------------------------


def spectral_norm(W: np.ndarray) -> float:
    """Largest singular value ||W||_2 (NaN if W holds NaN, inf if it holds inf)."""
    W = _as_matrix(W, "W")
    if not np.all(np.isfinite(W)):
        return float("nan") if np.isnan(W).any() else float("inf")
    return float(np.linalg.norm(W, 2)) if W.size else 0.0


def spectral_radius(W: np.ndarray) -> float:
    """Largest |eigenvalue| of a square W (NaN if W holds NaN, inf if it holds inf)."""
    W = _as_matrix(W, "W")
    if W.shape[0] != W.shape[1]:
        raise ValueError(f"spectral_radius needs a square matrix, got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        return float("nan") if np.isnan(W).any() else float("inf")
    return float(np.max(np.abs(np.linalg.eigvals(W)))) if W.size else 0.0


def _as_matrix(W: np.ndarray, name: str) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {W.shape}")
    return W


# ---- step Jacobians, normalised ----------------------------------------------------------------------------


def check_factors(W: np.ndarray, D: np.ndarray, form: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate step factors W (n, n), D (T, n) and the form; return them as float64."""
    W, D = np.asarray(W, dtype=np.float64), np.asarray(D, dtype=np.float64)
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; valid: {', '.join(FORMS)}")
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be square (n, n), got shape {W.shape}")
    if D.ndim != 2 or D.shape[0] < 1 or D.shape[1] != W.shape[0]:
        raise ValueError(f"D must have shape (T, {W.shape[0]}) with T >= 1, got {D.shape}")
    return W, D


def _normalised_steps(W: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split every step Jacobian into unit-size factors and a log scale, so that products stay in range.

    Returns (Wn = W / max|W| (n, n), Dn (T, n) with max |Dn[i]| = 1 or Dn[i] = 0,
    log_c (T,) = log max|W| + log max|D[i]| (-inf for a zero step), bad (T,) True where a step is not finite;
    those rows of Dn are zeroed so that arithmetic stays finite, and the caller reports NaN through them).
    """
    finite_w = bool(np.all(np.isfinite(W)))
    w_size = float(np.max(np.abs(W))) if finite_w and W.size else 0.0
    Wn = W / w_size if w_size > 0 else np.zeros_like(W)
    bad = ~np.all(np.isfinite(D), axis=1) | (not finite_w)
    c = np.where(bad, 0.0, np.max(np.abs(np.where(np.isfinite(D), D, 0.0)), axis=1))  # (T,)
    Dn = np.where(c[:, None] > 0, D / np.where(c > 0, c, 1.0)[:, None], 0.0)
    with np.errstate(divide="ignore"):
        log_c = np.log(c) + np.log(w_size)
    return Wn, Dn, log_c, bad


def _covers_bad_step(bad: np.ndarray) -> np.ndarray:
    """(T+1, T+1) mask: True at [t, k] when a bad step i (k < i <= t) lies in the pair's range."""
    count = np.concatenate([[0], np.cumsum(bad)])  # count[t] = number of bad steps among 1..t
    return (count[:, None] - count[None, :]) > 0


def _pair_mask(T: int) -> np.ndarray:
    """(T+1, T+1) mask of the valid pairs k < t."""
    return np.tri(T + 1, k=-1, dtype=bool)


# ---- all pairs, lag by lag ---------------------------------------------------------------------------------


def log_norm_matrix(model: RNN | LSTM | gru.GRU | ExpRNN, xs: np.ndarray, h0: np.ndarray | None = None,
                    layer: int = -1, state: str = "full", source_layer: int | None = None) -> np.ndarray:
    """(T+1, T+1) float64: [t, k] = log ||dh_t/dh_k||_2 of `layer`'s state for k < t, NaN elsewhere.

    xs (T, d) is one input sequence and h0 (L, n) the initial states (zeros if None). For an LSTM, h0 is (L, 2n),
    h then c, and `state` says which norm: "full" ||d(h_t, c_t)/d(h_k, c_k)||_2, "cell" ||dc_t/dc_k||_2 with h_k
    held fixed (the c-to-c block of the full product). A vanilla RNN's or a GRU's state is h alone: only "full"
    (a GRU's norms come from its dense step Jacobians, an expRNN's are its vanilla RNN's).
    `source_layer` (a vanilla RNN's or an expRNN's layer at or below `layer`; default: `layer` itself) gives the
    norms across layers, [t, k] = log ||dh^layer_t/dh^source_layer_k||_2, defined for k <= t with t >= 1 (`depth.py`).
    """
    check_state(model, state)
    model = model.as_rnn() if isinstance(model, ExpRNN) else model
    if source_layer is not None and isinstance(model, RNN):
        top, source = check_layers(model, layer, source_layer)
        if source != top:
            return cross_layer_log_norms(model, xs, h0, top, source)
    elif source_layer is not None:
        raise ValueError("source_layer needs a vanilla RNN: a gated cell's norms are measured within one layer")
    if isinstance(model, LSTM):
        return log_norms_from_steps(step_jacobians(model, xs, h0, layer), [state_block(model, state)])[0]
    if isinstance(model, gru.GRU):
        return log_norms_from_steps(gru.step_jacobians(model, xs, h0, layer), [None])[0]
    W, D = step_factors(model, xs, h0, layer)
    return log_norms_from_factors(W, D, model.form)


def check_state(model: RNN | LSTM | gru.GRU | ExpRNN, state: str) -> None:
    """ValueError unless `state` names a state the model's cell has ("cell" needs an LSTM)."""
    valid = STATES if isinstance(model, LSTM) else ("full",)
    if state not in valid:
        cell = "GRU" if isinstance(model, gru.GRU) else "vanilla RNN"
        why = "" if state not in STATES else f" (a {cell} has no cell state)"
        raise ValueError(f"state {state!r} is not available{why}; valid: {', '.join(valid)}")


def state_block(model: LSTM, state: str) -> slice | None:
    """The rows and columns of the (2n, 2n) product that `state` measures: None for all, c's for "cell"."""
    n = model.hidden
    return None if state == "full" else slice(n, 2 * n)


def log_norms_from_steps(J: np.ndarray, blocks: list[slice | None], tol: float = LANCZOS_TOL,
                         max_steps: int = LANCZOS_MAX_STEPS) -> list[np.ndarray]:
    """All pairs from dense step Jacobians J (T, m, m) (the LSTM's, which are not diag(D) W): for each block in
    `blocks` (None: the whole product; a slice: that square sub-block of it), the (T+1, T+1) matrix of log norms
    of the block of J_t ... J_{k+1} (docs/math.md, section 13.3). One pass of products serves every block.

    As in `log_norms_from_factors`: lag by lag, one batched product per lag, products kept at unit size with their
    log scale carried apart (here the size is the largest entry, so that a block's norm may be far below the
    whole product's), spectral norms by warm-started batched Lanczos; -inf for an exactly zero block, NaN for the
    pairs that span a step that is not finite.
    """
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 3 or J.shape[1] != J.shape[2] or J.shape[0] < 1:
        raise ValueError(f"J must have shape (T, m, m) with T >= 1, got {J.shape}")
    T, m, _ = J.shape
    bad = ~np.all(np.isfinite(J), axis=(1, 2))
    size = np.where(bad, 0.0, np.max(np.abs(np.where(np.isfinite(J), J, 0.0)), axis=(1, 2)))  # (T,)
    JnT = np.where(size[:, None, None] > 0, J / np.where(size > 0, size, 1.0)[:, None, None], 0.0).transpose(0, 2, 1)
    with np.errstate(divide="ignore"):
        log_c = np.log(size)
    rng = np.random.default_rng(0)  # fixed: results are deterministic
    outs = [np.full((T + 1, T + 1), np.nan) for _ in blocks]
    widths = [m if b is None else len(range(*b.indices(m))) for b in blocks]
    noise = [rng.standard_normal((T, w)) for w in widths]
    vectors = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in noise]
    stack, log_scale = JnT.copy(), log_c.copy()  # stack[k] = P_{k+lag,k}^T / exp(log_scale[k])
    counts = {"lanczos_steps": 0, "exact_fallbacks": 0}
    k = np.arange(T)
    for lag in range(1, T + 1):
        n_pairs = T - lag + 1
        if lag > 1:  # P_{k+lag,k}^T = P_{k+lag-1,k}^T J_{k+lag}^T
            stack = np.matmul(stack[:n_pairs], JnT[lag - 1 : lag - 1 + n_pairs])
            log_scale = log_scale[:n_pairs] + log_c[lag - 1 : lag - 1 + n_pairs]
        biggest = np.max(np.abs(stack), axis=(1, 2))
        stack /= np.where(biggest > 0, biggest, 1.0)[:, None, None]
        with np.errstate(divide="ignore"):
            log_scale = log_scale + np.log(biggest)
        for index, (out, block, width) in enumerate(zip(outs, blocks, widths)):
            part = stack if block is None else np.ascontiguousarray(stack[:, block, block])
            part_size = np.max(np.abs(part), axis=(1, 2))
            part = part / np.where(part_size > 0, part_size, 1.0)[:, None, None]  # sigma in [1, sqrt(width)]
            start = vectors[index][:n_pairs] + WARM_START_NOISE * noise[index][(k[:n_pairs] + lag) % T]
            start /= np.linalg.norm(start, axis=1, keepdims=True)
            sigma, vectors[index], _ = top_singular_values(part, start, tol, max_steps, min(8, width + 1), counts)
            with np.errstate(divide="ignore"):
                value = log_scale + np.log(part_size) + np.log(np.where(part_size > 0, sigma, 1.0))
            out[k[:n_pairs] + lag, k[:n_pairs]] = value
    spans_bad = _covers_bad_step(bad) & _pair_mask(T)
    for out in outs:
        out[spans_bad] = np.nan
    return outs


def log_step_bounds(J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(product, global_) for dense step Jacobians J (T, m, m): product[t, k] = sum_{i=k+1..t} log ||J_i||_2, the
    bound that holds for every cell (and for any block of the product); global_ is NaN everywhere: no
    gamma_W gamma_phi bound holds for a gated cell (docs/math.md, section 13.4)."""
    J = np.asarray(J, dtype=np.float64)
    T = J.shape[0]
    finite = np.all(np.isfinite(J), axis=(1, 2))
    norms = np.full(T, np.nan)
    if finite.any():
        norms[finite] = np.linalg.svd(J[finite], compute_uv=False)[:, 0]
    with np.errstate(divide="ignore"):
        per_step = np.log(norms)
    zero = np.isneginf(per_step)
    finite_sum = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(per_step), per_step, 0.0))])
    product = finite_sum[:, None] - finite_sum[None, :]
    product[_covers_bad_step(zero)] = -np.inf
    product[_covers_bad_step(np.isnan(per_step))] = np.nan
    product[~_pair_mask(T)] = np.nan
    return product, np.full((T + 1, T + 1), np.nan)


def log_norms_from_factors(
    W: np.ndarray, D: np.ndarray, form: str, tol: float = LANCZOS_TOL, max_steps: int = LANCZOS_MAX_STEPS,
    stats: dict | None = None,
) -> np.ndarray:
    """`log_norm_matrix` from step factors W (n, n) and D (T, n). `stats`, if given, receives solver counts."""
    W, D = check_factors(W, D, form)
    T, n = D.shape
    Wn, Dn, log_c, bad = _normalised_steps(W, D)
    WT = np.ascontiguousarray(Wn.T)
    noise = np.random.default_rng(0).standard_normal((T, n))  # fixed: results are deterministic
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = np.full((T + 1, T + 1), np.nan)
    stack, spare = np.empty((T, n, n)), np.empty((T, n, n))  # stack[k] = P_{k+lag,k}^T / exp(log_scale[k])
    log_scale = np.zeros(T)
    inv_sigma = np.ones(T)  # 1 / sigma of the previous lag, folded into this lag's diagonal scaling
    vectors, steps = noise.copy(), np.full(T, min(8, n + 1))  # warm starts; steps each pair needed last lag
    counts = {"lanczos_steps": 0, "exact_fallbacks": 0}
    k = np.arange(T)
    for lag in range(1, T + 1):
        m = T - lag + 1  # pairs k = 0..m-1, t = k + lag
        factors = Dn[lag - 1 : lag - 1 + m] * inv_sigma[:m, None]  # (m, n): step t = k + lag
        if lag == 1:
            _first_lag(WT, factors, form, out=stack[:m])
        else:
            _advance(stack[:m], WT, factors, form, out=spare[:m])
            stack, spare = spare, stack
        start = vectors[:m] + WARM_START_NOISE * noise[(k[:m] + lag) % T]
        start /= np.linalg.norm(start, axis=1, keepdims=True)
        sigma, vectors, steps = top_singular_values(stack[:m], start, tol, max_steps, int(steps[:m].min()), counts)
        log_sigma, inv_sigma = _normalise_products(stack[:m], sigma)
        log_scale = log_scale[:m] + log_c[lag - 1 : lag - 1 + m] + log_sigma
        out[k[:m] + lag, k[:m]] = log_scale
    out[_covers_bad_step(bad) & _pair_mask(T)] = np.nan
    if stats is not None:
        stats.update(counts)
    return out


def _first_lag(WT: np.ndarray, factors: np.ndarray, form: str, out: np.ndarray) -> None:
    """out[k] = J_{k+1}^T with diag factors (m, n): elman W^T diag(f), pascanu diag(f) W^T."""
    if form == "elman":
        np.multiply(WT[None, :, :], factors[:, None, :], out=out)
    else:
        np.multiply(WT[None, :, :], factors[:, :, None], out=out)


def _advance(stack: np.ndarray, WT: np.ndarray, factors: np.ndarray, form: str, out: np.ndarray) -> None:
    """out[k] = (J P_k)^T for stack[k] = P_k^T (m, n, n), J = diag(f_k) W (elman) or W diag(f_k) (pascanu).

    One gemm for the whole stack: (m*n, n) @ W^T.
    """
    m, n, _ = stack.shape
    if form == "elman":  # (J P)^T = P^T W^T diag(f)
        np.matmul(stack.reshape(m * n, n), WT, out=out.reshape(m * n, n))
        out *= factors[:, None, :]
    else:  # (J P)^T = P^T diag(f) W^T
        stack *= factors[:, None, :]
        np.matmul(stack.reshape(m * n, n), WT, out=out.reshape(m * n, n))


def _normalise_products(stack: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log sigma (m,), factor (m,)) for stack[k] = P_k^T: the factor 1/sigma brings P_k to norm 1 at the next
    advance. A product whose sigma^2 would not be a normal float (sigma outside _SAFE_SIGMA, or 0 because
    sigma^2 underflowed) is divided by its largest entry in place, measured by SVD, and stored at norm 1.
    """
    lo, hi = _SAFE_SIGMA
    safe = (sigma >= lo) & (sigma <= hi)
    with np.errstate(divide="ignore"):
        log_sigma = np.log(sigma)
    odd = np.flatnonzero(~safe)
    if odd.size:
        size = np.max(np.abs(stack[odd]), axis=(1, 2))
        log_sigma[odd[size == 0]] = -np.inf  # exactly the zero matrix
        odd, size = odd[size > 0], size[size > 0]
        scaled = stack[odd] / size[:, None, None]
        exact = np.linalg.svd(scaled, compute_uv=False)[:, 0]
        stack[odd] = scaled / exact[:, None, None]
        log_sigma[odd] = np.log(size) + np.log(exact)
    return log_sigma, np.where(safe, 1.0 / np.where(safe, sigma, 1.0), 1.0)


# ---- one column: dh_T/dh_k for every k ---------------------------------------------------------------------


def log_norm_column(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1) -> np.ndarray:
    """(T+1,) float64: [k] = log ||dh_T/dh_k||_2 for k = 0..T-1, NaN at k = T (the last row of the matrix).

    Goes backwards, R_k = R_{k+1} J_{k+1} with R_T = I, renormalising R at every step: O(T n^3).
    """
    W, D = step_factors(model, xs, h0, layer)
    return log_column_from_factors(W, D, model.form)


def log_column_from_factors(W: np.ndarray, D: np.ndarray, form: str, chunk: int = 256) -> np.ndarray:
    """`log_norm_column` from step factors W (n, n) and D (T, n); SVDs are batched `chunk` products at a time."""
    W, D = check_factors(W, D, form)
    T, n = D.shape
    W, Dn, log_c, bad = _normalised_steps(W, D)
    out = np.full(T + 1, np.nan)
    R, log_scale = np.eye(n), 0.0  # R_k / exp(log_scale) for the current k
    held, held_k = np.empty((min(chunk, T), n, n)), []
    for k in range(T - 1, -1, -1):
        d = Dn[k]  # step t = k + 1
        R = (R * d[None, :]) @ W if form == "elman" else (R @ W) * d[None, :]
        size = np.max(np.abs(R))  # only to keep R in range (a sum of squares could underflow)
        with np.errstate(divide="ignore"):
            log_scale += log_c[k] + np.log(size)
        if size > 0:
            R /= size
        held[len(held_k)], out[k] = R, log_scale
        held_k.append(k)
        if len(held_k) == held.shape[0] or k == 0:
            sigma = np.linalg.svd(held[: len(held_k)], compute_uv=False)[:, 0]
            with np.errstate(divide="ignore"):
                out[held_k] += np.log(sigma)
            held_k = []
    count = np.concatenate([[0], np.cumsum(bad)])
    out[:T][count[T] - count[:T] > 0] = np.nan
    return out


# ---- bounds ------------------------------------------------------------------------------------------------


def log_bound_matrices(
    model: RNN | LSTM | gru.GRU | ExpRNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """(product, global_), both (T+1, T+1) float64 in natural log, NaN outside k < t:

    product[t, k] = sum_{i=k+1..t} log(||W_hh||_2 * max_j |D[i-1, j]|)   (D = phi' at step i, as in step_factors)
    global_[t, k] = (t - k) log(gamma_W gamma_phi)
    For an LSTM or a GRU, `log_step_bounds` of its step Jacobians: the product of the step norms, and no global
    bound (NaN).
    """
    if isinstance(model, LSTM):
        return log_step_bounds(step_jacobians(model, xs, h0, layer))
    if isinstance(model, gru.GRU):
        return log_step_bounds(gru.step_jacobians(model, xs, h0, layer))
    model = model.as_rnn() if isinstance(model, ExpRNN) else model
    W, D = step_factors(model, xs, h0, layer)
    return log_bounds_from_factors(W, D, model.act.gamma)


def log_bounds_from_factors(W: np.ndarray, D: np.ndarray, gamma_phi: float) -> tuple[np.ndarray, np.ndarray]:
    """`log_bound_matrices` from step factors W (n, n), D (T, n) and the activation's gamma_phi."""
    W, D = check_factors(W, D, "elman")  # the bounds do not depend on the form
    T = D.shape[0]
    gamma_w = spectral_norm(W)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_step = np.log(gamma_w) + np.log(np.max(np.abs(D), axis=1))  # (T,), -inf where a step is zero
        rate = np.log(gamma_w) + np.log(gamma_phi)
    pairs = _pair_mask(T)
    zero = np.isneginf(per_step)
    finite_sum = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(per_step), per_step, 0.0))])
    product = finite_sum[:, None] - finite_sum[None, :]  # (T+1, T+1): sum over k < i <= t
    product[_covers_bad_step(zero)] = -np.inf
    product[_covers_bad_step(np.isnan(per_step) | np.isposinf(per_step))] = np.nan  # W or the state diverged
    lags = np.arange(T + 1)[:, None] - np.arange(T + 1)[None, :]
    with np.errstate(invalid="ignore"):
        global_ = np.where(pairs, lags * rate, np.nan)
    product[~pairs] = np.nan
    return product, global_


# ---- the step-norm bound and the singular spectrum ----------------------------------------------------------


def log_step_norms(W: np.ndarray, D: np.ndarray, form: str) -> np.ndarray:
    """(T,) float64: log ||J_s||_2 of every step s = 1..T, step factors W (n, n) and D (T, n) as in step_factors.

    Each step by exact SVD (J_s = e^{c_s} J^_s with the unit-size factors of `_normalised_steps`), not by Lanczos: a
    bound must not under-estimate, and Lanczos can stop at the second singular value of a tight cluster (an
    orthogonal W with phi' near 1 has every singular value within 1e-6 of the top one). -inf for an all-zero step,
    NaN for a non-finite one."""
    W, D = check_factors(W, D, form)
    T, n = D.shape
    Wn, Dn, log_c, bad = _normalised_steps(W, D)
    stack = np.empty((T, n, n))
    _first_lag(np.ascontiguousarray(Wn.T), Dn, form, out=stack)
    sigma = np.linalg.svd(stack, compute_uv=False)[:, 0] if T else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = log_c + np.log(sigma)
    out[bad] = np.nan
    return out


def log_stepnorm_bound(step_log_norms: np.ndarray) -> np.ndarray:
    """(T+1, T+1): [t, k] = sum_{s=k+1..t} log ||J_s||_2 for k < t, NaN elsewhere (docs/math.md 4.6).

    Sub-multiplicativity makes it a bound on log ||dh_t/dh_k||_2 as rigorous as the product bound and never
    above it (||diag(d) W||_2 <= max|d| ||W||_2). -inf for a pair spanning a zero step, NaN for one spanning a
    non-finite step."""
    per_step = np.asarray(step_log_norms, dtype=np.float64)
    T = per_step.shape[0]
    finite_sum = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(per_step), per_step, 0.0))])
    out = finite_sum[:, None] - finite_sum[None, :]
    out[_covers_bad_step(np.isneginf(per_step))] = -np.inf
    out[_covers_bad_step(np.isnan(per_step) | np.isposinf(per_step))] = np.nan
    out[~_pair_mask(T)] = np.nan
    return out


def log_stepnorm_bound_matrix(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1) -> np.ndarray:
    """`log_stepnorm_bound` of `layer` on one sequence xs (T, d) from h0 (L, n)."""
    W, D = step_factors(model, xs, h0, layer)
    return log_stepnorm_bound(log_step_norms(W, D, model.form))


SPECTRUM_FLOOR = 1e-12  # singular values below this fraction of sigma_1 are at the rounding floor of the product


def log_singular_values(W: np.ndarray, D: np.ndarray, form: str) -> np.ndarray:
    """(n,) float64, descending: log of every singular value of dh_T/dh_0 = J_T ... J_1 (the longest lag).

    The product is formed forwards and divided by its largest entry after every step (its log carried apart, as
    in `log_column_from_factors`), then one SVD. The forming costs rounding of about T eps relative to sigma_1,
    so values below SPECTRUM_FLOOR sigma_1 are NaN: not resolved. All NaN when a step is not finite; all -inf
    when the product is exactly zero."""
    W, D = check_factors(W, D, form)
    T, n = D.shape
    Wn, Dn, log_c, bad = _normalised_steps(W, D)
    if bad.any():
        return np.full(n, np.nan)
    P, log_scale = np.eye(n), 0.0
    for s in range(T):
        P = Dn[s][:, None] * (Wn @ P) if form == "elman" else Wn @ (Dn[s][:, None] * P)
        size = np.max(np.abs(P))
        if size == 0 or not np.isfinite(log_c[s]):
            return np.full(n, -np.inf)
        P /= size
        log_scale += log_c[s] + np.log(size)
    sigma = np.linalg.svd(P, compute_uv=False)
    with np.errstate(divide="ignore"):
        out = log_scale + np.log(sigma)
    out[sigma < SPECTRUM_FLOOR * sigma[0]] = np.nan
    return out


def log_singular_spectrum(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1) -> np.ndarray:
    """`log_singular_values` of `layer` on one sequence xs (T, d) from h0 (L, n): the spectrum of dh_T/dh_0."""
    W, D = step_factors(model, xs, h0, layer)
    return log_singular_values(W, D, model.form)


def spectrum_spread_decades(log_sigma: np.ndarray) -> float:
    """log10(sigma_1 / sigma_min) over the resolved singular values (a lower bound when some are NaN: below the
    floor); NaN when fewer than two are resolved."""
    values = np.asarray(log_sigma, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan")
    return float((values.max() - values.min()) / np.log(10.0))


# ---- summaries ---------------------------------------------------------------------------------------------


def lag_profile(logmat: np.ndarray) -> dict[str, np.ndarray]:
    """Per lag (1..T) over all pairs (t, t - lag): mean, min and max of the log-norms, and their count.

    mean is over finite values (-inf if a lag has only zero products); min and max are over non-NaN values,
    so min is -inf when some product at that lag is exactly zero. NaN where a lag has no usable value.
    """
    T = logmat.shape[0] - 1
    out = {key: np.full(T, np.nan) for key in ("mean", "min", "max")}
    out["lag"], out["count"] = np.arange(1, T + 1), np.zeros(T, dtype=int)
    for i, lag in enumerate(out["lag"]):
        values = np.diagonal(logmat, -lag)
        values = values[~np.isnan(values)]
        if values.size == 0:
            continue
        finite = values[np.isfinite(values)]
        out["mean"][i] = finite.mean() if finite.size else values.min()
        out["min"][i], out["max"][i], out["count"][i] = values.min(), values.max(), finite.size
    return out


def decay_slope(logmat: np.ndarray) -> float:
    """Least-squares slope of the per-lag mean log-norm against lag (finite means only); NaN if < 2 lags."""
    profile = lag_profile(logmat)
    ok = np.isfinite(profile["mean"])
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(profile["lag"][ok].astype(np.float64), profile["mean"][ok], 1)[0])


def bound_violations(
    measured: np.ndarray, product: np.ndarray, global_: np.ndarray, rtol: float = BOUND_RTOL,
    stepnorm: np.ndarray | None = None,
) -> list[tuple[int, int, str]]:
    """Pairs (t, k, kind) where measured > product or product > global_ beyond rounding (`exceeds`), and, given
    the step-norm bound, where measured > stepnorm or stepnorm > product.

    kind is "measured>product", "product>global", "measured>stepnorm" or "stepnorm>product". NaN pairs are
    skipped; -inf is a legitimate value.
    """
    found = []
    checks = [(measured, product, "measured>product"), (product, global_, "product>global")]
    if stepnorm is not None:
        checks += [(measured, stepnorm, "measured>stepnorm"), (stepnorm, product, "stepnorm>product")]
    for low, high, kind in checks:
        for t, k in np.argwhere(exceeds(np.asarray(low), np.asarray(high), rtol)):
            found.append((int(t), int(k), kind))
    return sorted(found)


def bound_slack(low: np.ndarray, high: np.ndarray, rtol: float = BOUND_RTOL) -> np.ndarray:
    """The rounding a check low <= high allows: rtol * max(1, |low|, |high|), counting only finite magnitudes."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    size = np.maximum(np.where(np.isfinite(low), np.abs(low), 0.0), np.where(np.isfinite(high), np.abs(high), 0.0))
    return rtol * np.maximum(size, 1.0)


def exceeds(low: np.ndarray, high: np.ndarray, rtol: float = BOUND_RTOL) -> np.ndarray:
    """Where low > high beyond rounding: low > high + bound_slack(low, high).

    -inf exceeds nothing; a finite or +inf value exceeds a high of -inf; +inf does not exceed +inf. False wherever
    either side is NaN (the analysis reports those pairs as not finite instead)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return low > high + bound_slack(low, high, rtol)
