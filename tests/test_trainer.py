"""train_step: learns a small task, leaves the model alone on inf/NaN, and reports what it measured."""

import math
import warnings

import numpy as np
import pytest

from pipeline.benchmarks.throughput import bench_train_throughput
from pipeline.engine.init import init_model
from pipeline.engine.optim import make_optimizer
from pipeline.engine.rnn import RNN, Workspace, loss_and_grads
from pipeline.engine.trainer import train_step


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
