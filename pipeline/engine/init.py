"""Weight initialisation: build an RNN whose recurrent matrices have a chosen spectral norm (or radius).

Pure numpy; randomness only from the np.random.Generator argument.

Recurrent inits (`init`), each scaled by `gamma_w`:
  gaussian:   i.i.d. N(0, 1) entries, rescaled so that ||W_hh||_2 = gamma_w exactly.
  orthogonal: Q of the QR of a Gaussian matrix, signs fixed so Q is Haar-distributed, times gamma_w:
              every singular value equals gamma_w.
  identity:   gamma_w * I (IRNN, Le et al. 2015).
  sparse:     Sutskever et al. (2013)'s init used by Pascanu et al. (2013): each unit gets SPARSE_FAN_IN nonzero
              N(0, 1) incoming weights, then the matrix is rescaled so that its spectral RADIUS
              max |eig(W_hh)| = gamma_w. For sparse, gamma_w is the target spectral radius, not the norm.
W_xh: N(0, input_scale^2) entries with input_scale = 1/sqrt(fan-in) by default; W_hy: N(0, output_scale^2) with
output_scale = 1/sqrt(n) by default; biases zero. (min-char-rnn: every matrix 0.01 N(0, 1), which is gaussian with
input_scale = output_scale = 0.01 and gamma_w = 0.01 ||N(0,1)^{n x n}||_2, about 0.2 at n = 100.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .activations import get_activation
from .jacobian import spectral_norm, spectral_radius
from . import exprnn, gru
from .lstm import FORGET_BIAS, GATES, LSTM, validate_lstm
from .rnn import FORMS, RNN, validate_model

INITS = ("gaussian", "orthogonal", "identity", "sparse")
SPARSE_FAN_IN = 15  # nonzero incoming recurrent weights per unit in the sparse init (Sutskever et al. 2013)


@dataclass(frozen=True)
class InitInfo:
    """What the init realised, per layer."""

    spectral_norm: tuple[float, ...]  # ||W_hh_l||_2, largest singular value
    spectral_radius: tuple[float, ...]  # max |eigenvalue| of W_hh_l


def _gaussian(rng: np.random.Generator, n: int, gamma_w: float) -> np.ndarray:
    W = rng.standard_normal((n, n))
    return W * (gamma_w / spectral_norm(W))


def _orthogonal(rng: np.random.Generator, n: int, gamma_w: float) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    signs = np.where(np.diag(R) < 0, -1.0, 1.0)  # (n,): makes the factorisation unique, Q Haar-distributed
    return gamma_w * (Q * signs)


def _identity(rng: np.random.Generator, n: int, gamma_w: float) -> np.ndarray:
    return gamma_w * np.eye(n)


def _sparse(rng: np.random.Generator, n: int, gamma_w: float) -> np.ndarray:
    fan_in = min(SPARSE_FAN_IN, n)
    W = np.zeros((n, n))
    for unit in range(n):  # row `unit` holds the weights into that unit
        sources = rng.choice(n, size=fan_in, replace=False)
        W[unit, sources] = rng.standard_normal(fan_in)
    radius = spectral_radius(W)
    if not radius > 0:
        raise ValueError(f"sparse init drew a nilpotent W_hh (spectral radius 0) for hidden={n}; try another seed")
    return W * (gamma_w / radius)


_RECURRENT_INITS = {"gaussian": _gaussian, "orthogonal": _orthogonal, "identity": _identity, "sparse": _sparse}


def _check_args(
    input_dim: int, output_dim: int, form: str, activation: str, leaky_slope: float,
    layers: int, hidden: int, init: str, gamma_w: float, input_scale: float | None,
) -> None:
    """Raise ValueError naming the first argument of init_model that is out of range."""
    for name, value in (("input_dim", input_dim), ("output_dim", output_dim), ("layers", layers), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; valid: {', '.join(FORMS)}")
    get_activation(activation, leaky_slope)
    if init not in _RECURRENT_INITS:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    if not (isinstance(gamma_w, (int, float, np.number)) and math.isfinite(gamma_w) and gamma_w > 0):
        raise ValueError(f"gamma_w must be a finite number > 0, got {gamma_w!r}")
    scale_ok = isinstance(input_scale, (int, float, np.number)) and math.isfinite(input_scale) and input_scale >= 0
    if input_scale is not None and not scale_ok:
        raise ValueError(f"input_scale must be a finite number >= 0 or None, got {input_scale!r}")


def init_model(
    rng: np.random.Generator,
    *,
    input_dim: int,
    output_dim: int,
    form: str = "elman",
    activation: str = "tanh",
    leaky_slope: float = 0.01,
    layers: int = 1,
    hidden: int = 100,
    init: str = "orthogonal",
    gamma_w: float = 1.0,
    input_scale: float | None = None,
    output_scale: float | None = None,
) -> tuple[RNN, InitInfo]:
    """A new RNN with every W_hh_l drawn by `init` and scaled by `gamma_w` (see the module docstring).

    input_scale: std of the W_xh entries; None means 1/sqrt(fan-in) (input_dim for layer 0, hidden above).
    output_scale: std of the W_hy entries; None means 1/sqrt(hidden).
    Draw order (fixed, so a seed fixes the model): per layer W_hh then W_xh, then W_hy.
    """
    _check_args(input_dim, output_dim, form, activation, leaky_slope, layers, hidden, init, gamma_w, input_scale)
    _check_output_scale(output_scale)
    draw = _RECURRENT_INITS[init]
    params: dict[str, np.ndarray] = {}
    for l in range(layers):
        fan_in = input_dim if l == 0 else hidden
        scale = 1.0 / math.sqrt(fan_in) if input_scale is None else float(input_scale)
        params[f"W_hh_{l}"] = draw(rng, hidden, float(gamma_w))  # (n, n)
        params[f"W_xh_{l}"] = scale * rng.standard_normal((hidden, fan_in))  # (n, d_l)
        params[f"b_h_{l}"] = np.zeros(hidden)
    W_hy = rng.standard_normal((output_dim, hidden))  # (o, n)
    params["W_hy"] = W_hy / math.sqrt(hidden) if output_scale is None else float(output_scale) * W_hy
    params["b_y"] = np.zeros(output_dim)
    model = RNN(form, activation, float(leaky_slope), params)
    validate_model(model)
    Ws = [params[f"W_hh_{l}"] for l in range(layers)]
    return model, InitInfo(tuple(map(spectral_norm, Ws)), tuple(map(spectral_radius, Ws)))


def _check_output_scale(output_scale: float | None) -> None:
    if output_scale is not None and not (isinstance(output_scale, (int, float, np.number))
                                         and math.isfinite(output_scale) and output_scale >= 0):
        raise ValueError(f"output_scale must be a finite number >= 0 or None, got {output_scale!r}")


def init_lstm(
    rng: np.random.Generator,
    *,
    input_dim: int,
    output_dim: int,
    layers: int = 1,
    hidden: int = 100,
    init: str = "orthogonal",
    gamma_w: float = 1.0,
    input_scale: float | None = None,
    forget_bias: float = FORGET_BIAS,
    output_scale: float | None = None,
) -> LSTM:
    """A new LSTM (engine/lstm.py): each gate's (n, n) block of W_hh_l drawn by `init` and scaled by `gamma_w` as for
    the vanilla RNN; W_ih_l N(0, input_scale^2) (None: 1/sqrt(fan-in)); b_l zero but the forget gate's block, which
    is `forget_bias`; W_hy N(0, output_scale^2) (None: 1/sqrt(n)), b_y zero. Draw order per layer: the four blocks of W_hh in gate order, W_ih."""
    _check_args(input_dim, output_dim, "elman", "tanh", 0.0, layers, hidden, init, gamma_w, input_scale)
    _check_output_scale(output_scale)
    if not (isinstance(forget_bias, (int, float, np.number)) and math.isfinite(forget_bias)):
        raise ValueError(f"forget_bias must be a finite number, got {forget_bias!r}")
    draw, n = _RECURRENT_INITS[init], hidden
    params: dict[str, np.ndarray] = {}
    for l in range(layers):
        fan_in = input_dim if l == 0 else hidden
        scale = 1.0 / math.sqrt(fan_in) if input_scale is None else float(input_scale)
        params[f"W_hh_{l}"] = np.concatenate([draw(rng, n, float(gamma_w)) for _ in GATES])  # (4n, n)
        params[f"W_ih_{l}"] = scale * rng.standard_normal((4 * n, fan_in))
        params[f"b_{l}"] = np.zeros(4 * n)
        params[f"b_{l}"][n : 2 * n] = float(forget_bias)
    W_hy = rng.standard_normal((output_dim, n))
    params["W_hy"] = W_hy / math.sqrt(n) if output_scale is None else float(output_scale) * W_hy
    params["b_y"] = np.zeros(output_dim)
    model = LSTM(params)
    validate_lstm(model)
    return model


def init_gru(
    rng: np.random.Generator,
    *,
    input_dim: int,
    output_dim: int,
    layers: int = 1,
    hidden: int = 100,
    init: str = "orthogonal",
    gamma_w: float = 1.0,
    input_scale: float | None = None,
    output_scale: float | None = None,
) -> gru.GRU:
    """A new GRU (engine/gru.py): each gate's (n, n) block of W_hh_l drawn by `init` and scaled by `gamma_w` as for the
    vanilla RNN; W_ih_l N(0, input_scale^2) (None: 1/sqrt(fan-in)); b_ih_l and b_hh_l zero; W_hy N(0, output_scale^2)
    (None: 1/sqrt(n)), b_y zero. Draw order per layer: the three blocks of W_hh in gate order (r, z, n), W_ih."""
    _check_args(input_dim, output_dim, "elman", "tanh", 0.0, layers, hidden, init, gamma_w, input_scale)
    _check_output_scale(output_scale)
    draw, n = _RECURRENT_INITS[init], hidden
    params: dict[str, np.ndarray] = {}
    for l in range(layers):
        fan_in = input_dim if l == 0 else hidden
        scale = 1.0 / math.sqrt(fan_in) if input_scale is None else float(input_scale)
        params[f"W_hh_{l}"] = np.concatenate([draw(rng, n, float(gamma_w)) for _ in gru.GATES])  # (3n, n)
        params[f"W_ih_{l}"] = scale * rng.standard_normal((3 * n, fan_in))
        params[f"b_ih_{l}"], params[f"b_hh_{l}"] = np.zeros(3 * n), np.zeros(3 * n)
    W_hy = rng.standard_normal((output_dim, n))
    params["W_hy"] = W_hy / math.sqrt(n) if output_scale is None else float(output_scale) * W_hy
    params["b_y"] = np.zeros(output_dim)
    model = gru.GRU(params)
    gru.validate_gru(model)
    return model


EXPRNN_INITS = ("orthogonal", "identity")  # the inits whose W_hh is in SO(n), the set exp(skew) reaches


def _special_orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A Haar-distributed matrix of SO(n): a Haar orthogonal Q, its first row negated when det Q = -1 (a bijection
    from the other component onto SO(n) that keeps the Haar measure)."""
    Q = _orthogonal(rng, n, 1.0)
    if np.linalg.det(Q) < 0:
        Q[0] = -Q[0]
    return Q


