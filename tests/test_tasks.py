"""Synthetic tasks against their literature definitions and closed-form baselines.

Baselines are recomputed from generated data and compared with values derived here independently
(integrals, entropies), within a few standard errors of the sample.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.engine import tasks
from pipeline.engine.rnn import loss_and_dy
from pipeline.run.sources import task_accuracy

N_BIG = 20_000  # sequences for statistical checks; standard errors ~ 1/sqrt(N)
Z = 4.5  # allowed deviation in standard errors


def rng(seed=0):
    return np.random.default_rng(seed)


def within(sample_mean, expected, sample_sd, n, z=Z):
    return abs(sample_mean - expected) <= z * sample_sd / math.sqrt(n) + 1e-12


# ------------------------------------------------------------------------------------------------ adding


def check_adding_structure(d, T):
    N = d.x.shape[0]
    assert d.x.shape == (N, T, 2) and d.y.shape == (N, T, 1) and d.mask.shape == (N, T)
    assert d.x.dtype == d.y.dtype == d.mask.dtype == np.float64
    values, markers = d.x[..., 0], d.x[..., 1]
    assert np.all(values >= -1) and np.all(values <= 1)
    assert np.all(markers.sum(axis=1) == 2)  # two markers per sequence
    half = T // 2
    if T >= 2:  # one marker in each half, at distinct positions
        assert np.all(markers[:, :half].sum(axis=1) == 1) and np.all(markers[:, half:].sum(axis=1) == 1)
        assert set(np.unique(markers)) <= {0.0, 1.0}
    else:  # T = 1: both on the only position, the value counts twice
        assert np.all(markers[:, 0] == 2)
    expected = 0.5 + (values * markers).sum(axis=1) / 4  # X1 + X2 (twice X1 at T = 1)
    np.testing.assert_allclose(d.y[:, -1, 0], expected, rtol=0, atol=1e-15)
    assert np.all(d.y[:, :-1] == 0)
    assert np.all(d.mask[:, -1] == 1) and np.all(d.mask[:, :-1] == 0)


@pytest.mark.parametrize("T", [1, 2, 3, 7, 50, 5000])
def test_adding_structure(T):
    check_adding_structure(tasks.adding(T, 64 if T < 5000 else 8, rng(T)), T)


def triangular_tail(a):
    """P(|X1 + X2| < a) for X1, X2 ~ U[-1, 1], by integrating the triangular density (2 - |s|)/4."""
    s = np.linspace(-a, a, 200_001)
    return float(np.trapezoid((2 - np.abs(s)) / 4, s))


@pytest.mark.parametrize("T", [1, 10])
def test_adding_baselines_match_sample(T):
    d = tasks.adding(T, N_BIG, rng(1))
    err = d.y[:, -1, 0] - 0.5  # error of predicting 0.5
    sq = err**2
    # Var(U[-1, 1]) = 1/3; e = (X1 + X2)/4 gives E e^2 = (1/3 + 1/3)/16; at T = 1, e = 2 X1/4 gives (4/3)/16
    expected_mse = (4 / 3) / 16 if T == 1 else (2 / 3) / 16
    assert math.isclose(d.meta.baselines["mse_predict_half"], expected_mse, rel_tol=1e-12)
    assert within(sq.mean(), expected_mse, sq.std(), N_BIG)
    # |e| < 0.04  <=>  |S| < 0.16 with S = X1 + X2 (triangular) or S = 2 X1 (uniform on [-2, 2] at T = 1)
    expected_acc = 0.16 / 2 if T == 1 else triangular_tail(0.16)
    assert math.isclose(d.meta.baselines["accuracy_predict_half"], expected_acc, rel_tol=1e-6)
    hit = (np.abs(err) < 0.04).astype(float)
    assert within(hit.mean(), expected_acc, math.sqrt(expected_acc * (1 - expected_acc)), N_BIG)
    assert d.meta.tolerance == 0.04 and d.meta.loss == "mse" and d.meta.output_dim == 1


def test_adding_marker_positions_uniform_in_halves():
    T = 20
    d = tasks.adding(T, N_BIG, rng(2))
    pos = np.argwhere(d.x[..., 1] == 1)[:, 1]  # all marker positions
    counts = np.bincount(pos, minlength=T) / N_BIG
    np.testing.assert_allclose(counts, np.full(T, 1 / 10), atol=Z * math.sqrt(0.1 * 0.9 / N_BIG))


@given(T=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_adding_property(T, seed):
    check_adding_structure(tasks.adding(T, 5, rng(seed)), T)


# -------------------------------------------------------------------------------------------- temporal order


def decode_temporal(x):
    """(N, T, 6) -> (positions of A/B, their symbols 0 = A / 1 = B), by reading the one-hot inputs."""
    rel = np.argwhere(x[..., 4:].sum(-1) > 0)  # (2N, 2) rows (n, t), in order of n then t
    symbols = np.argmax(x[rel[:, 0], rel[:, 1], 4:], axis=-1)
    return rel[:, 1].reshape(-1, 2), symbols.reshape(-1, 2)


def check_temporal_structure(d, T):
    N = d.x.shape[0]
    assert d.x.shape == (N, T, 6) and d.y.shape == (N, T) and d.y.dtype == np.int64
    assert np.all(d.mask[:, -1] == 1) and np.all(d.mask[:, :-1] == 0)
    if T == 1:  # both relevant symbols share the position: a two-hot of A/B, no distractor
        assert np.all(d.x[:, 0, :4] == 0) and np.all(d.x[:, 0, 4:].sum(-1) == 2)
        n_b = d.x[:, 0, 5]  # number of Bs
        assert np.all(n_b == d.y[:, 0] // 2 + d.y[:, 0] % 2)
        return
    assert np.all(d.x.sum(-1) == 1)  # one-hot everywhere
    positions, symbols = decode_temporal(d.x)
    assert np.all(positions[:, 0] < positions[:, 1])
    assert np.all(d.y[:, -1] == 2 * symbols[:, 0] + symbols[:, 1])  # AA=0, AB=1, BA=2, BB=3


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 9, 10, 11, 100, 5000])
def test_temporal_order_structure(T):
    check_temporal_structure(tasks.temporal_order(T, 64 if T < 5000 else 4, rng(T)), T)


def test_temporal_order_windows_follow_literature():
    # T = 100: first relevant symbol at 10..19, second at 50..59 (0.1T <= t < 0.2T, 0.5T <= t < 0.6T)
    positions, _ = decode_temporal(tasks.temporal_order(100, 4000, rng(3)).x)
    assert set(positions[:, 0]) == set(range(10, 20)) and set(positions[:, 1]) == set(range(50, 60))


def test_temporal_order_classes_uniform_and_chance_baselines():
    d = tasks.temporal_order(30, N_BIG, rng(4))
    freq = np.bincount(d.y[:, -1], minlength=4) / N_BIG
    np.testing.assert_allclose(freq, 0.25, atol=Z * math.sqrt(0.25 * 0.75 / N_BIG))
    # predicting the empirical class frequencies: cross-entropy = their entropy ~ ln 4; error of the best class
    xent = -(freq * np.log(freq)).sum()
    assert abs(xent - math.log(4)) < 1e-3
    assert math.isclose(d.meta.baselines["xent_chance"], math.log(4))
    assert d.meta.baselines["error_chance"] == 0.75
    assert abs((1 - freq.max()) - 0.75) < Z * math.sqrt(0.25 * 0.75 / N_BIG) + 0.01


@given(T=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_temporal_order_property(T, seed):
    check_temporal_structure(tasks.temporal_order(T, 5, rng(seed)), T)


# ------------------------------------------------------------------------------------------------------ copy


def check_copy_structure(d, T):
    N = d.x.shape[0]
    S = T + 20
    assert d.x.shape == (N, S, 10) and d.y.shape == (N, S) and d.mask.shape == (N, S)
    assert np.all(d.x.sum(-1) == 1)
    ids = d.x.argmax(-1)  # (N, S)
    assert np.all(ids[:, :10] < 8)  # 10 symbols from the first 8 categories
    assert np.all(ids[:, 10:T + 9] == 8)  # T - 1 blanks
    assert np.all(ids[:, T + 9] == 9)  # the delimiter
    assert np.all(ids[:, T + 10:] == 8)  # 10 blanks while answering
    assert np.all(d.y[:, :T + 10] == 8) and np.all(d.y[:, T + 10:] == ids[:, :10])
    assert np.all(d.mask[:, :T + 10] == 0) and np.all(d.mask[:, T + 10:] == 1)  # only the recall is scored


@pytest.mark.parametrize("T", [1, 2, 100, 5000])
def test_copy_structure(T):
    check_copy_structure(tasks.copy(T, 16 if T < 5000 else 4, rng(T)), T)


@pytest.mark.parametrize("T", [1, 40])
def test_copy_memoryless_baseline_from_empirical_marginal(T):
    d = tasks.copy(T, N_BIG, rng(5))
    S = T + 20
    # memoryless model: at each position, predict that position's empirical target distribution
    probs = np.stack([np.bincount(d.y[:, t], minlength=10) / N_BIG for t in range(S)])  # (S, 10)
    nll = -np.log(probs[np.arange(S)[None, :], d.y])  # (N, S)
    scored = nll[d.mask > 0]  # the 10 recall positions of every sequence
    assert scored.size == 10 * N_BIG
    assert math.isclose(d.meta.chance_loss, math.log(8), rel_tol=1e-12) and d.meta.chance_accuracy == 1 / 8
    assert d.meta.baselines["xent_memoryless"] == d.meta.chance_loss
    # empirical entropy of 8 classes is biased low by ~7/(2N) per answering position; SE ~ 1/sqrt(N)
    assert abs(scored.mean() - math.log(8)) < Z / math.sqrt(N_BIG) + 7 / (2 * N_BIG)
    assert d.meta.loss == "xent" and d.meta.steps == S and d.meta.input_dim == 10


@pytest.mark.parametrize("T", [5, 40])
def test_a_memoryless_copy_model_scores_chance(T):
    """Blanks, then equal logits for the 8 symbols on the recall: the model that remembers nothing scores the
    chance numbers of the task's meta (accuracy: its argmax, the first symbol, is right 1/8 of the time)."""
    d = tasks.copy(T, 2000, rng(T))
    S = T + 20
    logits = np.zeros((S, 2000, 10))  # (T, B, o) time-major, as the scoring takes them
    logits[: T + 10, :, tasks.COPY_BLANK] = 50.0  # a confident blank before the recall (not scored)
    logits[T + 10 :, :, tasks.COPY_SYMBOLS :] = -200.0  # then uniform over the 8 symbols (blank, delimiter ~0)
    targets, mask = d.y.T, d.mask.T  # (S, N)
    loss, _ = loss_and_dy(logits, targets, mask, "xent")
    accuracy = task_accuracy(logits, targets, mask, "xent", None)
    assert loss == pytest.approx(d.meta.chance_loss, rel=1e-9) and d.meta.chance_loss == pytest.approx(math.log(8))
    assert abs(accuracy - d.meta.chance_accuracy) < 0.02 and d.meta.chance_accuracy == 1 / 8


