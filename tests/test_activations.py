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
