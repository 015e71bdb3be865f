"""Synthetic long-range tasks for vanilla RNNs: adding, temporal order, copy, and a Jacobian probe.

Pure numpy, no I/O; every random draw comes from the `np.random.Generator` argument, in a fixed order, so the same
generator state gives identical arrays. Every task returns a `TaskData` with batch-major arrays

    x    (N, S, d) float64   inputs; S = T for all tasks except copy (S = T + 20)
    y    (N, S) int64        class targets (loss "xent"), or (N, S, o) float64 real targets (loss "mse")
    mask (N, S) float64      1 where a position counts in the loss, 0 elsewhere

and a `TaskMeta` with the analytic baselines a trained model is judged against (docs/math.md 11): `chance_loss` and
`chance_accuracy` are those of the best model that ignores the sequence's past (a constant or per-position answer),
so a run that scores below `chance_loss` has used information carried through time; `partial_loss` and
`partial_accuracy` those of the best model that carries only part of the information the task needs (one of
adding's two values, one of temporal order's two symbols; for copy the memoryless model), so a run below
`partial_loss` has carried all of it.

Short sequences. Adding and temporal order place two events in two windows of the sequence. For T >= 2 the windows
are disjoint, so the events sit at distinct positions. For T = 1 both windows are the single position 0 and the
two events *add up* there: adding gets marker 2 and its value counts twice; temporal order gets the sum of two
one-hot symbols (order then is unobservable, so AB and BA cannot be told apart at T = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .rnn import one_hot

TASKS = ("adding", "temporal_order", "copy", "probe")

ADDING_TOLERANCE = 0.04  # an adding answer is correct when |prediction - target| < 0.04 (Hochreiter 1997)
SOLVED_SQUARED_ERROR = 0.04  # an adding sequence is right, by the papers' bar, when its squared error is below this
#   (Pascanu et al. 2013, section 4.1.2); a class task's sequence is right when every scored class is
COPY_MEMORY = 10  # symbols to remember (Arjovsky et al. 2016)
COPY_SYMBOLS = 8  # alphabet the remembered symbols are drawn from
COPY_BLANK, COPY_DELIMITER = 8, 9  # the 9th and 10th categories
TEMPORAL_DISTRACTORS = 4  # symbols a, b, c, d = ids 0..3; the relevant A, B are ids 4, 5
PROBE_INPUT_DIM = 8


@dataclass(frozen=True)
class TaskMeta:
    """What a dataset is and the analytic numbers a model is compared with."""

    task: str  # one of TASKS
    T: int  # the task's length parameter (the delay for copy)
    steps: int  # sequence length S actually fed to the RNN (T + 20 for copy, T otherwise)
    loss: str  # "xent" (class targets) or "mse" (real targets)
    input_dim: int  # d
    output_dim: int  # number of classes (xent) or target width o (mse)
    chance_loss: float | None  # loss (mean over masked positions) of the memoryless model; None: nothing is scored
    chance_accuracy: float | None  # its success rate on the masked positions; None: no criterion
    baselines: dict[str, float] = field(default_factory=dict)  # the same numbers, named for the manifest
    tolerance: float | None = None  # adding only: |error| below this counts as correct
    partial_loss: float | None = None  # loss of the best model that carries only part of what the task needs
    partial_accuracy: float | None = None  # its success rate on the masked positions
    sequence_tolerance: float | None = None  # adding only: squared error below this makes a sequence right


@dataclass(frozen=True)
class TaskData:
    """Arrays of one synthetic dataset (shapes in the module docstring) and its metadata."""

    x: np.ndarray  # (N, S, d) float64
    y: np.ndarray  # (N, S) int64 or (N, S, o) float64
    mask: np.ndarray  # (N, S) float64
    meta: TaskMeta


def _check_sizes(T: int, count: int) -> None:
    """Reject lengths and counts that no task can use."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"sequence length T must be an integer >= 1, got {T!r}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")


