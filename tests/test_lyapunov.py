"""pipeline.engine.lyapunov against closed forms (linear networks), the known order-to-chaos transition of random
tanh networks, and the growth rate of the Jacobian column itself."""

import numpy as np
import pytest

from pipeline.engine import jacobian, lyapunov, rnn, scaled
from pipeline.engine.rnn import RNN


def one_layer(W, activation="linear", form="elman", d=1, input_weight=1.0):
    n = W.shape[0]
    params = {"W_hh_0": W, "W_xh_0": input_weight * np.ones((n, d)), "b_h_0": np.zeros(n),
              "W_hy": np.ones((1, n)), "b_y": np.zeros(1)}
    return RNN(form, activation, 0.01, params)


def orthogonal(n, rng):
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diagonal(R))


@pytest.mark.parametrize("a", [0.05, 0.9, 1.0, 1.1, 10.0, -2.0])
@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_scaled_orthogonal_has_every_exponent_log_a(a, form):
    rng = np.random.default_rng(0)
    n, T = 6, 300
    model = one_layer(a * orthogonal(n, rng), form=form)
    got = lyapunov.lyapunov_spectrum(model, np.zeros((T, 1)))
    assert got.shape == (n,)
    np.testing.assert_allclose(got, np.log(abs(a)), rtol=1e-9, atol=1e-12)
    assert lyapunov.top_lyapunov(model, np.zeros((T, 1))) == pytest.approx(np.log(abs(a)), rel=1e-9, abs=1e-12)


def test_diagonal_weights_give_the_sorted_log_entries():
    """W = diag(a_i), linear: exponents are ln|a_i|, descending; the transient aligns the random frame."""
    a = np.array([0.3, -1.7, 0.9, 1.2, 0.05])
    model = one_layer(np.diag(a))
    got = lyapunov.lyapunov_spectrum(model, np.zeros((1000, 1)), discard=400)
    np.testing.assert_allclose(got, np.sort(np.log(np.abs(a)))[::-1], rtol=1e-9)
    top3 = lyapunov.lyapunov_spectrum(model, np.zeros((1000, 1)), k=3, discard=400)
    np.testing.assert_allclose(top3, got[:3], rtol=1e-9)


def random_tanh(n, gain, rng):
    return one_layer(gain * rng.standard_normal((n, n)) / np.sqrt(n), activation="tanh")


@pytest.mark.parametrize("gain, sign", [(0.5, -1), (2.0, 1)])
def test_random_tanh_network_orders_below_gain_one_and_is_chaotic_above(gain, sign):
    """h_t = tanh(W h_{t-1}), W_ij ~ N(0, g^2/n): ordered (lambda_1 < 0) for g < 1, chaotic for g > 1.

    A finite network at g = 2 now and then settles on a limit cycle (lambda_1 = 0), so take the median of three.
    """
    n, T = 100, 800
    tops = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        model = random_tanh(n, gain, rng)
        tops.append(lyapunov.top_lyapunov(model, np.zeros((T, 1)), rng.standard_normal((1, n)), discard=200))
    assert sign * np.median(tops) > 0.05


def test_top_exponent_is_the_growth_rate_of_the_jacobian():
    """(1/T) log ||dh_T/dh_0|| -> lambda_1: agree to O(1/T) on a chaotic tanh network."""
    rng = np.random.default_rng(2)
    n, T = 32, 2000
    model = random_tanh(n, 1.8, rng)
    xs, h0 = np.zeros((T, 1)), rng.standard_normal((1, n))
    rate = jacobian.log_norm_column(model, xs, h0)[0] / T
    assert lyapunov.top_lyapunov(model, xs, h0) == pytest.approx(rate, abs=0.01)


def test_dead_relu_step_gives_minus_inf():
    n, T = 4, 20
    model = one_layer(np.eye(n), activation="relu")
    xs = np.ones((T, 1))
    xs[5] = -1e3  # every unit off at step 6
    got = lyapunov.lyapunov_spectrum(model, xs)
    assert np.all(np.isneginf(got))


def test_non_finite_step_gives_nan():
    D = np.ones((6, 3))
    D[2, 1] = np.nan
    assert np.isnan(lyapunov.spectrum_from_factors(np.eye(3), D, "elman")).all()
    assert np.isnan(lyapunov.spectrum_from_factors(np.full((3, 3), np.inf), np.ones((6, 3)), "pascanu", k=2)).all()


