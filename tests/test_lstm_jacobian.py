"""The LSTM's Jacobian norms (jacobian.log_norm_matrix with state "full" and "cell") against dense products of
its step Jacobians, finite differences of the forward map, a closed form, and the product-of-step-norms bound."""

import numpy as np
import pytest

from pipeline.engine import jacobian
from pipeline.engine.init import init_lstm
from pipeline.engine.lstm import LSTM, forward, step_jacobians
from tests.test_jacobian import random_model

N, D, T = 4, 3, 12


def random_lstm(seed, layers=1, n=N, gamma_w=1.0):
    rng = np.random.default_rng(seed)
    model = init_lstm(rng, input_dim=D, output_dim=2, layers=layers, hidden=n, init="gaussian", gamma_w=gamma_w)
    for key in model.params:
        if key.startswith("b_") and key != "b_y":
            model.params[key] = model.params[key] + 0.5 * rng.standard_normal(model.params[key].shape)
    xs, h0 = rng.standard_normal((T, D)), 0.5 * rng.standard_normal((layers, 2 * n))
    return model, xs, h0


def dense_log_norms(J, block=None):
    """[t, k] = log ||block of J_t ... J_{k+1}||_2 by plain products and np.linalg.norm(., 2)."""
    steps, m, _ = J.shape
    out = np.full((steps + 1, steps + 1), np.nan)
    for k in range(steps):
        P = np.eye(m)
        for t in range(k + 1, steps + 1):
            P = J[t - 1] @ P
            part = P if block is None else P[block, block]
            out[t, k] = np.log(np.linalg.norm(part, 2))
    return out


@pytest.mark.parametrize("layers, layer", [(1, 0), (2, 0), (2, 1), (2, -1)])
@pytest.mark.parametrize("state", ["full", "cell"])
def test_norms_match_dense_products(layers, layer, state):
    model, xs, h0 = random_lstm(layers * 7 + layer, layers, gamma_w=1.3)
    measured = jacobian.log_norm_matrix(model, xs, h0, layer, state=state)
    block = None if state == "full" else slice(N, 2 * N)
    expected = dense_log_norms(step_jacobians(model, xs, h0, layer), block)
    pairs = np.tri(T + 1, k=-1, dtype=bool)
    np.testing.assert_allclose(measured[pairs], expected[pairs], rtol=0, atol=1e-9)
    assert np.isnan(measured[~pairs]).all()


@pytest.mark.parametrize("state", ["full", "cell"])
def test_norms_match_finite_differences_of_the_forward_map(state):
    """Perturb (h_k, c_k), rerun the layer from step k to t (forward alone, no step Jacobian), difference."""
    model, xs, h0 = random_lstm(3)
    measured = jacobian.log_norm_matrix(model, xs, h0, state=state)
    trace = forward(model, xs[:, None], h0[:, None])
    rows = slice(0, 2 * N) if state == "full" else slice(N, 2 * N)
    for t, k in [(1, 0), (5, 2), (T, 0), (T, 7)]:
        s = np.concatenate([trace.h[0][k, 0], trace.c[0][k, 0]])

        def state_at_t():
            out = forward(model, xs[k:t, None], s[None, None])
            return np.concatenate([out.h[0][-1, 0], out.c[0][-1, 0]])

        numeric = np.zeros((2 * N, 2 * N))
        for j in range(2 * N):
            keep = s[j]
            s[j] = keep + 1e-6
            up = state_at_t()
            s[j] = keep - 1e-6
            down = state_at_t()
            s[j] = keep
            numeric[:, j] = (up - down) / 2e-6
        assert measured[t, k] == pytest.approx(np.log(np.linalg.norm(numeric[rows, rows], 2)), abs=1e-6), (t, k)