def _last_step_mask(count: int, steps: int) -> np.ndarray:
    """(N, S) mask with a 1 at the last step only."""
    mask = np.zeros((count, steps), dtype=np.float64)
    mask[:, -1] = 1.0
    return mask


# ---------------------------------------------------------------------------------------------------- adding


def adding_positions(T: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Half-open windows [lo, hi) of the two marked positions: first half and second half.

    The first marker is uniform on [0, max(1, T//2)), the second on [T//2, T). Disjoint for T >= 2; both {0} at T = 1.
    """
    return (0, max(1, T // 2)), (T // 2, T)


def adding_meta(T: int) -> TaskMeta:
    """Adding problem metadata.

    Predicting the constant 0.5 leaves error e = (X1 + X2)/4 with X1, X2 ~ U[-1, 1] independent:
    E[e^2] = (1/3 + 1/3)/16 = 1/24, and S = X1 + X2 is triangular on [-2, 2], so P(|e| < 0.04) = P(|S| < a)
    = a - a^2/4 with a = 0.16. At T = 1 the one value counts twice: S = 2 X1 is uniform on [-2, 2],
    E[e^2] = 4/3/16 = 1/12 and P(|S| < a) = a/2.
    Knowing one of the two values, say X1, the best answer is E[target | X1] = 0.5 + X1/4, with error X2/4:
    E[e^2] = (1/3)/16 = 1/48 (half of chance) and P(|X2|/4 < 0.04) = P(|X2| < a) = a. At T = 1 one value is all
    there is to know, so the partial model is the chance model.
    """
    a = 4 * ADDING_TOLERANCE
    if T == 1:
        mse, acc = 1.0 / 12.0, a / 2.0
        partial, partial_acc = mse, acc
    else:
        mse, acc = 1.0 / 24.0, a - a * a / 4.0
        partial, partial_acc = 1.0 / 48.0, a
    return TaskMeta("adding", T, T, "mse", 2, 1, mse, acc,
                    {"mse_predict_half": mse, "accuracy_predict_half": acc, "mse_one_value": partial,
                     "accuracy_one_value": partial_acc}, ADDING_TOLERANCE, partial, partial_acc, SOLVED_SQUARED_ERROR)


def adding(T: int, count: int, rng: np.random.Generator) -> TaskData:
    """Adding problem (Hochreiter & Schmidhuber 1997, in the one-marker-per-half form of Le et al. 2015).

    Input per step: (value ~ U[-1, 1], marker). Exactly two markers, one in each half (see `adding_positions`).
    Target 0.5 + (X1 + X2)/4 at the last step only (mask), where X1, X2 are the marked values.
    """
    _check_sizes(T, count)
    values = rng.uniform(-1.0, 1.0, size=(count, T))  # (N, T)
    (lo1, hi1), (lo2, hi2) = adding_positions(T)
    first = rng.integers(lo1, hi1, size=count)  # (N,)
    second = rng.integers(lo2, hi2, size=count)  # (N,)
    markers = np.zeros((count, T), dtype=np.float64)
    rows = np.arange(count)
    np.add.at(markers, (rows, first), 1.0)
    np.add.at(markers, (rows, second), 1.0)  # at T = 1 both land on position 0: marker 2
    x = np.stack([values, markers], axis=-1)  # (N, T, 2)
    y = np.zeros((count, T, 1), dtype=np.float64)
    y[:, -1, 0] = 0.5 + (values * markers).sum(axis=1) / 4.0
    return TaskData(x, y, _last_step_mask(count, T), adding_meta(T))


# -------------------------------------------------------------------------------------------- temporal order


def temporal_order_positions(T: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Half-open windows of the two relevant symbols: [0.1T, 0.2T) and [0.5T, 0.6T) (Martens & Sutskever 2011,
    Pascanu et al. 2013), each widened to at least one position. Disjoint for T >= 2; both {0} at T = 1."""
    lo1, lo2 = T // 10, T // 2
    return (lo1, max(2 * T // 10, lo1 + 1)), (lo2, max(6 * T // 10, lo2 + 1))


def temporal_order_meta(T: int) -> TaskMeta:
    """Temporal order metadata: 4 equally likely classes, so chance error 3/4 and chance cross-entropy ln 4. A model
    that knows one of the two symbols leaves 2 equally likely classes: cross-entropy ln 2, accuracy 1/2."""
    loss, partial = float(np.log(4.0)), float(np.log(2.0))
    return TaskMeta("temporal_order", T, T, "xent", TEMPORAL_DISTRACTORS + 2, 4, loss, 0.25,
                    {"xent_chance": loss, "error_chance": 0.75, "xent_one_symbol": partial,
                     "accuracy_one_symbol": 0.5}, None, partial, 0.5)


def temporal_order(T: int, count: int, rng: np.random.Generator) -> TaskData:
    """Temporal order problem (Hochreiter & Schmidhuber 1997; 6-symbol form of Pascanu et al. 2013).

    Inputs are one-hot over 6 symbols: distractors a, b, c, d (ids 0-3) everywhere except two positions, one in
    each window of `temporal_order_positions`, which hold A or B (ids 4, 5). The class at the last step is
    2 * first + second with A = 0, B = 1: AA = 0, AB = 1, BA = 2, BB = 3.
    """
    _check_sizes(T, count)
    distractors = rng.integers(0, TEMPORAL_DISTRACTORS, size=(count, T))  # (N, T)
    relevant = rng.integers(0, 2, size=(count, 2))  # (N, 2): 0 = A, 1 = B
    (lo1, hi1), (lo2, hi2) = temporal_order_positions(T)
    first = rng.integers(lo1, hi1, size=count)
    second = rng.integers(lo2, hi2, size=count)
    x = one_hot(distractors, TEMPORAL_DISTRACTORS + 2)  # (N, T, 6)
    rows = np.arange(count)
    x[rows, first] = 0.0
    x[rows, second] = 0.0
    np.add.at(x, (rows, first, TEMPORAL_DISTRACTORS + relevant[:, 0]), 1.0)
    np.add.at(x, (rows, second, TEMPORAL_DISTRACTORS + relevant[:, 1]), 1.0)  # T = 1: two-hot at position 0
    y = np.zeros((count, T), dtype=np.int64)
    y[:, -1] = 2 * relevant[:, 0] + relevant[:, 1]
    return TaskData(x, y, _last_step_mask(count, T), temporal_order_meta(T))


# ------------------------------------------------------------------------------------------------------ copy


def copy_meta(T: int) -> TaskMeta:
    """Copy metadata. Only the 10 recall positions are scored, where the memoryless strategy (uniform over the 8
    symbols) has cross-entropy ln 8 and accuracy 1/8 (Arjovsky et al. 2016 average over all T + 20 positions,
    10 ln 8 / (T + 20); blanks are free to predict, so that average lets a model that remembers nothing look good).
    The partial baseline is that memoryless model too, so on copy `learned` is beating chance; `solved` is the bar."""
    steps = T + 2 * COPY_MEMORY
    loss, acc = float(np.log(COPY_SYMBOLS)), 1.0 / COPY_SYMBOLS
    return TaskMeta("copy", T, steps, "xent", COPY_DELIMITER + 1, COPY_DELIMITER + 1, loss, acc,
                    {"xent_memoryless": loss, "accuracy_memoryless": acc}, None, loss, acc)


def copy(T: int, count: int, rng: np.random.Generator) -> TaskData:
    """Copy memory problem (Arjovsky et al. 2016), length T + 20 over 10 categories (ids 0-9, one-hot inputs).

    Input: 10 symbols uniform from ids 0-7, then T - 1 blanks (id 8), the delimiter (id 9), 10 blanks.
    Target: T + 10 blanks, then the 10 symbols in order. Only the last 10 steps (the recall) are scored: the mask
    is 1 there and 0 elsewhere. The output alphabet is the input's 10 categories (the delimiter is never a target).
    """
    _check_sizes(T, count)
    steps = T + 2 * COPY_MEMORY
    memory = rng.integers(0, COPY_SYMBOLS, size=(count, COPY_MEMORY))  # (N, 10)
    inputs = np.full((count, steps), COPY_BLANK, dtype=np.int64)  # (N, S)
    inputs[:, :COPY_MEMORY] = memory
    inputs[:, COPY_MEMORY + T - 1] = COPY_DELIMITER
    y = np.full((count, steps), COPY_BLANK, dtype=np.int64)
    y[:, -COPY_MEMORY:] = memory
    x = one_hot(inputs, COPY_DELIMITER + 1)  # (N, S, 10)
    mask = np.zeros((count, steps), dtype=np.float64)
    mask[:, -COPY_MEMORY:] = 1.0
    return TaskData(x, y, mask, copy_meta(T))


# ----------------------------------------------------------------------------------------------------- probe


def probe_meta(T: int, input_dim: int = PROBE_INPUT_DIM) -> TaskMeta:
    """Probe metadata: zero targets under a zero mask, so nothing is scored and no gradient flows (no chance)."""
    return TaskMeta("probe", T, T, "mse", input_dim, 1, None, None, {})


def probe(T: int, count: int, rng: np.random.Generator, input_dim: int = PROBE_INPUT_DIM) -> TaskData:
    """Gaussian inputs N(0, 1) of width `input_dim` for pure Jacobian studies; targets 0 and mask 0."""
    _check_sizes(T, count)
    if isinstance(input_dim, bool) or not isinstance(input_dim, (int, np.integer)) or input_dim < 1:
        raise ValueError(f"probe input_dim must be an integer >= 1, got {input_dim!r}")
    x = rng.standard_normal((count, T, input_dim))  # (N, T, d)
    return TaskData(x, np.zeros((count, T, 1)), np.zeros((count, T)), probe_meta(T, input_dim))


# ------------------------------------------------------------------------------------- the papers' criterion


def sequences_right(y: np.ndarray, targets: np.ndarray, mask: np.ndarray, kind: str,
                    squared_error: float | None) -> float | None:
    """Share of sequences answered right by the papers' bar, time-major arrays y (S, N, o), targets (S, N) or
    (S, N, o), mask (S, N): a sequence is right when every scored position is, a class position when its argmax is
    the target (xent), a real one when its squared error (summed over outputs) is below `squared_error` (mse).
    None without a criterion (mse and no threshold) or without a scored sequence."""
    counted = mask > 0
    scored = counted.any(axis=0)  # (N,)
    if not scored.any() or (kind == "mse" and squared_error is None):
        return None
    if kind == "xent":
        right = y.argmax(axis=-1) == targets
    else:
        right = ((y - targets) ** 2).sum(axis=-1) < squared_error
    return float((right | ~counted).all(axis=0)[scored].mean())


# ---------------------------------------------------------------------------------------------------- lookup

_MAKERS = {"adding": adding, "temporal_order": temporal_order, "copy": copy, "probe": probe}
_METAS = {"adding": adding_meta, "temporal_order": temporal_order_meta, "copy": copy_meta, "probe": probe_meta}


def make_task(task: str, T: int, count: int, rng: np.random.Generator) -> TaskData:
    """Generate `count` sequences of `task` with length parameter T."""
    if task not in _MAKERS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    return _MAKERS[task](T, count, rng)


def task_meta(task: str, T: int) -> TaskMeta:
    """Metadata of `task` at length T without generating any data."""
    if task not in _METAS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    _check_sizes(T, 1)
    return _METAS[task](T)


def sequence_steps(task: str, T: int) -> int:
    """Steps S of the generated sequences: T + 20 for copy, T otherwise."""
    return task_meta(task, T).steps
