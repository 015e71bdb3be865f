"""train_step: learns a small task, leaves the model alone on inf/NaN, and reports what it measured; and the training
loop `train` on its own (a synthetic batch source, plain settings): validation cadence, divergence, the history."""

import math
import warnings

import numpy as np
import pytest

from pipeline.benchmarks.throughput import bench_train_throughput
from pipeline.engine.init import init_model
from pipeline.engine.optim import make_optimizer
from pipeline.engine import optim, trainer
from pipeline.engine.rnn import RNN, Workspace, forward, loss_and_dy, loss_and_grads
from pipeline.engine.trainer import HISTORY_COLUMNS, TrainSettings, train, train_step


def delayed_copy_batch(rng, T=8, B=16, d=4):
    """xent task: at step t predict the class seen at t-1 (needs one step of memory); step 0 is masked out."""
    ids = rng.integers(0, d, (T, B))
    targets = np.roll(ids, 1, axis=0)
    mask = np.ones((T, B))
    mask[0] = 0.0
    return np.eye(d)[ids], targets, mask


@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_loss_falls_on_a_learnable_task(form):
    rng = np.random.default_rng(0)
    model, _ = init_model(rng, input_dim=4, output_dim=4, form=form, hidden=16, init="orthogonal")
    optimizer, workspace = make_optimizer("adam", 0.02), Workspace()
    losses = []
    for _ in range(300):
        stats = train_step(model, optimizer, *delayed_copy_batch(rng), "xent", workspace=workspace)
        assert stats.finite
        losses.append(stats.loss)
    assert losses[0] > 1.2  # about log 4 = 1.39 for an untrained model
    assert np.mean(losses[-10:]) < 0.2


def test_mse_regression_with_token_ids_and_carried_state():
    """Predict a fixed real vector per id; h_last is carried between windows as in text training."""
    rng = np.random.default_rng(1)
    model, _ = init_model(rng, input_dim=5, output_dim=2, hidden=12)
    table = rng.standard_normal((5, 2))
    optimizer, h = make_optimizer("sgd", 0.1), None
    losses = []
    for _ in range(300):
        ids = rng.integers(0, 5, (6, 8))
        stats = train_step(model, optimizer, ids, table[ids], np.ones((6, 8)), "mse", "elementwise", 1.0, h)
        h = stats.h_last
        losses.append(stats.loss)
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:10])


def test_stats_report_the_gradient_before_clipping():
    rng = np.random.default_rng(2)
    model, _ = init_model(rng, input_dim=4, output_dim=4, layers=2, hidden=8, gamma_w=3.0, init="gaussian")
    xs, targets, mask = delayed_copy_batch(rng)
    h0 = rng.standard_normal((2, 16, 8))
    loss, grads, _, trace = loss_and_grads(model, xs, targets, mask, "xent", h0)
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    stats = train_step(model, make_optimizer("sgd", 0.1), xs, targets, mask, "xent", "global", 0.5 * norm, h0)
    assert stats.finite and stats.loss == pytest.approx(loss, rel=1e-14)
    assert stats.grad_norm == pytest.approx(norm, rel=1e-12)
    assert stats.clip_scale == pytest.approx(0.5, rel=1e-12)
    np.testing.assert_array_equal(stats.h_last, np.stack([h[-1] for h in trace.h]))


def test_update_is_the_optimizer_step_on_the_clipped_gradient():
    rng = np.random.default_rng(3)
    model, _ = init_model(rng, input_dim=4, output_dim=4, hidden=8)
    before = model.copy()
    xs, targets, mask = delayed_copy_batch(rng)
    _, grads, _, _ = loss_and_grads(before, xs, targets, mask, "xent")
    stats = train_step(model, make_optimizer("sgd", 0.5), xs, targets, mask, "xent", "global", 1e-3)
    for key, g in grads.items():  # p - lr * g * threshold / ||g||
        expected = before.params[key] - 0.5 * g * (1e-3 / stats.grad_norm)
        np.testing.assert_allclose(model.params[key], expected, rtol=1e-12, atol=1e-15)


def exploding_linear_model():
    """Linear units with W_hh = 1e300 I: the states overflow within three steps."""
    params = {"W_hh_0": 1e300 * np.eye(2), "W_xh_0": np.eye(2), "b_h_0": np.zeros(2), "W_hy": np.eye(2), "b_y": np.zeros(2)}
    return RNN("elman", "linear", 0.01, params)


