"""pipeline.engine.spotcheck: log ||dh_t/dh_k||_2 from finite differences of the forward step equations alone,
against jacobian.log_norm_matrix, closed forms, and planted bugs that the bound check cannot see."""

import dataclasses
import math

import numpy as np
import pytest

from pipeline.engine import activations, jacobian, rnn, spotcheck
from pipeline.engine.rnn import RNN
from pipeline.run import probe
from test_jacobian import random_model as jacobian_random_model


def random_model(rng, form="elman", activation="tanh", layers=1, n=10, d=3, scale=1.2, leaky_slope=0.1):
    """test_jacobian's random model, at the sizes these tests use by default."""
    return jacobian_random_model(rng, form, activation, layers, n, d, scale, leaky_slope)


def orthogonal(n, rng):
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diagonal(R))


def linear_model(Ws, d=2):
    """Linear activation, one W_hh per layer: dh_t/dh_k = W^(t-k) whatever the inputs."""
    params, n = {}, Ws[0].shape[0]
    for l, W in enumerate(Ws):
        params |= {f"W_hh_{l}": W, f"W_xh_{l}": np.ones((n, d if l == 0 else n)), f"b_h_{l}": np.zeros(n)}
    return RNN("elman", "linear", 0.0, params | {"W_hy": np.ones((1, n)), "b_y": np.zeros(1)})


def all_pairs(T):
    return np.array([(t, k) for k in range(T) for t in range(k + 1, T + 1)])


def gaps(model, xs, h0, layer, pairs=None):
    """(|spot - log_norm_matrix| per pair, the spot check) for `layer`."""
    spot = spotcheck.spot_log_norms(model, xs, h0, layer, pairs)
    M = jacobian.log_norm_matrix(model, xs, h0, layer)
    return np.abs(spot.log_norm - M[spot.t, spot.k]), spot


# ---- agreement with the probe's values ----------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "softplus", "gaussian", "linear"])
@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_agrees_with_log_norm_matrix(form, activation, layers):
    rng = np.random.default_rng(7)
    model = random_model(rng, form, activation, layers)
    T = 24
    xs, h0 = rng.standard_normal((T, 3)), 0.5 * rng.standard_normal((layers, 10))
    for layer in range(layers):
        gap, spot = gaps(model, xs, h0, layer, all_pairs(T))
        resolved = np.isfinite(spot.log_norm)
        assert resolved.mean() > 0.9  # kinks of relu are rarely straddled at the step used
        assert np.max(gap[resolved]) <= 1e-6, (layer, np.max(gap[resolved]))


@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_default_pairs_of_a_probe_sized_model_agree(form):
    rng = np.random.default_rng(3)
    model = random_model(rng, form, "tanh", layers=1, n=48, d=8, scale=1.5)
    xs, h0 = rng.standard_normal((60, 8)), np.zeros((1, 48))
    gap, spot = gaps(model, xs, h0, 0)
    assert len(spot.t) == 16 and np.isfinite(spot.log_norm).all()
    assert np.max(gap) <= 1e-7


def test_token_id_inputs():
    rng = np.random.default_rng(4)
    model = random_model(rng, "elman", "tanh", layers=2, d=5)
    ids = rng.integers(0, 5, size=20)
    for layer in range(2):
        gap, spot = gaps(model, ids, None, layer, all_pairs(20))
        assert np.isfinite(spot.log_norm).all() and np.max(gap) <= 1e-6


@pytest.mark.parametrize("a", [0.5, 1.0, 3.0, -2.0])
def test_closed_form_linear_orthogonal(a):
    rng = np.random.default_rng(5)
    n, T = 6, 30
    model = linear_model([a * orthogonal(n, rng), 0.7 * orthogonal(n, rng)])
    xs = rng.standard_normal((T, 2))
    pairs = all_pairs(T)
    for layer, scale in ((0, abs(a)), (1, 0.7)):
        spot = spotcheck.spot_log_norms(model, xs, None, layer, pairs)
        np.testing.assert_allclose(spot.log_norm, (spot.t - spot.k) * math.log(scale), rtol=0, atol=1e-8)


