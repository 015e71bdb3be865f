"""The validation pass: a model's mean loss and task success rate on a fixed batch, in chunks of sequences.

A validation batch can be large (10,000 sequences of 200 steps): one forward pass over all of it holds every state,
pre-activation and phi' at once (three (T, B, n) arrays, 6 GB at n = 128). Here the sequences go through the model a
chunk at a time, in one reused workspace, and only the per-position losses and hits (T, B) are kept; the mean and
the success rate are then reduced over the whole batch exactly as `rnn.loss_and_dy` and `position_correct` reduce
one full pass, so the numbers are those of the full pass, bit for bit.

Why bit for bit: the sequences of a batch never mix in the arithmetic (the recurrence, the readout and phi act row
by row), and BLAS gives a row the same bits whatever the rows around it, except for the last M mod 4 rows of a
product, which its kernels compute on another path. A chunk is therefore a multiple of CHUNK_ALIGN sequences and
the remainder of the batch is the last chunk, so that the same rows are left over in both. tests/test_evaluation.py
checks the equality on every task and both cells.

Pure numpy; arrays are time-major as the engine takes them: xs (T, B, d) or token ids (T, B), targets (T, B) int or
(T, B, o), mask (T, B).
"""

from __future__ import annotations

import numpy as np

from . import cells, rnn
from .rnn import LOSSES, Workspace, check_loss_inputs

CHUNK_ALIGN = 8  # a chunk holds a multiple of this many sequences (see the module's note on BLAS's last rows)
CHUNK_BYTES = 32 * 2**20  # a chunk's trace at most this: a larger chunk is no faster (a few thousand sequence-steps
# per numpy call already hide its overhead)
FLOAT_BYTES = 8


def chunk_sequences(batch: int, bytes_per_sequence: int, budget_bytes: int) -> int:
    """Sequences per chunk: as many as fit `budget_bytes` at `bytes_per_sequence`, a multiple of CHUNK_ALIGN (at
    least CHUNK_ALIGN), never more than the batch."""
    fit = max(CHUNK_ALIGN, budget_bytes // max(1, bytes_per_sequence) // CHUNK_ALIGN * CHUNK_ALIGN)
    return min(batch, fit)


def trace_bytes_per_sequence(cell: str, form: str, layers: int, hidden: int, output_dim: int, steps: int) -> int:
    """The bytes one sequence of `steps` takes in a validation pass's trace: per layer, the vanilla cell's h and
    drive (2 (T+1) n floats; pascanu's phi(h) too; an expRNN's are its vanilla RNN's), the LSTM's h, c, tanh(c) and
    four gates (7 (T+1) n), the GRU's h, three gates and hidden drive W_hn h + b_hn (5 (T+1) n); the readout and the
    per-position loss (2 T o)."""
    per_layer = {"lstm": 7, "gru": 5}.get(cell, 3 if form == "pascanu" else 2)
    return FLOAT_BYTES * (steps + 1) * (layers * per_layer * hidden + 2 * output_dim)


def validation_chunk(model: cells.Model, batch: int, steps: int, budget_bytes: int = CHUNK_BYTES) -> int:
    """The sequences per chunk of `evaluate_in_chunks` for `model` on a batch of `batch` sequences of `steps`."""
    form = getattr(model, "form", "elman")
    per_sequence = trace_bytes_per_sequence(model.cell, form, model.layers, model.hidden, model.output_dim, steps)
    return chunk_sequences(batch, per_sequence, budget_bytes)


def position_losses(y: np.ndarray, targets: np.ndarray, kind: str) -> np.ndarray:
    """(T, B): each position's loss, with `rnn.loss_and_dy`'s arithmetic: xent -log softmax(y)[target] as
    log sum exp(y - max y) - (y - max y)[target]; mse sum_o (y - target)^2."""
    if kind == "mse":
        error = y - targets  # (T, B, o)
        return np.einsum("tbo,tbo->tb", error, error)
    z = y - y.max(axis=-1, keepdims=True)  # exp(z) cannot overflow
    z_target = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]  # (T, B)
    s = np.exp(z).sum(axis=-1)  # (T, B): the softmax denominators
    return np.log(s) - z_target


def position_correct(y: np.ndarray, targets: np.ndarray, kind: str, tolerance: float | None) -> np.ndarray | None:
    """(T, B) bool: argmax = class (xent), or every |error| < tolerance (mse); None when an mse task has no
    tolerance (no criterion of success)."""
    if kind == "xent":
        return y.argmax(axis=-1) == targets
    if tolerance is None:
        return None
    return (np.abs(y - targets) < tolerance).all(axis=-1)


def mean_loss(losses: np.ndarray, mask: np.ndarray) -> float:
    """The masked mean of per-position losses, reduced as `rnn.loss_and_dy` reduces it (E = sum(mask * loss) /
    sum(mask), one dot product over all positions)."""
    total = mask.sum()
    weight = mask / (total if total > 0 else 1.0)  # (T, B): each position's share of the mean
    return float(np.vdot(losses.ravel(), weight.ravel()))


def success_rate(correct: np.ndarray | None, mask: np.ndarray) -> float | None:
    """Share of the masked positions answered correctly; None without a criterion or a masked position."""
    counted = mask > 0
    if correct is None or not counted.any():
        return None
    return float(correct[counted].mean())


def evaluate_in_chunks(model: cells.Model, xs: np.ndarray, targets: np.ndarray, mask: np.ndarray, kind: str,
                       tolerance: float | None, chunk: int) -> tuple[float, float | None]:
    """(mean loss, success rate) of `model` on the batch, `chunk` sequences at a time (a multiple of
    CHUNK_ALIGN, or the whole batch), from zero initial states: the numbers of one forward pass over the batch."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; valid: {', '.join(LOSSES)}")
    T, B = np.shape(mask)
    if not (isinstance(chunk, (int, np.integer)) and chunk >= 1 and (chunk % CHUNK_ALIGN == 0 or chunk >= B)):
        raise ValueError(f"chunk must be a positive multiple of {CHUNK_ALIGN} or at least the batch ({B}), got {chunk!r}")
    losses, hits = np.empty((T, B)), np.zeros((T, B), dtype=bool)
    scored = kind == "xent" or tolerance is not None
    workspace = Workspace()
    for start in range(0, B, chunk):
        part = slice(start, min(B, start + chunk))
        y = readout(model, xs[:, part], workspace)  # (T, c, o)
        want, weights = check_loss_inputs(y, targets[:, part], mask[:, part], kind)
        losses[:, part] = position_losses(y, want, kind)
        if scored:
            hits[:, part] = position_correct(y, want, kind, tolerance)
    return mean_loss(losses, np.asarray(mask, dtype=np.float64)), success_rate(hits if scored else None, mask)


def readout(model: cells.Model, xs: np.ndarray, workspace: Workspace) -> np.ndarray:
    """y (T, B, o) of a forward pass from zero states; the vanilla cell skips phi', which no loss reads."""
    if model.cell == "rnn":
        return rnn.forward(model, xs, None, workspace, derivatives=False).y
    return cells.forward(model, xs, None, workspace).y
