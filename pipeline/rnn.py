"""Vanilla RNN in numpy: stacked elman/pascanu forms, readout, losses, BPTT, model files.

Shapes: T timesteps, B sequences in a batch, d inputs, n hidden units per layer, o outputs.
Batched arrays are time-major: xs (T, B, d), states h (T+1, B, n) with h[0] the initial state.

Forms (DESIGN.md):
  elman:   h_t = phi(W_hh h_{t-1} + W_xh x_t + b_h)      J_t = diag(phi'(a_t)) W_hh
  pascanu: h_t = W_hh phi(h_{t-1}) + W_xh x_t + b_h      J_t = W_hh diag(phi'(h_{t-1}))
Layer l > 0 reads layer l-1's state as its input; the readout y_t = W_hy h_t + b_y reads the top layer.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from .activations import Activation, get_activation

FORMS = ("elman", "pascanu")
LOSSES = ("xent", "mse")


@dataclass
class RNN:
    form: str  # "elman" | "pascanu"
    activation: str  # a name from activations.ACTIVATIONS
    leaky_slope: float  # slope of leaky_relu for z < 0; ignored by other activations
    params: dict[str, np.ndarray] = field(default_factory=dict)  # keys as in model*.npz

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


def check_inputs(model: RNN, xs: np.ndarray, h0: np.ndarray | None, batched: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate xs ((T, B, d) if batched else (T, d)) and h0 ((L, B, n) / (L, n) or None); return float64 copies."""
    xs = np.asarray(xs, dtype=np.float64)
    want = "(T, B, d)" if batched else "(T, d)"
    if xs.ndim != (3 if batched else 2) or xs.shape[0] < 1 or xs.shape[-1] != model.input_dim:
        raise ValueError(f"xs must have shape {want} with T >= 1 and d = {model.input_dim}, got {xs.shape}")
    if not np.all(np.isfinite(xs)):
        raise ValueError("xs contains NaN or inf")
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

    inputs: list[np.ndarray]  # per layer, (T, B, d_l): what the layer read
    h: list[np.ndarray]  # per layer, (T+1, B, n): h[0] = h0
    d: list[np.ndarray]  # per layer, (T, B, n): elman phi'(a_t); pascanu phi'(h_{t-1})
    y: np.ndarray  # (T, B, o) readout of the top layer
    pre: list[np.ndarray]  # pascanu only: phi(h_{t-1}) per layer, (T, B, n); empty for elman


def forward(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None) -> Trace:
    """Run the stack over a batch xs (T, B, d) from h0 (L, B, n) (zeros if None)."""
    validate_model(model)
    xs, h0 = check_inputs(model, xs, h0, batched=True)
    act, p = model.act, model.params
    inputs, hs, ds, pres = [], [], [], []
    x = xs
    for l in range(model.layers):
        W, U, b = p[f"W_hh_{l}"], p[f"W_xh_{l}"], p[f"b_h_{l}"]
        drive = x @ U.T + b  # (T, B, n): the input part of every step, one gemm
        h = np.empty((x.shape[0] + 1,) + h0[l].shape)
        h[0] = h0[l]
        WT = W.T
        if model.form == "elman":
            a = np.empty_like(drive)
            for t in range(x.shape[0]):
                a[t] = drive[t] + h[t] @ WT
                h[t + 1] = act.phi(a[t])
            ds.append(act.dphi(a))
        else:
            pre = np.empty_like(drive)
            for t in range(x.shape[0]):
                pre[t] = act.phi(h[t])
                h[t + 1] = drive[t] + pre[t] @ WT
            pres.append(pre)
            ds.append(act.dphi(h[:-1]))
        inputs.append(x)
        hs.append(h)
        x = h[1:]
    y = x @ p["W_hy"].T + p["b_y"]
    return Trace(inputs, hs, ds, y, pres)


def loss_and_dy(y: np.ndarray, targets: np.ndarray, mask: np.ndarray, kind: str) -> tuple[float, np.ndarray]:
    """Mean loss over masked positions and its gradient dE/dy (T, B, o).

    xent: targets (T, B) integer classes, E = mean of -log softmax(y)[target].
    mse:  targets (T, B, o) reals,       E = mean of sum_o (y - target)^2.
    mask (T, B): 1 where the position counts, 0 elsewhere.
    """
    mask = np.asarray(mask, dtype=np.float64)
    count = max(mask.sum(), 1.0)
    if kind == "xent":
        z = y - y.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        tgt = np.asarray(targets, dtype=np.int64)[..., None]
        nll = -np.take_along_axis(logp, tgt, axis=-1)[..., 0]
        dy = np.exp(logp)
        np.put_along_axis(dy, tgt, np.take_along_axis(dy, tgt, axis=-1) - 1.0, axis=-1)
        return float((nll * mask).sum() / count), dy * (mask / count)[..., None]
    if kind == "mse":
        err = y - np.asarray(targets, dtype=np.float64)
        return float(((err * err).sum(-1) * mask).sum() / count), 2.0 * err * (mask / count)[..., None]
    raise ValueError(f"unknown loss {kind!r}; valid: {', '.join(LOSSES)}")


