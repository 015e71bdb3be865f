"""What a run's numbers say about it: its outcome (what happened to training) and its learning verdict (whether the
trained model beats its task's chance baseline on held-out data). The runner writes both into summary.json; the
report reads the same constants and functions, so a verdict means one thing everywhere (docs/internals.md).

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
# A run has `learned` when its final validation loss is below (1 - LEARNED_MARGIN) x the chance loss (the loss of a
# model that learned nothing: docs/math.md section 11), i.e. at least 10 % better than chance on
# held-out data; within the margin either side it is `at chance`, and beyond it above, `worse than chance`.
LEARNED_MARGIN = 0.10
VERDICTS = ("learned", "at chance", "worse than chance", "not scored", "diverged", "failed")


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


def learned(outcome: str, final_val_loss: float | None, chance_loss: float | None) -> bool:
    """The run finished (ok or unstable) and its final validation loss is below (1 - LEARNED_MARGIN) x chance.
    False without a chance loss or a validation loss; a diverged or failed run did not finish training."""
    if outcome not in ("ok", "unstable") or not scored(chance_loss) or not _finite(final_val_loss):
        return False
    return final_val_loss < (1.0 - LEARNED_MARGIN) * chance_loss


def verdict(outcome: str, final_val_loss: float | None, chance_loss: float | None) -> str:
    """One of VERDICTS: what the report says about a run's learning. `diverged` and `failed` runs are named by their
    outcome; a task with no chance loss (the probe) is `not scored`; a finished run with no finite validation loss
    is `worse than chance` (its loss overflowed to no number at all)."""
    if outcome in ("diverged", "failed"):
        return outcome
    if not scored(chance_loss):
        return "not scored"
    if learned(outcome, final_val_loss, chance_loss):
        return "learned"
    if _finite(final_val_loss) and final_val_loss <= (1.0 + LEARNED_MARGIN) * chance_loss:
        return "at chance"
    return "worse than chance"
