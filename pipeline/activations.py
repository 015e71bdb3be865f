"""Pointwise activations phi, their derivatives phi', and gamma_phi = sup |phi'|.

Pure numpy. Every function takes and returns float64 arrays of any shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Array = np.ndarray

ACTIVATIONS = (
    "tanh",
    "sigmoid",
    "relu",
    "leaky_relu",
    "hard_tanh",
    "softplus",
    "gaussian",
    "linear",
)


@dataclass(frozen=True)
class Activation:
    name: str
    phi: Callable[[Array], Array]
    dphi: Callable[[Array], Array]  # phi'(z), same shape as z
    gamma: float  # sup_z |phi'(z)|: the constant in the bound (gamma_W gamma_phi)^(t-k)


def _sigmoid(z: Array) -> Array:
    # split by sign so exp never overflows
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _dsigmoid(z: Array) -> Array:
    s = _sigmoid(z)
    return s * (1.0 - s)


def _softplus(z: Array) -> Array:
    return np.logaddexp(0.0, z)


def _relu(z: Array) -> Array:
    return np.maximum(z, 0.0)


def _drelu(z: Array) -> Array:
    return (z > 0).astype(np.float64)


def _hard_tanh(z: Array) -> Array:
    return np.clip(z, -1.0, 1.0)


def _dhard_tanh(z: Array) -> Array:
    return (np.abs(z) < 1.0).astype(np.float64)


def _gaussian(z: Array) -> Array:
    return np.exp(-z * z)


def _dgaussian(z: Array) -> Array:
    return -2.0 * z * np.exp(-z * z)


def _linear(z: Array) -> Array:
    return np.asarray(z, dtype=np.float64).copy()


def _dlinear(z: Array) -> Array:
    return np.ones_like(z, dtype=np.float64)


def _dtanh(z: Array) -> Array:
    t = np.tanh(z)
    return 1.0 - t * t


def get_activation(name: str, leaky_slope: float = 0.01) -> Activation:
    """The activation called `name`; `leaky_slope` is used by leaky_relu only."""
    if name == "leaky_relu":
        a = float(leaky_slope)
        if not np.isfinite(a) or a < 0:
            raise ValueError(f"leaky_slope must be a finite number >= 0, got {leaky_slope!r}")
        return Activation(
            "leaky_relu",
            lambda z: np.where(z > 0, z, a * z),
            lambda z: np.where(z > 0, 1.0, a),
            max(1.0, a),
        )
    table = {
        "tanh": (np.tanh, _dtanh, 1.0),
        "sigmoid": (_sigmoid, _dsigmoid, 0.25),
        "relu": (_relu, _drelu, 1.0),
        "hard_tanh": (_hard_tanh, _dhard_tanh, 1.0),
        "softplus": (_softplus, _sigmoid, 1.0),  # supremum 1, never reached
        "gaussian": (_gaussian, _dgaussian, float(np.sqrt(2.0 / np.e))),  # at z = 1/sqrt(2)
        "linear": (_linear, _dlinear, 1.0),
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    phi, dphi, gamma = table[name]
    return Activation(name, phi, dphi, gamma)


def gamma_phi(name: str, leaky_slope: float = 0.01) -> float:
    """sup |phi'| for the named activation (see DESIGN.md's table)."""
    return get_activation(name, leaky_slope).gamma
