"""A text model scored as it was trained.

A model trained on random windows starts every window from h = 0, and is validated so: on TEXT_VAL_WINDOWS evenly
spaced windows of the held-out text, each from h = 0 (`sources.evaluate`). A model trained on consecutive windows
(min-char-rnn's walk) has only seen h = 0 where its walk restarted: read from h = 0 every 25 characters it is scored
on states it never met. It is validated as min-char-rnn reads its data: the whole held-out text once, with the
state carried from each character to the next (`engine.text.read_carried`), and its samples continue the held-out
text from the state carried to its end. A run's summary.json has both losses of its final model, whichever it was
trained on (`text_scores`); `final_val_loss`, the one its verdict reads, is the one its training calls for.
"""

from __future__ import annotations

import numpy as np

from ..engine.cells import Model
from ..engine.text import CarriedRead, read_carried
from .sources import Source, evaluate


class Validation:
    """The run's validation pass (the trainer's `evaluate`): (loss, accuracy) of `model` read as `src.val_read`
    says. It keeps the last carried read with a copy of the weights it read, so that a sample of the same model
    starts from that read's state without reading the held-out text again."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self._last: tuple[dict[str, np.ndarray], CarriedRead] | None = None

    def __call__(self, model: Model) -> tuple[float | None, float | None]:
        if self.src.val_read != "carried":
            return evaluate(model, self.src)
        read = self.carried(model)
        return read.loss, read.accuracy

    def carried(self, model: Model) -> CarriedRead:
        """The held-out text read once with the state carried (text sources only)."""
        if self.src.val_ids is None:
            raise ValueError("a carried read needs a text source (val_ids)")
        if self._last is not None and _same_weights(self._last[0], model.params):
            return self._last[1]
        read = read_carried(model, self.src.val_ids)
        self._last = ({k: v.copy() for k, v in model.params.items()}, read)
        return read

    def sample_start(self, model: Model) -> tuple[int, np.ndarray | None]:
        """(first id, h0) of a text sample. A carried model continues the held-out text: its last character, from
        the state carried through the rest of it. A windows model starts, as its windows do, from h = 0, at the
        first held-out character."""
        if self.src.val_read == "carried":
            return int(self.src.val_ids[-1]), self.carried(model).state
        return int(self.src.probe.xs[0].argmax()), None


def _same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def text_scores(model: Model, validation: Validation) -> dict:
    """summary.json's text numbers: both validation losses and accuracies of `model` and which one the verdict
    reads (`val_read`: `final_val_loss` and `val_accuracy` are its pair)."""
    windows_loss, windows_accuracy = evaluate(model, validation.src)
    carried = validation.carried(model)
    return {"val_read": validation.src.val_read,
            "val_loss_windows": windows_loss, "val_accuracy_windows": windows_accuracy,
            "val_loss_carried": carried.loss, "val_accuracy_carried": carried.accuracy}
