"""The GRU's Jacobian norms (jacobian.log_norm_matrix) against dense products of its step Jacobians, finite
differences of the forward map, the product-of-step-norms bound and the spot check."""

import numpy as np
import pytest

from pipeline import load_model, log_norm_matrix
from pipeline.engine import jacobian, spotcheck
from pipeline.engine.gru import forward, step_jacobians
from pipeline.engine.init import init_gru
from pipeline.run.files import save_model
from tests.test_lstm_jacobian import dense_log_norms

N, D, T = 4, 3, 12
PAIRS = np.tri(T + 1, k=-1, dtype=bool)


def random_gru(seed, layers=1, gamma_w=1.0):
    rng = np.random.default_rng(seed)
    model = init_gru(rng, input_dim=D, output_dim=2, layers=layers, hidden=N, init="gaussian", gamma_w=gamma_w)
    for key in model.params:
        if key.startswith("b_") and key != "b_y":
            model.params[key] = 0.5 * rng.standard_normal(model.params[key].shape)
    xs, h0 = rng.standard_normal((T, D)), 0.5 * rng.standard_normal((layers, N))
    return model, xs, h0


@pytest.mark.parametrize("layers, layer", [(1, 0), (2, 0), (2, 1), (2, -1)])
def test_norms_match_dense_products(layers, layer):
    model, xs, h0 = random_gru(layers * 7 + layer, layers, gamma_w=1.3)
    measured = jacobian.log_norm_matrix(model, xs, h0, layer)
    expected = dense_log_norms(step_jacobians(model, xs, h0, layer))
    np.testing.assert_allclose(measured[PAIRS], expected[PAIRS], rtol=0, atol=1e-9)
    assert np.isnan(measured[~PAIRS]).all()


def test_norms_match_finite_differences_of_the_forward_map():
    """Perturb h_k, rerun the layer from step k to t (forward alone, no step Jacobian), difference."""
    model, xs, h0 = random_gru(3)
    measured = jacobian.log_norm_matrix(model, xs, h0)
    trace = forward(model, xs[:, None], h0[:, None])
    for t, k in [(1, 0), (5, 2), (T, 0), (T, 7)]:
        s = trace.h[0][k, 0].copy()
        numeric = np.zeros((N, N))
        for j in range(N):
            keep = s[j]
            s[j] = keep + 1e-6
            up = forward(model, xs[k:t, None], s[None, None]).h[0][-1, 0]
            s[j] = keep - 1e-6
            down = forward(model, xs[k:t, None], s[None, None]).h[0][-1, 0]
            s[j] = keep
            numeric[:, j] = (up - down) / 2e-6
        assert measured[t, k] == pytest.approx(np.log(np.linalg.norm(numeric, 2)), abs=1e-6), (t, k)


def test_measured_below_the_product_of_step_norms():
    model, xs, h0 = random_gru(5, gamma_w=2.0)
    measured = jacobian.log_norm_matrix(model, xs, h0)
    product, global_ = jacobian.log_bound_matrices(model, xs, h0)
    assert np.isnan(global_).all()  # no gamma_W gamma_phi bound for a gated cell
    step = np.log([np.linalg.norm(j, 2) for j in step_jacobians(model, xs, h0)])
    assert product[T, 0] == pytest.approx(step.sum(), abs=1e-10)
    assert jacobian.bound_violations(measured, product, global_) == []


def test_the_spot_check_agrees_with_the_norms():
    """spotcheck differences gru.step, the step equation alone (no step Jacobians)."""
    model, xs, h0 = random_gru(6, layers=2, gamma_w=1.5)
    for layer in (0, 1):
        measured = jacobian.log_norm_matrix(model, xs, h0, layer)
        spot = spotcheck.spot_log_norms(model, xs, h0, layer)
        resolved = np.isfinite(spot.log_norm)
        assert resolved.sum() >= 12
        np.testing.assert_allclose(spot.log_norm[resolved], measured[spot.t, spot.k][resolved], atol=1e-6)


def test_a_gru_has_no_cell_state():
    model, xs, h0 = random_gru(0)
    with pytest.raises(ValueError, match=r"state 'cell' is not available \(a GRU has no cell state\); valid: full"):
        jacobian.log_norm_matrix(model, xs, h0, state="cell")


def test_the_public_api_reads_a_gru_file(tmp_path):
    """load_model and log_norm_matrix, as a notebook would call them, on a saved GRU."""
    model, xs, h0 = random_gru(9, layers=2)
    save_model(model, tmp_path / "model.npz")
    again = log_norm_matrix(load_model(tmp_path / "model.npz"), xs, h0)
    np.testing.assert_array_equal(again, jacobian.log_norm_matrix(model, xs, h0))
