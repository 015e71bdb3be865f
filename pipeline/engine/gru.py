"""GRU in numpy: stacked, batched, float64, in PyTorch's `nn.GRU` layout and gate order (r, z, n).

Shapes as in rnn.py (time-major, T steps, B sequences, d inputs, n units per layer, o outputs). The state of a layer
is h alone; an initial state h0 is (L, B, n) batched or (L, n) for one sequence, as for the vanilla RNN.

One step of layer l (docs/math.md, section 14.1), with sigma the logistic function and [.]_j the j-th block of n rows:

  i_t = W_ih x_t + b_ih            m_t = W_hh h_{t-1} + b_hh          (3n,) each: the input and the hidden drives
  r = sigma([i]_r + [m]_r)   z = sigma([i]_z + [m]_z)   n = tanh([i]_n + r * [m]_n)
  h_t = (1 - z) * n + z * h_{t-1}

The reset gate multiplies the hidden drive of the candidate, W_hn h_{t-1} + b_hn, bias included, as nn.GRU does, so
the two biases are kept apart. Keys of the model file: W_ih_l (3n, d) for l = 0, (3n, n) above; W_hh_l (3n, n);
b_ih_l, b_hh_l (3n,); W_hy (o, n); b_y (o,). The readout reads the top layer's h.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .lstm import sigmoid
from .rnn import Workspace, _empty, _flat, _input_drive, _input_weight_grad, check_inputs

CELL = "gru"
GATES = ("r", "z", "n")  # the order of the three n-row blocks of W_ih, W_hh, b_ih and b_hh


@dataclass
class GRU:
    params: dict[str, np.ndarray] = field(default_factory=dict)  # keys as in the module docstring
    cell: ClassVar[str] = CELL

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

    def W_hh(self, layer: int) -> np.ndarray:
        return self.params[f"W_hh_{layer % self.layers}"]

    def copy(self) -> "GRU":
        return GRU({k: v.copy() for k, v in self.params.items()})


def param_keys(layers: int) -> list[str]:
    keys = []
    for l in range(layers):
        keys += [f"W_ih_{l}", f"W_hh_{l}", f"b_ih_{l}", f"b_hh_{l}"]
    return keys + ["W_hy", "b_y"]


def validate_gru(model: GRU) -> None:
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
        W, U = model.params[f"W_hh_{l}"], model.params[f"W_ih_{l}"]
        if W.shape != (3 * n, n):
            raise ValueError(f"W_hh_{l} must have shape (3n, n) = {(3 * n, n)}, got {W.shape}")
        if U.ndim != 2 or U.shape[0] != 3 * n or (l > 0 and U.shape[1] != n):
            want = "(3n, d)" if l == 0 else f"{(3 * n, n)}"
            raise ValueError(f"W_ih_{l} must have shape {want}, got {U.shape}")
        for key in (f"b_ih_{l}", f"b_hh_{l}"):
            if model.params[key].shape != (3 * n,):
                raise ValueError(f"{key} must have shape ({3 * n},), got {model.params[key].shape}")
    Wy, by = model.params["W_hy"], model.params["b_y"]
    if Wy.ndim != 2 or Wy.shape[1] != n:
        raise ValueError(f"W_hy must have shape (o, {n}), got {Wy.shape}")
    if by.shape != (Wy.shape[0],):
        raise ValueError(f"b_y must have shape ({Wy.shape[0]},), got {by.shape}")


@dataclass
class GRUTrace:
    """What BPTT and the step Jacobians need from a forward pass."""

    inputs: list[np.ndarray]  # per layer, (T, B, d_l) (or (T, B) token ids for layer 0): what the layer read
    h: list[np.ndarray]  # per layer, (T+1, B, n), h[0] the initial h
    gates: list[np.ndarray]  # per layer, (T, B, 3n): r, z, n after their nonlinearities
    hn: list[np.ndarray]  # per layer, (T, B, n): [m_t]_n = W_hn h_{t-1} + b_hn, what the reset gate multiplies
    y: np.ndarray  # (T, B, o) readout of the top layer


def _gru_layer(W: np.ndarray, b_hh: np.ndarray, gates: np.ndarray, h: np.ndarray, hn: np.ndarray) -> None:
    """Run one layer in place: gates (T, B, 3n) holds W_ih x_t + b_ih on entry and the activated gates on exit;
    h (T+1, B, n) has h[0] set and is filled; hn (T, B, n) gets W_hn h_{t-1} + b_hn. The step's temporaries are
    (B, .) buffers made once, before the loop."""
    B, n = gates.shape[1], W.shape[1]
    WT = np.ascontiguousarray(W.T)  # (n, 3n)
    m, reset_hn = np.empty((B, 3 * n)), np.empty((B, n))
    for t in range(gates.shape[0]):
        a = gates[t]
        np.matmul(h[t], WT, out=m)
        m += b_hh  # (B, 3n): the hidden drive W_hh h_{t-1} + b_hh
        a[:, : 2 * n] += m[:, : 2 * n]
        sigmoid(a[:, : 2 * n], out=a[:, : 2 * n])  # r, z
        hn[t] = m[:, 2 * n :]
        cand = a[:, 2 * n :]
        cand += np.multiply(a[:, :n], hn[t], out=reset_hn)
        np.tanh(cand, out=cand)  # n
        z = a[:, n : 2 * n]
        np.subtract(h[t], cand, out=h[t + 1])
        h[t + 1] *= z
        h[t + 1] += cand  # n + z (h_{t-1} - n) = (1 - z) n + z h_{t-1}


def forward(model: GRU, xs: np.ndarray, h0: np.ndarray | None = None, workspace: Workspace | None = None
            ) -> GRUTrace:
    """Run the stack over a batch xs (T, B, d) (or (T, B) token ids) from h0 (L, B, n) (zeros if None)."""
    validate_gru(model)
    xs, h0 = check_inputs(model, xs, h0, batched=True)
    p, (T, B), n = model.params, xs.shape[:2], model.hidden
    trace = GRUTrace([], [], [], [], np.empty(0))
    x = xs
    for l in range(model.layers):
        gates = _empty(workspace, f"gates{l}", (T, B, 3 * n))
        _input_drive(x, p[f"W_ih_{l}"], p[f"b_ih_{l}"], gates)
        h, hn = _empty(workspace, f"h{l}", (T + 1, B, n)), _empty(workspace, f"hn{l}", (T, B, n))
        h[0] = h0[l]
        _gru_layer(p[f"W_hh_{l}"], p[f"b_hh_{l}"], gates, h, hn)
        for store, value in zip((trace.inputs, trace.h, trace.gates, trace.hn), (x, h, gates, hn)):
            store.append(value)
        x = h[1:]
    trace.y = _empty(workspace, "y", (T, B, model.output_dim))
    np.matmul(_flat(x), np.ascontiguousarray(p["W_hy"].T), out=_flat(trace.y))
    trace.y += p["b_y"]
    return trace


def _step_factors(gates: np.ndarray, h_prev: np.ndarray, hn: np.ndarray) -> tuple[np.ndarray, ...]:
    """The error-independent factors of every step, (T, ..., n) each: r, z, and
    f_n = (1 - z)(1 - n^2) = dh_t/da_n, f_z = (h_{t-1} - n) z (1 - z) = dh_t/da_z, f_r = hn r (1 - r) = da_n/da_r."""
    n = hn.shape[-1]
    r, z, cand = gates[..., :n], gates[..., n : 2 * n], gates[..., 2 * n :]
    return r, z, (1.0 - z) * (1.0 - cand * cand), (h_prev - cand) * z * (1.0 - z), hn * r * (1.0 - r)


def _backward_factors(gates: np.ndarray, h_prev: np.ndarray, hn: np.ndarray, into_zn: np.ndarray,
                      into_rn: np.ndarray, scratch: np.ndarray) -> None:
    """`_step_factors` laid out for the loop over time, with `_step_factors`'s arithmetic (so its bits): into_zn
    (T, B, 2, n) gets [f_z, f_n], the factors dh_{t+1} meets on its way into da_z and da_n, and into_rn (T, B, 2, n)
    [f_r, r], those da_n meets on its way into dm_r and dm_n (the r and n blocks of the hidden drive's gradient), so
    that each product in the loop is one pass over two gates. scratch (T, B, n) is overwritten."""
    n = hn.shape[-1]
    r, z, cand = gates[..., :n], gates[..., n : 2 * n], gates[..., 2 * n :]
    f_z, f_n, f_r = into_zn[:, :, 0], into_zn[:, :, 1], into_rn[:, :, 0]
    np.subtract(1.0, np.multiply(cand, cand, out=f_n), out=f_n)
    np.multiply(np.subtract(1.0, z, out=scratch), f_n, out=f_n)  # (1 - z)(1 - n^2)
    np.multiply(np.subtract(h_prev, cand, out=f_z), z, out=f_z)
    np.multiply(f_z, scratch, out=f_z)  # ((h_{t-1} - n) z)(1 - z)
    np.multiply(hn, r, out=f_r)
    np.multiply(f_r, np.subtract(1.0, r, out=scratch), out=f_r)  # (hn r)(1 - r)
    np.copyto(into_rn[:, :, 1], r)


def _layer_backward(W: np.ndarray, gates: np.ndarray, h: np.ndarray, hn: np.ndarray, dh_in: np.ndarray,
                    dA_in: np.ndarray, dA_hid: np.ndarray, signal: np.ndarray | None,
                    workspace: Workspace | None = None) -> None:
    """BPTT through one layer: dh_in (T, B, n) is dE/dh_t arriving from above; dA_in (T, B, 3n) gets dE/di_t (the
    input drive's gradient) and dA_hid (T, B, 3n) dE/dm_t (the hidden drive's: its n block is the candidate's times
    r). signal (T+1,) gets ||dE/dh_k|| (Frobenius over the batch), or is None to skip the norms.

    The loop over time writes dE/dm_t and the candidate's da_n; the r and z blocks of dE/di_t, which equal dE/dm_t's,
    are copied for all steps at once after it. Until then those blocks hold [f_r, r] (`_backward_factors`), and
    dA_hid's first block is the factors' scratch before the loop writes it: the factors cost no memory beyond the
    (T, B, 2n) of [f_z, f_n]."""
    T, B, n = dh_in.shape
    into_zn, into_rn = _empty(workspace, "gru:into_zn", (T, B, 2, n)), dA_in[..., : 2 * n].reshape(T, B, 2, n)
    _backward_factors(gates, h[:-1], hn, into_zn, into_rn, dA_hid[..., :n])
    z = gates[..., n : 2 * n]
    dh, dh_rec, through_z = np.empty((B, n)), np.zeros((B, n)), np.empty((B, n))  # dh_rec: dE/dh_t via step t+1
    for t in reversed(range(T)):
        np.add(dh_in[t], dh_rec, out=dh)  # total dE/dh_{t+1}
        if signal is not None:
            signal[t + 1] = math.sqrt(np.vdot(dh, dh))
        dm, da_n = dA_hid[t], dA_in[t][:, 2 * n :]
        np.multiply(dh, into_zn[t, :, 1], out=da_n)  # da_n
        np.multiply(dh, into_zn[t, :, 0], out=dm[:, n : 2 * n])  # da_z
        np.multiply(into_rn[t], da_n[:, None, :], out=dm.reshape(B, 3, n)[:, ::2])  # da_r; dm_n = da_n r
        np.matmul(dm, W, out=dh_rec)
        dh_rec += np.multiply(dh, z[t], out=through_z)
    dA_in[..., : 2 * n] = dA_hid[..., : 2 * n]
    if signal is not None:
        signal[0] = math.sqrt(np.vdot(dh_rec, dh_rec))


def bptt(model: GRU, trace: GRUTrace, dy: np.ndarray, workspace: Workspace | None = None,
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
        dA_in, dA_hid = _empty(workspace, f"dAi{l}", (T, B, 3 * n)), _empty(workspace, f"dAh{l}", (T, B, 3 * n))
        _layer_backward(p[f"W_hh_{l}"], trace.gates[l], trace.h[l], trace.hn[l], dh_in, dA_in, dA_hid,
                        None if signal is None else signal[l], workspace)
        np.matmul(_flat(dA_hid).T, _flat(trace.h[l][:-1]), out=grads[f"W_hh_{l}"])
        grads[f"b_hh_{l}"][...] = _flat(dA_hid).sum(axis=0)
        _input_weight_grad(_flat(dA_in), trace.inputs[l], grads[f"W_ih_{l}"], workspace)
        grads[f"b_ih_{l}"][...] = _flat(dA_in).sum(axis=0)
        if l > 0:
            dh_in = _empty(workspace, f"dh{l - 1}", (T, B, n))
            np.matmul(_flat(dA_in), p[f"W_ih_{l}"], out=_flat(dh_in))
    return grads, signal


# ---- step Jacobians ------------------------------------------------------------------------------------------


def step_jacobians(model: GRU, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1) -> np.ndarray:
    """(T, n, n): J_t = dh_t/dh_{t-1} of `layer` for t = 1..T on one sequence xs (T, d) (or (T,) token ids) from
    h0 (L, n). With W_r, W_z, W_n the three n-row blocks of W_hh (docs/math.md, section 14.2):

      J_t = diag(z) + diag(f_n r) W_n + diag(f_n f_r) W_r + diag(f_z) W_z
    with f_n = (1 - z)(1 - n^2), f_z = (h_{t-1} - n) z (1 - z), f_r = hn r (1 - r) and hn = W_hn h_{t-1} + b_hn."""
    validate_gru(model)
    xs, h0 = check_inputs(model, xs, h0, batched=False)
    if not -model.layers <= layer < model.layers:
        raise ValueError(f"layer must be in [{-model.layers}, {model.layers - 1}], got {layer}")
    l = layer % model.layers
    trace = forward(model, xs[:, None], h0[:, None, :])
    return jacobians_from_trace(model.W_hh(l), trace.gates[l][:, 0], trace.h[l][:, 0], trace.hn[l][:, 0])


def jacobians_from_trace(W: np.ndarray, gates: np.ndarray, h: np.ndarray, hn: np.ndarray) -> np.ndarray:
    """The step Jacobians (T, n, n) from one sequence's gates (T, 3n), states (T+1, n) and hidden drives hn (T, n)."""
    n = W.shape[1]
    Wr, Wz, Wn = (W[j * n : (j + 1) * n] for j in range(3))
    r, z, f_n, f_z, f_r = _step_factors(gates, h[:-1], hn)
    J = (f_n * r)[:, :, None] * Wn + (f_n * f_r)[:, :, None] * Wr + f_z[:, :, None] * Wz
    diag = np.arange(n)
    J[:, diag, diag] += z
    return J


def step(W: np.ndarray, b_hh: np.ndarray, drive: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The step equation on rows h (r, n) with one step's input drive W_ih x_t + b_ih (3n,): the next states (r, n).
    Written out on its own (no trace, no derivative), for the spot check's finite differences."""
    n = W.shape[1]
    m = h @ W.T + b_hh
    r = sigmoid(drive[:n] + m[:, :n])
    z = sigmoid(drive[n : 2 * n] + m[:, n : 2 * n])
    cand = np.tanh(drive[2 * n :] + r * m[:, 2 * n :])
    return (1.0 - z) * cand + z * h


# ---- a model as named arrays --------------------------------------------------------------------------------


def from_torch_state(state: dict[str, np.ndarray], W_hy: np.ndarray, b_y: np.ndarray) -> GRU:
    """A GRU from the arrays of a PyTorch `nn.GRU` state dict (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k},
    bias_hh_l{k}, as numpy arrays) and a readout: the same gate order and layout, both biases kept."""
    params: dict[str, np.ndarray] = {}
    for l in range(sum(1 for k in state if k.startswith("weight_hh_l"))):
        for ours, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
            params[f"{ours}_{l}"] = np.array(state[f"{theirs}_l{l}"], dtype=np.float64)
    model = GRU({**params, "W_hy": np.array(W_hy, dtype=np.float64), "b_y": np.array(b_y, dtype=np.float64)})
    validate_gru(model)
    return model


def gru_arrays(model: GRU) -> dict[str, np.ndarray]:
    """The model as the arrays of a model*.npz file: cell = "gru" (0-d), then the parameters."""
    validate_gru(model)
    return {"cell": np.array(CELL), **model.params}


def gru_from_arrays(arrays: dict[str, np.ndarray]) -> GRU:
    """The inverse of gru_arrays (parameters as float64); ValueError naming a missing key or a bad shape."""
    model = GRU({k: np.asarray(v, dtype=np.float64) for k, v in arrays.items() if k != "cell"})
    validate_gru(model)
    return model
