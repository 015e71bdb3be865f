"""A run's outcome and learning verdict (run/verdicts.py) on hand-made numbers and a made-up history, and the Wilson
interval every rate of the report carries (report/reductions.py) against published values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from pipeline.report import reductions
from pipeline.run import runner, verdicts


# ---- learned / at chance ---------------------------------------------------------------------------------------

CHANCE = 0.5  # a made-up chance loss: beat chance below 0.45, at chance up to 0.55, worse beyond
PARTIAL = 0.25  # a made-up partial baseline: learned below (1 - 0.10) x 0.25 = 0.225


@pytest.mark.parametrize("outcome, val_loss, chance, beat, verdict", [
    ("ok", 0.2, CHANCE, True, "learned"),
    ("ok", 0.2249, CHANCE, True, "learned"),  # just below (1 - 0.10) x the partial baseline
    ("ok", 0.225, CHANCE, True, "beat chance"),  # the margin itself is not below it
    ("ok", 0.2499, CHANCE, True, "beat chance"),  # 0.04 % below the partial baseline: within its noise, not learned
    ("ok", 0.25, CHANCE, True, "beat chance"),  # at the partial baseline is not below it
    ("ok", 0.4499, CHANCE, True, "beat chance"),  # just below (1 - 0.10) x chance
    ("ok", 0.45, CHANCE, False, "at chance"),  # the margin itself is not below it
    ("ok", 0.55, CHANCE, False, "at chance"),
    ("ok", 0.56, CHANCE, False, "worse than chance"),
    ("unstable", 0.2, CHANCE, True, "learned"),  # its weights ran away, yet it generalises: both are said
    ("unstable", 4e3, CHANCE, False, "worse than chance"),
    ("diverged", 0.2, CHANCE, False, "diverged"),  # the last finite model may score well; the run did not finish
    ("failed", None, None, False, "failed"),
    ("ok", None, 0.0, False, "not scored"),  # the probe task: chance loss 0, no validation loss
    ("ok", 0.0, 0.0, False, "not scored"),
    ("ok", None, None, False, "not scored"),
    ("ok", 0.2, math.nan, False, "not scored"),
    ("ok", math.inf, CHANCE, False, "worse than chance"),
])
def test_the_levels_and_the_verdict_from_hand_made_summaries(outcome, val_loss, chance, beat, verdict):
    assert verdicts.beat_chance(outcome, val_loss, chance) is beat
    assert verdicts.learned(outcome, val_loss, chance, PARTIAL) is (verdict == "learned")
    assert verdicts.verdict(outcome, val_loss, chance, PARTIAL) == verdict
    assert verdict in verdicts.VERDICTS
    # without the partial baseline nothing is called more than beating chance
    assert verdicts.verdict(outcome, val_loss, chance) == ("beat chance" if verdict == "learned" else verdict)


@pytest.mark.parametrize("right, verdict", [(0.99, "solved"), (0.989, "learned"), (None, "learned"), (1.0, "solved")])
def test_solved_is_the_papers_bar_on_top_of_learned(right, verdict):
    assert verdicts.verdict("ok", 0.1, CHANCE, PARTIAL, right) == verdict
    assert verdicts.solved("ok", 0.1, CHANCE, PARTIAL, right) is (verdict == "solved")
    # the levels nest: 99 % right but above the partial baseline is not solved (nor learned)
    assert verdicts.levels("ok", 0.3, CHANCE, PARTIAL, right) == {"beat_chance": True, "learned": False,
                                                                   "solved": False}
    assert verdicts.SOLVED_SHARE == 0.99


def test_the_margin_is_written_once_and_is_ten_percent():
    assert verdicts.LEARNED_MARGIN == 0.10
    assert verdicts.beat_chance("ok", 0.899, 1.0) and not verdicts.beat_chance("ok", 0.9, 1.0)
    # the same margin below the partial baseline (temporal order's ln 2): 0.683, 1.5 % below it, has not learned
    assert verdicts.learned_below(math.log(2)) == pytest.approx(0.9 * math.log(2))
    assert not verdicts.learned("ok", 0.683, math.log(4), math.log(2))
    assert verdicts.learned("ok", 0.62, math.log(4), math.log(2))


def test_the_analysis_gives_every_run_the_run_layers_verdict():
    runs = pd.DataFrame({"run_id": list("abcdefg"),
                         "outcome": ["ok", "ok", "ok", "ok", "unstable", "diverged", "failed"],
                         "final_val_loss": [0.1, 0.3, 0.5, 9.0, None, None, None],
                         "chance_loss": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, None],
                         "partial_loss": [0.25, 0.25, 0.25, 0.25, 0.25, 0.25, None],
                         "val_sequences_right": [0.995, 0.6, 0.2, 0.0, None, None, None]})
    given = reductions.with_verdicts(runs)
    assert list(given["verdict"]) == ["solved", "beat chance", "at chance", "worse than chance", "worse than chance",
                                      "diverged", "failed"]
    assert list(given["beat_chance"]) == [True, True, False, False, False, False, False]
    assert list(given["learned"]) == [True, False, False, False, False, False, False]
    assert list(given["solved"]) == [True, False, False, False, False, False, False]
    counts = reductions.learning_counts(given.assign(spec="s"))
    assert {k: v for k, v in counts.items() if not isinstance(v, dict)} == {
        "n_runs": 7, "n_beat_chance": 2, "n_learned": 1, "n_solved": 1, "n_at_chance": 1, "n_worse_than_chance": 2,
        "n_not_scored": 0, "n_unstable": 1, "n_diverged": 1, "n_failed": 1, "n_sequence_runs": 6}
    # each rate is over the scored runs that did not fail: the diverged and unstable ones count as not reaching it
    assert {"k": 2, "n": 6}.items() <= counts["beat_chance"].items()
    assert {"k": 1, "n": 6}.items() <= counts["learned"].items() and counts["solved"]["k"] == 1
    # a table from before the partial baseline: nothing is called more than beating chance
    old = reductions.with_verdicts(runs.drop(columns=["partial_loss", "val_sequences_right"]))
    assert list(old["verdict"])[:2] == ["beat chance", "beat chance"] and not old["learned"].any()


# ---- ok / unstable / diverged ----------------------------------------------------------------------------------


def made_up_history(losses) -> pd.DataFrame:
    """A history.csv as the trainer writes it: iteration 1.. with the given minibatch losses."""
    n = len(losses)
    return pd.DataFrame({"iter": range(1, n + 1), "loss": losses, "grad_norm": 1.0, "clip_scale": 1.0,
                         "w_norm": 1.0, "spectral_radius": 1.0})


def outcome_of(history: pd.DataFrame, norm_init: float = 1.0, norm_final: float = 1.0, diverged: bool = False):
    iters = len(history)
    loss_growth = verdicts.growth(runner.first_train_loss(history), runner.final_train_loss(history, iters))
    return verdicts.run_outcome(diverged, loss_growth, verdicts.growth(norm_init, norm_final)), loss_growth


def test_a_loss_that_ends_more_than_a_hundred_times_its_start_is_unstable():
    assert verdicts.UNSTABLE_LOSS_GROWTH == 100.0  # "unstable" as docs/internals.md defines it
    learning = made_up_history([1.0] + [0.1] * 99)
    assert outcome_of(learning) == ("ok", pytest.approx(0.1))
    running_away = made_up_history(list(1.0 * 1.1 ** pd.Series(range(100))))  # 1.1^(90..99) ~ 8.7e3 at the end
    outcome, growth = outcome_of(running_away)
    assert outcome == "unstable" and growth == pytest.approx(sum(1.1 ** i for i in range(90, 100)) / 10)
    # runner.final_train_loss averages the last 10 % of the steps: a late spike alone need not reach 100x
    spike = made_up_history([1.0] * 99 + [500.0])
    assert outcome_of(spike) == ("ok", pytest.approx((9 + 500) / 10))
    wandered = made_up_history([0.5] * 90 + [30.0] * 10)  # 60x its start: worse, but not a runaway
    assert outcome_of(wandered) == ("ok", pytest.approx(60.0))
    assert outcome_of(made_up_history([1.0] * 90 + [100.0] * 10))[0] == "ok"  # exactly 100x is not more than 100x
    assert outcome_of(made_up_history([1.0] * 90 + [100.01] * 10))[0] == "unstable"


def test_weights_that_grow_more_than_a_hundredfold_are_unstable_even_where_the_loss_says_nothing():
    unscored = made_up_history([math.nan] * 20)  # the probe task: no loss to compare
    assert runner.first_train_loss(unscored) is None
    assert outcome_of(unscored, 1.0, 100.0)[0] == "ok" and outcome_of(unscored, 1.0, 100.5)[0] == "unstable"
    assert outcome_of(made_up_history([1.0] + [0.1] * 9), 3.0, 301.0)[0] == "unstable"
    assert outcome_of(made_up_history([]))[0] == "ok"  # iters 0: nothing trained, nothing ran away


def test_divergence_outranks_instability_and_growth_needs_a_finite_positive_start():
    assert verdicts.run_outcome(True, 1e9, 1e9) == "diverged"
    assert verdicts.growth(0.0, 5.0) is None and verdicts.growth(None, 5.0) is None
    assert verdicts.growth(2.0, math.inf) is None and verdicts.growth(2.0, 5.0) == 2.5
    assert verdicts.OUTCOMES == ("ok", "unstable", "diverged", "failed")


# ---- the Wilson interval ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775),  # Wilson (1927); R: prop.test(0, 10, correct = FALSE)$conf.int
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Table I, method 3
    (15, 148, 0.0624, 0.1605),  # Newcombe (1998), Table I, method 3
    (0, 1, 0.0, 0.7935),
])
def test_wilson_interval_matches_published_values(k, n, low, high):
    lo, hi = reductions.wilson_interval(k, n)
    assert (lo, hi) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_interval_of_nothing_is_undefined_and_a_rate_carries_its_n():
    assert all(math.isnan(x) for x in reductions.wilson_interval(0, 0))
    r = reductions.rate(3, 9)
    assert (r["k"], r["n"], r["rate"]) == (3, 9, pytest.approx(1 / 3))
    assert (r["low"], r["high"]) == (pytest.approx(0.1206, abs=5e-5), pytest.approx(0.6458, abs=5e-5))
    assert reductions.rounded_tree(reductions.rate(0, 0)) == {"k": 0, "n": 0, "rate": None, "low": None,
                                                               "high": None}