def huge_input_weights_model():
    """Three tanh layers whose W_xh above layer 0 are 1e200: the forward pass sees only zeros (inputs are zero),
    but BPTT multiplies dE/dh by 1e200 twice on the way down, so the gradient overflows while the loss is finite."""
    n, params = 3, {}
    for l in range(3):
        params[f"W_hh_{l}"], params[f"b_h_{l}"] = 0.5 * np.eye(n), np.zeros(n)
        params[f"W_xh_{l}"] = (1e200 if l else 1.0) * np.ones((n, n))
    params.update({"W_hy": np.ones((2, n)) * np.array([[1.0], [-1.0]]), "b_y": np.array([0.3, 0.0])})
    return RNN("elman", "tanh", 0.01, params)


@pytest.mark.parametrize(
    "make_model, xs", [(exploding_linear_model, np.ones((4, 1, 2))), (huge_input_weights_model, np.zeros((4, 1, 3)))]
)
def test_non_finite_step_changes_nothing_and_says_so(make_model, xs):
    model = make_model()
    before = model.copy()
    optimizer = make_optimizer("adagrad", 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow is data: no RuntimeWarning may escape
        stats = train_step(model, optimizer, xs, np.zeros((4, 1), dtype=int), np.ones((4, 1)), "xent")
    assert stats.finite is False
    assert not (math.isfinite(stats.loss) and math.isfinite(stats.grad_norm))
    assert math.isnan(stats.clip_scale)
    for key in before.params:
        np.testing.assert_array_equal(model.params[key], before.params[key])
    assert optimizer.state == {}  # the optimiser never saw the step


def test_finite_loss_with_overflowing_gradient_is_caught():
    model = huge_input_weights_model()
    xs, targets, mask = np.zeros((4, 1, 3)), np.zeros((4, 1), dtype=int), np.ones((4, 1))
    stats = train_step(model, make_optimizer("sgd", 0.1), xs, targets, mask, "xent")
    assert math.isfinite(stats.loss) and not math.isfinite(stats.grad_norm) and not stats.finite


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(clip_mode="value"), "unknown clip mode 'value'"),
        (dict(clip_threshold=0.0), "clip threshold"),
        (dict(loss_kind="hinge"), "unknown loss 'hinge'"),
        (dict(h0=np.zeros((1, 2, 8))), "h0 must have shape"),
    ],
)
def test_bad_arguments_are_named(kw, message):
    rng = np.random.default_rng(4)
    model, _ = init_model(rng, input_dim=4, output_dim=4, hidden=8)
    xs, targets, mask = delayed_copy_batch(rng)
    args = dict(loss_kind="xent")
    args.update(kw)
    with pytest.raises(ValueError, match=message):
        train_step(model, make_optimizer("sgd", 0.1), xs, targets, mask, **args)


def test_throughput_benchmark_reports_its_figures():
    figures = bench_train_throughput(seed=0, seconds=0.3, rounds=1)
    for key in ("train_chars_per_s", "train_onehot_chars_per_s", "minchar_chars_per_s", "gemm_floor_chars_per_s"):
        assert figures[key] > 0
    assert figures["speedup_vs_minchar"] == pytest.approx(figures["train_chars_per_s"] / figures["minchar_chars_per_s"])
    assert figures["gemm_floor_vs_minchar"] == pytest.approx(
        figures["gemm_floor_chars_per_s"] / figures["minchar_chars_per_s"])
    assert (figures["batch"], figures["seq_len"], figures["hidden"], figures["vocab"]) == (32, 25, 100, 65)


# ---- the loop -------------------------------------------------------------------------------------------------


def delayed_copy_source(seed=0):
    """(next_batch, evaluate) of the delayed-copy task: fresh minibatches, and a fixed validation batch scored by
    (loss, share of masked positions whose argmax is the target)."""
    rng = np.random.default_rng(seed)
    xs, targets, mask = delayed_copy_batch(np.random.default_rng(99), B=32)

    def evaluate(model, state=None):
        y = forward(model, xs).y
        loss, _ = loss_and_dy(y, targets, mask, "xent")
        return loss, float((y.argmax(-1) == targets)[mask > 0].mean())

    return (lambda: delayed_copy_batch(rng)), evaluate


def small_model(seed=0, **kw):
    return init_model(np.random.default_rng(seed), input_dim=4, output_dim=4, hidden=16, init="orthogonal", **kw)[0]


