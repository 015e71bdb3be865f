"""The mean-field rate of a recurrent layer: a prediction of log ||dh_t/dh_k|| per step from weight statistics alone.

Signal-propagation theory (Poole et al. 2016; Chen, Pennington & Schoenholz 2018 for recurrent nets) treats the
pre-activations of a wide layer as Gaussian with a variance q that a step maps to

    q  ->  sigma_w^2 E_z[phi(sqrt(q) z)^2] + sigma_in^2,        z ~ N(0, 1),

sigma_w^2 = ||W_hh||_F^2 / n (the per-entry variance of W_hh times n) and sigma_in^2 the variance the input
drive W_xh x_t + b_h adds. At its fixed point q*, a back-propagated vector shrinks or grows per step by
chi = sigma_w^2 E_z[phi'(sqrt(q*) z)^2] in squared norm, so the predicted rate is lambda_MF = 1/2 ln chi
(docs/math.md, section 7.5). The same map holds for the pascanu form, whose phi acts on the state itself.

Pure numpy. Expectations over z are quadrature sums (`quadrature`): composite Gauss-Legendre against the normal
density, with panel edges at the kinks of phi and on phi's own scale.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .activations import Activation
from .rnn import RNN, Trace

Z_MAX = 12.0  # the expectation over z ~ N(0, 1) is taken on [-12, 12]: the density beyond is below 1e-31 of its peak
PANEL = 0.5  # panel width in z, and in the argument u = sqrt(q) z of phi (kinks of relu, hard_tanh are multiples)
U_MAX = 20.0  # argument range |u| over which panels follow phi's own scale (a saturated phi' lives at |u| < 20)
LEGENDRE_ORDER = 8  # Gauss-Legendre nodes per panel
FIXED_POINT_TOL = 1e-14  # relative change of q between iterations at which the fixed point is accepted
FIXED_POINT_MAX_ITERS = 5000  # on the critical line the map has slope 1 at q* and q creeps (converged False)
Q_DIVERGED = 1e300  # q beyond this has no fixed point (a non-saturating phi with sigma_w^2 E[phi^2]/q >= 1)
Q_FAR = 1e6  # q growing beyond Q_FAR * (sigma_w^2 + input_var + 1) has no finite fixed point (see fixed_point)
# Without input or bias, q below this is taken as the fixed point 0: phi' at sqrt(q) z then equals phi'(0) to
# rounding for a smooth phi, and a geometric decay towards 0 would otherwise stop only at underflow
Q_ZERO = 1e-30


@dataclass(frozen=True)
class MeanField:
    """The mean-field prediction for one layer."""

    sigma_w: float  # ||W_hh||_F / sqrt(n)
    input_var: float  # sigma_in^2: mean square of the input drive W_xh x_t + b_h per unit
    q_star: float  # fixed point of the variance map; inf when the map has none (q grows without bound)
    chi: float  # sigma_w^2 E[phi'(sqrt(q*) z)^2], the per-step factor of the squared norm
    rate: float  # lambda_MF = 1/2 ln chi, nats per step (-inf when chi = 0)
    converged: bool  # False when q neither settled nor diverged within FIXED_POINT_MAX_ITERS


@functools.lru_cache(maxsize=1)
def _legendre() -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(LEGENDRE_ORDER)


def quadrature(q: float) -> tuple[np.ndarray, np.ndarray]:
    """(nodes z, weights) with sum_i w_i f(sqrt(q) z_i) ~ E_{z ~ N(0,1)}[f(sqrt(q) z)] for a finite q > 0.

    Composite Gauss-Legendre on panels of [-Z_MAX, Z_MAX] whose edges are a grid in z (PANEL apart) joined with a
    grid in the argument u = sqrt(q) z (PANEL apart for |u| <= U_MAX): a panel edge then sits at every kink of
    phi or phi' (0 for relu and leaky_relu, +-1 for hard_tanh), so no panel straddles a jump, and the narrow
    window |u| < ~20 in which a saturated phi' is non-zero gets its own panels however large q is. (Plain
    Gauss-Hermite misses both: a 200-node rule is 2.5 % off for hard_tanh at q = 2, and at q = 1e4 no node of it
    falls where tanh' is above 1e-8.)"""
    base = np.arange(-Z_MAX, Z_MAX + PANEL / 2, PANEL)
    scaled = np.arange(-U_MAX, U_MAX + PANEL / 2, PANEL) / math.sqrt(q)
    edges = np.unique(np.concatenate([base, scaled[np.abs(scaled) < Z_MAX]]))
    lo, hi = edges[:-1, None], edges[1:, None]
    x, w = _legendre()
    z = (lo + hi) / 2 + (hi - lo) / 2 * x  # (panels, LEGENDRE_ORDER)
    weights = (hi - lo) / 2 * w * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return z.ravel(), weights.ravel()


def gaussian_mean(f, q: float) -> float:
    """E_{z ~ N(0,1)}[f(sqrt(q) z)] for q >= 0: f(0) at q = 0, the mean of f(+inf) and f(-inf) at q = inf, else
    `quadrature(q)`."""
    with np.errstate(over="ignore", invalid="ignore"):
        if q == 0.0:
            return float(np.asarray(f(np.zeros(1)))[0])
        if math.isinf(q):
            return float(np.mean(f(np.array([np.inf, -np.inf]))))
        z, w = quadrature(q)
        return float(np.dot(w, f(math.sqrt(q) * z)))


