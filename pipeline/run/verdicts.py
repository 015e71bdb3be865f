"""What a run's numbers say about it: its outcome (what happened to training) and its learning verdict, on held-out
data, at three levels (docs/math.md 11): it beat chance (better than a model that learned nothing), it learned
(better than the best model that carries only part of what the task needs), it solved the task (the papers' bar:
at least 99 % of the held-out sequences right). The runner writes them into summary.json; the report reads the same
constants and functions, so a verdict means one thing everywhere (docs/internals.md).

Pure functions of numbers the run already has; nothing here changes how a run trains or what it measures.
"""

from __future__ import annotations

import math

OUTCOMES = ("ok", "unstable", "diverged", "failed")  # every value summary.json's `outcome` takes
# A run is `unstable` when it stayed finite but training ran away. Its mean training loss over the last steps
# (runner.final_train_loss) ends more than UNSTABLE_LOSS_GROWTH times its first logged minibatch loss: a run that
# learns ends below its start, and a hundredfold rise is a runaway by any reading (a factor of ten would also catch
# a run whose loss merely wandered several-fold above a small start). Or the top layer's ||W_hh||_2 ends more than
# UNSTABLE_NORM_GROWTH times its initial value: a model that learns may grow its weights several-fold (a character
# model's do), so only a hundredfold growth counts; it catches a runaway the loss cannot show (a task that scores
# nothing has no loss). Both factors are the ones the report and docs/internals.md state.
UNSTABLE_LOSS_GROWTH = 100.0
UNSTABLE_NORM_GROWTH = 100.0
# A run has `beat_chance` when its final validation loss is below (1 - LEARNED_MARGIN) x the chance loss (the loss of
# a model that learned nothing: docs/math.md section 11), i.e. at least 10 % better than chance on held-out data;
# within the margin either side it is `at chance`, and beyond it above, `worse than chance`.
LEARNED_MARGIN = 0.10
# `learned` asks more: at least the same margin below the partial baseline too, the loss of the best model that
# carries only part of what the task needs (one of adding's values: 0.5 x chance; one of temporal order's symbols:
# ln 2 = 0.5 x chance). A loss a few per cent below that baseline on a finite validation set is within its noise, and
# one margin for both rungs keeps "beat" meaning one thing. `solved` is the papers' bar (Pascanu et al. 2013,
# section 4.1.1): at least SOLVED_SHARE of the held-out sequences right.
SOLVED_SHARE = 0.99
VERDICTS = ("solved", "learned", "beat chance", "at chance", "worse than chance", "not scored", "diverged", "failed")
LEVELS = ("beat_chance", "learned", "solved")  # the three levels of success, weakest first (summary.json keys)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def growth(start: float | None, end: float | None) -> float | None:
    """end / start when both are finite and start > 0; else None (no growth to speak of)."""
    if not (_finite(start) and _finite(end)) or start <= 0:
        return None
    return end / start


def run_outcome(diverged: bool, loss_growth: float | None, norm_growth: float | None) -> str:
    """`diverged` (a non-finite loss, gradient, update or validation loss), else `unstable` (finite, but the loss
    or the top layer's weight norm grew beyond the factors above), else `ok`. (`failed`, an exception inside the
    run, is set by the runner.)"""
    if diverged:
        return "diverged"
    if (loss_growth is not None and loss_growth > UNSTABLE_LOSS_GROWTH) or \
            (norm_growth is not None and norm_growth > UNSTABLE_NORM_GROWTH):
        return "unstable"
    return "ok"


def scored(chance_loss: float | None) -> bool:
    """The task has something to learn: a positive, finite chance loss (the probe task's is 0: it scores nothing)."""
    return _finite(chance_loss) and chance_loss > 0


def beat_chance(outcome: str, final_val_loss: float | None, chance_loss: float | None) -> bool:
    """The run finished (ok or unstable) and its final validation loss is below (1 - LEARNED_MARGIN) x chance.
    False without a chance loss or a validation loss; a diverged or failed run did not finish training."""
    if outcome not in ("ok", "unstable") or not scored(chance_loss) or not _finite(final_val_loss):
        return False
    return final_val_loss < (1.0 - LEARNED_MARGIN) * chance_loss


def learned(outcome: str, final_val_loss: float | None, chance_loss: float | None,
            partial_loss: float | None) -> bool:
    """It beat chance and its final validation loss is below (1 - LEARNED_MARGIN) x the partial baseline; False
    without one (no claim beyond beating chance is made for a task whose partial model is unknown)."""
    return (beat_chance(outcome, final_val_loss, chance_loss) and _finite(partial_loss)
            and final_val_loss < learned_below(partial_loss))


def learned_below(partial_loss: float) -> float:
    """The validation loss a run must end below to have learned: LEARNED_MARGIN under the partial baseline."""
    return (1.0 - LEARNED_MARGIN) * partial_loss


def solved(outcome: str, final_val_loss: float | None, chance_loss: float | None, partial_loss: float | None,
           sequences_right: float | None) -> bool:
    """It learned and at least SOLVED_SHARE of the held-out sequences are right (tasks.sequences_right)."""
    return learned(outcome, final_val_loss, chance_loss, partial_loss) and _finite(sequences_right) and \
        sequences_right >= SOLVED_SHARE


def levels(outcome: str, final_val_loss: float | None, chance_loss: float | None, partial_loss: float | None,
           sequences_right: float | None) -> dict[str, bool]:
    """{beat_chance, learned, solved}: each level implies the one before."""
    return {"beat_chance": beat_chance(outcome, final_val_loss, chance_loss),
            "learned": learned(outcome, final_val_loss, chance_loss, partial_loss),
            "solved": solved(outcome, final_val_loss, chance_loss, partial_loss, sequences_right)}


def verdict(outcome: str, final_val_loss: float | None, chance_loss: float | None,
            partial_loss: float | None = None, sequences_right: float | None = None) -> str:
    """One of VERDICTS: the highest level a run reached, or why it reached none. `diverged` and `failed` runs are
    named by their outcome; a task with no chance loss (the probe) is `not scored`; a finished run with no finite
    validation loss is `worse than chance` (its loss overflowed to no number at all). Without the partial baseline
    (a caller that does not pass it) a run below the chance margin is `beat chance`, never more."""
    if outcome in ("diverged", "failed"):
        return outcome
    if not scored(chance_loss):
        return "not scored"
    reached = levels(outcome, final_val_loss, chance_loss, partial_loss, sequences_right)
    for level in reversed(LEVELS):
        if reached[level]:
            return level.replace("_", " ")
    if _finite(final_val_loss) and final_val_loss <= (1.0 + LEARNED_MARGIN) * chance_loss:
        return "at chance"
    return "worse than chance"