def test_the_loop_learns_and_logs_every_step_and_each_validation():
    next_batch, evaluate = delayed_copy_source()
    calls = []
    settings = TrainSettings(iters=300, loss_kind="xent", eval_every=100, norms_every=7)
    log = train(small_model(), make_optimizer("adam", 0.02), next_batch, evaluate, settings,
                on_step=lambda i, log: calls.append((i, len(log.history), log.val[-1][0])))
    assert (log.diverged_at, log.iters_done) == (None, 300)
    assert [row[0] for row in log.history] == list(range(1, 301))
    assert all(len(row) == len(HISTORY_COLUMNS) for row in log.history)
    assert [v[0] for v in log.val] == [0, 100, 200, 300]  # before the first step, then every 100th (the last one)
    assert log.val[0][1] > 1.2 and log.val[-1][1] < 0.2 and log.val[-1][2] > 0.9
    assert calls[0] == (0, 0, 0) and [c[0] for c in calls] == list(range(301))  # the untrained model, then each step
    assert all(c[1] == c[0] for c in calls) and calls[150][2] == 100  # called after the step and its validation
    w_norm_at = [row[0] for row in log.history if math.isfinite(row[4])]
    assert w_norm_at == list(range(7, 301, 7)) + [300]
    assert log.history[-1][4] == pytest.approx(np.linalg.norm(log.model.W_hh(-1), 2), rel=1e-9)


def test_the_loop_is_train_step_in_a_loop():
    """The same seeds give bit-identical parameters to a hand-written loop of train_step."""
    next_batch, evaluate = delayed_copy_source(seed=5)
    settings = TrainSettings(iters=40, loss_kind="xent", clip_mode="elementwise", clip_threshold=0.05, eval_every=9)
    log = train(small_model(seed=1), make_optimizer("momentum", 0.1), next_batch, evaluate, settings)
    model, optimizer, rng = small_model(seed=1), make_optimizer("momentum", 0.1), np.random.default_rng(5)
    losses = [train_step(model, optimizer, *delayed_copy_batch(rng), "xent", "elementwise", 0.05).loss
              for _ in range(40)]
    assert [row[1] for row in log.history] == losses
    for key, value in model.params.items():
        np.testing.assert_array_equal(log.model.params[key], value)
    assert [v[0] for v in log.val] == [0, 9, 18, 27, 36, 40]  # the final model is validated once more


def test_a_non_finite_step_stops_the_loop_and_keeps_the_last_finite_model():
    model = exploding_linear_model()
    batch = (np.ones((4, 1, 2)), np.zeros((4, 1), dtype=int), np.ones((4, 1)))
    seen = []
    log = train(model, make_optimizer("sgd", 0.1), lambda: batch, lambda m, state: (1.0, None),
                TrainSettings(iters=5, loss_kind="xent", clip_mode="none"), lambda i, log: seen.append(i))
    assert (log.diverged_at, log.iters_done, len(log.history)) == (1, 0, 1)
    assert not math.isfinite(log.history[0][1]) and np.isnan(log.history[0][4:]).all()  # no norms of a bad model
    assert seen == [0] and [v[0] for v in log.val] == [0]  # nothing after the failed step; no second validation
    for key, value in exploding_linear_model().params.items():
        np.testing.assert_array_equal(log.model.params[key], value)


def overflowing_validation(overflow_after_steps):
    """(next_batch, evaluate) for a 2-in, 1-out mse net: benign minibatches, a validation loss that is inf once
    `overflow_after_steps` batches have been drawn."""
    drawn = []

    def next_batch():
        drawn.append(1)
        return np.full((4, 2, 2), 0.1), np.zeros((4, 2, 1)), np.ones((4, 2))

    def evaluate(model, state=None):
        return (math.inf if len(drawn) >= overflow_after_steps else 0.5), None

    return next_batch, evaluate