def test_magnitudes_far_outside_float_range_are_resolved():
    # forward mode renormalises after every step: a norm of e^-600 or e^+600 is resolved like one of 1, and the
    # error estimate bounds the error actually made
    rng = np.random.default_rng(6)
    for a, T in ((0.05, 200), (20.0, 200)):
        model = linear_model([a * orthogonal(4, rng)])
        spot = spotcheck.spot_log_norms(model, rng.standard_normal((T, 2)), None, 0, [(T, 0), (T, T // 2)])
        exact = (spot.t - spot.k) * math.log(a)
        assert abs(exact[0]) > 590
        assert np.all(np.abs(spot.log_norm - exact) <= np.minimum(spot.error, 1e-6))


# ---- planted bugs: the bound check cannot see them, the spot check does -------------------------------------------


def bound_check(model, xs, h0):
    M = jacobian.log_norm_matrix(model, xs, h0)
    product, global_ = jacobian.log_bound_matrices(model, xs, h0)
    return M, jacobian.bound_violations(M, product, global_)


def test_a_halved_derivative_leaves_the_bound_check_clean_and_the_spot_check_not(monkeypatch):
    rng = np.random.default_rng(8)
    model = random_model(rng, "elman", "tanh", n=16, scale=1.5)
    xs, h0 = rng.standard_normal((30, 3)), np.zeros((1, 16))
    honest = spotcheck.spot_log_norms(model, xs, h0)
    M_honest, _ = bound_check(model, xs, h0)
    assert np.nanmax(np.abs(honest.log_norm - M_honest[honest.t, honest.k])) < 1e-7

    real = activations.get_activation("tanh")  # what RNN.act returns; patched where rnn.py looks it up

    def halved_of_phi(y, out=None):
        return np.multiply(real.dphi_of_phi(y, out=out), 0.5, out=out)

    halved = dataclasses.replace(real, dphi=lambda z: 0.5 * real.dphi(z), dphi_of_phi=halved_of_phi,
                                 dphi_far=lambda z: 0.5 * real.dphi_far(z))
    monkeypatch.setattr(rnn, "get_activation", lambda name, slope=0.01: halved if name == "tanh" else real)
    assert model.act is halved

    M, violations = bound_check(model, xs, h0)
    assert violations == []  # measured <= product <= global still holds: both sides use the wrong phi'
    np.testing.assert_allclose(np.diagonal(M, -1) - np.diagonal(M_honest, -1), math.log(0.5), atol=1e-9)
    spot = spotcheck.spot_log_norms(model, xs, h0)
    np.testing.assert_array_equal(spot.log_norm, honest.log_norm)  # phi' is not used by the spot check
    gap = np.abs(spot.log_norm - M[spot.t, spot.k])
    assert np.nanmax(gap) == pytest.approx(30 * math.log(2), rel=1e-6)  # the longest lag (30, 0)


def test_an_off_by_one_time_index_leaves_the_bound_check_clean_and_the_spot_check_not(monkeypatch):
    rng = np.random.default_rng(9)
    model = random_model(rng, "elman", "tanh", n=16, scale=1.5)
    xs, h0 = 2.0 * rng.standard_normal((30, 3)), np.zeros((1, 16))
    real = jacobian.step_factors

    def shifted(model, xs, h0=None, layer=-1):  # phi' of step t+1 used for step t
        W, D = real(model, xs, h0, layer)
        return W, np.concatenate([D[1:], D[-1:]])

    monkeypatch.setattr(jacobian, "step_factors", shifted)
    M, violations = bound_check(model, xs, h0)
    assert violations == []
    spot = spotcheck.spot_log_norms(model, xs, h0)
    assert np.nanmax(np.abs(spot.log_norm - M[spot.t, spot.k])) > 0.1


def test_a_zeroed_derivative_is_a_mismatch_not_a_skip(monkeypatch):
    # phi' = 0 everywhere: every product is exactly zero (-inf), consistently with both bounds; the differences
    # resolve finite norms, and the probe's table counts that as an infinite difference
    rng = np.random.default_rng(16)
    model = random_model(rng, "elman", "tanh", n=8)
    xs, h0 = rng.standard_normal((12, 3)), np.zeros((1, 8))
    real = activations.get_activation("tanh")
    zero = dataclasses.replace(real, dphi=np.zeros_like, dphi_of_phi=lambda y, out=None: np.multiply(y, 0.0, out=out),
                               dphi_far=np.zeros_like)
    monkeypatch.setattr(rnn, "get_activation", lambda name, slope=0.01: zero)
    M, violations = bound_check(model, xs, h0)
    assert violations == [] and np.all(np.isneginf(M[np.tril_indices(13, -1)]))
    spot = spotcheck.spot_log_norms(model, xs, h0)
    table = probe.spot_table("init", 0, M, spot)
    assert np.isfinite(spot.log_norm).all() and np.isinf(table["abs_dlog"]).all()
    numbers = probe.spot_numbers(probe.Probe("init", [M], None, None, [], table))
    assert numbers["spot_checks_init"] == 16 and numbers["spot_mismatches_init"] == 16


# ---- what finite differences cannot resolve is skipped, never counted as agreement -----------------------------


def test_a_kink_exactly_at_the_state_is_unresolved():
    # pascanu applies phi to h_{t-1}; from h0 = 0 every unit of step 1 sits on relu's kink
    rng = np.random.default_rng(10)
    for activation in ("relu", "leaky_relu"):
        model = random_model(rng, "pascanu", activation)
        xs = rng.standard_normal((20, 3))
        gap, spot = gaps(model, xs, np.zeros((1, 10)), 0, all_pairs(20))
        from_zero = spot.k == 0
        assert np.isnan(spot.log_norm[from_zero]).all()
        assert np.isfinite(spot.log_norm[~from_zero]).mean() > 0.9
        assert np.nanmax(gap) <= 1e-6


def test_a_kink_straddled_by_the_difference_step_is_unresolved():
    # elman relu; step 2's pre-activation of unit 0 is set to 3e-6, inside the step of 1e-5
    n = 4
    rng = np.random.default_rng(11)
    params = {"W_hh_0": orthogonal(n, rng), "W_xh_0": np.eye(n), "b_h_0": np.zeros(n),
              "W_hy": np.ones((1, n)), "b_y": np.zeros(1)}
    model = RNN("elman", "relu", 0.0, params)
    h0 = np.ones((1, n))
    xs = np.ones((3, n))
    h1 = np.maximum(params["W_hh_0"] @ h0[0] + xs[0], 0.0)
    xs[1, 0] = 3e-6 - (params["W_hh_0"] @ h1)[0]
    gap, spot = gaps(model, xs, h0, 0, all_pairs(3))
    spans = (spot.k < 2) & (spot.t >= 2)
    assert np.isnan(spot.log_norm[spans]).all()
    assert np.isfinite(spot.log_norm[~spans]).all() and np.nanmax(gap) <= 1e-9


def test_a_saturated_step_is_unresolved_not_zero():
    # tanh with every pre-activation beyond 40: tanh(a +- h) rounds to +-1, the differences are exactly zero,
    # while the true derivative (about 4 exp(-80) per unit) is finite
    rng = np.random.default_rng(12)
    model = random_model(rng, "elman", "tanh", n=6)
    model.params["b_h_0"] = np.full(6, 60.0)
    gap, spot = gaps(model, rng.standard_normal((5, 3)), None, 0, all_pairs(5))
    assert np.isnan(spot.log_norm).all() and np.isinf(spot.error).all()


def test_overflowing_states_are_unresolved():
    rng = np.random.default_rng(13)
    model = linear_model([1e100 * orthogonal(3, rng)])
    with np.errstate(over="ignore", invalid="ignore"):  # as in a run: an exploding state overflows on purpose
        spot = spotcheck.spot_log_norms(model, rng.standard_normal((6, 2)), None, 0, all_pairs(6))
    finite = spot.t <= 4  # h_4 ~ 1e300 is finite, h_5 ~ 1e400 is not
    np.testing.assert_allclose(spot.log_norm[finite], (spot.t - spot.k)[finite] * 100 * math.log(10), rtol=1e-9)
    assert np.isnan(spot.log_norm[~finite]).all() and np.isinf(spot.error[~finite]).all()


# ---- the sampled pairs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [6, 10, 30, 60, 200])
def test_spot_pairs_are_sixteen_valid_pairs_with_the_longest_lag_and_the_k0_row(T):
    pairs = spotcheck.spot_pairs(T)
    t, k = pairs[:, 0], pairs[:, 1]
    assert len(pairs) == 16 == len({tuple(p) for p in pairs})
    assert np.all((0 <= k) & (k < t) & (t <= T))
    assert (T, 0) in {tuple(p) for p in pairs} and (k == 0).sum() >= 6
    assert np.array_equal(pairs, spotcheck.spot_pairs(T))  # deterministic
    assert list(map(tuple, pairs)) == sorted(map(tuple, pairs), key=lambda p: (p[1], p[0]))


def test_spot_pairs_spread_the_lags_of_long_sequences():
    pairs = spotcheck.spot_pairs(60)
    k0 = pairs[pairs[:, 1] == 0, 0]
    assert k0.tolist() == [1, 9, 18, 26, 35, 43, 52, 60]
    assert sorted(set(pairs[:, 1].tolist())) == [0, 20, 40]


@pytest.mark.parametrize("T", [1, 2, 5])
def test_short_sequences_check_every_pair(T):
    assert len(spotcheck.spot_pairs(T)) == T * (T + 1) // 2


def test_bad_arguments_are_named():
    rng = np.random.default_rng(14)
    model = random_model(rng)
    xs = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match="0 <= k < t <= T = 5"):
        spotcheck.spot_log_norms(model, xs, None, 0, [(3, 3)])
    with pytest.raises(ValueError, match="0 <= k < t <= T = 5"):
        spotcheck.spot_log_norms(model, xs, None, 0, [(6, 0)])
    with pytest.raises(ValueError, match="layer must be in"):
        spotcheck.spot_log_norms(model, xs, None, 1)
    with pytest.raises(ValueError, match="T >= 1"):
        spotcheck.spot_pairs(0)


def test_no_global_random_state_is_touched():
    rng = np.random.default_rng(15)
    model = random_model(rng)
    xs = rng.standard_normal((12, 3))
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    first = spotcheck.spot_log_norms(model, xs)
    assert np.array_equal(np.random.get_state()[1], before)
    np.testing.assert_array_equal(first.log_norm, spotcheck.spot_log_norms(model, xs).log_norm)