@pytest.mark.parametrize("f", [0.5, 0.9, 0.999])
def test_cell_norm_is_f_to_the_lag_with_gates_open_and_forget_held(f):
    """Input and output gates saturated open (i = o = 1 in float64), the forget gate held at f (no weights into
    it) and no recurrent weights into g: c_t = f c_{t-1} + g_t with dc_t/dh_{t-1} = 0, so ||dc_t/dc_k|| = f^(t-k)."""
    rng = np.random.default_rng(0)
    model, xs, h0 = random_lstm(1)
    p, n = model.params, N
    p["b_0"][:n] = p["b_0"][3 * n :] = 80.0  # sigma(80) rounds to 1
    p["b_0"][n : 2 * n] = np.log(f / (1 - f))  # sigma(b_f) = f
    p["W_ih_0"][n : 2 * n] = 0.0
    p["W_hh_0"][n : 3 * n] = 0.0  # nothing reaches f or g from h: the forget gate is held, g depends on x alone
    p["W_hh_0"][:n] = rng.standard_normal((n, n))  # i and o still see h, but are saturated
    p["W_hh_0"][3 * n :] = rng.standard_normal((n, n))
    cell = jacobian.log_norm_matrix(model, xs, h0, state="cell")
    lags = np.subtract.outer(np.arange(T + 1), np.arange(T + 1))
    pairs = lags > 0
    np.testing.assert_allclose(cell[pairs], lags[pairs] * np.log(f), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("state", ["full", "cell"])
def test_measured_below_the_product_of_step_norms(state):
    model, xs, h0 = random_lstm(5, gamma_w=2.0)
    measured = jacobian.log_norm_matrix(model, xs, h0, state=state)
    product, global_ = jacobian.log_bound_matrices(model, xs, h0)
    assert np.isnan(global_).all()  # no gamma_W gamma_phi bound for a gated cell
    J = step_jacobians(model, xs, h0)
    step = np.log([np.linalg.norm(j, 2) for j in J])
    assert product[T, 0] == pytest.approx(step.sum(), abs=1e-10)
    assert product[7, 3] == pytest.approx(step[3:7].sum(), abs=1e-10)
    assert jacobian.bound_violations(measured, product, global_) == []


@pytest.mark.parametrize("scale", [1e-120, 1e120])
def test_huge_and_tiny_steps_stay_in_range(scale):
    """Scaling every step by s adds lag * log s exactly (no product is formed at its true size)."""
    J = step_jacobians(*random_lstm(2))
    for block in (None, slice(N, 2 * N)):
        base = jacobian.log_norms_from_steps(J, [block])[0]
        scaled = jacobian.log_norms_from_steps(J * scale, [block])[0]
        lags = np.subtract.outer(np.arange(T + 1), np.arange(T + 1))
        pairs = lags > 0
        np.testing.assert_allclose(scaled[pairs], base[pairs] + lags[pairs] * np.log(scale), rtol=1e-12)


def test_zero_and_non_finite_steps():
    J = step_jacobians(*random_lstm(4))
    J[4] = 0.0
    J[8, 0, 0] = np.nan
    out = jacobian.log_norms_from_steps(J, [None])[0]
    assert np.isneginf(out[5, 4]) and np.isneginf(out[7, 0])  # spans the zero step only
    assert np.isnan(out[9, 8]) and np.isnan(out[T, 0])  # spans the NaN step
    assert np.isfinite(out[4, 0]) and np.isfinite(out[T, 9])


def test_state_cell_needs_an_lstm():
    vanilla = random_model(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"state 'cell' is not available \(a vanilla RNN has no cell state\); "
                                         r"valid: full"):
        jacobian.log_norm_matrix(vanilla, np.zeros((3, 2)), state="cell")
    model, xs, h0 = random_lstm(0)
    with pytest.raises(ValueError, match="state 'hidden' is not available; valid: full, cell"):
        jacobian.log_norm_matrix(model, xs, h0, state="hidden")
    assert isinstance(model, LSTM)


def test_the_spot_check_agrees_with_the_full_state_norms():
    """spotcheck differences the LSTM's own step equation (no step Jacobians): it must agree with state "full"."""
    from pipeline.engine import spotcheck

    model, xs, h0 = random_lstm(6, layers=2, gamma_w=1.5)
    for layer in (0, 1):
        measured = jacobian.log_norm_matrix(model, xs, h0, layer)
        spot = spotcheck.spot_log_norms(model, xs, h0, layer)
        resolved = np.isfinite(spot.log_norm)
        assert resolved.sum() >= 12
        np.testing.assert_allclose(spot.log_norm[resolved], measured[spot.t, spot.k][resolved], atol=1e-6)


def test_the_top_lyapunov_exponent_of_a_constant_step():
    """A constant diagonal step diag(a): the exponent is log max |a| (the frame aligns with the top direction)."""
    from pipeline.engine.lyapunov import top_lyapunov_from_steps

    J = np.repeat(np.diag([0.3, 0.5, -0.95, 0.1])[None], 400, axis=0)
    assert top_lyapunov_from_steps(J, discard=100) == pytest.approx(np.log(0.95), abs=1e-9)


def test_vanilla_only_functions_name_an_lstm_instead_of_failing_on_it():
    from pipeline.engine.lyapunov import top_lyapunov

    model, xs, h0 = random_lstm(0)
    for call in (lambda: jacobian.log_norm_column(model, xs, h0), lambda: top_lyapunov(model, xs, h0)):
        with pytest.raises(ValueError, match="expected a vanilla RNN \\(cell rnn\\), got a lstm model"):
            call()
