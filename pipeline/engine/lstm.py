"""LSTM in numpy: stacked, batched, float64, in PyTorch's `nn.LSTM` layout and gate order (i, f, g, o).

Shapes as in rnn.py (time-major, T steps, B sequences, d inputs, n units per layer, o outputs). The state of a layer
is the pair (h, c); an initial state h0 is (L, B, 2n) batched or (L, 2n) for one sequence, h then c.

One step of layer l (docs/math.md, section 13.1), with sigma the logistic function:

  a_t = W_ih x_t + W_hh h_{t-1} + b                    (4n,): the pre-activations of the four gates
  i = sigma(a[0:n])  f = sigma(a[n:2n])  g = tanh(a[2n:3n])  o = sigma(a[3n:4n])
  c_t = f * c_{t-1} + i * g                            h_t = o * tanh(c_t)

Keys of the model file: W_ih_l (4n, d) for l = 0, (4n, n) above; W_hh_l (4n, n); b_l (4n,); W_hy (o, n); b_y (o,).
PyTorch keeps two biases b_ih + b_hh; their sum is b. The readout reads the top layer's h, like the vanilla RNN's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .rnn import Workspace, _check_xs, _empty, _flat, _input_drive, _input_weight_grad

CELL = "lstm"
GATES = ("i", "f", "g", "o")  # the order of the four n-row blocks of W_ih, W_hh and b
FORGET_BIAS = 1.0  # the forget gate's bias at init: f starts near sigma(1) = 0.73 (Jozefowicz et al. 2015)


@dataclass
class LSTM:
    params: dict[str, np.ndarray] = field(default_factory=dict)  # keys as in the module docstring
    cell: ClassVar[str] = CELL  # what a model file's `cell` entry says; the vanilla RNN's is "rnn"

    @property
    def layers(self) -> int:
        return sum(1 for k in self.params if k.startswith("W_hh_"))

    @property
    def hidden(self) -> int:
        return self.params["W_hh_0"].shape[1]

    @property
    def input_dim(self) -> int:
        return self.params["W_ih_0"].shape[1]

    @property
    def output_dim(self) -> int:
        return self.params["W_hy"].shape[0]

    @property
    def state_dim(self) -> int:
        """Width of one layer's state (h, c): 2n."""
        return 2 * self.hidden

    def W_hh(self, layer: int) -> np.ndarray:
        return self.params[f"W_hh_{layer % self.layers}"]

    def copy(self) -> "LSTM":
        return LSTM({k: v.copy() for k, v in self.params.items()})


def param_keys(layers: int) -> list[str]:
    keys = []
    for l in range(layers):
        keys += [f"W_ih_{l}", f"W_hh_{l}", f"b_{l}"]
    return keys + ["W_hy", "b_y"]


def validate_lstm(model: LSTM) -> None:
    """Raise ValueError naming the first thing wrong with the model's keys or shapes."""
    L = model.layers
    if L < 1:
        raise ValueError("model has no layers: key W_hh_0 is missing")
    missing = [k for k in param_keys(L) if k not in model.params]
    if missing:
        raise ValueError(f"model is missing keys: {', '.join(missing)}")
    W0 = model.params["W_hh_0"]
    n = W0.shape[1] if W0.ndim == 2 else -1
    for l in range(L):
        W, U, b = (model.params[f"{k}_{l}"] for k in ("W_hh", "W_ih", "b"))
        if W.shape != (4 * n, n):
            raise ValueError(f"W_hh_{l} must have shape (4n, n) = {(4 * n, n)}, got {W.shape}")
        if U.ndim != 2 or U.shape[0] != 4 * n or (l > 0 and U.shape[1] != n):
            want = "(4n, d)" if l == 0 else f"{(4 * n, n)}"
            raise ValueError(f"W_ih_{l} must have shape {want}, got {U.shape}")
        if b.shape != (4 * n,):
            raise ValueError(f"b_{l} must have shape ({4 * n},), got {b.shape}")
    Wy, by = model.params["W_hy"], model.params["b_y"]
    if Wy.ndim != 2 or Wy.shape[1] != n:
        raise ValueError(f"W_hy must have shape (o, {n}), got {Wy.shape}")
    if by.shape != (Wy.shape[0],):
        raise ValueError(f"b_y must have shape ({Wy.shape[0]},), got {by.shape}")


