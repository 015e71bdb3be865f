"""Every pair of the (time, layer) grid of a stacked vanilla RNN, lag by lag (docs/math.md, section 3.7):
log ||dh^top_t/dh^l_k||_2 by the adjoint recursion, and sums over the grid's paths (`path_log_sums`, the bounds).

Node (l, s) is layer l's state after step s. Its two in-edges have the Jacobians

    elman:   H(l, s) = diag(phi'(a^l_s)) W^l_hh         V(l, s) = diag(phi'(a^l_s)) W^l_xh
    pascanu: H(l, s) = W^l_hh diag(phi'(h^l_{s-1}))     V(l, s) = W^l_xh    (diag(1) W^l_xh)

and no vertical edge leaves step 0. For a target (top, t), A_t(l, k) = dh^top_t/dh^l_k satisfies

    A_t(top, t) = I,    A_t(l, k) = A_t(l, k+1) H(l, k+1) + A_t(l+1, k) V(l+1, k)    (the second term for k >= 1),

so lag t - k = 0, 1, ... in turn, every target t of a lag in one stack per layer, from the top layer down: the
horizontal term reads the layer's stack of the previous lag, the vertical one the stack of the layer above at this
lag. A stack holds the transposes side by side, Z (n, m, n) with Z[:, i, :] = Q_i^T, so that a layer's whole lag is
one gemm (n, 2n) @ (2n, m n) with a wide, efficient output. Each Q_i is stored at its own scale: A_i =
exp(e_i) Q_i; Lanczos measures sigma_i = ||Q_i||_2 (warm-started from the same target's pair of the previous lag: the
target side of A_t stays put from lag to lag), log ||A_i||_2 = e_i + log sigma_i, and 1/sigma_i is folded into the
next lag's weights, so no product leaves the range of float64 and no extra pass normalises the stacks. In elman
form (`_ElmanAdjoint`) each layer's diag(phi') A^T is instead stored once per lag, at a scale shared along the
anti-diagonal l + k, where the gemm reads both its terms in place, and every source layer of a lag is measured by one
Lanczos run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linalg import LANCZOS_MAX_STEPS, LANCZOS_TOL, WARM_START_NOISE, top_singular_values

SAFE_SIGMA = (1e-150, 1e150)  # sigma^2 stays a normal float64; outside, a matrix is rescaled and measured by SVD


@dataclass(frozen=True)
class GridFactors:
    """The edge factors of the (time, layer) grid of layers 0..top on one sequence."""

    form: str  # "elman" | "pascanu"
    W: list[np.ndarray]  # W_hh per layer, (n, n)
    U: list[np.ndarray]  # W_xh per layer; U[0] (n, d) reads the input and is no edge of the grid
    d: np.ndarray  # (top+1, T, n): the diagonal of H(l, s) at [l, s-1]: phi' of step s (as rnn.step_factors)
    v: np.ndarray  # (top+1, T, n): the diagonal of V(l, s) = diag(v) W^l_xh: elman phi'(a^l_s), pascanu 1
    gamma_phi: float  # sup |phi'| of the activation

    @property
    def top(self) -> int:
        return len(self.W) - 1

    @property
    def steps(self) -> int:
        return self.d.shape[1]


def log_norms_of_grid(F: GridFactors, lowest: int = 0, tol: float = LANCZOS_TOL,
                      max_steps: int = LANCZOS_MAX_STEPS, stats: dict | None = None,
                      with_top: bool = True) -> np.ndarray:
    """(top+1, T+1, T+1): [l, t, k] = log ||dh^top_t/dh^l_k||_2 for the source layers l >= `lowest` (NaN below; the
    top layer's own pairs NaN too unless `with_top`), k <= t (k < t for l = top), t >= 1; NaN elsewhere and for the
    pairs whose paths cross a non-finite edge; -inf for an exactly zero Jacobian. `stats`, if given, receives the
    solver counts."""
    top, T, n = F.top, F.steps, F.d.shape[2]
    adjoint = adjoint_of(F)
    out = np.full((top + 1, T + 1, T + 1), np.nan)
    noise = np.random.default_rng(0).standard_normal((T + 1, n))  # fixed: results are deterministic
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    counts = {"lanczos_steps": 0, "exact_fallbacks": 0}
    joint = isinstance(adjoint, _ElmanAdjoint)  # its stacks of a lag sit side by side: one Lanczos run for all
    last: dict[int, _Stack] = {}
    for lag in range(T + 1):
        m = T - lag + 1  # pairs i = k = 0..m-1, t = k + lag
        this: dict[int, _Stack] = {}
        pending: list[tuple[int, np.ndarray, np.ndarray, int]] = []  # (layer, log scale, start, first test)
        for l in range(top, lowest - 1, -1):
            if lag == 0 and l == top:
                this[l] = adjoint.store(l, lag, adjoint.identity(m))
                continue
            Z, log_scale = adjoint.layer_stack(l, lag, last.get(l), this.get(l + 1))
            if l == top and not with_top:  # formed for the layers below, not measured
                this[l] = adjoint.store(l, lag, _sized(Z, log_scale))
                continue
            before = last[l].vectors[1 : m + 1] if lag and last[l].vectors is not None else noise[lag : lag + m]
            start = before + WARM_START_NOISE * noise[lag : lag + m]
            start /= np.linalg.norm(start, axis=1, keepdims=True)
            first = last[l].first if lag and last[l].vectors is not None else min(8, n + 1)
            if joint:  # stored at a bound on its size (any size keeps the range), measured below with the others
                bounded = adjoint.bounded(l, lag, Z, log_scale)
                this[l] = adjoint.store(l, lag, bounded if bounded is not None else _sized(Z, log_scale))
                pending.append((l, log_scale, start, first))
                continue
            this[l] = adjoint.store(l, lag, _measure(Z, log_scale, start, tol, max_steps, first, counts))
            out[l, np.arange(m) + lag, np.arange(m)] = this[l].log_size
        if pending:
            pending.reverse()  # lowest layer first, as the stacks sit in `adjoint.side_by_side`
            layers = [l for l, *_ in pending]
            Z = adjoint.side_by_side(layers[0], layers[-1], m)
            both = _measure(Z, np.concatenate([e for _, e, _, _ in pending]),
                            np.concatenate([v for _, _, v, _ in pending]), tol, max_steps,
                            min(f for *_, f in pending), counts)
            for i, l in enumerate(layers):
                part = slice(i * m, (i + 1) * m)
                adjoint.measured(l, lag, both.log_size[part])
                this[l] = _Stack(Z[:, part, :], both.log_size[part], both.inv_size[part], both.vectors[part],
                                 int(both.steps[part].min()))
                out[l, np.arange(m) + lag, np.arange(m)] = this[l].log_size
        last = this
    out[:top, 0, 0] = np.nan  # h^top_0 is an initial state: no path reaches it from another layer
    out[np.isnan(path_log_sums(*adjoint.bad_edges(), top))] = np.nan
    out[:lowest] = np.nan
    if not with_top:
        out[top] = np.nan
    if stats is not None:
        stats.update(counts)
    return out


@dataclass
class _Stack:
    """One layer's pairs at one lag: A_i = exp(log_size_i) Q_i / size_i with Q_i^T = Z[:, i, :], and size_i =
    ||Q_i||_2 for a measured layer (so log_size_i = log ||A_i||_2), ||Q_i||_F for one only formed."""

    Z: np.ndarray  # (n, m, n)
    log_size: np.ndarray  # (m,)
    inv_size: np.ndarray  # (m,) 1 / size_i, 0 for a zero matrix
    vectors: np.ndarray | None = None  # (m, n) top left singular vectors of the Q_i (the next lag's warm starts)
    first: int = 0  # Lanczos steps before the first convergence test at the next lag
    steps: np.ndarray | None = None  # (m,) Lanczos steps each pair took


def _sized(Z: np.ndarray, log_scale: np.ndarray) -> _Stack:
    """A stack not measured: each Q_i sized by its Frobenius norm (one fused pass; a max |entry| costs two), or by
    its largest entry where the sum of squares leaves the normal floats."""
    size = np.sqrt(np.einsum("aib,aib->i", Z, Z))
    odd = np.flatnonzero(~((size > 1e-150) & (size < 1e150)))
    if odd.size:
        size[odd] = np.max(np.abs(Z[:, odd, :]), axis=(0, 2))
    with np.errstate(divide="ignore"):
        log_size = np.where(size > 0, log_scale + np.log(np.where(size > 0, size, 1.0)), -np.inf)
    return _Stack(Z, log_size, np.where(size > 0, 1.0 / np.where(size > 0, size, 1.0), 0.0))


def _measure(Z: np.ndarray, log_scale: np.ndarray, start: np.ndarray, tol: float, max_steps: int, first: int,
             counts: dict) -> _Stack:
    """Lanczos on the matrices Q_i = Z[:, i, :]^T; a sigma outside SAFE_SIGMA (sigma^2 would not be a normal float)
    is measured again by SVD after dividing Q_i by its largest entry in place."""
    items = Z.transpose(1, 2, 0)  # (m, n, n), items[i] = Q_i: Lanczos on Q Q^T gives the target-side vectors
    sigma, vectors, steps = top_singular_values(items, start, tol, max_steps, first, counts)
    lo, hi = SAFE_SIGMA
    odd = np.flatnonzero((sigma > 0) & ((sigma < lo) | (sigma > hi)))
    if odd.size:
        size = np.max(np.abs(Z[:, odd, :]), axis=(0, 2))
        Z[:, odd, :] /= size[None, :, None]
        log_scale = log_scale.copy()
        log_scale[odd] += np.log(size)
        sigma[odd] = np.linalg.svd(items[odd], compute_uv=False)[:, 0]
        counts["exact_fallbacks"] += odd.size
    with np.errstate(divide="ignore"):
        log_size = np.where(sigma > 0, log_scale + np.log(np.where(sigma > 0, sigma, 1.0)), -np.inf)
    return _Stack(Z, log_size, np.where(sigma > 0, 1.0 / np.where(sigma > 0, sigma, 1.0), 0.0), vectors,
                  int(steps.min()), steps)


class _Adjoint:
    """The edge factors in unit-size parts and log scales, and the forming of one layer's stack at one lag."""

    def __init__(self, F: GridFactors):
        self.form, self.top = F.form, F.top
        T, n = F.steps, F.d.shape[2]
        W, self.cW, bad_W = zip(*(_unit(M) for M in F.W))
        U, self.cU, bad_U = zip(*(_unit(M) for M in F.U))
        self.WT, self.UT = [np.ascontiguousarray(M.T) for M in W], [np.ascontiguousarray(M.T) for M in U]
        self.bad_W, self.bad_U = np.array(bad_W), np.array(bad_U)
        self.d, self.cd, self.bad_d = _unit_rows(F.d)
        self.v, self.cv, self.bad_v = _unit_rows(F.v)
        self.joint_T = [np.concatenate([self.WT[l], self.UT[l + 1]], axis=1) for l in range(self.top)]  # (n, 2n)
        self.n, self.T = n, T
        self._allocate()

    def _allocate(self) -> None:
        """The stacks: two per layer (this lag's and the last) and the gemm's operand."""
        n, T = self.n, self.T
        self.operand = np.empty(2 * n * (T + 1) * n)  # the (2n, m, n) right-hand side of a layer's gemm
        self.buffers = {l: [np.empty(n * (T + 1) * n) for _ in range(2)] for l in range(self.top + 1)}

    def bad_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(h, v) (top+1, T): NaN on the edges whose factor is not finite, 0 elsewhere (for `path_log_sums`)."""
        bad_h = self.bad_d | self.bad_W[:, None]
        bad_v = self.bad_v | self.bad_U[:, None]
        return np.where(bad_h, np.nan, 0.0), np.where(bad_v, np.nan, 0.0)

    def identity(self, m: int) -> _Stack:
        """The top layer at lag 0: A_t(top, t) = I for every t."""
        Z = self._buffer(self.top, 0, m)
        Z[...] = 0.0
        Z[np.arange(self.n), :, np.arange(self.n)] = 1.0
        return _Stack(Z, np.zeros(m), np.ones(m))

    def layer_stack(self, l: int, lag: int, last: _Stack | None, above: _Stack | None) -> tuple[np.ndarray, np.ndarray]:
        """Layer l's stack Z (n, m, n) at `lag` and the log scale e (m,) of its matrices: the horizontal term from the
        layer's previous lag `last`, the vertical term from layer l+1's stack `above` at this lag (none for the
        top layer), each at weight exp(its scale - e)."""
        n, m = self.n, self.T - lag + 1
        e_h = np.full(m, -np.inf) if last is None else last.log_size[1 : m + 1] + self.cW[l] + self.cd[l, :m]
        e_v = np.full(m, -np.inf)
        if above is not None:  # the vertical edge into (l+1, k), k >= 1: row k-1 of layer l+1's phi'
            e_v[1:] = above.log_size[1:] + self.cU[l + 1] + self.cv[l + 1, : m - 1]
        e = np.maximum(e_h, e_v)
        w_h = _weight(e_h, e) * (last.inv_size[1 : m + 1] if last is not None else 0.0)
        w_v = _weight(e_v, e) * (above.inv_size if above is not None else 0.0)
        Z = self._buffer(l, lag, m)
        if self.form == "elman":
            self._elman(l, Z, last, above, w_h, w_v)
        else:
            self._pascanu(l, Z, last, above, w_h, w_v)
        return Z, e

    def _elman(self, l: int, Z: np.ndarray, last, above, w_h: np.ndarray, w_v: np.ndarray) -> None:
        """Z_i = W^T diag(d w_h) Zlast_{i+1} + U^T diag(v w_v) Zabove_i, as one gemm when both terms are there."""
        n, m = self.n, Z.shape[1]
        rows = np.zeros((n, m)) if last is None else (self.d[l, :m] * w_h[:, None]).T  # (n, m): row scaling
        operand = self.operand[: 2 * n * m * n].reshape(2 * n, m, n)
        if above is None:
            np.multiply(last.Z[:, 1 : m + 1, :], rows[:, :, None], out=operand[:n])
            np.matmul(self.WT[l], operand[:n].reshape(n, m * n), out=Z.reshape(n, m * n))
            return
        if last is None:
            operand[:n] = 0.0
        else:
            np.multiply(last.Z[:, 1 : m + 1, :], rows[:, :, None], out=operand[:n])
        np.multiply(above.Z, self._vertical_rows(l, m, w_v)[:, :, None], out=operand[n:])
        np.matmul(self.joint_T[l], operand.reshape(2 * n, m * n), out=Z.reshape(n, m * n))

    def _vertical_rows(self, l: int, m: int, w_v: np.ndarray) -> np.ndarray:
        """(n, m): the row scaling diag(v w_v) of the vertical edge into (l+1, k) for pair k (0 for k = 0)."""
        below = np.zeros((self.n, m))
        below[:, 1:] = (self.v[l + 1, : m - 1] * w_v[1:, None]).T
        return below

    def _pascanu(self, l: int, Z: np.ndarray, last, above, w_h: np.ndarray, w_v: np.ndarray) -> None:
        """Z_i = diag(d) W^T (w_h Zlast_{i+1}) + U^T diag(v w_v) Zabove_i: two gemms (the diag(phi') follows W)."""
        n, m = self.n, Z.shape[1]
        flat = Z.reshape(n, m * n)
        if last is not None:
            np.matmul(self.WT[l], (last.Z[:, 1 : m + 1, :] * w_h[None, :, None]).reshape(n, m * n), out=flat)
            Z *= self.d[l, :m].T[:, :, None]
        else:
            flat[...] = 0.0
        if above is not None:
            flat += self.UT[l + 1] @ (above.Z * self._vertical_rows(l, m, w_v)[:, :, None]).reshape(n, m * n)

    def _buffer(self, l: int, lag: int, m: int) -> np.ndarray:
        """Layer l's stack at `lag`, (n, m, n): two buffers per layer, alternating with the lag's parity."""
        return self.buffers[l][lag % 2][: self.n * m * self.n].reshape(self.n, m, self.n)

    def store(self, l: int, lag: int, stack: _Stack) -> _Stack:
        """Keep layer l's stack at `lag` for the layers and lags that read it: here the stack itself (`last`,
        `above`)."""
        return stack


# natural log: how far a stored stack may sit from its anti-diagonal's scale. The gemm's output then lies within
# about e^24 of unit size, so Lanczos's sigma^4 (|P^T P v|^2) stays a normal float with room for n-fold sums.
SCALE_SPREAD = 24.0


class _ElmanAdjoint(_Adjoint):
    """The elman recursion with one gemm per layer and lag straight from the stored stacks, no operand copies.

    In elman form both edges out of node (l, k) into the layers and lags that read it scale by the same diagonal
    (v = d): X^l_k = diag(d[l, k-1]) A_t(l, k)^T serves the horizontal term of layer l at the next lag and the
    vertical term of layer l-1 at this lag, A_t(l, k)^T = W^T X^l_{k+1} + U^T X^{l+1}_k. `store` writes X once per
    layer and lag (one pass) into row block l of one buffer, pair k at column block k + l, so that the operand of
    layer l at any lag, [X^l_{k+1}; X^{l+1}_k] for every k, is the strided view of blocks l and l+1 at columns
    k + l + 1: [W^T U^T] reads it in place. That needs the two halves of a column at one scale: each X is stored
    divided by exp(S(t, l + k)), a scale per target and anti-diagonal l + k, set by the first layer that stores a
    matrix on it (the lowest: the lowest layer's pair comes at the smallest lag). A later matrix more than
    SCALE_SPREAD from it is stored at its own scale instead, and a layer whose two halves differ in scale anywhere
    forms its operand with per-pair weights (`_Adjoint`'s two passes): slower, never out of range."""

    def __init__(self, F: GridFactors):
        super().__init__(F)
        joint, self.c_joint = [], []
        for l in range(self.top):
            c = max(self.cW[l], self.cU[l + 1])
            c = c if np.isfinite(c) else 0.0
            joint.append(np.concatenate([self.WT[l] * np.exp(self.cW[l] - c),
                                         self.UT[l + 1] * np.exp(self.cU[l + 1] - c)], axis=1))
            self.c_joint.append(c)
        self.joint_T = joint  # (n, 2n) at one scale exp(c_joint[l]): the two halves of a column share theirs
        self.log_norm_W = [_log_norm2(M) + c for M, c in zip(self.WT, self.cW)]  # log ||W^l_hh||_2 (-inf: zero)
        self.log_norm_U = [_log_norm2(M) + c for M, c in zip(self.UT, self.cU)]

    def _allocate(self) -> None:
        """One stack per layer (Z: the next lag reads the stored X), the stored X of every layer, and an operand
        only if some layer needs the weighted path."""
        n, T, top = self.n, self.T, self.top
        self.columns = T + top + 3  # column blocks: pair k of layer l at k + l, read up to k + l + 1
        self.X = np.zeros(((top + 1) * n, self.columns * n))  # row block l: layer l's X
        self.x_scale = np.full((top + 1, self.columns), -np.inf)  # log scale of each stored X, -inf for zeros
        self.x_bound = np.full((top + 1, self.columns), -np.inf)  # log of a bound on each stored X's ||X||_2
        self.diagonal = np.full((T + 1, self.columns), np.nan)  # S(t, a): NaN until a matrix on it is stored
        self.buffer = np.empty(n * (top + 1) * (T + 1) * n)  # every layer's Z of a lag, side by side in layer order
        self.operand = None

    def _buffer(self, l: int, lag: int, m: int) -> np.ndarray:
        """Layer l's stack Z (n, m, n): pairs l m .. (l+1) m - 1 of this lag's (n, (top+1) m, n) (the next lag reads
        the stored X, not Z)."""
        return self.side_by_side(l, l, m)

    def side_by_side(self, low: int, high: int, m: int) -> np.ndarray:
        """The stacks Z of layers low..high at a lag of m pairs as one (n, (high - low + 1) m, n), layer by layer."""
        n = self.n
        every = self.buffer[: n * (self.top + 1) * m * n].reshape(n, (self.top + 1) * m, n)
        return every[:, low * m : (high + 1) * m, :]

    def layer_stack(self, l: int, lag: int, last: _Stack | None, above: _Stack | None) -> tuple[np.ndarray, np.ndarray]:
        """As `_Adjoint.layer_stack`, from the stored X (`last` and `above` are not read)."""
        n, m, top = self.n, self.T - lag + 1, self.top
        cols = slice(l + 1, l + 1 + m)
        Z = self._buffer(l, lag, m)
        flat = Z.reshape(n, m * n)
        e_h = self.x_scale[l, cols]
        if l == top:  # the horizontal term alone
            np.matmul(self.WT[l], self.X[l * n : (l + 1) * n, cols.start * n : cols.stop * n], out=flat)
            return Z, e_h + self.cW[l]
        e_v = self.x_scale[l + 1, cols]
        e = np.maximum(e_h, e_v)
        if np.all((e_h == e_v) | np.isneginf(e_h) | np.isneginf(e_v)):
            np.matmul(self.joint_T[l], self.X[l * n : (l + 2) * n, cols.start * n : cols.stop * n], out=flat)
            return Z, e + self.c_joint[l]
        if self.operand is None:
            self.operand = np.empty(2 * n * (self.T + 1) * n)
        operand = self.operand[: 2 * n * m * n].reshape(2 * n, m, n)
        for half, scale in ((0, e_h), (1, e_v)):
            block = self.X[(l + half) * n : (l + half + 1) * n, cols.start * n : cols.stop * n].reshape(n, m, n)
            np.multiply(block, _weight(scale, e)[None, :, None], out=operand[half * n : (half + 1) * n])
        np.matmul(self.joint_T[l], operand.reshape(2 * n, m * n), out=flat)
        return Z, e + self.c_joint[l]

    def store(self, l: int, lag: int, stack: _Stack) -> _Stack:
        """X^l_k = diag(d[l, k-1]) A_t(l, k)^T for k >= 1 (0 for k = 0: no vertical edge leaves step 0) into row
        block l, divided by exp(S(t, l + k)) (or by exp(its own scale): see the class)."""
        n, m = self.n, self.T - lag + 1
        k = np.arange(1, m)
        t, a = k + lag, k + l
        with np.errstate(invalid="ignore"):
            own = stack.log_size[1:] + self.cd[l, : m - 1]  # log size of X (-inf: an exact zero)
        present = np.isfinite(own)
        shared = self.diagonal[t, a]
        fits = np.isfinite(shared) & (np.abs(own - np.where(np.isfinite(shared), shared, 0.0)) <= SCALE_SPREAD)
        scale = np.where(present & fits, shared, own)
        fresh = present & np.isnan(shared)
        self.diagonal[t[fresh], a[fresh]] = own[fresh]
        factor = np.zeros(m)
        with np.errstate(invalid="ignore", over="ignore"):
            factor[1:] = np.where(present, stack.inv_size[1:] * np.exp(np.where(present, own - scale, 0.0)), 0.0)
        huge = ~np.isfinite(factor[1:])  # 1/size near the top of the range: at its own scale the factor is 1/size
        scale[huge], factor[1:][huge] = own[huge], stack.inv_size[1:][huge]
        rows = self.d[l, : m - 1].T * factor[None, 1:]  # (n, m-1)
        target = self.X[l * n : (l + 1) * n, l * n : (l + m) * n].reshape(n, m, n)
        target[:, 0, :] = 0.0
        np.multiply(stack.Z[:, 1:, :], rows[:, :, None], out=target[:, 1:, :])
        self.x_scale[l, l] = -np.inf
        self.x_scale[l, l + 1 : l + m] = np.where(present, scale, -np.inf)
        self.x_bound[l, l] = -np.inf
        self.x_bound[l, l + 1 : l + m] = np.where(present, own, -np.inf)  # log_size bounds ||A||_2: own, ||X||_2
        return stack

    def bounded(self, l: int, lag: int, Z: np.ndarray, log_scale: np.ndarray) -> _Stack | None:
        """Layer l's stack at `lag` sized by a bound on each ||A_t(l, k)||_2 instead of a pass over it (`_sized`),
        for a layer measured afterwards: ||A_t(l, k)|| <= ||W^l|| ||X^l_{k+1}|| + ||U^{l+1}|| ||X^{l+1}_k|| with the
        stored X's bounds (`store`; their measured sizes once a lag is measured, `measured`, so looseness does not
        compound over lags). Any size is exact (the size is carried in the log scales); a bound keeps each stored X
        no larger than `_sized` would, and smaller only by the looseness: 1.8 nats median, 3.5 at most on 4-layer
        tanh stacks at ||W|| = 1.2, 2.8 and 6.4 at ||W|| = 10. None if a 1 / size would leave the float range (then
        `_sized`)."""
        m = self.T - lag + 1
        cols = slice(l + 1, l + 1 + m)
        bound = self.log_norm_W[l] + self.x_bound[l, cols]
        if l < self.top:
            bound = np.logaddexp(bound, self.log_norm_U[l + 1] + self.x_bound[l + 1, cols])
        zero = ~np.isfinite(bound)  # both terms absent: A is exactly zero
        step = np.where(zero, 0.0, log_scale - np.where(zero, 0.0, bound))  # log (1 / size) of Z's matrices
        if not np.all(np.isfinite(step) & (step < 700.0)):
            return None
        return _Stack(Z, np.where(zero, -np.inf, bound), np.where(zero, 0.0, np.exp(step)))

    def measured(self, l: int, lag: int, log_size: np.ndarray) -> None:
        """Layer l's measured log ||A_t(l, k)||_2 at `lag` tighten the bounds on its stored X (`bounded`)."""
        m = self.T - lag + 1
        own = log_size[1:] + self.cd[l, : m - 1]  # log ||X||_2 bound (-inf + -inf: -inf)
        block = self.x_bound[l, l + 1 : l + m]
        block[...] = np.where(np.isfinite(own) & np.isfinite(block), own, block)


def adjoint_of(F: GridFactors) -> _Adjoint:
    """The recursion for F: `_ElmanAdjoint` when both edges out of a node scale by the same diagonal (elman, v = d),
    `_Adjoint` otherwise."""
    if F.form == "elman" and F.v.shape == F.d.shape and np.array_equal(F.v, F.d):
        return _ElmanAdjoint(F)
    return _Adjoint(F)


def _log_norm2(M: np.ndarray) -> float:
    """log ||M||_2, -inf for a zero (or empty) M."""
    size = float(np.linalg.norm(M, 2)) if M.size else 0.0
    return float(np.log(size)) if size > 0 else -np.inf


def _weight(scale: np.ndarray, top: np.ndarray) -> np.ndarray:
    """exp(scale - top), 0 where scale is -inf (top >= scale, so it is at most 1)."""
    gone = np.isneginf(scale)
    return np.where(gone, 0.0, np.exp(np.where(gone, 0.0, scale - np.where(np.isfinite(top), top, 0.0))))


def _unit_rows(D: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(D with each row (last axis) divided by its largest |entry|, the log of that entry (-inf for a zero row),
    rows not finite); a row that is not finite is zeroed (its pairs are made NaN through `bad_edges`)."""
    finite = np.all(np.isfinite(D), axis=-1)
    size = np.where(finite, np.max(np.abs(np.where(np.isfinite(D), D, 0.0)), axis=-1), 0.0)
    unit = np.where(size[..., None] > 0, D / np.where(size > 0, size, 1.0)[..., None], 0.0)
    with np.errstate(divide="ignore"):
        return unit, np.log(size), ~finite


def _unit(M: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """(M / max|M|, log max|M|, not finite); a non-finite or zero M gives zeros (log scale -inf for zero, 0 for bad)."""
    if not np.all(np.isfinite(M)):
        return np.zeros_like(M, dtype=np.float64), 0.0, True
    size = float(np.max(np.abs(M))) if M.size else 0.0
    if size == 0:
        return np.zeros_like(M, dtype=np.float64), -np.inf, False
    return M / size, float(np.log(size)), False


def path_log_sums(h: np.ndarray, v: np.ndarray, top: int) -> np.ndarray:
    """(top+1, T+1, T+1): [l, t, k] = log of the sum over the paths from (l, k) to (top, t) of exp(the sum of their
    edge weights); h, v (top+1, T) are the log weights of the horizontal and vertical edges into (l, s) at [l, s-1]
    (row 0 of v unused). NaN where `log_norms_of_grid` is, and wherever a path crosses a NaN weight; -inf where
    every path has weight 0."""
    T = h.shape[1]
    out = np.full((top + 1, T + 1, T + 1), np.nan)
    last: list[np.ndarray] = []
    for lag in range(T + 1):
        m = T - lag + 1
        this = [np.empty(0)] * (top + 1)
        for l in range(top, -1, -1):
            total = last[l][1:] + h[l, :m] if lag else np.full(m, 0.0 if l == top else -np.inf)
            if l < top:  # the vertical edge into (l+1, k), k >= 1
                vertical = np.concatenate([[-np.inf], this[l + 1][1:] + v[l + 1, : m - 1]])
                with np.errstate(invalid="ignore"):  # a NaN weight (a non-finite edge) is data: it marks its paths
                    total = np.logaddexp(total, vertical)
            this[l] = total
            if lag or l < top:
                out[l, np.arange(m) + lag, np.arange(m)] = total
        last = this
    out[:top, 0, 0] = np.nan
    return out
