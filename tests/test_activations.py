"""Activations against closed forms, central finite differences and the sup |phi'| of docs/math.md's table (section 5)."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine.activations import ACTIVATIONS, gamma_phi, get_activation

KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "hard_tanh": (-1.0, 1.0)}


def smooth_points(name: str, rng: np.random.Generator, count: int = 400) -> np.ndarray:
    """Points in [-4, 4] at least 1e-3 away from the activation's kinks."""
    z = rng.uniform(-4.0, 4.0, size=count)
    for kink in KINKS.get(name, ()):
        z = z[np.abs(z - kink) > 1e-3]
    return z


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dphi_matches_central_differences(name):
    act = get_activation(name, leaky_slope=0.3)
    z = smooth_points(name, np.random.default_rng(0))
    eps = 1e-6
    numeric = (act.phi(z + eps) - act.phi(z - eps)) / (2 * eps)
    np.testing.assert_allclose(act.dphi(z), numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if n != "gaussian"])
def test_dphi_of_phi_equals_dphi(name):
    act = get_activation(name, leaky_slope=0.3)
    z = np.concatenate([smooth_points(name, np.random.default_rng(1)), [-30.0, -5.0, 5.0, 30.0]])
    np.testing.assert_allclose(act.dphi_of_phi(act.phi(z)), act.dphi(z), rtol=1e-12, atol=1e-15)


def test_gaussian_has_no_dphi_of_phi():
    # exp(-z^2) is even, so phi' cannot be read back from phi
    assert get_activation("gaussian").dphi_of_phi is None


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_out_argument_fills_the_buffer_and_leaves_z_alone(name):
    act = get_activation(name, leaky_slope=0.2)
    z = np.linspace(-3, 3, 13)
    z_before, out = z.copy(), np.full_like(z, np.nan)
    result = act.phi(z, out=out)
    assert result is out
    np.testing.assert_array_equal(out, act.phi(z))
    np.testing.assert_array_equal(z, z_before)


@pytest.mark.parametrize(
    "name, z, expected",
    [
        ("tanh", 0.5, math.tanh(0.5)),
        ("sigmoid", 0.0, 0.5),
        ("sigmoid", -40.0, math.exp(-40.0) / (1.0 + math.exp(-40.0))),
        ("sigmoid", 3.0, 1.0 / (1.0 + math.exp(-3.0))),
        ("relu", -2.0, 0.0),
        ("relu", 2.5, 2.5),
        ("hard_tanh", 3.0, 1.0),
        ("hard_tanh", -0.25, -0.25),
        ("softplus", 0.0, math.log(2.0)),
        ("softplus", -50.0, math.log1p(math.exp(-50.0))),
        ("gaussian", 1.5, math.exp(-2.25)),
        ("linear", -7.0, -7.0),
    ],
)
def test_closed_form_values(name, z, expected):
    assert get_activation(name).phi(np.array([z]))[0] == pytest.approx(expected, rel=1e-14, abs=1e-300)


def test_leaky_relu_uses_its_slope():
    act = get_activation("leaky_relu", leaky_slope=0.1)
    np.testing.assert_allclose(act.phi(np.array([-2.0, 3.0])), [-0.2, 3.0])
    np.testing.assert_allclose(act.dphi(np.array([-2.0, 3.0])), [0.1, 1.0])


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_gamma_is_the_supremum_of_dphi(name):
    act = get_activation(name, leaky_slope=0.01)
    z = np.linspace(-40.0, 40.0, 400_001)
    peak = np.max(np.abs(act.dphi(z)))
    assert peak <= act.gamma * (1 + 1e-12)
    assert peak == pytest.approx(act.gamma, rel=1e-6)  # softplus: 1 - sigmoid(-40), within 1e-17


def test_gamma_table_of_design_md():
    assert gamma_phi("tanh") == 1.0
    assert gamma_phi("sigmoid") == 0.25
    assert gamma_phi("gaussian") == pytest.approx(math.sqrt(2.0 / math.e), rel=1e-15)
    assert gamma_phi("leaky_relu", 0.01) == 1.0
    assert gamma_phi("leaky_relu", 2.0) == 2.0  # max(1, a)


