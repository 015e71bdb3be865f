"""Pointwise activations phi, their derivatives phi', and gamma_phi = sup |phi'|.

Pure numpy. Every function takes and returns float64 arrays of any shape.
`phi(z, out=None)` writes into `out` when it is given (the RNN's time loop reuses its state buffers).
`dphi_of_phi(y, out=None)` is phi'(z) written in terms of y = phi(z), so the forward pass gets phi' from the
state it already holds instead of re-evaluating phi; it is None where phi is not one-to-one (gaussian).

Saturation: 1 - y^2 (tanh) and y (1 - y) (sigmoid) subtract from 1 a y that is rounded near 1, so their relative
error grows like 1e-16 e^(2|z|) and e^|z|: it is 1e-12 at |z| = 5 (tanh) and 9 (sigmoid), and the result is exactly
0 beyond |z| = 19 and 37. Beyond `Activation.dphi_of_phi_limit` phi' is therefore computed from z itself, in a form
without cancellation (`Activation.dphi_far`; `dphi` switches to it there too); below it the y-formula is kept, so
moderate values are unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

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
    phi: Callable[..., Array]  # phi(z, out=None), same shape as z
    dphi: Callable[[Array], Array]  # phi'(z), same shape as z
    gamma: float  # sup_z |phi'(z)|: the constant in the bound (gamma_W gamma_phi)^(t-k)
    dphi_of_phi: Optional[Callable[..., Array]] = None  # (y = phi(z), out=None) -> phi'(z); None if not invertible
    dphi_of_phi_limit: float = np.inf  # dphi_of_phi is accurate (1e-12 relative) for |z| <= this ...
    dphi_far: Optional[Callable[[Array], Array]] = None  # ... and beyond it phi'(z) is dphi_far(z), computed from z


def _out(out: Array | None, like: Array) -> Array:
    """`out`, or a new float64 array shaped like `like`."""
    return np.empty(np.shape(like)) if out is None else out


def _into(value: Array, out: Array | None) -> Array:
    """Return `value`, copied into `out` when `out` is given."""
    if out is None:
        return value
    np.copyto(out, value)
    return out


def _sigmoid(z: Array, out: Array | None = None) -> Array:
    # split by sign so exp never overflows and tiny values keep their relative precision
    z = np.asarray(z, dtype=np.float64)
    s = np.empty_like(z)
    pos = z >= 0
    s[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    s[~pos] = ez / (1.0 + ez)
    return _into(s, out)


TANH_SWITCH = 5.0  # |z| beyond which tanh' is taken as 4 e / (1 + e)^2, e = exp(-2|z|), instead of 1 - tanh(z)^2
SIGMOID_SWITCH = 9.0  # |z| beyond which sigmoid' is taken as e / (1 + e)^2, e = exp(-|z|), instead of s (1 - s)


def _beyond(z: Array, limit: float, value: Array, far: Callable[[Array], Array]) -> Array:
    """`value` (phi' from the y-formula) with its entries at |z| > limit replaced by far(z)."""
    value = np.asarray(value)  # 0-d input: a writable 0-d array rather than a numpy scalar
    beyond = np.abs(z) > limit
    if beyond.any():
        value[beyond] = far(z[beyond])
    return value


def _dsigmoid_far(z: Array) -> Array:
    """sigmoid'(z) = e / (1 + e)^2 with e = exp(-|z|): no cancellation, no overflow (sigmoid' is even)."""
    e = np.exp(-np.abs(z))
    return e / (1.0 + e) ** 2


def _dtanh_far(z: Array) -> Array:
    """tanh'(z) = 1 / cosh(z)^2 = 4 e / (1 + e)^2 with e = exp(-2|z|): no cancellation, no overflow (even)."""
    e = np.exp(-2.0 * np.abs(z))
    return 4.0 * e / (1.0 + e) ** 2


def _dsigmoid(z: Array) -> Array:
    z = np.asarray(z, dtype=np.float64)
    s = _sigmoid(z)
    return _beyond(z, SIGMOID_SWITCH, s * (1.0 - s), _dsigmoid_far)


def _softplus(z: Array, out: Array | None = None) -> Array:
    return np.logaddexp(0.0, z, out=out)


def _dsoftplus_of_phi(y: Array, out: Array | None = None) -> Array:
    # y = log(1 + e^z)  =>  sigmoid(z) = 1 - e^(-y), computed without cancellation
    out = np.negative(y, out=_out(out, y))
    np.expm1(out, out=out)
    return np.negative(out, out=out)


def _relu(z: Array, out: Array | None = None) -> Array:
    return np.maximum(z, 0.0, out=out)


def _drelu(z: Array, out: Array | None = None) -> Array:
    # relu(z) > 0 exactly when z > 0, so the same function serves phi' of z and of y = phi(z)
    return np.greater(z, 0.0, out=_out(out, z))


def _hard_tanh(z: Array, out: Array | None = None) -> Array:
    return np.clip(z, -1.0, 1.0, out=out)


def _dhard_tanh(z: Array, out: Array | None = None) -> Array:
    # |clip(z)| < 1 exactly when |z| < 1, so the same function serves phi' of z and of y = phi(z)
    out = np.abs(z, out=_out(out, z))
    return np.less(out, 1.0, out=out)


def _gaussian(z: Array, out: Array | None = None) -> Array:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-(z * z), out=out)