def test_bad_input_raises_value_error_naming_it():
    model = one_layer(np.eye(3))
    xs = np.zeros((10, 1))
    with pytest.raises(ValueError, match="k must"):
        lyapunov.lyapunov_spectrum(model, xs, k=4)
    with pytest.raises(ValueError, match="k must"):
        lyapunov.lyapunov_spectrum(model, xs, k=0)
    with pytest.raises(ValueError, match="discard"):
        lyapunov.lyapunov_spectrum(model, xs, discard=10)
    with pytest.raises(ValueError, match="xs"):
        lyapunov.lyapunov_spectrum(model, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="h0"):
        lyapunov.top_lyapunov(model, xs, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        lyapunov.top_lyapunov(model, np.full((10, 1), np.nan))
    with pytest.raises(ValueError, match="layer"):
        lyapunov.top_lyapunov(model, xs, layer=1)
    broken = one_layer(np.eye(3), activation="swish")
    with pytest.raises(ValueError, match="activation"):
        lyapunov.top_lyapunov(broken, xs)
    broken = one_layer(np.eye(3), form="gru")
    with pytest.raises(ValueError, match="form"):
        lyapunov.top_lyapunov(broken, xs)
    broken = one_layer(np.ones((3, 2)))
    with pytest.raises(ValueError, match="square"):
        lyapunov.top_lyapunov(broken, xs)


# ---- driven trajectories: burn-in, long measurement, several trajectories at once ---------------------------------


@pytest.mark.parametrize("a", [0.3, 1.0, -1.7, 25.0])
@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_driven_spectrum_of_scaled_orthogonal_linear_map_is_log_a(a, form):
    rng = np.random.default_rng(2)
    model = one_layer(a * orthogonal(8, rng), form=form)
    xs = np.zeros((1200, 3, 1))  # a linear map's Jacobian ignores the inputs (and zeros keep a = 25 finite)
    got = lyapunov.driven_spectrum(model, xs, k=4)
    np.testing.assert_allclose(got.per_trajectory, np.log(abs(a)), rtol=0, atol=1e-9)
    assert got.per_trajectory.shape == (3, 4) and got.burn_in == 200 and got.steps == 1000
    np.testing.assert_allclose(got.spread, 0.0, atol=1e-9)


@pytest.mark.parametrize("qr_every", [1, 3, 4])
def test_driven_spectrum_of_diagonal_linear_map_is_sorted_log_diag(qr_every):
    d = np.array([1.5, -0.2, 0.9, 3.0, -1.1])
    D = np.ones((1200, 2, 5))
    got = lyapunov.spectra_from_factors(np.diag(d), D, "elman", k=5, burn_in=204 - 204 % qr_every, qr_every=qr_every)
    np.testing.assert_allclose(got, np.broadcast_to(np.sort(np.log(np.abs(d)))[::-1], (2, 5)), rtol=0, atol=1e-12)


def test_driven_spectrum_agrees_with_the_single_sequence_estimate_and_qr_interval():
    """A nonlinear layer: the batched, every-few-steps QR gives each trajectory the exponents of the one-sequence,
    every-step QR of `lyapunov_spectrum` with the same burn-in. The two start from different random frames, whose
    memory decays like exp(-(lambda_k - lambda_{k+1}) t): after the burn-in it is below 1e-8 here."""
    rng = np.random.default_rng(4)
    W = 1.4 * orthogonal(10, rng)
    model = one_layer(W, activation="tanh", d=2)
    model.params["W_xh_0"] = rng.standard_normal((10, 2))
    xs = rng.standard_normal((1200, 2, 2))
    got = lyapunov.driven_spectrum(model, xs, k=3, qr_every=4)
    for b in range(2):
        one = lyapunov.lyapunov_spectrum(model, xs[:, b], k=3, discard=200)
        np.testing.assert_allclose(got.per_trajectory[b], one, rtol=0, atol=1e-8)
    assert got.mean == pytest.approx(got.per_trajectory.mean(axis=0))
    assert got.spread == pytest.approx(np.ptp(got.per_trajectory, axis=0))


def test_driven_spectrum_nan_for_a_diverged_trajectory_and_bad_arguments():
    D = np.ones((20, 2, 3))
    D[5, 1, 0] = np.nan
    got = lyapunov.spectra_from_factors(np.eye(3), D, "elman", k=2, burn_in=4)
    assert np.isfinite(got[0]).all() and np.isnan(got[1]).all()
    with pytest.raises(ValueError, match="multiple"):
        lyapunov.spectra_from_factors(np.eye(3), D, "elman", k=2, burn_in=5)
    with pytest.raises(ValueError, match="k must be"):
        lyapunov.spectra_from_factors(np.eye(3), D, "elman", k=4, burn_in=4)
    with pytest.raises(ValueError, match="T, B, n"):
        lyapunov.spectra_from_factors(np.eye(3), D[:, 0], "elman")


def test_a_trajectory_whose_state_overflows_is_measured_in_log_space_not_from_the_junk_phi_prime():
    """leaky_relu reads phi' = slope from a NaN state: the exploding trajectory must not report log(slope); its
    states are carried in log space instead (scaled.scaled_factors), so its exponents are finite and below the
    bound's log 30, and the second trajectory (h = 0 throughout, phi' = 0.01: J = 0.3 Q) is untouched."""
    rng = np.random.default_rng(5)
    model = one_layer(30.0 * orthogonal(4, rng), activation="leaky_relu")
    xs = np.ones((400, 2, 1))
    xs[:, 1] = 0.0
    with np.errstate(all="ignore"):
        got = lyapunov.driven_spectrum(model, xs, k=2)
    assert np.isfinite(got.per_trajectory[0]).all() and got.per_trajectory[0, 0] <= np.log(30.0) + 1e-12
    assert got.per_trajectory[0, 0] > np.log(0.3) + 1.0  # not the slope's rate that a NaN state would give
    np.testing.assert_allclose(got.per_trajectory[1], np.log(0.3), rtol=0, atol=1e-9)
    with np.errstate(all="ignore"):
        without = lyapunov.spectrum_from_trace(model, rnn.forward(model, xs), k=2)  # no inputs given: no rescue
    assert np.isnan(without.per_trajectory[0]).all()


@pytest.mark.parametrize("gamma", [2.0, 4.0])
@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_a_linear_rnns_lambda_1_is_log_gamma_however_far_its_state_overflows(gamma, form):
    """W = gamma Q with inputs: the state grows like gamma^t and leaves float64 within 1200 steps (2^1200), yet
    every step Jacobian is gamma Q, so lambda_1 = log gamma_W exactly (the old forward gave NaN)."""
    rng = np.random.default_rng(6)
    model = one_layer(gamma * orthogonal(8, rng), form=form, d=2)
    xs = rng.standard_normal((1200, 2, 2))
    with np.errstate(all="ignore"):
        assert not np.isfinite(rnn.forward(model, xs).h[0]).all()  # it does overflow
        got = lyapunov.driven_spectrum(model, xs, k=4)
    np.testing.assert_allclose(got.per_trajectory, np.log(gamma), rtol=0, atol=1e-9)


def test_a_relu_rnn_that_grows_forever_has_lambda_1_log_a():
    """W = 30 I with positive inputs: every unit stays active (phi' = 1) while the state grows 30-fold a step."""
    model = one_layer(30.0 * np.eye(3), activation="relu")
    xs = np.ones((1200, 1, 1))
    with np.errstate(all="ignore"):
        got = lyapunov.driven_spectrum(model, xs, k=3)
    np.testing.assert_allclose(got.per_trajectory, np.log(30.0), rtol=0, atol=1e-9)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear", "softplus"])
@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_scaled_factors_equal_the_forward_pass_while_it_is_finite(activation, form):
    """Two layers on random weights and inputs, long enough to overflow: wherever the ordinary forward pass is still
    finite, the log-space pass gives the same phi' (to rounding; the homogeneous ones exactly in sign)."""
    rng = np.random.default_rng(7)
    n, d, T = 5, 3, 600
    params = {"W_hh_0": 10.0 * orthogonal(n, rng), "W_xh_0": rng.standard_normal((n, d)),
              "b_h_0": rng.standard_normal(n), "W_hh_1": 8.0 * orthogonal(n, rng),
              "W_xh_1": rng.standard_normal((n, n)), "b_h_1": rng.standard_normal(n),
              "W_hy": np.ones((1, n)), "b_y": np.zeros(1)}
    model = RNN(form, activation, 0.2, params)
    xs = rng.standard_normal((T, 2, d))
    with np.errstate(all="ignore"):
        trace = rnn.forward(model, xs)
        for layer in (0, 1):
            got = scaled.scaled_factors(model, xs, None, layer)
            finite = np.isfinite(trace.h[layer][1:]).all(axis=2) & np.isfinite(trace.h[0][1:]).all(axis=2)
            assert finite[:20].all() and not finite.all()  # a finite start, then an overflow
            np.testing.assert_allclose(got[finite], trace.d[layer][finite], rtol=1e-9, atol=1e-12)
            assert np.isfinite(got).all()
    with pytest.raises(ValueError, match="scaled_factors needs one of"):
        scaled.scaled_factors(RNN(form, "tanh", 0.2, params), xs)