def test_every_task_states_its_chance():
    """Explicit chance numbers, the ones a run reports: adding (predict 0.5), temporal order (4 balanced classes),
    copy (uniform on the recall), none for the probe task (nothing is scored)."""
    a = 4 * tasks.ADDING_TOLERANCE
    assert (tasks.task_meta("adding", 30).chance_loss, tasks.task_meta("adding", 30).chance_accuracy) == \
        pytest.approx((1 / 24, a - a * a / 4))
    assert (tasks.task_meta("temporal_order", 30).chance_loss, tasks.task_meta("temporal_order", 30).chance_accuracy) \
        == pytest.approx((math.log(4), 1 / 4))
    assert (tasks.task_meta("copy", 30).chance_loss, tasks.task_meta("copy", 30).chance_accuracy) == \
        pytest.approx((math.log(8), 1 / 8))
    assert (tasks.task_meta("probe", 30).chance_loss, tasks.task_meta("probe", 30).chance_accuracy) == (None, None)


# ----------------------------------------------------------------------------------------------------- probe


def test_probe_is_standard_normal_with_no_signal():
    d = tasks.probe(50, 400, rng(6))
    assert d.x.shape == (400, 50, 8) and d.y.shape == (400, 50, 1)
    assert np.all(d.y == 0) and np.all(d.mask == 0)
    n = d.x.size
    assert abs(d.x.mean()) < Z / math.sqrt(n)
    assert abs(d.x.var() - 1) < Z * math.sqrt(2 / n)  # Var of a sample variance of N(0,1) ~ 2/n
    assert tasks.probe(5, 3, rng(), input_dim=3).x.shape == (3, 5, 3)
    assert tasks.probe(5000, 2, rng()).x.shape == (2, 5000, 8)