def init_exprnn(
    rng: np.random.Generator,
    *,
    input_dim: int,
    output_dim: int,
    form: str = "elman",
    activation: str = "tanh",
    leaky_slope: float = 0.01,
    layers: int = 1,
    hidden: int = 100,
    init: str = "orthogonal",
    input_scale: float | None = None,
    output_scale: float | None = None,
) -> exprnn.ExpRNN:
    """A new expRNN (engine/exprnn.py): A_hh_l such that W_hh_l = exp(A_l) is a Haar-distributed matrix of SO(n)
    (init orthogonal: A_l its principal logarithm) or the identity (init identity: A_l = 0); W_xh_l, b_h_l, W_hy and
    b_y as `init_model`'s. Draw order per layer: W_hh then W_xh, then W_hy. ||W_hh||_2 is 1 by construction, so
    there is no gamma_w."""
    _check_args(input_dim, output_dim, form, activation, leaky_slope, layers, hidden, "orthogonal", 1.0, input_scale)
    _check_output_scale(output_scale)
    if init not in EXPRNN_INITS:
        raise ValueError(f"init {init!r} has no W_hh in SO(n) for an expRNN; valid: {', '.join(EXPRNN_INITS)}")
    params: dict[str, np.ndarray] = {}
    for l in range(layers):
        fan_in = input_dim if l == 0 else hidden
        scale = 1.0 / math.sqrt(fan_in) if input_scale is None else float(input_scale)
        Q = _special_orthogonal(rng, hidden) if init == "orthogonal" else None
        params[f"{exprnn.SKEW_KEY}_{l}"] = np.zeros((hidden, hidden)) if Q is None else exprnn.skew_from_orthogonal(Q)
        params[f"W_xh_{l}"] = scale * rng.standard_normal((hidden, fan_in))
        params[f"b_h_{l}"] = np.zeros(hidden)
    W_hy = rng.standard_normal((output_dim, hidden))
    params["W_hy"] = W_hy / math.sqrt(hidden) if output_scale is None else float(output_scale) * W_hy
    params["b_y"] = np.zeros(output_dim)
    model = exprnn.ExpRNN(form, activation, float(leaky_slope), params)
    exprnn.validate_exprnn(model)
    return model
