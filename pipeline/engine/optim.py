"""Optimisers and gradient clipping on dicts of named float64 arrays.

Pure numpy. `step(params, grads)` updates `params` in place and never modifies `grads`.
L2 weight decay is added to the gradient of every parameter: g <- g + weight_decay * p.

  SGD:       p <- p - lr g
  Momentum:  v <- mu v - lr g;  p <- p + v                        (classical momentum, Sutskever et al. 2013)
  Adagrad:   m <- m + g^2;  p <- p - lr g / sqrt(m + 1e-8)        (exactly as Karpathy's min-char-rnn)
  Adam:      m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
             p <- p - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)   (Kingma & Ba 2015)

Clipping returns (clipped, pre_clip_norm, scale); `scale` is post-clip norm / pre-clip norm, and NaN when the
pre-clip norm is not finite (a gradient holding inf or NaN: the caller should record divergence, not step).
"""

from __future__ import annotations

import math

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "adagrad", "adam")
CLIP_MODES = ("none", "global", "elementwise")
Arrays = dict[str, np.ndarray]

# Upper ends of the settings, the one place they are written: run/config.py validates a RunConfig against them and
# the optimisers and clipping check their own arguments with them. They only catch typos: a step size above 1e6 or
# a cap above 1e12 is no experiment anyone means (for no clipping at all, the clip mode is "none").
MAX_LR = 1e6
MAX_WEIGHT_DECAY = 1e6
MAX_CLIP_THRESHOLD = 1e12


def _check_positive(name: str, value: float, allow_zero: bool = False, hi: float | None = None) -> float:
    """`value` as a float, or ValueError when it is not finite and > 0 (>= 0 if allow_zero) and <= hi."""
    ok = isinstance(value, (int, float, np.number)) and math.isfinite(value)
    if not ok or not (value >= 0 if allow_zero else value > 0) or (hi is not None and value > hi):
        upper = "" if hi is None else f" and <= {hi:g}"
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0{upper}, got {value!r}")
    return float(value)


