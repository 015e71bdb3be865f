"""Vanilla RNN in numpy: stacked elman/pascanu forms, readout, losses, BPTT, a model as named arrays.

Shapes: T timesteps, B sequences in a batch, d inputs, n hidden units per layer, o outputs.
Batched arrays are time-major: xs (T, B, d), states h (T+1, B, n) with h[0] the initial state.
Inputs are real vectors xs (T, B, d), or integer token ids xs (T, B) that stand for one-hot vectors of length d
(the same model and gradients; the first layer then gathers columns of W_xh instead of multiplying by it).

Forms (docs/math.md):
  elman:   h_t = phi(W_hh h_{t-1} + W_xh x_t + b_h)      J_t = diag(phi'(a_t)) W_hh
  pascanu: h_t = W_hh phi(h_{t-1}) + W_xh x_t + b_h      J_t = W_hh diag(phi'(h_{t-1}))
Layer l > 0 reads layer l-1's state as its input; the readout y_t = W_hy h_t + b_y reads the top layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .activations import Activation, get_activation

FORMS = ("elman", "pascanu")
LOSSES = ("xent", "mse")
SETTINGS_KEYS = ("form", "activation", "leaky_slope")  # the arrays of model_arrays that are not parameters


@dataclass
class RNN:
    form: str  # "elman" | "pascanu"
    activation: str  # a name from activations.ACTIVATIONS
    leaky_slope: float  # slope of leaky_relu for z < 0; ignored by other activations
    params: dict[str, np.ndarray] = field(default_factory=dict)  # keys as in model*.npz
    cell: ClassVar[str] = "rnn"  # the LSTM's is "lstm" (engine/cells.py)

    @property
    def layers(self) -> int:
        return sum(1 for k in self.params if k.startswith("W_hh_"))

    @property
    def hidden(self) -> int:
        return self.params["W_hh_0"].shape[0]

    @property
    def input_dim(self) -> int:
        return self.params["W_xh_0"].shape[1]

    @property
    def output_dim(self) -> int:
        return self.params["W_hy"].shape[0]

    @property
    def act(self) -> Activation:
        return get_activation(self.activation, self.leaky_slope)

    def W_hh(self, layer: int) -> np.ndarray:
        return self.params[f"W_hh_{layer % self.layers}"]

    def copy(self) -> "RNN":
        return RNN(self.form, self.activation, self.leaky_slope, {k: v.copy() for k, v in self.params.items()})


def param_keys(layers: int) -> list[str]:
    keys = []
    for l in range(layers):
        keys += [f"W_hh_{l}", f"W_xh_{l}", f"b_h_{l}"]
    return keys + ["W_hy", "b_y"]


def validate_model(model: RNN) -> None:
    """Raise ValueError naming the first thing wrong with the model's form, activation or shapes."""
    if getattr(model, "cell", "rnn") != "rnn":  # e.g. an LSTM handed to a vanilla-only function
        raise ValueError(f"expected a vanilla RNN (cell rnn), got a {model.cell} model; its functions take its dense "
                         "step Jacobians (lstm.step_jacobians, jacobian.log_norms_from_steps)")
    if model.form not in FORMS:
        raise ValueError(f"unknown form {model.form!r}; valid: {', '.join(FORMS)}")
    get_activation(model.activation, model.leaky_slope)
    L = model.layers
    if L < 1:
        raise ValueError("model has no layers: key W_hh_0 is missing")
    missing = [k for k in param_keys(L) if k not in model.params]
    if missing:
        raise ValueError(f"model is missing keys: {', '.join(missing)}")
    n = model.params["W_hh_0"].shape[0] if model.params["W_hh_0"].ndim == 2 else -1
    for l in range(L):
        W, U, b = (model.params[f"{k}_{l}"] for k in ("W_hh", "W_xh", "b_h"))
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ValueError(f"W_hh_{l} must be square (n, n), got shape {W.shape}")
        if W.shape[0] != n:
            raise ValueError(f"W_hh_{l} has shape {W.shape}; every layer must have n = {n} units")
        d_in = U.shape[1] if U.ndim == 2 else -1
        if U.ndim != 2 or U.shape[0] != n or (l > 0 and d_in != n):
            want = "(n, d)" if l == 0 else f"({n}, {n})"
            raise ValueError(f"W_xh_{l} must have shape {want}, got {U.shape}")
        if b.shape != (n,):
            raise ValueError(f"b_h_{l} must have shape ({n},), got {b.shape}")
    Wy, by = model.params["W_hy"], model.params["b_y"]
    if Wy.ndim != 2 or Wy.shape[1] != n:
        raise ValueError(f"W_hy must have shape (o, {n}), got {Wy.shape}")
    if by.shape != (Wy.shape[0],):
        raise ValueError(f"b_y must have shape ({Wy.shape[0]},), got {by.shape}")