def _dgaussian(z: Array) -> Array:
    return -2.0 * z * np.exp(-z * z)


def _linear(z: Array, out: Array | None = None) -> Array:
    return np.positive(np.asarray(z, dtype=np.float64), out=out)  # a copy, never a view of z


def _dlinear(z: Array, out: Array | None = None) -> Array:
    out = _out(out, z)
    out.fill(1.0)
    return out


def _dtanh(z: Array) -> Array:
    z = np.asarray(z, dtype=np.float64)
    return _beyond(z, TANH_SWITCH, _dtanh_of_phi(np.tanh(z)), _dtanh_far)


def _dtanh_of_phi(y: Array, out: Array | None = None) -> Array:
    out = np.multiply(y, y, out=_out(out, y))
    return np.subtract(1.0, out, out=out)


def _dsigmoid_of_phi(y: Array, out: Array | None = None) -> Array:
    out = np.subtract(1.0, y, out=_out(out, y))
    return np.multiply(out, y, out=out)


def _leaky_relu(slope: float) -> Activation:
    """leaky_relu with `slope` for z <= 0; phi(z) > 0 exactly when z > 0 (slope >= 0), so phi' also reads y."""

    def phi(z: Array, out: Array | None = None) -> Array:
        return _into(np.where(z > 0, z, slope * z), out)

    def dphi(z: Array, out: Array | None = None) -> Array:
        positive = np.asarray(z) > 0
        out = _out(out, z)
        out.fill(slope)
        np.copyto(out, 1.0, where=positive)
        return out

    return Activation("leaky_relu", phi, dphi, max(1.0, slope), dphi)


def get_activation(name: str, leaky_slope: float = 0.01) -> Activation:
    """The activation called `name`; `leaky_slope` is used by leaky_relu only."""
    if not isinstance(name, str):
        raise ValueError(f"activation name must be a string, got {name!r}")
    try:
        slope = float(leaky_slope)
    except (TypeError, ValueError):
        raise ValueError(f"leaky_slope must be a finite number >= 0, got {leaky_slope!r}") from None
    return _build_activation(name, slope if name == "leaky_relu" else 0.0)


@functools.lru_cache(maxsize=None)
def _build_activation(name: str, leaky_slope: float) -> Activation:
    """get_activation's work, cached: an Activation is immutable, and the RNN asks for one on every call."""
    if name == "leaky_relu":
        if not np.isfinite(leaky_slope) or leaky_slope < 0:
            raise ValueError(f"leaky_slope must be a finite number >= 0, got {leaky_slope!r}")
        return _leaky_relu(leaky_slope)
    table = {  # name: (phi, phi', gamma_phi, phi' in terms of phi[, |z| up to which that is accurate, phi' beyond])
        "tanh": (np.tanh, _dtanh, 1.0, _dtanh_of_phi, TANH_SWITCH, _dtanh_far),
        "sigmoid": (_sigmoid, _dsigmoid, 0.25, _dsigmoid_of_phi, SIGMOID_SWITCH, _dsigmoid_far),
        "relu": (_relu, _drelu, 1.0, _drelu),
        "hard_tanh": (_hard_tanh, _dhard_tanh, 1.0, _dhard_tanh),
        "softplus": (_softplus, _sigmoid, 1.0, _dsoftplus_of_phi),  # supremum 1, never reached
        "gaussian": (_gaussian, _dgaussian, float(np.sqrt(2.0 / np.e)), None),  # sup at z = 1/sqrt(2)
        "linear": (_linear, _dlinear, 1.0, _dlinear),
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return Activation(name, *table[name])


def gamma_phi(name: str, leaky_slope: float = 0.01) -> float:
    """sup |phi'| for the named activation (docs/math.md, section 5)."""
    return get_activation(name, leaky_slope).gamma