def check_lstm_inputs(model: LSTM, xs: np.ndarray, h0: np.ndarray | None, batched: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Validate xs as rnn.check_inputs does, and h0 ((L, B, 2n) / (L, 2n), h then c, or None for zeros)."""
    xs = _check_xs(model, xs, batched)
    lead = (model.layers,) + ((xs.shape[1],) if batched else ())
    shape = lead + (model.state_dim,)
    h0 = np.zeros(shape) if h0 is None else np.asarray(h0, dtype=np.float64)
    if h0.shape != shape:
        raise ValueError(f"h0 must have shape {shape} (L{', B' if batched else ''}, 2n: h then c), got {h0.shape}")
    if not np.all(np.isfinite(h0)):
        raise ValueError("h0 contains NaN or inf")
    return xs, h0


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The logistic function as (1 + tanh(z/2)) / 2: one ufunc pass, no overflow, exactly 0 or 1 only far out."""
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


@dataclass
class LSTMTrace:
    """What BPTT and the step Jacobians need from a forward pass."""

    inputs: list[np.ndarray]  # per layer, (T, B, d_l) (or (T, B) token ids for layer 0): what the layer read
    h: list[np.ndarray]  # per layer, (T+1, B, n), h[0] the initial h
    c: list[np.ndarray]  # per layer, (T+1, B, n), c[0] the initial c
    gates: list[np.ndarray]  # per layer, (T, B, 4n): i, f, g, o after their nonlinearities
    tc: list[np.ndarray]  # per layer, (T, B, n): tanh(c_t) for t = 1..T
    y: np.ndarray  # (T, B, o) readout of the top layer


def _lstm_layer(W: np.ndarray, gates: np.ndarray, h: np.ndarray, c: np.ndarray, tc: np.ndarray) -> None:
    """Run one layer in place: gates (T, B, 4n) holds W_ih x_t + b on entry and the activated gates on exit;
    h, c (T+1, B, n) have h[0], c[0] set and are filled; tc (T, B, n) gets tanh(c_t)."""
    T, B, n = gates.shape[0], gates.shape[1], W.shape[1]
    WT = np.ascontiguousarray(W.T)  # (n, 4n)
    scale, shift = _gate_affine(n)
    rec, ig = np.empty((B, 4 * n)), np.empty((B, n))
    for t in range(T):
        a = gates[t]
        np.matmul(h[t], WT, out=rec)
        a += rec
        _activate_gates(a, scale, shift)
        i, f, g, o = a[:, :n], a[:, n : 2 * n], a[:, 2 * n : 3 * n], a[:, 3 * n :]
        np.multiply(f, c[t], out=c[t + 1])
        c[t + 1] += np.multiply(i, g, out=ig)
        np.tanh(c[t + 1], out=tc[t])
        np.multiply(o, tc[t], out=h[t + 1])


def _gate_affine(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) (4n,) of `_activate_gates`: 1/2 and 1 on the sigmoid gates i, f, o; 1 and 0 on g."""
    half, one, zero = np.full(n, 0.5), np.ones(n), np.zeros(n)
    return np.concatenate([half, half, one, half]), np.concatenate([one, one, zero, one])


def _activate_gates(a: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> None:
    """i, f, o = sigmoid and g = tanh of the pre-activations a (B, 4n), in place, in four passes over all four gates
    instead of one per gate: (tanh(a scale) + shift) scale is `sigmoid`'s (1 + tanh(z/2)) / 2 on i, f, o and tanh
    on g, where multiplying by 1 and adding 0 change no bit (but a zero's sign)."""
    a *= scale
    np.tanh(a, out=a)
    a += shift
    a *= scale


def forward(model: LSTM, xs: np.ndarray, h0: np.ndarray | None = None, workspace: Workspace | None = None
            ) -> LSTMTrace:
    """Run the stack over a batch xs (T, B, d) (or (T, B) token ids) from h0 (L, B, 2n) (zeros if None)."""
    validate_lstm(model)
    xs, h0 = check_lstm_inputs(model, xs, h0, batched=True)
    p, (T, B), n = model.params, xs.shape[:2], model.hidden
    trace = LSTMTrace([], [], [], [], [], np.empty(0))
    x = xs
    for l in range(model.layers):
        gates = _empty(workspace, f"gates{l}", (T, B, 4 * n))
        _input_drive(x, p[f"W_ih_{l}"], p[f"b_{l}"], gates)
        h, c = _empty(workspace, f"h{l}", (T + 1, B, n)), _empty(workspace, f"c{l}", (T + 1, B, n))
        h[0], c[0] = h0[l, :, :n], h0[l, :, n:]
        tc = _empty(workspace, f"tc{l}", (T, B, n))
        _lstm_layer(p[f"W_hh_{l}"], gates, h, c, tc)
        for store, value in zip((trace.inputs, trace.h, trace.c, trace.gates, trace.tc), (x, h, c, gates, tc)):
            store.append(value)
        x = h[1:]
    trace.y = _empty(workspace, "y", (T, B, model.output_dim))
    np.matmul(_flat(x), np.ascontiguousarray(p["W_hy"].T), out=_flat(trace.y))
    trace.y += p["b_y"]
    return trace


def last_state(trace: LSTMTrace) -> np.ndarray:
    """(L, B, 2n): every layer's final (h, c), to carry into the next window of a stream."""
    return np.stack([np.concatenate([h[-1], c[-1]], axis=-1) for h, c in zip(trace.h, trace.c)])


def _layer_backward(W: np.ndarray, gates: np.ndarray, c: np.ndarray, tc: np.ndarray, dh_in: np.ndarray,
                    dA: np.ndarray, signal: np.ndarray | None, workspace: Workspace | None = None) -> None:
    """BPTT through one layer: dh_in (T, B, n) is dE/dh_t arriving from above; dA (T, B, 4n) gets dE/da_t.

    signal (T+1,) gets ||(dE/dh_k, dE/dc_k)|| (Frobenius over the batch), with (h_k, c_k) the state that step
    k+1 reads, or is None to skip the norms. What does not depend on the error is computed for all steps at once
    (one pass each over (T, B, n) arrays, in the workspace's buffers when given), so the loop over time holds only
    the recurrence."""
    T, B, n = dh_in.shape
    i, f, g, o = (gates[..., j * n : (j + 1) * n] for j in range(4))
    tmp = _empty(workspace, "lstm:tmp", (T, B, n))
    carry = np.multiply(tc, tc, out=_empty(workspace, "lstm:carry", (T, B, n)))  # dh_t/dc_t = o (1 - tc^2)
    np.multiply(o, np.subtract(1.0, carry, out=carry), out=carry)
    into_gates = _empty(workspace, "lstm:into_gates", (T, B, 3, n))  # da/dc for i, f, g: g i', c_{t-1} f', i g'
    np.multiply(g, np.multiply(i, np.subtract(1.0, i, out=tmp), out=tmp), out=into_gates[:, :, 0])
    np.multiply(c[:-1], np.multiply(f, np.subtract(1.0, f, out=tmp), out=tmp), out=into_gates[:, :, 1])
    np.multiply(i, np.subtract(1.0, np.multiply(g, g, out=tmp), out=tmp), out=into_gates[:, :, 2])
    out_gate = np.multiply(tc, o, out=_empty(workspace, "lstm:out_gate", (T, B, n)))  # da_o/dh_t = tc o (1 - o)
    np.multiply(out_gate, np.subtract(1.0, o, out=tmp), out=out_gate)
    forget = _empty(workspace, "lstm:forget", (T, B, n))
    np.copyto(forget, f)
    dh_rec, dc_rec = np.zeros((B, n)), np.zeros((B, n))  # dE/dh_t and dE/dc_t through step t+1
    for t in reversed(range(T)):
        dh = dh_in[t] + dh_rec  # total dE/dh_{t+1}
        if signal is not None:
            signal[t + 1] = math.sqrt(np.vdot(dh, dh) + np.vdot(dc_rec, dc_rec))
        dc = dh * carry[t]
        dc += dc_rec  # dE/dc_{t+1}, h_{t+1} = o tanh(c_{t+1}) included
        da = dA[t]
        np.multiply(into_gates[t], dc[:, None, :], out=da[:, : 3 * n].reshape(B, 3, n))
        np.multiply(dh, out_gate[t], out=da[:, 3 * n :])
        dh_rec = da @ W
        dc_rec = np.multiply(dc, forget[t], out=dc)
    if signal is not None:
        signal[0] = math.sqrt(np.vdot(dh_rec, dh_rec) + np.vdot(dc_rec, dc_rec))


def bptt(model: LSTM, trace: LSTMTrace, dy: np.ndarray, workspace: Workspace | None = None,
         with_signal: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Backpropagation through time: (grads keyed like model.params, signal (L, T+1) or None), as rnn.bptt."""
    p, L, (T, B, _) = model.params, model.layers, dy.shape
    n = model.hidden
    grads = {k: _empty(workspace, f"grad:{k}", v.shape) for k, v in p.items()}
    np.matmul(_flat(dy).T, _flat(trace.h[-1][1:]), out=grads["W_hy"])
    grads["b_y"][...] = _flat(dy).sum(axis=0)
    signal = np.zeros((L, T + 1)) if with_signal else None
    dh_in = _empty(workspace, f"dh{L - 1}", (T, B, n))
    np.matmul(_flat(dy), p["W_hy"], out=_flat(dh_in))
    for l in reversed(range(L)):
        dA = _empty(workspace, f"dA{l}", (T, B, 4 * n))
        _layer_backward(p[f"W_hh_{l}"], trace.gates[l], trace.c[l], trace.tc[l], dh_in, dA,
                        None if signal is None else signal[l], workspace)
        np.matmul(_flat(dA).T, _flat(trace.h[l][:-1]), out=grads[f"W_hh_{l}"])
        _input_weight_grad(_flat(dA), trace.inputs[l], grads[f"W_ih_{l}"], workspace)
        grads[f"b_{l}"][...] = _flat(dA).sum(axis=0)
        if l > 0:
            dh_in = _empty(workspace, f"dh{l - 1}", (T, B, n))
            np.matmul(_flat(dA), p[f"W_ih_{l}"], out=_flat(dh_in))
    return grads, signal


# ---- step Jacobians of the state (h, c) ---------------------------------------------------------------------


def step_jacobians(model: LSTM, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1) -> np.ndarray:
    """(T, 2n, 2n): J_t = d(h_t, c_t)/d(h_{t-1}, c_{t-1}) of `layer` for t = 1..T on one sequence xs (T, d) (or
    (T,) token ids) from h0 (L, 2n). Blocks (docs/math.md, section 13.2), u' the derivative of a gate:

      dc_t/dh_{t-1} = diag(g i') W_i + diag(c_{t-1} f') W_f + diag(i g') W_g      dc_t/dc_{t-1} = diag(f)
      dh_t/dh_{t-1} = diag(tanh(c_t) o') W_o + diag(q) dc_t/dh_{t-1}              dh_t/dc_{t-1} = diag(q f)
    with q = o (1 - tanh(c_t)^2) and W_i, W_f, W_g, W_o the four n-row blocks of W_hh."""
    validate_lstm(model)
    xs, h0 = check_lstm_inputs(model, xs, h0, batched=False)
    if not -model.layers <= layer < model.layers:
        raise ValueError(f"layer must be in [{-model.layers}, {model.layers - 1}], got {layer}")
    l = layer % model.layers
    trace = forward(model, xs[:, None], h0[:, None, :])
    return jacobians_from_trace(model.W_hh(l), trace.gates[l][:, 0], trace.c[l][:, 0], trace.tc[l][:, 0])


def jacobians_from_trace(W: np.ndarray, gates: np.ndarray, c: np.ndarray, tc: np.ndarray) -> np.ndarray:
    """The step Jacobians (T, 2n, 2n) from one sequence's gates (T, 4n), cell states (T+1, n) and tanh(c_t) (T, n)."""
    n = W.shape[1]
    Wi, Wf, Wg, Wo = (W[j * n : (j + 1) * n] for j in range(4))
    i, f, g, o = (gates[:, j * n : (j + 1) * n] for j in range(4))
    q = o * (1.0 - tc * tc)  # (T, n): dh_t/dc_t
    C_h = ((g * i * (1.0 - i))[:, :, None] * Wi + (c[:-1] * f * (1.0 - f))[:, :, None] * Wf
           + (i * (1.0 - g * g))[:, :, None] * Wg)
    T = gates.shape[0]
    J = np.zeros((T, 2 * n, 2 * n))
    J[:, :n, :n] = (tc * o * (1.0 - o))[:, :, None] * Wo + q[:, :, None] * C_h
    J[:, n:, :n] = C_h
    diag = np.arange(n)
    J[:, diag, n + diag] = q * f
    J[:, n + diag, n + diag] = f
    return J


# ---- a model as named arrays --------------------------------------------------------------------------------


def from_torch_state(state: dict[str, np.ndarray], W_hy: np.ndarray, b_y: np.ndarray) -> LSTM:
    """An LSTM from the arrays of a PyTorch `nn.LSTM` state dict (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k},
    bias_hh_l{k}, as numpy arrays) and a readout: the same gate order and layout, the two biases summed."""
    params: dict[str, np.ndarray] = {}
    layers = sum(1 for k in state if k.startswith("weight_hh_l"))
    for l in range(layers):
        params[f"W_ih_{l}"] = np.array(state[f"weight_ih_l{l}"], dtype=np.float64)
        params[f"W_hh_{l}"] = np.array(state[f"weight_hh_l{l}"], dtype=np.float64)
        params[f"b_{l}"] = (np.asarray(state[f"bias_ih_l{l}"], dtype=np.float64)
                            + np.asarray(state[f"bias_hh_l{l}"], dtype=np.float64))
    model = LSTM({**params, "W_hy": np.array(W_hy, dtype=np.float64), "b_y": np.array(b_y, dtype=np.float64)})
    validate_lstm(model)
    return model



def lstm_arrays(model: LSTM) -> dict[str, np.ndarray]:
    """The model as the arrays of a model*.npz file: cell = "lstm" (0-d), then the parameters."""
    validate_lstm(model)
    return {"cell": np.array(CELL), **model.params}


def lstm_from_arrays(arrays: dict[str, np.ndarray]) -> LSTM:
    """The inverse of lstm_arrays (parameters as float64); ValueError naming a missing key or a bad shape."""
    model = LSTM({k: np.asarray(v, dtype=np.float64) for k, v in arrays.items() if k != "cell"})
    validate_lstm(model)
    return model
