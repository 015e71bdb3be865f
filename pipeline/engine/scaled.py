"""A forward pass whose states carry their scale in log space, for trajectories that overflow float64.

An activation that grows without bound (relu, leaky_relu, linear, softplus) drives a layer with gamma_W gamma_phi > 1
to states beyond 1e308 within a few hundred steps, and the ordinary forward pass then holds inf and NaN. The step
Jacobians of such a trajectory are still perfectly defined: for a positively homogeneous phi (relu, leaky_relu,
linear) phi(c z) = c phi(z) and phi'(c z) = phi'(z) for c > 0, so with every state written h = e^s h^ (h^ of largest
entry 1, s carried apart) one step is

    a = e^m a^,  a^ = e^(s - m) W h^ + e^(s_in - m) U x^ + e^(-m) b,  m = max(s, s_in, 0)      (elman)
    h' = e^m phi(a^),  D = phi'(a^)

exactly; for softplus phi(e^m a^) = e^m (relu(a^) + e^(-m) log(1 + exp(-e^m |a^|))) and phi'(e^m a^) = sigmoid(e^m a^),
evaluated without forming e^m a^ where it would overflow (docs/math.md 7.3). The pascanu form reads phi(h) instead:
h' = e^s W phi(h^) + U x + b. Bounded activations never overflow a state, so they have nothing to gain here.

Pure numpy; `scaled_factors` returns the D the ordinary forward pass would have returned without overflow.
"""

from __future__ import annotations

import numpy as np

from .activations import get_activation
from .rnn import RNN, check_inputs, one_hot, validate_model

SCALABLE = ("relu", "leaky_relu", "linear", "softplus")  # activations whose overflowing trajectories this recovers


def scaled_factors(model: RNN, xs: np.ndarray, h0: np.ndarray | None = None, layer: int = -1) -> np.ndarray:
    """D (T, B, n) of `layer` along xs (T, B, d) (or (T, B) token ids) from h0 (L, B, n), every state carried as
    e^s h^: the phi' values of the trajectory in exact arithmetic's float64 rounding, however large its states."""
    validate_model(model)
    if model.activation not in SCALABLE:
        raise ValueError(f"scaled_factors needs one of {', '.join(SCALABLE)}, got {model.activation!r}")
    xs, h0 = check_inputs(model, xs, h0, batched=True)
    x_hat = one_hot(xs, model.input_dim) if xs.ndim == 2 else np.asarray(xs, dtype=np.float64)  # (T, B, d)
    x_log = np.zeros(x_hat.shape[:2])  # (T, B): the input carries no scale
    target = layer % model.layers
    for l in range(target + 1):
        h_hat, h_log, D = _scaled_layer(model, l, x_hat, x_log, h0[l])
        x_hat, x_log = h_hat, h_log
    return D


def _unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(v / size, log size) per row of v (B, n), size = the largest |entry| (1 for a zero row)."""
    size = np.max(np.abs(v), axis=-1)
    size = np.where(size > 0, size, 1.0)
    return v / size[:, None], np.log(size)


def _scaled_layer(model: RNN, l: int, x_hat: np.ndarray, x_log: np.ndarray, h0: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer l along inputs e^x_log x_hat (T, B, d): its states h^ (T, B, n), their log scales (T, B) and D (T, B, n)."""
    act = get_activation(model.activation, model.leaky_slope)
    W, U, b = model.params[f"W_hh_{l}"], model.params[f"W_xh_{l}"], model.params[f"b_h_{l}"]
    T, B = x_hat.shape[:2]
    h_hat, h_log = _unit(np.asarray(h0, dtype=np.float64))
    states, logs, D = np.empty((T, B, W.shape[0])), np.empty((T, B)), np.empty((T, B, W.shape[0]))
    with np.errstate(over="ignore", under="ignore"):
        for t in range(T):
            m = np.maximum(np.maximum(h_log, x_log[t]), 0.0)  # (B,)
            drive = np.exp(x_log[t] - m)[:, None] * (x_hat[t] @ U.T) + np.exp(-m)[:, None] * b
            if model.form == "elman":
                a_hat = np.exp(h_log - m)[:, None] * (h_hat @ W.T) + drive
                phi_hat, D[t] = _phi_scaled(act.name, act, a_hat, m)
                h_hat, step_log = _unit(phi_hat)
            else:  # pascanu: h' = W phi(h) + U x + b, phi' read at h
                phi_hat, D[t] = _phi_scaled(act.name, act, h_hat, h_log)
                h_hat, step_log = _unit(np.exp(h_log - m)[:, None] * (phi_hat @ W.T) + drive)
            h_log = step_log + m
            states[t], logs[t] = h_hat, h_log
    return states, logs, D


def _phi_scaled(name: str, act, a_hat: np.ndarray, log_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(phi(e^s a^) / e^s, phi'(e^s a^)) for a^ (B, n) and s (B,): exact for the homogeneous activations, and for
    softplus without forming e^s a^ where it would overflow."""
    if name != "softplus":
        return act.phi(a_hat), act.dphi(a_hat)
    z = np.sign(a_hat) * np.exp(log_scale[:, None] + np.log(np.abs(a_hat) + (a_hat == 0)))  # e^s a^, +-inf far out
    z = np.where(a_hat == 0, 0.0, z)
    tail = np.exp(-log_scale)[:, None] * np.log1p(np.exp(-np.abs(z)))  # e^-s log(1 + e^-|z|)
    return np.maximum(a_hat, 0.0) + tail, act.dphi(z)
