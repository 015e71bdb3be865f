"""pipeline.engine.meanfield against closed forms: the linear map's rate ln sigma_w, the zero fixed point of tanh
without input, relu's E[phi'^2] = 1/2, hard_tanh's erf, Gaussian moments, and the variance map of a real network."""

import math

import numpy as np
import pytest

from pipeline.engine import meanfield
from pipeline.engine.activations import ACTIVATIONS, get_activation
from pipeline.engine.init import init_model
from pipeline.engine.rnn import forward


@pytest.mark.parametrize("sigma_w", [0.3, 0.9, 1.0, 1.7, 12.0])
@pytest.mark.parametrize("input_var", [0.0, 0.5, 3.0])
def test_linear_rate_is_log_sigma_w_exactly(sigma_w, input_var):
    got = meanfield.meanfield_rate(get_activation("linear"), sigma_w, input_var)
    assert got.rate == pytest.approx(math.log(sigma_w), rel=0, abs=1e-14)
    if sigma_w < 1:  # q = sigma_w^2 q + input_var has the finite fixed point input_var / (1 - sigma_w^2)
        assert got.q_star == pytest.approx(input_var / (1 - sigma_w**2), rel=1e-10, abs=1e-300)
    elif input_var > 0 and sigma_w > 1:
        assert got.q_star == math.inf


@pytest.mark.parametrize("sigma_w", [0.2, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("name", ["tanh", "hard_tanh"])
def test_odd_unit_slope_activation_without_input_has_q_star_zero(sigma_w, name):
    got = meanfield.meanfield_rate(get_activation(name), sigma_w, 0.0)
    assert got.converged and got.q_star == 0.0
    assert got.rate == pytest.approx(math.log(sigma_w), abs=1e-14)


@pytest.mark.parametrize("q", [1e-6, 0.3, 2.0, 50.0, 1e8])
def test_quadrature_matches_closed_form_expectations(q):
    relu, hard_tanh, tanh = (get_activation(a) for a in ("relu", "hard_tanh", "tanh"))
    assert meanfield.gaussian_mean(lambda z: relu.dphi(z) ** 2, q) == pytest.approx(0.5, abs=1e-13)
    assert meanfield.gaussian_mean(lambda z: relu.phi(z) ** 2, q) == pytest.approx(q / 2, rel=1e-12)
    assert meanfield.gaussian_mean(lambda z: hard_tanh.dphi(z) ** 2, q) == pytest.approx(
        math.erf(1 / math.sqrt(2 * q)), rel=1e-11)
    assert meanfield.gaussian_mean(lambda z: z**4, q) == pytest.approx(3 * q * q, rel=1e-12)
    if q >= 50:  # saturated: E[tanh'(sqrt(q) z)^2] -> (4/3) / sqrt(2 pi q), the window |z| < 1/sqrt(q) alone
        assert meanfield.gaussian_mean(lambda z: tanh.dphi(z) ** 2, q) == pytest.approx(
            4 / 3 / math.sqrt(2 * math.pi * q), rel=2 / q)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_q_star_is_a_fixed_point_of_the_variance_map(name):
    act = get_activation(name)
    got = meanfield.meanfield_rate(act, 0.8, 0.4)
    assert got.converged and math.isfinite(got.q_star)
    again = 0.64 * meanfield.gaussian_mean(lambda z: act.phi(z) ** 2, got.q_star) + 0.4
    assert again == pytest.approx(got.q_star, rel=1e-12)
    slope2 = meanfield.gaussian_mean(lambda z: act.dphi(z) ** 2, got.q_star)
    assert got.rate == pytest.approx(0.5 * math.log(0.64 * slope2), abs=1e-14)


def test_relu_rate_does_not_depend_on_the_input_and_q_diverges_above_sqrt2():
    relu = get_activation("relu")
    for input_var in (0.1, 1.0, 10.0):
        got = meanfield.meanfield_rate(relu, 1.2, input_var)
        assert got.rate == pytest.approx(0.5 * math.log(1.44 / 2), abs=1e-13)
        assert got.q_star == pytest.approx(input_var / (1 - 0.72), rel=1e-10)
    assert meanfield.meanfield_rate(relu, 1.6, 1.0).q_star == math.inf


def test_model_meanfield_reads_sigma_w_and_the_input_drive():
    rng = np.random.default_rng(0)
    model, _ = init_model(rng, input_dim=3, output_dim=1, form="elman", activation="tanh", leaky_slope=0.01,
                          layers=2, hidden=16, init="orthogonal", gamma_w=0.7, input_scale=0.5)
    model.params["b_h_0"] += 0.3
    xs = rng.standard_normal((40, 5, 3))
    trace = forward(model, xs)
    got = meanfield.model_meanfield(model, trace, layer=0)
    assert got.sigma_w == pytest.approx(0.7, rel=1e-12)  # orthogonal: every singular value is gamma_w
    drive = xs @ model.params["W_xh_0"].T + model.params["b_h_0"]
    assert got.input_var == pytest.approx(np.mean(drive**2), rel=1e-12)
    top = meanfield.model_meanfield(model, trace, layer=-1)  # reads the states of layer 0
    drive1 = trace.h[0][1:] @ model.params["W_xh_1"].T + model.params["b_h_1"]
    assert top.input_var == pytest.approx(np.mean(drive1**2), rel=1e-12)
    ids = rng.integers(0, 3, size=(40, 5))
    by_ids = meanfield.model_meanfield(model, forward(model, ids), layer=0)
    onehot = np.eye(3)[ids] @ model.params["W_xh_0"].T + model.params["b_h_0"]
    assert by_ids.input_var == pytest.approx(np.mean(onehot**2), rel=1e-12)


def test_wide_random_network_variance_follows_the_map():
    """The premise of the theory on a wide Gaussian tanh layer: the empirical pre-activation second moment settles
    near q*, and the predicted rate is near the measured Lyapunov exponent (large n, i.i.d. weights)."""
    from pipeline.engine import lyapunov
    rng = np.random.default_rng(1)
    n, sigma_w = 400, 1.5
    W = sigma_w * rng.standard_normal((n, n)) / math.sqrt(n)
    params = {"W_hh_0": W, "W_xh_0": rng.standard_normal((n, 1)), "b_h_0": np.zeros(n),
              "W_hy": np.zeros((1, n)), "b_y": np.zeros(1)}
    from pipeline.engine.rnn import RNN
    model = RNN("elman", "tanh", 0.01, params)
    xs = 0.5 * rng.standard_normal((700, 2, 1))
    trace = forward(model, xs)
    mf = meanfield.model_meanfield(model, trace)
    pre = trace.h[0][1:] @ W.T + meanfield.input_drive(model, trace, 0)
    assert np.mean(pre[200:] ** 2) == pytest.approx(mf.q_star, rel=0.05)
    spectrum = lyapunov.spectrum_from_trace(model, trace, k=1, burn_in=200)
    assert spectrum.mean[0] == pytest.approx(mf.rate, abs=0.05)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="sigma_w"):
        meanfield.fixed_point(get_activation("tanh"), -1.0, 0.0)
    with pytest.raises(ValueError, match="input_var"):
        meanfield.meanfield_rate(get_activation("tanh"), 1.0, math.inf)
    with pytest.raises(ValueError, match="square"):
        meanfield.weight_sigma(np.ones((2, 3)))
    assert math.isnan(meanfield.weight_sigma(np.array([[np.inf]])))