def is_token_ids(xs: np.ndarray) -> bool:
    """True for integer inputs without a feature axis: (T, B) or (T,) ids standing for one-hot vectors."""
    return np.issubdtype(xs.dtype, np.integer) and xs.ndim in (1, 2)


def one_hot(ids: np.ndarray, depth: int) -> np.ndarray:
    """ids (...) int in [0, depth) -> (..., depth) float64: the vectors that token ids stand for."""
    out = np.zeros(ids.shape + (depth,), dtype=np.float64)
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


def _check_xs(model: RNN, xs: np.ndarray, batched: bool) -> np.ndarray:
    """Validate xs: (T, B, d) / (T, d) reals, or (T, B) / (T,) integer token ids in [0, d)."""
    xs, d = np.asarray(xs), model.input_dim
    if is_token_ids(xs):
        if xs.ndim != (2 if batched else 1) or xs.shape[0] < 1:
            raise ValueError(f"token ids xs must have shape {'(T, B)' if batched else '(T,)'} with T >= 1, got {xs.shape}")
        if xs.size and (xs.min() < 0 or xs.max() >= d):
            raise ValueError(f"token ids xs must lie in [0, {d - 1}] (d = {d}), got values in [{xs.min()}, {xs.max()}]")
        return xs.astype(np.intp, copy=False)
    xs = np.asarray(xs, dtype=np.float64)
    if xs.ndim != (3 if batched else 2) or xs.shape[0] < 1 or xs.shape[-1] != d:
        want = "(T, B, d)" if batched else "(T, d)"
        raise ValueError(f"xs must have shape {want} with T >= 1 and d = {d}, or be integer token ids; got {xs.shape}")
    if not np.all(np.isfinite(xs)):
        raise ValueError("xs contains NaN or inf")
    return xs


