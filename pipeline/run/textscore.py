"""A text model scored as it was trained.

A model trained on random windows starts every window from h = 0, and is validated so: on TEXT_VAL_WINDOWS evenly
spaced windows of the held-out text, each from h = 0 (`sources.evaluate`). A model trained on consecutive windows
(min-char-rnn's walk) has only met h = 0 where its walk restarted: read from h = 0 every 25 characters it is scored
on states it never saw. It is validated as min-char-rnn reads its data: the whole held-out text once, with the state
carried from each character to the next (`engine.text.read_carried`), going on from the state its training walk
carries (the last stream's, after the latest step), as if the held-out text were the next part of the walk's text.
Not from h = 0: a model whose walk keeps it in one region of its state space can, started from h = 0 on other text,
settle in a region it never learned to predict from and stay there for the whole text (docs/math.md 12 has a
measured case). Its samples continue the held-out text from the state carried to its end. A run's summary.json has
both losses of its final model, whichever it was trained on (`text_scores`); `final_val_loss`, the one its verdict
reads, is the one its training calls for.
"""

from __future__ import annotations

import numpy as np

from ..engine.cells import Model
from ..engine.text import CarriedRead, read_carried
from .sources import Source, evaluate


class Validation:
    """The run's validation pass (the trainer's `evaluate`): (loss, accuracy) of `model` read as `src.val_read`
    says, given the training streams' carried state (`TrainLog.state`, or None). It keeps the last carried read
    with a copy of the weights and start it read, so that a sample of the same model from the same state starts
    from that read's end without reading the held-out text again."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self._last: tuple[dict[str, np.ndarray], np.ndarray | None, CarriedRead] | None = None

    def __call__(self, model: Model, state: np.ndarray | None = None) -> tuple[float | None, float | None]:
        if self.src.val_read != "carried":
            return evaluate(model, self.src)
        read = self.carried(model, state)
        return read.loss, read.accuracy

    def carried(self, model: Model, state: np.ndarray | None = None) -> CarriedRead:
        """The held-out text read once with the state carried (text sources only), from `walk_start(state)`."""
        if self.src.val_ids is None:
            raise ValueError("a carried read needs a text source (val_ids)")
        start = walk_start(state)
        if self._last is not None and _same_weights(self._last[0], model.params) and _same(self._last[1], start):
            return self._last[2]
        read = read_carried(model, self.src.val_ids, h0=start)
        self._last = ({k: v.copy() for k, v in model.params.items()}, start, read)
        return read

    def sample_start(self, model: Model, state: np.ndarray | None = None) -> tuple[int, np.ndarray | None]:
        """(first id, h0) of a text sample. A carried model continues the held-out text: its last character, from
        the state carried through the rest of it. A windows model starts, as its windows do, from h = 0, at the
        first held-out character."""
        if self.src.val_read == "carried":
            return int(self.src.val_ids[-1]), self.carried(model, state).state
        return int(self.src.probe.xs[0].argmax()), None


def walk_start(state: np.ndarray | None) -> np.ndarray | None:
    """Where a carried read of the held-out text starts: the training walk's last stream's state (L, 1, width), the
    one whose part of the text the held-out text follows; None (h = 0) before the first step, or if not finite."""
    if state is None or not np.all(np.isfinite(state[:, -1:])):
        return None
    return np.array(state[:, -1:], dtype=np.float64)


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def text_scores(model: Model, validation: Validation, state: np.ndarray | None = None) -> dict:
    """summary.json's text numbers: both validation losses and accuracies of `model` and which one the verdict
    reads (`val_read`: `final_val_loss` and `val_accuracy` are its pair); the carried one from `state` as in
    training (`Validation.carried`)."""
    windows_loss, windows_accuracy = evaluate(model, validation.src)
    carried = validation.carried(model, state)
    return {"val_read": validation.src.val_read,
            "val_loss_windows": windows_loss, "val_accuracy_windows": windows_accuracy,
            "val_loss_carried": carried.loss, "val_accuracy_carried": carried.accuracy}