class Optimizer:
    """Base: validates the step's arguments, applies weight decay, keeps per-parameter state and scratch."""

    name = "base"
    slots: tuple[str, ...] = ()  # names of the per-parameter state arrays (zeros at the first step)

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        self.lr = _check_positive("lr", lr, hi=MAX_LR)
        self.weight_decay = _check_positive("weight_decay", weight_decay, allow_zero=True, hi=MAX_WEIGHT_DECAY)
        self.state: dict[str, dict[str, np.ndarray]] = {}  # per parameter name: its buffers

    def step(self, params: Arrays, grads: Arrays) -> None:
        """Update every params[k] in place from grads[k] (grads must have the same keys and shapes)."""
        if grads.keys() != params.keys():
            raise ValueError(f"grads keys {sorted(grads)} do not match params keys {sorted(params)}")
        for key, p in params.items():
            if grads[key].shape != p.shape:
                raise ValueError(f"grad {key} has shape {grads[key].shape}, param has {p.shape}")
        self._begin_step()
        for key, p in params.items():
            buffers = self._buffers(key, p)
            g = self._decayed(grads[key], p, buffers["g"])
            self._update(p, g, buffers)

    def _buffers(self, key: str, p: np.ndarray) -> dict[str, np.ndarray]:
        """This parameter's state and scratch arrays, zeros on the first step."""
        if key not in self.state or self.state[key]["g"].shape != p.shape:
            self.state[key] = {name: np.zeros(p.shape) for name in ("g", "tmp") + self.slots}
        return self.state[key]

    def _decayed(self, g: np.ndarray, p: np.ndarray, out: np.ndarray) -> np.ndarray:
        """g + weight_decay * p (g itself when there is no decay)."""
        if self.weight_decay == 0.0:
            return g
        np.multiply(p, self.weight_decay, out=out)
        out += g
        return out

    def _begin_step(self) -> None:
        """Hook run once per step before any parameter is updated."""

    def _update(self, p: np.ndarray, g: np.ndarray, buffers: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """p <- p - lr g."""

    name = "sgd"

    def _update(self, p: np.ndarray, g: np.ndarray, buffers: dict[str, np.ndarray]) -> None:
        step = np.multiply(g, self.lr, out=buffers["tmp"])
        p -= step


class Momentum(Optimizer):
    """Classical momentum: v <- mu v - lr g; p <- p + v."""

    name = "momentum"
    slots = ("velocity",)

    def __init__(self, lr: float, weight_decay: float = 0.0, momentum: float = 0.9) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = _check_positive("momentum", momentum, allow_zero=True)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")

    def _update(self, p: np.ndarray, g: np.ndarray, buffers: dict[str, np.ndarray]) -> None:
        v = buffers["velocity"]
        v *= self.momentum
        v -= np.multiply(g, self.lr, out=buffers["tmp"])
        p += v


class Adagrad(Optimizer):
    """min-char-rnn's Adagrad: m <- m + g^2; p <- p - lr g / sqrt(m + 1e-8)."""

    name = "adagrad"
    slots = ("memory",)
    eps = 1e-8

    def _update(self, p: np.ndarray, g: np.ndarray, buffers: dict[str, np.ndarray]) -> None:
        m, tmp = buffers["memory"], buffers["tmp"]
        m += np.multiply(g, g, out=tmp)
        np.add(m, self.eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= self.lr
        p -= tmp


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba 2015)."""

    name = "adam"
    slots = ("m", "v")

    def __init__(
        self, lr: float, weight_decay: float = 0.0, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        super().__init__(lr, weight_decay)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not (isinstance(beta, (int, float, np.number)) and 0 <= beta < 1):
                raise ValueError(f"{name} must be in [0, 1), got {beta!r}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = _check_positive("eps", eps)
        self.t = 0  # steps taken, for the bias correction

    def _begin_step(self) -> None:
        self.t += 1

    def _update(self, p: np.ndarray, g: np.ndarray, buffers: dict[str, np.ndarray]) -> None:
        m, v, tmp = buffers["m"], buffers["v"], buffers["tmp"]
        m *= self.beta1
        m += np.multiply(g, 1.0 - self.beta1, out=tmp)
        v *= self.beta2
        np.multiply(g, g, out=tmp)
        v += np.multiply(tmp, 1.0 - self.beta2, out=tmp)
        np.sqrt(np.divide(v, 1.0 - self.beta2**self.t, out=tmp), out=tmp)  # sqrt(v_hat)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= self.lr / (1.0 - self.beta1**self.t)  # m_hat = m / (1 - b1^t)
        p -= tmp


_CLASSES = {"sgd": SGD, "momentum": Momentum, "adagrad": Adagrad, "adam": Adam}
_OPTIONS = {"sgd": (), "momentum": ("momentum",), "adagrad": (), "adam": ("beta1", "beta2", "eps")}


def make_optimizer(name: str, lr: float, weight_decay: float = 0.0, **options: float) -> Optimizer:
    """The optimiser called `name` (sgd | momentum | adagrad | adam); `options` are its own settings.

    An unknown name or an option that optimiser does not have is a ValueError.
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        allowed = ", ".join(_OPTIONS[name]) or "none"
        raise ValueError(f"optimizer {name!r} has no option {', '.join(unknown)}; its options: {allowed}")
    return _CLASSES[name](lr, weight_decay, **options)


# ---- clipping -------------------------------------------------------------------------------------------------


def global_norm(grads: Arrays) -> float:
    """sqrt of the sum of squares of every entry of every array: NaN if any entry is NaN, else inf if any is inf.

    Finite entries whose squares overflow still get their finite norm (that is what clipping is for).
    """
    with np.errstate(over="ignore"):
        total = math.fsum(float(np.vdot(g, g)) for g in grads.values())
    if math.isfinite(total):
        return math.sqrt(total)
    return _rescaled_norm(grads)


def _rescaled_norm(grads: Arrays) -> float:
    """global_norm when the plain sum of squares is not finite: NaN / inf entries, or overflow of the squares."""
    if any(np.isnan(g).any() for g in grads.values()):
        return math.nan
    peak = max(float(np.max(np.abs(g))) for g in grads.values() if g.size)
    if math.isinf(peak):
        return math.inf
    with np.errstate(over="ignore"):  # a norm beyond float64's range is inf
        return peak * math.sqrt(math.fsum(float(np.vdot(g / peak, g / peak)) for g in grads.values()))


def _check_threshold(threshold: float) -> float:
    return _check_positive("clip threshold", threshold, hi=MAX_CLIP_THRESHOLD)


def check_clip(mode: str, threshold: float) -> None:
    """Raise ValueError for an unknown clip mode, or a threshold (unused by "none") not in (0, MAX_CLIP_THRESHOLD]."""
    if mode not in CLIP_MODES:
        raise ValueError(f"unknown clip mode {mode!r}; valid: {', '.join(CLIP_MODES)}")
    if mode != "none":
        _check_threshold(threshold)


def clip_by_global_norm(grads: Arrays, threshold: float) -> tuple[Arrays, float, float]:
    """Pascanu et al. (2013): if ||g|| > threshold, g <- g * threshold / ||g|| (over all arrays at once).

    Returns (clipped, pre_clip_norm, scale). Below the threshold `clipped` holds the very same arrays.
    """
    return _clip_global(grads, _check_threshold(threshold))


def clip_elementwise(grads: Arrays, threshold: float) -> tuple[Arrays, float, float]:
    """min-char-rnn: np.clip every entry to [-threshold, threshold].

    Returns (clipped, pre_clip_norm, scale) with scale = post-clip norm / pre-clip norm (1 for a zero gradient).
    """
    return _clip_entries(grads, _check_threshold(threshold))


def _clip_global(grads: Arrays, threshold: float) -> tuple[Arrays, float, float]:
    """clip_by_global_norm with a threshold already checked."""
    norm = global_norm(grads)
    if not math.isfinite(norm):
        return dict(grads), norm, math.nan
    if norm <= threshold:
        return dict(grads), norm, 1.0
    scale = threshold / norm
    return {k: g * scale for k, g in grads.items()}, norm, scale


def _clip_entries(grads: Arrays, threshold: float) -> tuple[Arrays, float, float]:
    """clip_elementwise with a threshold already checked."""
    norm = global_norm(grads)
    if not math.isfinite(norm):
        return dict(grads), norm, math.nan
    clipped = {k: np.clip(g, -threshold, threshold) for k, g in grads.items()}
    return clipped, norm, (global_norm(clipped) / norm if norm > 0 else 1.0)


def clip_gradients(grads: Arrays, mode: str, threshold: float, check: bool = True) -> tuple[Arrays, float, float]:
    """Clip by `mode` (none | global | elementwise); returns (clipped, pre_clip_norm, scale).

    check=False skips `check_clip` (for a training loop that checked its settings once, before the first step)."""
    if check:
        check_clip(mode, threshold)
    if mode == "global":
        return _clip_global(grads, float(threshold))
    if mode == "elementwise":
        return _clip_entries(grads, float(threshold))
    if mode == "none":
        norm = global_norm(grads)
        return dict(grads), norm, (1.0 if math.isfinite(norm) else math.nan)
    raise ValueError(f"unknown clip mode {mode!r}; valid: {', '.join(CLIP_MODES)}")
