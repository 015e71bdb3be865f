"""Pascanu's regulariser Omega (engine/omega.py) against a reference built here from finite differences of the loss
with respect to the states, its gradient against finite differences of that reference with dE/dh and phi' held
constant (the stop-gradient convention of Pascanu's code), a closed form, and its place in the training step."""

import numpy as np
import pytest

from pipeline.engine import omega as omega_module
from pipeline.engine.init import init_lstm
from pipeline.engine.optim import make_optimizer
from pipeline.engine.rnn import bptt, forward, loss_and_dy, step_factors
from pipeline.engine.trainer import check_omega, train_step
from tests.test_rnn import central_difference, draw_away_from_kinks, relative_error

T, B = 5, 2


def state_gradients(model, xs, h0, targets, mask, kind):
    """(T, B, n): total dE/dh_t for t = 1..T of a one-layer model, by central differences of the loss with the
    state h_t replaced and the run restarted from it (nothing from bptt)."""
    trace = forward(model, xs, h0)
    W_hy, b_y = model.params["W_hy"], model.params["b_y"]
    out = np.zeros(trace.h[0][1:].shape)

    def loss_from_state(t, h_t):
        y = trace.y.copy()
        y[t - 1] = h_t @ W_hy.T + b_y
        if t < T:
            y[t:] = forward(model, xs[t:], h_t[None]).y
        return loss_and_dy(y, targets, mask, kind)[0]

    for t in range(1, T + 1):
        h_t = trace.h[0][t].copy()
        out[t - 1] = central_difference(lambda: loss_from_state(t, h_t), h_t)
    return out


def reference_omega(W, form, D, g):
    """Omega of docs/math.md 10.4 for W, with D (T, B, n) = phi' per step and g (T, B, n) = dE/dh_{k+1} fixed."""
    terms = []
    for k in range(g.shape[0]):
        for b in range(g.shape[1]):
            J = D[k, b][:, None] * W if form == "elman" else W * D[k, b][None, :]
            y = g[k, b] @ g[k, b]
            if y >= omega_module.OMEGA_BOUND:
                x = g[k, b] @ J
                terms.append((x @ x / y - 1.0) ** 2)
    return sum(terms) / len(terms)


@pytest.mark.parametrize("form, activation, kind", [("elman", "tanh", "xent"), ("pascanu", "tanh", "mse"),
                                                    ("elman", "sigmoid", "mse"), ("pascanu", "softplus", "xent")])
def test_omega_and_its_gradient_match_the_reference(form, activation, kind):
    model, xs, h0, targets, mask = draw_away_from_kinks(3, form, activation, 1, kind)
    trace = forward(model, xs, h0)
    backward = []
    bptt(model, trace, loss_and_dy(trace.y, targets, mask, kind)[1], backward=backward)
    value, grads = omega_module.omega_and_grads(model, trace, backward)
    g = state_gradients(model, xs, h0, targets, mask, kind)
    D = np.stack([step_factors(model, xs[:, b], h0[:, b])[1] for b in range(B)], axis=1)  # (T, B, n)
    W = model.params["W_hh_0"].copy()
    assert value == pytest.approx(reference_omega(W, form, D, g), rel=1e-6)
    numeric = central_difference(lambda: reference_omega(W, form, D, g), W)
    assert relative_error(grads["W_hh_0"], numeric) <= 1e-6
    assert grads.keys() == {"W_hh_0"}


def test_omega_is_zero_where_every_step_keeps_the_norm():
    """Linear elman layer with an orthogonal W: J = W keeps every vector's norm, so each ratio is 1."""
    rng = np.random.default_rng(0)
    model, xs, h0, targets, mask = draw_away_from_kinks(1, "elman", "linear", 1, "mse")
    model.params["W_hh_0"] = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    trace = forward(model, xs, h0)
    backward = []
    bptt(model, trace, loss_and_dy(trace.y, targets, mask, "mse")[1], backward=backward)
    value, grads = omega_module.omega_and_grads(model, trace, backward)
    assert value == pytest.approx(0.0, abs=1e-24)
    np.testing.assert_allclose(grads["W_hh_0"], 0.0, atol=1e-12)


def test_the_step_adds_the_weighted_gradient_to_w_hh_only_before_clipping():
    weight, lr = 0.7, 0.01
    model, xs, h0, targets, mask = draw_away_from_kinks(5, "elman", "tanh", 2, "xent")
    plain, regular = model.copy(), model.copy()
    train_step(plain, make_optimizer("sgd", lr), xs, targets, mask, "xent", "none", 1.0, h0)
    stats = train_step(regular, make_optimizer("sgd", lr), xs, targets, mask, "xent", "none", 1.0, h0, omega=weight)
    trace = forward(model, xs, h0)
    backward = []
    bptt(model, trace, loss_and_dy(trace.y, targets, mask, "xent")[1], backward=backward)
    value, grads = omega_module.omega_and_grads(model, trace, backward)
    assert stats.omega == pytest.approx(value, rel=1e-12)
    for key in model.params:
        extra = -lr * weight * grads[key] if key in grads else 0.0
        np.testing.assert_allclose(regular.params[key], plain.params[key] + extra, rtol=1e-12, atol=1e-15)
    # clipping sees the sum: a tiny global cap leaves the whole step at norm cap
    capped = model.copy()
    stats = train_step(capped, make_optimizer("sgd", 1.0), xs, targets, mask, "xent", "global", 1e-3, h0,
                       omega=weight)
    step = np.sqrt(sum(np.sum((capped.params[k] - model.params[k]) ** 2) for k in model.params))
    assert step == pytest.approx(1e-3, rel=1e-9)


def test_bad_weights_are_named():
    model, *_ = draw_away_from_kinks(0, "elman", "tanh", 1, "xent")
    with pytest.raises(ValueError, match="omega must be a finite number >= 0, got -0.5"):
        check_omega(model, -0.5)
    lstm = init_lstm(np.random.default_rng(0), input_dim=3, output_dim=3, hidden=4)
    with pytest.raises(ValueError, match="omega .* is for cell rnn only, got a lstm model"):
        check_omega(lstm, 1.0)
    check_omega(lstm, 0.0)