# -------------------------------------------------------------------------------------- determinism, errors


@pytest.mark.parametrize("task", tasks.TASKS)
def test_same_seed_same_arrays_different_seed_different(task):
    a, b = tasks.make_task(task, 30, 20, rng(7)), tasks.make_task(task, 30, 20, rng(7))
    c = tasks.make_task(task, 30, 20, rng(8))
    for key in ("x", "y", "mask"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.x, c.x)
    assert a.meta == tasks.task_meta(task, 30)


@pytest.mark.parametrize("T", [0, -3, 2.5, True, None])
def test_bad_lengths_raise(T):
    for task in tasks.TASKS:
        with pytest.raises(ValueError, match="T must be an integer >= 1"):
            tasks.make_task(task, T, 4, rng())


def test_bad_count_and_task_raise():
    with pytest.raises(ValueError, match="count"):
        tasks.adding(10, 0, rng())
    with pytest.raises(ValueError, match="unknown task 'add'.*adding"):
        tasks.make_task("add", 10, 4, rng())


def test_sequence_steps():
    assert tasks.sequence_steps("copy", 1) == 21 and tasks.sequence_steps("adding", 9) == 9


# ------------------------------------------------------------------- partial baselines and the papers' bar


@pytest.mark.parametrize("which", [0, 1])
def test_a_model_that_knows_one_adding_value_scores_a_48th(which):
    """Reading one marked value X off the inputs and answering E[target | X] = 0.5 + X/4: MSE 1/48 (half of chance)
    within 5 %, accuracy P(|X'| < 0.16) = 0.16 beside it; the task's meta states both."""
    d = tasks.adding(50, N_BIG, rng(11))
    marked = d.x[:, :, 0] * d.x[:, :, 1]  # (N, T): the two marked values, zeros elsewhere
    first_half = np.arange(50) < 25
    value = np.where(first_half if which == 0 else ~first_half, marked, 0.0).sum(axis=1)  # (N,)
    y = (0.5 + value / 4)[None, :, None] * np.ones((50, 1, 1))  # (T, N, 1) time-major, answer at every step
    loss, _ = loss_and_dy(y, np.swapaxes(d.y, 0, 1), d.mask.T, "mse")
    assert abs(loss - 1 / 48) <= 0.05 / 48 and d.meta.partial_loss == pytest.approx(1 / 48)
    assert d.meta.partial_loss == pytest.approx(0.5 * d.meta.chance_loss)
    accuracy = task_accuracy(y, np.swapaxes(d.y, 0, 1), d.mask.T, "mse", d.meta.tolerance)
    assert within(accuracy, 0.16, math.sqrt(0.16 * 0.84), N_BIG) and d.meta.partial_accuracy == pytest.approx(0.16)
    # by the papers' bar (squared error < 0.04, i.e. |X'| < 0.8) it gets 80 % of the sequences right, not 99 %
    right = tasks.sequences_right(y, np.swapaxes(d.y, 0, 1), d.mask.T, "mse", d.meta.sequence_tolerance)
    assert within(right, 0.8, 0.4, N_BIG)