@pytest.mark.parametrize("iters, overflow_after, diverged_at, iters_done, history_rows", [
    (10, 4, 4, 4, 4),  # the validation pass at iteration 4 overflows: stop there, the model's parameters are finite
    (10, 0, 2, 2, 2),  # overflowing from the start: the untrained model's pass is not a divergence, the next one is
    (0, 0, 0, 0, 0),  # nothing trained: the untrained model's validation loss overflows, and that is the last one
    (3, 3, 3, 3, 3),  # the final validation (off the eval_every cadence) overflows
])
def test_a_validation_loss_that_overflows_is_a_divergence(iters, overflow_after, diverged_at, iters_done,
                                                          history_rows):
    model, _ = init_model(np.random.default_rng(0), input_dim=2, output_dim=1, activation="linear", hidden=3,
                          init="gaussian", gamma_w=0.5)
    log = train(model, make_optimizer("sgd", 1e-3), *overflowing_validation(overflow_after),
                TrainSettings(iters=iters, loss_kind="mse", clip_mode="none", eval_every=2))
    assert (log.diverged_at, log.iters_done, len(log.history)) == (diverged_at, iters_done, history_rows)
    assert log.val[-1] == (diverged_at, math.inf, None)
    assert trainer.params_finite(log.model)


def test_a_task_that_scores_nothing_has_no_loss():
    """A mask of zeros gives the step a loss of 0; with scored=False the history says NaN instead."""
    xs, targets, mask = delayed_copy_batch(np.random.default_rng(3))
    log = train(small_model(), make_optimizer("sgd", 0.1), lambda: (xs, targets, 0 * mask), lambda m, state: (None, None),
                TrainSettings(iters=3, loss_kind="xent", scored=False))
    assert all(math.isnan(row[1]) and row[2] == 0.0 for row in log.history)
    assert (log.diverged_at, log.iters_done) == (None, 3)  # a None validation loss is no divergence


@pytest.mark.parametrize("kw, message", [
    (dict(clip_mode="value"), "unknown clip mode 'value'"),
    (dict(clip_threshold=math.inf), "clip threshold"),
    (dict(loss_kind="hinge"), "unknown loss 'hinge'"),
    (dict(iters=-1), "iters must be an integer >= 0"),
    (dict(eval_every=1.5), "eval_every must be an integer"),
    (dict(norms_every=0), "norms_every must be an integer >= 1"),
])
def test_bad_settings_are_refused_before_anything_runs(kw, message):
    def never(*args):
        raise AssertionError("called")

    settings = TrainSettings(**{"iters": 3, "loss_kind": "xent", **kw})
    with pytest.raises(ValueError, match=message):
        train(small_model(), make_optimizer("sgd", 0.1), never, never, settings)


def test_the_loop_checks_the_clip_settings_once(monkeypatch):
    calls = []
    monkeypatch.setattr(trainer, "check_clip", lambda *args: calls.append(args) or optim.check_clip(*args))
    next_batch, evaluate = delayed_copy_source()
    train(small_model(), make_optimizer("sgd", 0.1), next_batch, evaluate, TrainSettings(iters=20, loss_kind="xent"))
    assert calls == [("global", 5.0)]
    train_step(small_model(), make_optimizer("sgd", 0.1), *next_batch(), "xent")  # alone, a step checks them itself
    assert len(calls) == 2


def test_a_carried_batch_starts_from_the_previous_steps_final_state():
    """Truncated BPTT: with the state carried, the second window's loss is that of the last T positions of one
    forward pass over both windows from h = 0 (the update between them made negligible by a tiny step)."""
    rng = np.random.default_rng(3)
    V, T, B = 6, 5, 2
    ids = rng.integers(0, V, size=(2 * T + 1, B))
    model, _ = init_model(rng, input_dim=V, output_dim=V, hidden=8, gamma_w=1.2)
    reference = forward(model.copy(), ids[:-1])
    mask = np.ones((T, B))
    per_position = [loss_and_dy(reference.y[t : t + 1], ids[t + 1 : t + 2], mask[:1], "xent")[0] for t in range(2 * T)]
    batches = iter([(ids[:T], ids[1 : T + 1], mask, False), (ids[T:-1], ids[T + 1 :], mask, True)])
    log = train(model, make_optimizer("sgd", 1e-12), lambda: next(batches), lambda m, state: (0.0, None),
                TrainSettings(2, "xent", "none"))
    assert log.history[0][1] == pytest.approx(np.mean(per_position[:T]), rel=1e-9)
    assert log.history[1][1] == pytest.approx(np.mean(per_position[T:]), rel=1e-9)  # not from h = 0
    fresh = forward(model.copy(), ids[T:-1])
    from_zero = loss_and_dy(fresh.y, ids[T + 1 :], mask, "xent")[0]
    assert abs(from_zero - log.history[1][1]) > 1e-6  # the check can fail: h = 0 gives another loss