def check_inputs(model: RNN, xs: np.ndarray, h0: np.ndarray | None, batched: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate xs ((T, B, d) / (T, B) ids if batched, else (T, d) / (T,) ids) and h0 ((L, B, n) / (L, n) or None).

    Returns them as float64 (intp for ids) arrays.
    """
    xs = _check_xs(model, xs, batched)
    lead = (model.layers,) + ((xs.shape[1],) if batched else ())
    if h0 is None:
        h0 = np.zeros(lead + (model.hidden,))
    h0 = np.asarray(h0, dtype=np.float64)
    if h0.shape != lead + (model.hidden,):
        raise ValueError(f"h0 must have shape {lead + (model.hidden,)} (L{', B' if batched else ''}, n), got {h0.shape}")
    if not np.all(np.isfinite(h0)):
        raise ValueError("h0 contains NaN or inf")
    return xs, h0


@dataclass
class Trace:
    """Everything BPTT and the Jacobians need from a forward pass."""

    inputs: list[np.ndarray]  # per layer, (T, B, d_l): what the layer read; (T, B) token ids for layer 0 if so fed
    h: list[np.ndarray]  # per layer, (T+1, B, n): h[0] = h0
    d: list[np.ndarray]  # per layer, (T, B, n): elman phi'(a_t); pascanu phi'(h_{t-1})
    y: np.ndarray  # (T, B, o) readout of the top layer
    pre: list[np.ndarray]  # pascanu only: phi(h_{t-1}) per layer, (T, B, n); empty for elman


class Workspace:
    """Buffers that forward, loss_and_dy and bptt reuse from one call to the next.

    Why: a fresh half-megabyte array costs a page fault per 4 KB page on first touch, about a quarter of a
    training step at the benchmark's sizes. With a workspace, the Trace, dy and grads that a call returns are
    views into these buffers, valid until the next call that is handed the same workspace.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The float64 buffer called `name` with `shape` (allocated on first use or a new shape; contents stale)."""
        a = self._arrays.get(name)
        if a is None or a.shape != shape:
            a = self._arrays[name] = np.empty(shape)
        return a


def _empty(workspace: Workspace | None, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 array of `shape`: new without a workspace, else the workspace's reusable buffer `name`."""
    return np.empty(shape) if workspace is None else workspace.array(name, shape)


def _flat(a: np.ndarray) -> np.ndarray:
    """(T, B, k) -> (T*B, k) without a copy."""
    return a.reshape(-1, a.shape[-1])


def _input_drive(x: np.ndarray, U: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out (T, B, n) = W_xh x_t + b_h for every step at once: one gemm, or a gather of W_xh's columns for ids."""
    if x.ndim == 2:  # (T, B) token ids: W_xh one_hot(id) + b_h is row `id` of W_xh^T + b_h, one pass over out
        np.take(U.T + b, x.ravel(), axis=0, out=_flat(out), mode="clip")  # ids checked already
    else:
        np.matmul(_flat(x), np.ascontiguousarray(U.T), out=_flat(out))
        out += b


def _input_weight_grad(G: np.ndarray, x: np.ndarray, out: np.ndarray, workspace: Workspace | None) -> None:
    """out (n, d) = sum_t G_t^T x_t with G (T*B, n): one gemm, or a sum of G's rows grouped by id for token ids."""
    if x.ndim == 3:
        np.matmul(G.T, _flat(x), out=out)
        return
    ids = x.ravel()
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    run_start = np.empty(ids.size, dtype=bool)  # True at the first row of each id's run
    run_start[0] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=run_start[1:])
    starts = np.flatnonzero(run_start)
    G_by_id = np.take(G, order, axis=0, out=_empty(workspace, "G_by_id", G.shape), mode="clip")
    out.fill(0.0)
    out[:, sorted_ids[starts]] = np.add.reduceat(G_by_id, starts, axis=0).T


def _saturated_from_z(act: Activation, z: np.ndarray, D: np.ndarray) -> None:
    """Where |z| > act.dphi_of_phi_limit, replace D = phi'(z) read from y = phi(z) by act.dphi_far(z): read from y it
    has lost its precision there (tanh: exactly 0 beyond |z| ~ 19). Two reductions decide whether anything is to
    do, so a layer that never saturates pays no more than that. z and D are C-contiguous, of one shape."""
    limit = act.dphi_of_phi_limit
    if act.dphi_far is None or (z.max(initial=-np.inf) <= limit and z.min(initial=np.inf) >= -limit):
        return
    flat = z.reshape(-1)
    far = np.greater(flat, limit)  # (not np.abs(flat) > limit: a float temporary the size of z costs page faults)
    far |= np.less(flat, -limit)
    far = np.flatnonzero(far)
    D.reshape(-1)[far] = act.dphi_far(flat[far])


def _elman_layer(act: Activation, W: np.ndarray, a: np.ndarray, h: np.ndarray, D: np.ndarray | None,
                 rec: np.ndarray) -> None:
    """Run one elman layer in place.

    a (T, B, n) holds the input drives W_xh x_t + b_h and leaves holding the pre-activations a_t;
    h (T+1, B, n) has h[0] = h0 set and is filled; D (T, B, n) gets phi'(a_t) (None: not computed); rec (B, n) is
    scratch.
    """
    WT = np.ascontiguousarray(W.T)  # h_t @ W.T as a plain row-major gemm
    phi, h_steps = act.phi, list(h)  # (B, n) views, made once
    for t, a_t in enumerate(a):
        np.matmul(h_steps[t], WT, out=rec)  # (B, n): W_hh h_{t-1}
        a_t += rec
        phi(a_t, out=h_steps[t + 1])
    if D is None:
        return
    if act.dphi_of_phi is not None:
        act.dphi_of_phi(h[1:], out=D)
        _saturated_from_z(act, a, D)
    else:
        D[...] = act.dphi(a)


def _pascanu_layer(act: Activation, W: np.ndarray, drive: np.ndarray, h: np.ndarray, D: np.ndarray | None,
                   pre: np.ndarray) -> None:
    """Run one pascanu layer in place from drive (T, B, n) = W_xh x_t + b_h.

    h (T+1, B, n) has h[0] = h0 set and is filled; D (T, B, n) gets phi'(h_{t-1}) (None: not computed); pre (T, B, n)
    gets phi(h_{t-1}).
    """
    WT = np.ascontiguousarray(W.T)
    for t in range(drive.shape[0]):
        act.phi(h[t], out=pre[t])
        np.matmul(pre[t], WT, out=h[t + 1])  # (B, n): W_hh phi(h_{t-1})
        h[t + 1] += drive[t]
    if D is None:
        return
    if act.dphi_of_phi is not None:
        act.dphi_of_phi(pre, out=D)
        _saturated_from_z(act, h[:-1], D)
    else:
        D[...] = act.dphi(h[:-1])


def forward(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, workspace: Workspace | None = None,
            derivatives: bool = True) -> Trace:
    """Run the stack over a batch xs (T, B, d) from h0 (L, B, n) (zeros if None).

    With a `workspace`, the returned Trace lives in its buffers (see Workspace). derivatives=False skips phi' (the
    Trace's `d` is then empty): a pass that only reads the readout (validation) has no use for it.
    """
    validate_model(model)
    xs, h0 = check_inputs(model, xs, h0, batched=True)
    act, p = model.act, model.params
    (T, B), n = xs.shape[:2], model.hidden
    trace = Trace([], [], [], np.empty(0), [])
    x = xs
    for l in range(model.layers):
        drive = _empty(workspace, f"a{l}", (T, B, n))
        _input_drive(x, p[f"W_xh_{l}"], p[f"b_h_{l}"], drive)
        h = _empty(workspace, f"h{l}", (T + 1, B, n))
        h[0] = h0[l]
        D = _empty(workspace, f"d{l}", (T, B, n)) if derivatives else None
        if model.form == "elman":
            _elman_layer(act, p[f"W_hh_{l}"], drive, h, D, _empty(workspace, "rec", (B, n)))
        else:
            trace.pre.append(_empty(workspace, f"pre{l}", (T, B, n)))
            _pascanu_layer(act, p[f"W_hh_{l}"], drive, h, D, trace.pre[-1])
        trace.inputs.append(x)
        trace.h.append(h)
        if D is not None:
            trace.d.append(D)
        x = h[1:]
    trace.y = _empty(workspace, "y", (T, B, model.output_dim))
    np.matmul(_flat(x), np.ascontiguousarray(p["W_hy"].T), out=_flat(trace.y))
    trace.y += p["b_y"]
    return trace


def check_loss_inputs(y: np.ndarray, targets: np.ndarray, mask: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate targets and mask against the readout y (T, B, o); return them as int64 / float64 arrays."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; valid: {', '.join(LOSSES)}")
    T, B, o = y.shape
    mask = np.asarray(mask, dtype=np.float64)
    if mask.shape != (T, B):
        raise ValueError(f"mask must have shape (T, B) = {(T, B)}, got {mask.shape}")
    if mask.size and not (mask.min() >= 0.0 and mask.max() < np.inf):  # NaN fails both comparisons
        raise ValueError("mask must hold finite weights >= 0")
    targets = np.asarray(targets)
    if kind == "xent":
        if targets.shape != (T, B) or not np.issubdtype(targets.dtype, np.integer):
            got = f"{targets.dtype} {targets.shape}"
            raise ValueError(f"xent targets must be integers of shape (T, B) = {(T, B)}, got {got}")
        if targets.min() < 0 or targets.max() >= o:
            got = f"[{targets.min()}, {targets.max()}]"
            raise ValueError(f"xent targets must be classes in [0, {o - 1}], got values in {got}")
        return targets.astype(np.int64, copy=False), mask
    if targets.shape != (T, B, o):
        raise ValueError(f"mse targets must have shape (T, B, o) = {(T, B, o)}, got {targets.shape}")
    targets = targets.astype(np.float64, copy=False)
    if not np.all(np.isfinite(targets)):
        raise ValueError("mse targets contain NaN or inf")
    return targets, mask


def loss_and_dy(
    y: np.ndarray, targets: np.ndarray, mask: np.ndarray, kind: str, workspace: Workspace | None = None
) -> tuple[float, np.ndarray]:
    """Mean loss over masked positions and its gradient dE/dy (T, B, o).

    xent: targets (T, B) integer classes, E = mean of -log softmax(y)[target].
    mse:  targets (T, B, o) reals,       E = mean of sum_o (y - target)^2.
    mask (T, B) weights each position (1 counts, 0 does not): E = sum(mask * loss) / sum(mask).
    """
    targets, mask = check_loss_inputs(y, targets, mask, kind)
    total = mask.sum()
    weight = mask / (total if total > 0 else 1.0)  # (T, B): each position's share of the mean
    dy = _empty(workspace, "dy", y.shape)
    if kind == "mse":
        np.subtract(y, targets, out=dy)  # (T, B, o): the error y - target
        loss = float(np.vdot(np.einsum("tbo,tbo->tb", dy, dy), weight))
        dy *= (2.0 * weight)[..., None]
        return loss, dy
    np.subtract(y, y.max(axis=-1, keepdims=True), out=dy)  # z = y - max y: exp(z) cannot overflow
    rows, cls = np.arange(targets.size), targets.ravel()
    z_target = _flat(dy)[rows, cls]
    np.exp(dy, out=dy)
    s = dy.sum(axis=-1)  # (T, B): softmax denominators
    loss = float(np.vdot(np.log(s).ravel() - z_target, weight.ravel()))
    dy *= (weight / s)[..., None]  # weighted softmax probabilities
    _flat(dy)[rows, cls] -= weight.ravel()
    return loss, dy


def _elman_backward(
    W: np.ndarray, D: np.ndarray, dh_in: np.ndarray, carry: np.ndarray, signal: np.ndarray | None,
    per_sequence: np.ndarray | None = None,
) -> None:
    """BPTT through one elman layer, in place: dh_in (T, B, n), dE/dh_t arriving from above, becomes dE/da_t
    (the G of this form, written over the total dE/dh_t: no second buffer to stream through).

    carry (B, n) is scratch; signal (T+1,) gets ||dE/dh_t|| for t >= 1, or is None to skip the norms;
    per_sequence (T, B), if given, gets ||dE/dh_{t+1}||^2 of each sequence (what Pascanu's regulariser divides by).
    """
    T = D.shape[0]
    for t in reversed(range(T)):
        g = dh_in[t]
        if t < T - 1:
            g += np.matmul(dh_in[t + 1], W, out=carry)  # total dE/dh_{t+1}: from above and through the recurrence
        if signal is not None:
            signal[t + 1] = math.sqrt(np.vdot(g, g))
        if per_sequence is not None:
            np.einsum("bn,bn->b", g, g, out=per_sequence[t])
        g *= D[t]


def _pascanu_backward(
    W: np.ndarray, D: np.ndarray, dh_in: np.ndarray, carry: np.ndarray, signal: np.ndarray | None,
    per_sequence: np.ndarray | None = None,
) -> None:
    """BPTT through one pascanu layer, in place: dh_in (T, B, n) becomes the total dE/dh_t (the G of this form).

    carry (B, n) is scratch; signal (T+1,) gets ||dE/dh_t|| for t >= 1, or is None to skip the norms;
    per_sequence (T, B), if given, gets ||dE/dh_{t+1}||^2 of each sequence.
    """
    T = D.shape[0]
    for t in reversed(range(T)):
        g = dh_in[t]
        if t < T - 1:
            np.matmul(dh_in[t + 1], W, out=carry)
            g += np.multiply(carry, D[t + 1], out=carry)  # total dE/dh_{t+1}
        if signal is not None:
            signal[t + 1] = math.sqrt(np.vdot(g, g))
        if per_sequence is not None:
            np.einsum("bn,bn->b", g, g, out=per_sequence[t])


def _initial_state_norm(form: str, W: np.ndarray, D: np.ndarray, G: np.ndarray) -> float:
    """||dE/dh_0|| from the first step's G (dE/da_1 for elman, dE/dh_1 for pascanu); only the signal needs it."""
    back = G[0] @ W
    if form == "pascanu":
        back *= D[0]
    return math.sqrt(np.vdot(back, back))


@dataclass(frozen=True)
class Backward:
    """One layer's BPTT quantities, for Pascanu's regulariser (engine/omega.py)."""

    G: np.ndarray  # (T, B, n): elman dE/da_t = phi'(a_t) * dE/dh_t; pascanu dE/dh_t (both for t = 1..T, total)
    g_sq: np.ndarray  # (T, B): ||dE/dh_t||^2 (total) of each sequence for t = 1..T


def _grad_buffers(model: RNN, workspace: Workspace | None) -> dict[str, np.ndarray]:
    """One array per parameter, shaped like it, for the gradients."""
    return {k: _empty(workspace, f"grad:{k}", v.shape) for k, v in model.params.items()}


def bptt(
    model: RNN, trace: Trace, dy: np.ndarray, workspace: Workspace | None = None, with_signal: bool = True,
    backward: list | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Backpropagation through time.

    Returns (grads keyed like model.params, signal) where signal (L, T+1) holds ||dE/dh_k^l||,
    the Frobenius norm over the batch of the total derivative of E with respect to layer l's state h_k.
    with_signal=False returns None for the signal and skips its norms (a training step has no use for them).
    With a `workspace`, grads live in its buffers (see Workspace).
    `backward`, if a list, receives per layer (bottom first) a `Backward` of that layer (what Pascanu's regulariser,
    engine/omega.py, is computed from); valid, like the grads, until the workspace is used again.
    """
    p, L, (T, B, _) = model.params, model.layers, dy.shape
    n = model.hidden
    grads = _grad_buffers(model, workspace)
    np.matmul(_flat(dy).T, _flat(trace.h[-1][1:]), out=grads["W_hy"])
    ones = np.ones(T * B)
    np.matmul(ones, _flat(dy), out=grads["b_y"])  # sum over steps and batch, as a gemv
    signal = np.zeros((L, T + 1)) if with_signal else None
    dh_in = _empty(workspace, f"dh{L - 1}", (T, B, n))
    np.matmul(_flat(dy), p["W_hy"], out=_flat(dh_in))  # dE/dh_t from the readout
    carry = _empty(workspace, "carry", (B, n))
    for l in reversed(range(L)):
        W, D, G = p[f"W_hh_{l}"], trace.d[l], dh_in  # G: dE/da_t (elman) or dE/dh_t (pascanu), in dh_in's buffer
        sig = None if signal is None else signal[l]
        per_sequence = None if backward is None else np.empty((T, B))
        if model.form == "elman":
            _elman_backward(W, D, dh_in, carry, sig, per_sequence)
        else:
            _pascanu_backward(W, D, dh_in, carry, sig, per_sequence)
        if backward is not None:
            backward.insert(0, Backward(G, per_sequence))
        if sig is not None:
            sig[0] = _initial_state_norm(model.form, W, D, G)
        prev = trace.h[l][:-1] if model.form == "elman" else trace.pre[l]  # (T, B, n): what W_hh multiplied
        np.matmul(_flat(G).T, _flat(prev), out=grads[f"W_hh_{l}"])
        _input_weight_grad(_flat(G), trace.inputs[l], grads[f"W_xh_{l}"], workspace)
        np.matmul(ones, _flat(G), out=grads[f"b_h_{l}"])  # sum over steps and batch, as a gemv
        if l > 0:  # dE/d(input_t) = dE/dh_t arriving at the layer below
            dh_in = _empty(workspace, f"dh{l - 1}", (T, B, n))
            np.matmul(_flat(G), p[f"W_xh_{l}"], out=_flat(dh_in))
    return grads, signal


def loss_and_grads(
    model: RNN, xs: np.ndarray, targets: np.ndarray, mask: np.ndarray, kind: str, h0: np.ndarray | None = None
) -> tuple[float, dict[str, np.ndarray], np.ndarray, Trace]:
    """Forward, loss and BPTT in one call: (loss, grads, signal (L, T+1), trace)."""
    trace = forward(model, xs, h0)
    loss, dy = loss_and_dy(trace.y, targets, mask, kind)
    grads, signal = bptt(model, trace, dy)
    return loss, grads, signal, trace


def step_factors(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """For one sequence xs (T, d) (or (T,) token ids): (W_hh of `layer`, D (T, n)) with the step Jacobians

    elman:   J_t = D[t-1][:, None] * W     (diag(phi'(a_t)) W)
    pascanu: J_t = W * D[t-1][None, :]     (W diag(phi'(h_{t-1})))
    for t = 1..T.
    """
    validate_model(model)
    xs, h0 = check_inputs(model, xs, h0, batched=False)
    if not -model.layers <= layer < model.layers:
        raise ValueError(f"layer must be in [{-model.layers}, {model.layers - 1}], got {layer}")
    trace = forward(model, xs[:, None], h0[:, None, :])
    return model.W_hh(layer), trace.d[layer % model.layers][:, 0, :]


# ---- a model as named arrays (run/files.py reads and writes them as model*.npz) ----------------------------


def model_arrays(model: RNN) -> dict[str, np.ndarray]:
    """The model as the arrays of a model*.npz file: form, activation, leaky_slope (0-d), then the parameters."""
    validate_model(model)
    return {
        "form": np.array(model.form),
        "activation": np.array(model.activation),
        "leaky_slope": np.array(float(model.leaky_slope)),
        **model.params,
    }


def model_from_arrays(arrays: dict[str, np.ndarray]) -> RNN:
    """The inverse of model_arrays (parameters as float64); ValueError naming a missing key or a bad shape."""
    missing = [k for k in SETTINGS_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"missing keys: {', '.join(missing)}")
    params = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items() if k not in SETTINGS_KEYS}
    model = RNN(str(arrays["form"]), str(arrays["activation"]), float(arrays["leaky_slope"]), params)
    validate_model(model)
    return model
