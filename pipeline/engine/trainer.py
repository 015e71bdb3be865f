"""Training: one step (forward, loss, BPTT, clipping, the optimiser update) and the loop of many, with overflow
treated as data.

Pure numpy. The trainer knows nothing about logging or files: a step returns StepStats, the loop a TrainLog, and
the caller records them. Batches and validation come from functions the caller passes in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .jacobian import spectral_norm, spectral_radius
from .optim import Optimizer, check_clip, clip_gradients
from .cells import Model, bptt, forward, last_state
from .omega import omega_and_grads
from .rnn import LOSSES, Workspace, loss_and_dy

# How a step's loss is reduced for its gradient: the mean per scored position (the loss every history row reports),
# or min-char-rnn's sum over each sequence's positions, averaged over the batch: a gradient seq_len times larger,
# which the clip bound and Adagrad's epsilon see as min-char-rnn's do.
REDUCTIONS = ("mean", "sequence_sum")
HISTORY_COLUMNS = ("iter", "loss", "grad_norm", "clip_scale", "w_norm", "spectral_radius")  # a TrainLog.history row
# (xs (T, B, d) or ids (T, B), targets (T, B) int | (T, B, o), mask (T, B)[, carry]); carry True: the batch
# continues the previous one's sequences (text.ConsecutiveWindows), so it starts from the previous step's final
# states instead of zeros (truncated BPTT)
Batch = tuple
# (model, state) -> (validation loss, success rate), loss None for a task scoring nothing; state is TrainLog.state, the
# training streams' carried state, so that a model trained on carried state can be validated from it
Evaluate = Callable[[Model, "np.ndarray | None"], tuple]


@dataclass(frozen=True)
class StepStats:
    """What one step saw, measured before the update."""

    loss: float  # mean loss over the masked positions
    grad_norm: float  # global L2 norm of the gradient before clipping; NaN when the loss was not finite
    clip_scale: float  # post-clip norm / pre-clip norm: 1 = not clipped; NaN when the gradient was not finite
    finite: bool  # False: the loss or the gradient held inf/NaN, and the parameters were left unchanged
    h_last: np.ndarray  # (L, B, n): each layer's final state, to carry into the next window of a stream (an
    # LSTM's (L, B, 2n), h then c)
    omega: float = math.nan  # Pascanu's regulariser Omega on this batch (before its weight); NaN when not computed


def train_step(
    model: Model,
    optimizer: Optimizer,
    xs: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    loss_kind: str,
    clip_mode: str = "global",
    clip_threshold: float = 5.0,
    h0: np.ndarray | None = None,
    workspace: Workspace | None = None,
    check: bool = True,
    omega: float = 0.0,
    reduction: str = "mean",
) -> StepStats:
    """Update `model.params` in place from one batch xs (T, B, d), targets, mask (T, B), starting at h0 (L, B, n).

    Nothing is updated when the loss or gradient is not finite (finite=False): an exploding run reports it
    instead of raising or warning. Pass the same `workspace` to every step of a loop to reuse its buffers
    (about a quarter faster at the benchmark's sizes). check=False skips the check of the clip mode and threshold
    (`train` checks them once, before its first step). omega > 0 adds omega * dOmega/dW_hh (Pascanu's regulariser,
    engine/omega.py; vanilla cell only) to the loss gradient before clipping. reduction "sequence_sum" takes the
    gradient of the loss summed over each sequence's scored positions and averaged over the batch (REDUCTIONS);
    StepStats.loss is the mean either way.
    """
    if check:
        check_clip(clip_mode, clip_threshold)
        check_omega(model, omega)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        trace = forward(model, xs, h0, workspace)
        h_last = last_state(trace)  # a copy: the workspace is reused
        loss, dy = loss_and_dy(trace.y, targets, mask, loss_kind, workspace)
        if not math.isfinite(loss):
            return StepStats(loss, math.nan, math.nan, False, h_last)
        if reduction == "sequence_sum":
            dy *= float(np.sum(mask)) / mask.shape[1]  # d(sum per sequence, mean over B) = positions per sequence dE
        backward = [] if omega > 0 else None
        grads, _ = bptt(model, trace, dy, workspace, with_signal=False, backward=backward)
        reg = math.nan
        if backward is not None:
            reg, reg_grads = omega_and_grads(model, trace, backward)
            for key, g in reg_grads.items():
                grads[key] += omega * g
        clipped, grad_norm, scale = clip_gradients(grads, clip_mode, clip_threshold, check=False)
        if not math.isfinite(grad_norm):
            return StepStats(loss, grad_norm, scale, False, h_last, reg)
        optimizer.step(model.params, clipped)
    return StepStats(loss, grad_norm, scale, True, h_last, reg)


def check_omega(model: Model, omega: float) -> None:
    """ValueError unless omega is a finite number >= 0, and 0 for an LSTM (the regulariser is the vanilla cell's)."""
    if isinstance(omega, bool) or not isinstance(omega, (int, float, np.number)) or not omega >= 0 \
            or not math.isfinite(omega):
        raise ValueError(f"omega must be a finite number >= 0, got {omega!r}")
    if omega > 0 and model.cell != "rnn":
        raise ValueError(f"omega (Pascanu's regulariser) is for cell rnn only, got a {model.cell} model")


# ---- the loop -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    """How `train` runs, checked once when it starts."""

    iters: int  # steps to take (0: only validate the model as it is)
    loss_kind: str  # "xent" | "mse"
    clip_mode: str = "global"  # "none" | "global" | "elementwise"
    clip_threshold: float = 5.0  # global norm cap / elementwise bound (unused by "none")
    eval_every: int = 0  # validate after every this many steps; 0: only before the first and after the last
    norms_every: int = 1  # w_norm and spectral_radius at every this-many-th step and the last; NaN in other rows
    scored: bool = True  # False: the task scores no position, so a history row's loss is NaN, not the step's 0
    omega: float = 0.0  # weight of Pascanu's regulariser Omega (0: off; vanilla cell only)
    reduction: str = "mean"  # the loss whose gradient a step takes (REDUCTIONS); history reports the mean


@dataclass
class TrainLog:
    """What `train` did; the caller's `on_step` may read it as it grows."""

    model: Model  # after the last step; if diverged, the last model with finite parameters
    history: list[tuple] = field(default_factory=list)  # HISTORY_COLUMNS per step taken, the non-finite one included
    val: list[tuple] = field(default_factory=list)  # (iter, val_loss, val_accuracy) per validation pass
    diverged_at: int | None = None  # iteration whose loss, gradient or update, or validation loss, was non-finite
    iters_done: int = 0  # completed finite steps
    state: np.ndarray | None = None  # (L, B, width): the streams' final states after the latest step, when batches
    # carry their state (text.ConsecutiveWindows); None before the first step and for batches that do not


def check_settings(settings: TrainSettings) -> None:
    """ValueError naming the first setting `train` could not use."""
    for name in ("iters", "eval_every", "norms_every"):
        value, least = getattr(settings, name), 1 if name == "norms_every" else 0
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if settings.loss_kind not in LOSSES:
        raise ValueError(f"unknown loss {settings.loss_kind!r}; valid: {', '.join(LOSSES)}")
    if settings.reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {settings.reduction!r}; valid: {', '.join(REDUCTIONS)}")
    check_clip(settings.clip_mode, settings.clip_threshold)


def train(model: Model, optimizer: Optimizer, next_batch: Callable[[], Batch], evaluate: Evaluate,
          settings: TrainSettings, on_step: Callable[[int, TrainLog], None] | None = None) -> TrainLog:
    """`settings.iters` steps of `train_step` on `next_batch()`, validating with `evaluate(model, log.state)`
    before the first step, after every `eval_every`-th and after the last (unless that step was just validated).

    Stops at the first non-finite step (its loss, gradient or update) or validation loss; a final model whose
    validation loss is not finite is a divergence too. The untrained model's alone is not: training may bring an
    overflowing initialisation back (clipping does), so for iters 0 only the final check counts it.
    `on_step(i, log)` is called for the untrained model (i = 0) and after every completed step, once it is
    validated. `model` is updated in place; after a divergence `log.model` is the last finite copy of it.
    """
    check_settings(settings)
    check_omega(model, settings.omega)
    log = TrainLog(model)
    with np.errstate(all="ignore"):  # an exploding run overflows on purpose; the log records it
        _validate(log, 0, evaluate)
        if on_step is not None:
            on_step(0, log)
        _steps(log, optimizer, next_batch, evaluate, settings, on_step)
        if log.val[-1][0] != log.iters_done:
            _validate(log, log.iters_done, evaluate)
    if log.diverged_at is None and not _finite_or_none(log.val[-1][1]):
        log.diverged_at = log.iters_done  # e.g. iters 0: the untrained model's validation loss overflows
    return log


def _steps(log: TrainLog, optimizer: Optimizer, next_batch: Callable[[], Batch], evaluate: Evaluate,
           settings: TrainSettings, on_step: Callable[[int, TrainLog], None] | None) -> None:
    """The loop of `train`: sets log.history, iters_done, diverged_at and, after a divergence, log.model."""
    model, workspace, s, h_last = log.model, Workspace(), settings, None
    for i in range(1, s.iters + 1):
        before = model.copy()
        batch = next_batch()
        xs, targets, mask = batch[:3]
        h0 = h_last if len(batch) > 3 and batch[3] else None
        step = train_step(model, optimizer, xs, targets, mask, s.loss_kind, s.clip_mode, s.clip_threshold,
                          h0=h0, workspace=workspace, check=False, omega=s.omega, reduction=s.reduction)
        h_last = step.h_last
        finite = (bool(step.finite) and math.isfinite(step.loss) and math.isfinite(step.grad_norm)
                  and params_finite(model))
        norms = weight_norms(model) if finite and (i % s.norms_every == 0 or i == s.iters) else (math.nan, math.nan)
        loss = float(step.loss) if s.scored else math.nan
        log.history.append((i, loss, float(step.grad_norm), float(step.clip_scale), *norms))
        if not finite:
            log.diverged_at, log.model = i, before  # keep the last model with finite parameters
            return
        log.iters_done = i
        log.state = h_last if len(batch) > 3 else None  # where a carrying source's streams go on from
        if s.eval_every and i % s.eval_every == 0 and not _validate(log, i, evaluate):
            log.diverged_at = i  # finite parameters and minibatch loss, but the validation loss overflows
            return
        if on_step is not None:
            on_step(i, log)


def params_finite(model: Model) -> bool:
    return all(np.isfinite(p).all() for p in model.params.values())


def weight_norms(model: Model) -> tuple[float, float]:
    """(||W_hh||_2, spectral radius) of the top layer; an LSTM's W_hh (4n, n) is not square: its radius is NaN."""
    W = model.W_hh(-1)
    radius = spectral_radius(W) if W.shape[0] == W.shape[1] else math.nan
    return float(spectral_norm(W)), float(radius)


def _validate(log: TrainLog, i: int, evaluate: Evaluate) -> bool:
    """Evaluate the current model; False if its validation loss is not finite (a divergence, like a training one)."""
    log.val.append((i, *evaluate(log.model, log.state)))
    return _finite_or_none(log.val[-1][1])


def _finite_or_none(loss: float | None) -> bool:
    return loss is None or math.isfinite(loss)
