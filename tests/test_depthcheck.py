"""pipeline.engine.depthcheck: norms across layers from finite differences of each layer's step equation alone,
against depth.log_norm_grid, the closed form of a linear stack, and planted wrong derivatives that the bound check
cannot see."""

import numpy as np
import pytest

from pipeline.engine import depth, depthcheck, gridpairs, jacobian
from pipeline.engine.spotcheck import SPOT_TOLERANCE
from test_depth import closed_form, grid_pairs, linear_stack, orthogonal, random_model


def gaps(model, xs, h0=None, pairs=None, grid=None):
    """(|spot - grid| per checked pair, the spot check) of every source layer below the top."""
    spot = depthcheck.spot_cross_layer(model, xs, h0, pairs=pairs, sources=range(model.layers - 1))
    grid = depth.log_norm_grid(model, xs, h0) if grid is None else grid
    return np.abs(spot.log_norm - grid[spot.source, spot.t, spot.k]), spot


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "softplus", "linear"])
@pytest.mark.parametrize("form", ["elman", "pascanu"])
@pytest.mark.parametrize("layers", [2, 3])
def test_agrees_with_the_grid_on_every_pair(form, activation, layers):
    rng = np.random.default_rng(11 * layers + len(activation))
    scale = 3.0 if activation == "sigmoid" else 1.0
    model = random_model(rng, form, activation, layers, n=6, scale=scale, x_scale=scale)
    T = 10
    xs, h0 = rng.standard_normal((T, 2)), 0.5 * rng.standard_normal((layers, 6))
    pairs = np.array(sorted({(t, k) for _, t, k in grid_pairs(T, layers - 1) if k <= t}))
    gap, spot = gaps(model, xs, h0, pairs)
    resolved = np.isfinite(spot.log_norm)
    assert resolved.mean() > 0.9
    assert np.max(gap[resolved]) <= 1e-6, np.max(gap[resolved])
    assert set(spot.source.tolist()) == set(range(layers - 1))


def test_default_pairs_of_a_deep_probe_sized_model_agree():
    rng = np.random.default_rng(2)
    model = random_model(rng, "elman", "tanh", 8, n=16)
    xs = rng.standard_normal((30, 2))
    spot = depthcheck.spot_cross_layer(model, xs)
    gap = np.abs(spot.log_norm - depth.log_norm_grid(model, xs)[spot.source, spot.t, spot.k])
    assert len(spot.t) == 3 * len(depthcheck.cross_spot_pairs(30))
    assert set(spot.source.tolist()) == {0, 3, 6}  # the input layer, the middle, the one below the top
    assert np.all(np.isfinite(spot.log_norm)) and np.max(gap) <= 1e-6


def test_the_linear_stack_closed_form():
    rng = np.random.default_rng(3)
    model = linear_stack(0.8, 1.3, orthogonal(5, rng), 4)
    spot = depthcheck.spot_cross_layer(model, rng.standard_normal((40, 2)))
    want = [closed_form(0.8, 1.3, 3, l, t, k) for l, t, k in zip(spot.source, spot.t, spot.k)]
    np.testing.assert_allclose(spot.log_norm, want, atol=1e-7)


def test_token_id_inputs():
    rng = np.random.default_rng(4)
    model = random_model(rng, "elman", "tanh", 3, n=5, d=7)
    ids = rng.integers(0, 7, size=12)
    gap, spot = gaps(model, ids)
    assert np.all(np.isfinite(spot.log_norm)) and np.max(gap) <= 1e-6


def test_cross_spot_pairs():
    assert depthcheck.cross_spot_pairs(1).tolist() == [[1, 0], [1, 1]]
    pairs = depthcheck.cross_spot_pairs(30)
    assert {(30, 0), (15, 0), (30, 15), (15, 15), (30, 30)} == set(map(tuple, pairs.tolist()))
    with pytest.raises(ValueError, match="T >= 1"):
        depthcheck.cross_spot_pairs(0)


# ---- planted bugs: the bound check holds, the spot check does not ------------------------------------------------


def planted(monkeypatch, wrong_v):
    """depth.grid_factors with its vertical diagonal replaced by wrong_v(d) (the measured norms and their bounds both
    read it, as they would read a bug there)."""
    real = depth.grid_factors

    def factors(*args, **kwargs):
        F = real(*args, **kwargs)
        return gridpairs.GridFactors(F.form, F.W, F.U, F.d, wrong_v(F.d), F.gamma_phi)

    monkeypatch.setattr(depth, "grid_factors", factors)


@pytest.mark.parametrize("wrong", ["one step late", "phi' dropped"])
def test_a_wrong_vertical_derivative_leaves_the_bound_check_clean_and_the_spot_check_not(monkeypatch, wrong):
    rng = np.random.default_rng(5)
    model = random_model(rng, "elman", "tanh", 4, n=8)
    xs = rng.standard_normal((20, 2))
    clean, _ = gaps(model, xs)
    assert np.nanmax(clean) <= 1e-6
    if wrong == "one step late":  # V(l, s) reads phi' of step s - 1
        planted(monkeypatch, lambda d: np.concatenate([d[:, :1], d[:, :-1]], axis=1))
    else:  # V(l, s) = W_xh, as if the layer above read phi(h) (the pascanu form's edge in an elman net)
        planted(monkeypatch, np.ones_like)
    grid, bounds = depth.log_norm_grid(model, xs), depth.log_bound_grid(model, xs)
    for low, high in ((grid, bounds.stepnorm), (bounds.stepnorm, bounds.product), (bounds.product, bounds.global_)):
        assert not jacobian.exceeds(low, high).any()
    gap, spot = gaps(model, xs, grid=grid)
    assert np.nanmax(gap) > 100 * SPOT_TOLERANCE
    assert np.all(np.isfinite(spot.log_norm))


def test_bad_arguments_are_named():
    model = random_model(np.random.default_rng(0), layers=2)
    with pytest.raises(ValueError, match="layer must be in"):
        depthcheck.spot_cross_layer(model, np.zeros((5, 2)), layer=4)
    with pytest.raises(ValueError, match="0 <= k <= t"):
        depthcheck.spot_cross_layer(model, np.zeros((5, 2)), pairs=[[2, 3]])
    with pytest.raises(ValueError, match="sources must be layers below"):
        depthcheck.spot_cross_layer(model, np.zeros((5, 2)), sources=[1])
