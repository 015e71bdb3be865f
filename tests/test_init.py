"""Initialisation: the realised spectral norm / radius is the one asked for, measured independently (SVD, eig)."""

import math

import numpy as np
import pytest

from pipeline.engine.init import INITS, SPARSE_FAN_IN, init_model


def make(init, gamma_w=1.0, seed=0, **kw):
    options = dict(input_dim=5, output_dim=3, layers=2, hidden=40)
    options.update(kw)
    return init_model(np.random.default_rng(seed), init=init, gamma_w=gamma_w, **options)


def largest_singular_value(W):
    return np.linalg.svd(W, compute_uv=False)[0]


def largest_eigenvalue_modulus(W):
    return np.abs(np.linalg.eig(W)[0]).max()


@pytest.mark.parametrize("init", ["gaussian", "orthogonal", "identity"])
@pytest.mark.parametrize("gamma_w", [0.3, 1.0, 2.5])
def test_spectral_norm_is_gamma_w(init, gamma_w):
    model, info = make(init, gamma_w)
    for l in range(2):
        W = model.params[f"W_hh_{l}"]
        assert largest_singular_value(W) == pytest.approx(gamma_w, rel=1e-12)
        assert info.spectral_norm[l] == pytest.approx(gamma_w, rel=1e-12)
        assert info.spectral_radius[l] == pytest.approx(largest_eigenvalue_modulus(W), rel=1e-10)


@pytest.mark.parametrize("gamma_w", [0.5, 1.0, 1.7])
def test_sparse_spectral_radius_is_gamma_w(gamma_w):
    model, info = make("sparse", gamma_w)
    for l in range(2):
        W = model.params[f"W_hh_{l}"]
        assert largest_eigenvalue_modulus(W) == pytest.approx(gamma_w, rel=1e-10)
        assert info.spectral_radius[l] == pytest.approx(gamma_w, rel=1e-10)
        assert info.spectral_norm[l] == pytest.approx(largest_singular_value(W), rel=1e-12)
        assert info.spectral_norm[l] >= gamma_w * (1 - 1e-12)  # norm >= radius always


@pytest.mark.parametrize("hidden, fan_in", [(40, SPARSE_FAN_IN), (6, 6)])
def test_sparse_gives_each_unit_its_fan_in(hidden, fan_in):
    model, _ = make("sparse", hidden=hidden)
    W = model.params["W_hh_0"]
    assert np.all(np.count_nonzero(W, axis=1) == fan_in)  # row i: weights into unit i


def test_orthogonal_is_orthogonal_up_to_scale():
    model, _ = make("orthogonal", 1.5)
    W = model.params["W_hh_0"]
    np.testing.assert_allclose(W.T @ W, 1.5**2 * np.eye(40), atol=1e-12)
    np.testing.assert_allclose(W @ W.T, 1.5**2 * np.eye(40), atol=1e-12)


def test_orthogonal_is_not_always_the_same_matrix_up_to_sign():
    # the sign fix must not collapse the draws: two seeds give different matrices
    W1, W2 = (make("orthogonal", seed=s)[0].params["W_hh_0"] for s in (1, 2))
    assert np.abs(np.abs(W1) - np.abs(W2)).max() > 0.1


def test_identity_is_scaled_identity():
    model, _ = make("identity", 0.9)
    np.testing.assert_array_equal(model.params["W_hh_1"], 0.9 * np.eye(40))


@pytest.mark.parametrize("init", INITS)
def test_same_seed_same_model_other_seed_other_model(init):
    a, b, c = make(init, seed=7)[0], make(init, seed=7)[0], make(init, seed=8)[0]
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not np.array_equal(a.params["W_xh_0"], c.params["W_xh_0"])


def test_shapes_biases_and_scales():
    model, _ = init_model(np.random.default_rng(0), input_dim=400, output_dim=7, layers=2, hidden=300, form="pascanu",
                          activation="relu")
    p = model.params
    assert (model.form, model.activation) == ("pascanu", "relu")
    assert p["W_xh_0"].shape == (300, 400) and p["W_xh_1"].shape == (300, 300) and p["W_hy"].shape == (7, 300)
    assert not p["b_h_0"].any() and not p["b_h_1"].any() and not p["b_y"].any()
    assert p["W_xh_0"].std() == pytest.approx(1 / math.sqrt(400), rel=0.02)  # 120k draws
    assert p["W_xh_1"].std() == pytest.approx(1 / math.sqrt(300), rel=0.02)
    assert p["W_hy"].std() == pytest.approx(1 / math.sqrt(300), rel=0.05)


def test_explicit_input_scale():
    model, _ = make("orthogonal", input_scale=0.0)
    assert not model.params["W_xh_0"].any()
    model, _ = init_model(np.random.default_rng(0), input_dim=500, output_dim=2, hidden=200, input_scale=0.1)
    assert model.params["W_xh_0"].std() == pytest.approx(0.1, rel=0.02)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(init="xavier"), "unknown init 'xavier'"),
        (dict(gamma_w=0.0), "gamma_w must be a finite number > 0"),
        (dict(gamma_w=-1.0), "gamma_w must be a finite number > 0"),
        (dict(gamma_w=float("nan")), "gamma_w must be a finite number > 0"),
        (dict(hidden=0), "hidden must be an integer >= 1"),
        (dict(layers=0), "layers must be an integer >= 1"),
        (dict(layers=1.5), "layers must be an integer >= 1"),
        (dict(input_dim=0), "input_dim must be an integer >= 1"),
        (dict(form="lstm"), "unknown form 'lstm'"),
        (dict(activation="swish"), "unknown activation 'swish'"),
        (dict(input_scale=-1.0), "input_scale must be"),
    ],
)
def test_bad_arguments_are_named(kw, message):
    options = dict(input_dim=3, output_dim=2)
    options.update(kw)
    with pytest.raises(ValueError, match=message):
        init_model(np.random.default_rng(0), **options)
