"""Optimisers against single steps worked out by hand from their formulas; clipping against closed forms."""

import math
import warnings

import numpy as np
import pytest

from pipeline.engine.optim import (
    Adagrad,
    Adam,
    Momentum,
    SGD,
    clip_by_global_norm,
    clip_elementwise,
    clip_gradients,
    global_norm,
    make_optimizer,
)


def one_param(*values):
    return {"w": np.array(values, dtype=float)}


def test_sgd_step():
    params = one_param(1.0, 2.0)
    SGD(lr=0.1).step(params, one_param(0.5, -1.0))
    np.testing.assert_allclose(params["w"], [0.95, 2.1], rtol=1e-15)


def test_weight_decay_is_added_to_the_gradient():
    params = one_param(1.0, -2.0)
    SGD(lr=0.1, weight_decay=0.5).step(params, one_param(0.5, 1.0))
    # g + 0.5 p = [1.0, 0.0]
    np.testing.assert_allclose(params["w"], [0.9, -2.0], rtol=1e-15)


def test_momentum_two_steps():
    params, opt = one_param(1.0), Momentum(lr=0.1, momentum=0.9)
    opt.step(params, one_param(2.0))  # v = -0.2, p = 0.8
    assert params["w"][0] == pytest.approx(0.8, rel=1e-15)
    opt.step(params, one_param(-1.0))  # v = 0.9 * -0.2 + 0.1 = -0.08, p = 0.72
    assert params["w"][0] == pytest.approx(0.72, rel=1e-14)


def test_adagrad_is_min_char_rnn_adagrad():
    params, opt = one_param(1.0, 0.0), Adagrad(lr=0.1)
    opt.step(params, one_param(2.0, 0.0))  # mem = [4, 0]
    expected = [1.0 - 0.1 * 2.0 / math.sqrt(4.0 + 1e-8), 0.0]
    np.testing.assert_allclose(params["w"], expected, rtol=1e-15)
    opt.step(params, one_param(-1.0, 3.0))  # mem = [5, 9]
    expected = [expected[0] + 0.1 * 1.0 / math.sqrt(5.0 + 1e-8), -0.1 * 3.0 / math.sqrt(9.0 + 1e-8)]
    np.testing.assert_allclose(params["w"], expected, rtol=1e-15)


def test_adam_two_steps():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    params, opt = one_param(0.5), Adam(lr=lr)
    opt.step(params, one_param(3.0))
    # step 1: m = 0.3, v = 0.009; m_hat = 3, v_hat = 9
    p1 = 0.5 - lr * 3.0 / (3.0 + eps)
    assert params["w"][0] == pytest.approx(p1, rel=1e-15)
    opt.step(params, one_param(-1.0))
    m = b1 * 0.3 + (1 - b1) * -1.0  # 0.17
    v = b2 * 0.009 + (1 - b2) * 1.0  # 0.009991
    p2 = p1 - lr * (m / (1 - b1**2)) / (math.sqrt(v / (1 - b2**2)) + eps)
    assert params["w"][0] == pytest.approx(p2, rel=1e-14)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "adam"])
def test_step_leaves_grads_alone_and_updates_in_place(name):
    params, grads = {"a": np.ones((2, 3)), "b": np.zeros(4)}, {"a": np.full((2, 3), 0.5), "b": np.ones(4)}
    arrays, grads_before = dict(params), {k: v.copy() for k, v in grads.items()}
    make_optimizer(name, 0.1, weight_decay=0.01).step(params, grads)
    for key in params:
        assert params[key] is arrays[key]  # same array object, changed in place
        np.testing.assert_array_equal(grads[key], grads_before[key])
    assert not np.array_equal(params["a"], np.ones((2, 3)))