def fixed_point(act: Activation, sigma_w: float, input_var: float, q0: float | None = None) -> tuple[float, bool]:
    """(q*, converged): iterate q <- sigma_w^2 E[phi(sqrt(q) z)^2] + input_var from q0 (default: max(1, input_var)).

    The map is one-dimensional and cheap, so plain iteration is used: it converges wherever q* is attracting,
    which is the case for every activation here. Without input (input_var = 0) a q that falls below Q_ZERO is the
    fixed point 0. q* = inf when q still grows beyond Q_FAR (sigma_w^2 + input_var + 1) or passes
    Q_DIVERGED: no finite fixed point."""
    if not (math.isfinite(sigma_w) and sigma_w >= 0 and math.isfinite(input_var) and input_var >= 0):
        raise ValueError(f"sigma_w and input_var must be finite and >= 0, got {sigma_w!r}, {input_var!r}")
    s2 = sigma_w * sigma_w
    q = max(1.0, input_var) if q0 is None else float(q0)
    square = lambda z: act.phi(z) ** 2  # noqa: E731
    # A bounded phi (|phi| <= 1: tanh, sigmoid, hard_tanh, gaussian) keeps q below s2 + input_var; an unbounded one
    # (relu, leaky_relu, softplus, linear) is homogeneous of degree 2 in q far out, so q still growing there grows
    # geometrically (or linearly on the critical line) for ever: no finite fixed point
    far = Q_FAR * (s2 + input_var + 1.0)
    for _ in range(FIXED_POINT_MAX_ITERS):
        new = s2 * gaussian_mean(square, q) + input_var
        if not math.isfinite(new) or new > Q_DIVERGED or (q > far and new >= q):
            return math.inf, True
        if input_var == 0.0 and new < Q_ZERO:
            return 0.0, True
        if abs(new - q) <= FIXED_POINT_TOL * max(new, q):
            return new, True
        q = new
    return q, False


def meanfield_rate(act: Activation, sigma_w: float, input_var: float) -> MeanField:
    """lambda_MF = 1/2 ln(sigma_w^2 E[phi'(sqrt(q*) z)^2]) with q* from `fixed_point` (module docstring)."""
    q_star, converged = fixed_point(act, sigma_w, input_var)
    slope2 = gaussian_mean(lambda z: np.asarray(act.dphi(z), dtype=np.float64) ** 2, q_star)
    chi = sigma_w * sigma_w * slope2
    with np.errstate(divide="ignore"):
        rate = float(0.5 * np.log(chi))
    return MeanField(float(sigma_w), float(input_var), float(q_star), float(chi), rate, converged)


def weight_sigma(W: np.ndarray) -> float:
    """sigma_w = ||W||_F / sqrt(n) of a square (n, n) W: sqrt(n) times the root mean square entry (NaN if not finite)."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ValueError(f"W must be a non-empty square (n, n) matrix, got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        return math.nan
    return float(np.linalg.norm(W) / math.sqrt(W.shape[0]))


def drive_variance(drive: np.ndarray) -> float:
    """sigma_in^2: the mean over steps, sequences and units of the squared input drive W_xh x_t + b_h (..., n).

    A mean square, not a variance about the mean: a bias or a non-centred input adds to the pre-activation's
    second moment just as noise does, and the variance map tracks second moments."""
    drive = np.asarray(drive, dtype=np.float64)
    if drive.size == 0:
        raise ValueError("the input drive is empty")
    return float(np.mean(drive * drive))


def input_drive(model: RNN, trace: Trace, layer: int) -> np.ndarray:
    """(T, B, n): W_xh x_t + b_h of `layer` on the inputs it read in `trace` (layer 0: the task's, above: the states
    of the layer below, as the forward pass produced them)."""
    l = layer % model.layers
    x, U, b = trace.inputs[l], model.params[f"W_xh_{l}"], model.params[f"b_h_{l}"]
    if x.ndim == 2:  # token ids stand for one-hot vectors: the drive is a column of W_xh
        return U.T[x] + b
    return x @ U.T + b


def model_meanfield(model: RNN, trace: Trace, layer: int = -1) -> MeanField:
    """The mean-field prediction of one layer of `model`: sigma_w from its W_hh, sigma_in^2 from its input drive on
    the sequences of `trace` (a forward pass of `model` on inputs drawn from the task's distribution)."""
    with np.errstate(over="ignore", invalid="ignore"):
        sigma_w, drive = weight_sigma(model.W_hh(layer)), input_drive(model, trace, layer)
        input_var = drive_variance(drive) if np.all(np.isfinite(drive)) else math.nan
    if not (math.isfinite(sigma_w) and math.isfinite(input_var)):
        return MeanField(sigma_w, input_var, math.nan, math.nan, math.nan, False)  # weights or states diverged
    return meanfield_rate(model.act, sigma_w, input_var)
