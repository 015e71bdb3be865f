"""Pascanu, Mikolov & Bengio (2013)'s regulariser Omega, which asks the backpropagated error to keep its norm from one
step to the next (their Eq. 9), in the squared-norm form of their code (docs/math.md, section 10.4):

  Omega = sum over valid (k, b) of ( ||dE/dh_{k+1} dh_{k+1}/dh_k||^2 / ||dE/dh_{k+1}||^2 - 1 )^2 / (valid pairs)

for k = 0..T-1 and every sequence b of the batch, summed over the layers of a vanilla stack. A pair is valid when
||dE/dh_{k+1}||^2 >= OMEGA_BOUND (below it the ratio is noise; their `bound`). Its gradient, as in their code,
treats dE/dh_{k+1} and phi' as constants and differentiates only the W_hh that the step Jacobian holds, so it
lands on W_hh alone; the trainer adds weight * that gradient to the loss gradient before clipping.

Pure numpy; only for the vanilla cell (an LSTM has no such regulariser here).
"""

from __future__ import annotations

import numpy as np

from .rnn import RNN, Backward, Trace

OMEGA_BOUND = 1e-20  # squared error norms below this are left out of Omega, as in Pascanu's code (`bound`)


def omega_and_grads(model: RNN, trace: Trace, backward: list[Backward]) -> tuple[float, dict[str, np.ndarray]]:
    """(Omega summed over the layers, {W_hh_l: dOmega/dW_hh_l}) from a forward trace and `rnn.bptt`'s per-layer
    `backward` quantities of the same batch."""
    total, grads = 0.0, {}
    for l, part in enumerate(backward):
        value, grads[f"W_hh_{l}"] = layer_omega(model.W_hh(l), trace.d[l], part.G, part.g_sq, model.form)
        total += value
    return total, grads


def layer_omega(W: np.ndarray, D: np.ndarray, G: np.ndarray, g_sq: np.ndarray, form: str
                ) -> tuple[float, np.ndarray]:
    """One layer's Omega and dOmega/dW (n, n) with G (T, B, n), g_sq (T, B) and D (T, B, n) held constant.

    x_k = dE/dh_{k+1} J_{k+1}: elman (G[k] W) with G = phi' * dE/dh, pascanu (G[k] W) * D[k] with G = dE/dh."""
    x = G @ W  # (T, B, n)
    if form == "pascanu":
        x *= D
    valid = g_sq >= OMEGA_BOUND
    count = int(valid.sum())
    if count == 0:
        return 0.0, np.zeros_like(W)
    with np.errstate(all="ignore"):  # an exploding error gives inf/NaN: the trainer records a divergence
        ratio = np.where(valid, np.einsum("tbn,tbn->tb", x, x) / np.where(valid, g_sq, 1.0), 1.0)
        value = float(np.sum((ratio - 1.0) ** 2) / count)
        u = (4.0 / count) * ((ratio - 1.0) / np.where(valid, g_sq, 1.0))[..., None] * x  # dOmega/dx, 0 where invalid
        if form == "pascanu":
            u *= D
        grad = np.einsum("tbi,tbj->ij", G, u)
    return value, grad