def test_factory_passes_options():
    opt = make_optimizer("momentum", 0.5, weight_decay=0.1, momentum=0.5)
    assert isinstance(opt, Momentum) and (opt.lr, opt.weight_decay, opt.momentum) == (0.5, 0.1, 0.5)
    assert isinstance(make_optimizer("adam", 1e-3, beta2=0.99), Adam)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_optimizer("rmsprop", 0.1), "unknown optimizer 'rmsprop'"),
        (lambda: make_optimizer("sgd", 0.1, momentum=0.9), "has no option momentum"),
        (lambda: make_optimizer("sgd", 0.0), "lr must be a finite number > 0"),
        (lambda: make_optimizer("sgd", float("nan")), "lr must be"),
        (lambda: make_optimizer("sgd", 0.1, weight_decay=-1.0), "weight_decay must be"),
        (lambda: make_optimizer("momentum", 0.1, momentum=1.0), r"momentum must be in \[0, 1\)"),
        (lambda: make_optimizer("adam", 0.1, beta1=1.0), r"beta1 must be in \[0, 1\)"),
    ],
)
def test_bad_settings_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_step_rejects_mismatched_grads():
    opt = SGD(0.1)
    with pytest.raises(ValueError, match="do not match params keys"):
        opt.step({"a": np.zeros(2)}, {"b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grad a has shape \(3,\), param has \(2,\)"):
        opt.step({"a": np.zeros(2)}, {"a": np.zeros(3)})


# ---- clipping -------------------------------------------------------------------------------------------------


def grads_of_norm_5():
    return {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}


def test_global_clip_below_threshold_is_identity():
    grads = grads_of_norm_5()
    clipped, norm, scale = clip_by_global_norm(grads, 10.0)
    assert norm == 5.0 and scale == 1.0
    assert all(clipped[k] is grads[k] for k in grads)


def test_global_clip_above_threshold_scales_to_the_threshold():
    clipped, norm, scale = clip_by_global_norm(grads_of_norm_5(), 2.5)
    assert (norm, scale) == (5.0, 0.5)
    np.testing.assert_allclose(clipped["a"], [1.5, 0.0])
    np.testing.assert_allclose(clipped["b"], [[2.0]])


def test_elementwise_clip():
    clipped, norm, scale = clip_elementwise({"a": np.array([3.0, -7.0]), "b": np.array([0.5])}, 5.0)
    np.testing.assert_array_equal(clipped["a"], [3.0, -5.0])
    assert norm == pytest.approx(math.sqrt(9 + 49 + 0.25), rel=1e-15)
    assert scale == pytest.approx(math.sqrt(9 + 25 + 0.25) / math.sqrt(9 + 49 + 0.25), rel=1e-15)


def test_zero_gradient():
    zero = {"a": np.zeros(3)}
    for mode in ("none", "global", "elementwise"):
        _, norm, scale = clip_gradients(zero, mode, 1.0)
        assert (norm, scale) == (0.0, 1.0)


def test_huge_finite_gradient_has_a_finite_norm_and_clips():
    grads = {"a": np.array([1e200, 1e200]), "b": np.array([-1e200])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert global_norm(grads) == pytest.approx(math.sqrt(3) * 1e200, rel=1e-14)
        clipped, norm, scale = clip_by_global_norm(grads, 1.0)
    assert math.isfinite(norm) and global_norm(clipped) == pytest.approx(1.0, rel=1e-14)


@pytest.mark.parametrize("mode", ["none", "global", "elementwise"])
@pytest.mark.parametrize("bad, expected", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_gradient_is_reported_not_raised(mode, bad, expected):
    grads = {"a": np.array([1.0, bad]), "b": np.ones(2)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, norm, scale = clip_gradients(grads, mode, 5.0)
    assert math.isnan(norm) if expected == "nan" else norm == math.inf
    assert math.isnan(scale)


def test_nan_wins_over_inf():
    assert math.isnan(global_norm({"a": np.array([np.inf]), "b": np.array([np.nan])}))


@pytest.mark.parametrize("mode, threshold, message", [("global", 0.0, "clip threshold"), ("elementwise", -1.0, "clip threshold"),
                                                      ("value", 1.0, "unknown clip mode 'value'")])
def test_bad_clip_settings(mode, threshold, message):
    with pytest.raises(ValueError, match=message):
        clip_gradients(grads_of_norm_5(), mode, threshold)
