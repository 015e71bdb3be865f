"""expRNN (Lezcano-Casado & Martínez-Rubio 2019): a vanilla RNN whose recurrent matrix is orthogonal at every step of
training, W_hh = exp(A) with A skew-symmetric, trained through A.

The network it computes is rnn.py's, of the same form and activation; only the coordinates the optimiser moves
differ. Layer l's free parameters are the strict upper triangle U_l of the (n, n) array A_hh_l (as in the authors'
code, which reads A.triu(1)); A_l = U_l - U_l^T is skew-symmetric and W_hh_l = exp(A_l) is in SO(n), so
||W_hh_l||_2 = 1 exactly up to rounding whatever the optimiser does (docs/math.md, section 15). The entries on and
below the diagonal are never read and get a zero gradient. The other parameters (W_xh_l, b_h_l, W_hy, b_y) are the
vanilla RNN's.

Gradient: with G = dE/dW_hh from the vanilla BPTT, dE/dA = L(A^T, G), the Fréchet derivative of the matrix
exponential at A^T = -A in the direction G (the adjoint of L(A, .) in the Frobenius inner product), and
dE/dU = triu(dE/dA - (dE/dA)^T, 1). Both exp and L come from scipy.linalg.expm_frechet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from . import rnn
from .activations import Activation, get_activation
from .rnn import RNN, Trace, Workspace

CELL = "exprnn"
SKEW_KEY = "A_hh"  # A_hh_l, in place of the vanilla RNN's W_hh_l


@dataclass
class ExpRNN:
    form: str  # "elman" | "pascanu", as rnn.RNN
    activation: str
    leaky_slope: float
    params: dict[str, np.ndarray] = field(default_factory=dict)  # A_hh_l, W_xh_l, b_h_l, W_hy, b_y
    cell: ClassVar[str] = CELL
    # per A_hh_l key: (a copy of the A_hh_l its exponential was taken of, that exponential). A training step reads
    # W_hh in its forward pass and again in its BPTT (and the history's norms after the update), and the exponential
    # costs more than the step's recurrence; the copy, compared entry by entry, sees the optimiser's in-place updates
    _exponentials: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def layers(self) -> int:
        return sum(1 for k in self.params if k.startswith(f"{SKEW_KEY}_"))

    @property
    def hidden(self) -> int:
        return self.params[f"{SKEW_KEY}_0"].shape[0]

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
        """exp(A_l) (a new array each call), computed again only when A_hh_l has changed since it was last taken."""
        key = f"{SKEW_KEY}_{layer % self.layers}"
        U, known = self.params[key], self._exponentials.get(key)
        if known is None or not np.array_equal(known[0], U):  # NaN never equals itself: such a U is recomputed
            known = self._exponentials[key] = (U.copy(), orthogonal_of(U))
        return known[1].copy()

    def as_rnn(self) -> RNN:
        """The vanilla RNN this model computes: W_hh_l = exp(A_l), every other array shared (not copied)."""
        validate_exprnn(self)
        params = {k: v for k, v in self.params.items() if not k.startswith(f"{SKEW_KEY}_")}
        params |= {f"W_hh_{l}": self.W_hh(l) for l in range(self.layers)}
        return RNN(self.form, self.activation, self.leaky_slope, params)

    def copy(self) -> "ExpRNN":
        return ExpRNN(self.form, self.activation, self.leaky_slope, {k: v.copy() for k, v in self.params.items()})


def skew_of(U: np.ndarray) -> np.ndarray:
    """A = triu(U, 1) - triu(U, 1)^T: exactly skew-symmetric, read from U's strict upper triangle alone."""
    upper = np.triu(U, 1)
    return upper - upper.T


def orthogonal_of(U: np.ndarray) -> np.ndarray:
    """W = exp(skew_of(U)), in SO(n); all NaN when U is not finite (a diverged run is data, not an exception)."""
    if not np.all(np.isfinite(U)):
        return np.full(U.shape, np.nan)
    from scipy.linalg import expm  # on first use: importing scipy costs every command its startup

    return expm(skew_of(U))


def grad_through_exp(U: np.ndarray, G: np.ndarray) -> np.ndarray:
    """dE/dU from G = dE/dW for W = exp(skew_of(U)): triu(G_A - G_A^T, 1) with G_A = L(A^T, G) (module docstring).
    NaN where U or G is not finite."""
    if not (np.all(np.isfinite(U)) and np.all(np.isfinite(G))):
        return np.full(U.shape, np.nan)
    from scipy.linalg import expm_frechet

    A = skew_of(U)
    G_A = expm_frechet(A.T, G, compute_expm=False)
    return np.triu(G_A - G_A.T, 1)


def validate_exprnn(model: ExpRNN) -> None:
    """Raise ValueError naming the first thing wrong: a missing or non-square A_hh_l, else what rnn.validate_model
    says of the vanilla arrays (W_xh_l, b_h_l, W_hy, b_y, form, activation)."""
    L = model.layers
    if L < 1:
        raise ValueError(f"model has no layers: key {SKEW_KEY}_0 is missing")
    n = model.params[f"{SKEW_KEY}_0"].shape[0] if model.params[f"{SKEW_KEY}_0"].ndim == 2 else -1
    for l in range(L):
        U = model.params[f"{SKEW_KEY}_{l}"]
        if U.shape != (n, n):
            raise ValueError(f"{SKEW_KEY}_{l} must be square (n, n) = {(n, n)}, got {U.shape}")
    stand_in = {k: v for k, v in model.params.items() if not k.startswith(f"{SKEW_KEY}_")}
    stand_in |= {f"W_hh_{l}": np.zeros((n, n)) for l in range(L)}  # shapes only: no exponential needed
    rnn.validate_model(RNN(model.form, model.activation, model.leaky_slope, stand_in))


def bptt(model: ExpRNN, trace: Trace, dy: np.ndarray, workspace: Workspace | None = None,
         with_signal: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The vanilla RNN's BPTT (rnn.bptt on `as_rnn`), with each dE/dW_hh_l taken through the exponential to
    dE/dA_hh_l: grads keyed like model.params, and the signal (L, T+1) or None."""
    grads, signal = rnn.bptt(model.as_rnn(), trace, dy, workspace, with_signal)
    out = {k: g for k, g in grads.items() if not k.startswith("W_hh_")}
    for l in range(model.layers):
        out[f"{SKEW_KEY}_{l}"] = grad_through_exp(model.params[f"{SKEW_KEY}_{l}"], grads[f"W_hh_{l}"])
    return out, signal


def n_params(model: ExpRNN) -> int:
    """Free parameters: n (n - 1) / 2 per A_hh_l (its strict upper triangle), every entry of the other arrays."""
    n = model.hidden
    return int(sum(v.size for k, v in model.params.items() if not k.startswith(f"{SKEW_KEY}_"))
               + model.layers * n * (n - 1) // 2)


def skew_from_orthogonal(Q: np.ndarray) -> np.ndarray:
    """U whose exp(skew_of(U)) is Q, for Q in SO(n) (det +1): the strict upper triangle of the principal matrix
    logarithm, made exactly skew (the authors' Haar initialisation, initialization.haar_init_)."""
    from scipy.linalg import logm

    A = np.real(logm(Q))
    return np.triu(0.5 * (A - A.T), 1)