def test_gaussian_gamma_is_reached_at_one_over_sqrt2():
    assert abs(get_activation("gaussian").dphi(np.array([-1 / math.sqrt(2)]))[0]) == pytest.approx(
        math.sqrt(2 / math.e), rel=1e-15
    )


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_no_overflow_warnings_at_extreme_inputs(name):
    act = get_activation(name)
    z = np.array([-1e4, -800.0, 0.0, 800.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = act.phi(z) if name not in ("linear", "relu", "leaky_relu") else act.phi(z[1:-1])
        slopes = act.dphi(z)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(slopes))


@settings(max_examples=40)
@given(
    st.sampled_from(ACTIVATIONS),
    st.floats(-20, 20, allow_nan=False),
    st.floats(-20, 20, allow_nan=False),
    st.floats(0, 3, allow_nan=False),
)
def test_phi_is_gamma_lipschitz(name, a, b, slope):
    act = get_activation(name, slope)
    lhs = abs(act.phi(np.array([a]))[0] - act.phi(np.array([b]))[0])
    assert lhs <= act.gamma * abs(a - b) * (1 + 1e-12) + 1e-15


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*tanh"):
        get_activation("swish")


@pytest.mark.parametrize("slope", [-0.1, float("nan"), float("inf"), "x"])
def test_bad_leaky_slope(slope):
    with pytest.raises(ValueError, match="leaky_slope"):
        get_activation("leaky_relu", slope)


# ---- saturation: phi' from z where reading it from y = phi(z) would cancel -----------------------------------


@pytest.mark.parametrize("z", [20.0, 40.0, -20.0, -40.0, 200.0])
def test_tanh_derivative_far_out_matches_its_asymptotics(z):
    # tanh'(z) = 4 e / (1 + e)^2, e = exp(-2|z|): 4 exp(-2|z|) to relative 2 exp(-2|z|) < 1e-17
    slope = get_activation("tanh").dphi(np.array([z]))[0]
    assert slope > 0 and slope == pytest.approx(4.0 * math.exp(-2.0 * abs(z)), rel=1e-12)


@pytest.mark.parametrize("z", [40.0, 80.0, -40.0, -80.0, 500.0])
def test_sigmoid_derivative_far_out_matches_its_asymptotics(z):
    # sigmoid'(z) = e / (1 + e)^2, e = exp(-|z|): exp(-|z|) to relative 2 exp(-|z|)
    slope = get_activation("sigmoid").dphi(np.array([z]))[0]
    assert slope > 0 and slope == pytest.approx(math.exp(-abs(z)), rel=1e-12)


@pytest.mark.parametrize("z", [6.0, 12.0, 20.0, 40.0, 80.0])
def test_saturated_derivatives_match_finite_differences_of_forms_without_cancellation(z):
    # tanh(z) - 1 = -2 sigmoid(-2z) and sigmoid(-z) are computed to full relative precision far out, so their
    # central differences check phi' where differencing phi itself (rounded to 1) cannot
    sig = get_activation("sigmoid").phi
    eps = 1e-5
    z = np.array([z])
    tanh_minus_one = lambda u: -2.0 * sig(-2.0 * u)  # noqa: E731
    numeric_tanh = (tanh_minus_one(z + eps) - tanh_minus_one(z - eps)) / (2 * eps)
    numeric_sigmoid = -(sig(-(z + eps)) - sig(-(z - eps))) / (2 * eps)  # sigmoid' is even
    np.testing.assert_allclose(get_activation("tanh").dphi(z), numeric_tanh, rtol=1e-8)
    np.testing.assert_allclose(get_activation("sigmoid").dphi(z), numeric_sigmoid, rtol=1e-8)


@pytest.mark.parametrize("name, limit", [("tanh", 5.0), ("sigmoid", 9.0)])
def test_the_two_formulas_meet_at_the_switch(name, limit):
    # below the switch phi' is read from y = phi(z) as before (results unchanged); at the switch the y-formula's
    # rounding error has grown to about 1e-12 relative (1e-16 e^(2|z|) for tanh, e^|z| for sigmoid), and that is
    # all the two formulas differ by; 1e-15 would put the switch at |z| ~ 1.3 and change most saturated units
    act = get_activation(name)
    assert act.dphi_of_phi_limit == limit
    side = np.linspace(0.0, limit * 1e-3, 2001)
    below, beyond = limit - side, np.nextafter(limit, np.inf) + side
    for z in (below, -below):
        np.testing.assert_array_equal(act.dphi(z), act.dphi_of_phi(act.phi(z)))  # the y-formula itself
    for z in (beyond, -beyond):
        np.testing.assert_allclose(act.dphi(z), act.dphi_of_phi(act.phi(z)), rtol=2e-12, atol=0)


def test_moderate_values_are_unchanged():
    z = np.linspace(-5.0, 5.0, 10001)
    np.testing.assert_array_equal(get_activation("tanh").dphi(z), 1.0 - np.tanh(z) ** 2)
    s = get_activation("sigmoid").phi(np.linspace(-9.0, 9.0, 10001))
    np.testing.assert_array_equal(get_activation("sigmoid").dphi(np.linspace(-9.0, 9.0, 10001)), s * (1.0 - s))


def test_zero_dimensional_input():
    assert float(get_activation("tanh").dphi(np.float64(30.0))) == pytest.approx(4 * math.exp(-60.0), rel=1e-12)
    assert float(get_activation("sigmoid").dphi(50.0)) == pytest.approx(math.exp(-50.0), rel=1e-12)


def test_only_tanh_and_sigmoid_switch_formulas():
    for name in ACTIVATIONS:
        act = get_activation(name, 0.3)
        switches = name in ("tanh", "sigmoid")
        assert (act.dphi_far is not None) == switches and np.isfinite(act.dphi_of_phi_limit) == switches
        if switches:
            z = np.array([-300.0, -30.0, -10.0, 10.0, 30.0, 300.0])  # beyond both switches
            np.testing.assert_array_equal(act.dphi_far(z), act.dphi(z))