@pytest.mark.parametrize("which", [0, 1])
def test_a_model_that_knows_one_temporal_order_symbol_scores_ln_2(which):
    """Knowing one of the two relevant symbols and spreading the rest evenly over the 2 classes it leaves:
    cross-entropy ln 2 exactly (every answer puts 1/2 on the truth), accuracy 1/2 within sampling error."""
    d = tasks.temporal_order(50, N_BIG, rng(12))
    symbols = d.x[:, :, tasks.TEMPORAL_DISTRACTORS:]  # (N, T, 2): A, B one-hot at the two relevant positions
    position = symbols.sum(axis=2).argmax(axis=1) if which == 0 else \
        (symbols.sum(axis=2) * np.arange(50)).argmax(axis=1)  # first or second relevant position
    known = symbols[np.arange(N_BIG), position].argmax(axis=1)  # (N,) 0 = A, 1 = B
    logits = np.full((50, N_BIG, 4), -np.inf)
    for c in range(4):  # classes 2 * first + second consistent with the known symbol get equal logits
        consistent = ((c // 2) if which == 0 else (c % 2)) == known
        logits[:, consistent, c] = 0.0
    logits = np.where(np.isfinite(logits), logits, -800.0)
    loss, _ = loss_and_dy(logits, d.y.T, d.mask.T, "xent")
    assert loss == pytest.approx(math.log(2), rel=1e-12) and d.meta.partial_loss == pytest.approx(math.log(2))
    accuracy = task_accuracy(logits, d.y.T, d.mask.T, "xent", None)
    assert within(accuracy, 0.5, 0.5, N_BIG) and d.meta.partial_accuracy == 0.5


def test_the_copy_partial_model_is_the_memoryless_one_and_probe_has_none():
    meta = tasks.task_meta("copy", 20)
    assert (meta.partial_loss, meta.partial_accuracy) == (meta.chance_loss, meta.chance_accuracy)
    assert tasks.task_meta("probe", 20).partial_loss is None
    # at T = 1 adding's one value is all there is to know: its partial model is the chance model
    assert tasks.task_meta("adding", 1).partial_loss == tasks.task_meta("adding", 1).chance_loss


def test_sequences_right_counts_a_sequence_only_when_every_scored_position_is():
    y = np.zeros((3, 2, 3))  # (S, N, o): classes, time-major
    y[:, :, 1] = 1.0  # answers class 1 everywhere
    targets = np.array([[1, 1], [1, 0], [2, 1]])  # sequence 0 wrong at step 2, sequence 1 wrong at step 1
    mask = np.array([[0, 1], [1, 0], [0, 1]], dtype=float)  # sequence 0 scores step 1, sequence 1 steps 0 and 2
    assert tasks.sequences_right(y, targets, mask, "xent", None) == 1.0
    mask[2, 0] = 1.0  # now sequence 0 scores its wrong step 2 too
    assert tasks.sequences_right(y, targets, mask, "xent", None) == 0.5
    real = np.array([[[0.5]], [[0.75]]])  # (S=2, N=1, o=1), scored at the last step
    assert tasks.sequences_right(real, np.array([[[0.0]], [[0.5]]]), np.array([[0.0], [1.0]]), "mse", 0.04) == 0.0
    assert tasks.sequences_right(real, np.array([[[0.0]], [[0.625]]]), np.array([[0.0], [1.0]]), "mse", 0.04) == 1.0
    assert tasks.sequences_right(real, np.array([[[0.0]], [[0.5]]]), np.array([[0.0], [1.0]]), "mse", 0.0625) == 0.0
    assert tasks.sequences_right(real, real, np.zeros((2, 1)), "mse", 0.04) is None  # nothing scored