def bptt(model: RNN, trace: Trace, dy: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Backpropagation through time.

    Returns (grads keyed like model.params, signal) where signal (L, T+1) holds ||dE/dh_k^l||,
    the Frobenius norm over the batch of the total derivative of E with respect to layer l's state h_k.
    """
    p, L = model.params, model.layers
    top = trace.h[-1]
    grads = {"W_hy": np.einsum("tbo,tbn->on", dy, top[1:]), "b_y": dy.sum(axis=(0, 1))}
    T = dy.shape[0]
    signal = np.zeros((L, T + 1))
    dh_in = dy @ p["W_hy"]  # (T, B, n): dE/dh_t arriving from above (readout or next layer)
    for l in reversed(range(L)):
        W, U = p[f"W_hh_{l}"], p[f"W_xh_{l}"]
        D = trace.d[l]
        G = np.empty_like(D)  # elman: dE/da_t; pascanu: dE/dh_t (total)
        carry = np.zeros(D.shape[1:])
        for t in reversed(range(T)):
            g = dh_in[t] + carry  # total dE/dh_{t+1}
            signal[l, t + 1] = np.sqrt(np.vdot(g, g))
            if model.form == "elman":
                G[t] = g * D[t]
                carry = G[t] @ W
            else:
                G[t] = g
                carry = (g @ W) * D[t]
        signal[l, 0] = np.sqrt(np.vdot(carry, carry))
        flatG = G.reshape(-1, G.shape[-1])
        prev = trace.h[l][:-1] if model.form == "elman" else trace.pre[l]
        grads[f"W_hh_{l}"] = flatG.T @ prev.reshape(flatG.shape)
        grads[f"W_xh_{l}"] = flatG.T @ trace.inputs[l].reshape(flatG.shape[0], -1)
        grads[f"b_h_{l}"] = flatG.sum(axis=0)
        dh_in = G @ U  # dE/d(input_t) = dE/dh_t of the layer below
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
    """For one sequence xs (T, d): (W_hh of `layer`, D (T, n)) with the step Jacobians

    elman:   J_t = D[t-1][:, None] * W     (diag(phi'(a_t)) W)
    pascanu: J_t = W * D[t-1][None, :]     (W diag(phi'(h_{t-1})))
    for t = 1..T.
    """
    validate_model(model)
    xs, h0 = check_inputs(model, xs, h0, batched=False)
    if not -model.layers <= layer < model.layers:
        raise ValueError(f"layer must be in [{-model.layers}, {model.layers - 1}], got {layer}")
    trace = forward(model, xs[:, None, :], h0[:, None, :])
    return model.W_hh(layer), trace.d[layer % model.layers][:, 0, :]


# ---- model files -------------------------------------------------------------------------------------------


def save_model(model: RNN, path: str | os.PathLike) -> None:
    """Write `model` as a model*.npz file (atomically: temp file in the same folder, then rename)."""
    validate_model(model)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                form=np.array(model.form),
                activation=np.array(model.activation),
                leaky_slope=np.array(float(model.leaky_slope)),
                **model.params,
            )
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_model(path: str | os.PathLike) -> RNN:
    """Read a model*.npz file (keys: form, activation, leaky_slope, W_hh_l, W_xh_l, b_h_l, W_hy, b_y)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"model file {path!r} does not exist or is not a file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/format errors: say which file and why
        raise ValueError(f"model file {path!r} is not a readable .npz archive ({e})") from None
    missing = [k for k in ("form", "activation", "leaky_slope") if k not in data]
    if missing:
        raise ValueError(f"model file {path!r} is missing keys: {', '.join(missing)}")
    params = {k: np.asarray(v, dtype=np.float64) for k, v in data.items() if k not in ("form", "activation", "leaky_slope")}
    model = RNN(str(data["form"]), str(data["activation"]), float(data["leaky_slope"]), params)
    try:
        validate_model(model)
    except ValueError as e:
        raise ValueError(f"model file {path!r}: {e}") from None
    return model
