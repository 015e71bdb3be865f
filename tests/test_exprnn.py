"""The expRNN (W_hh = exp(A), A skew-symmetric): its W_hh stays orthogonal through training, its gradient through
the matrix exponential against finite differences, its init, and its files and norms as a vanilla RNN's."""

import numpy as np
import pytest

from pipeline import load_model, log_norm_matrix
from pipeline.engine import cells, exprnn, jacobian
from pipeline.engine.init import init_exprnn
from pipeline.engine.optim import make_optimizer
from pipeline.engine.rnn import RNN, forward, loss_and_dy
from pipeline.engine.trainer import train_step
from pipeline.run.files import save_model
from tests.test_rnn import central_difference, relative_error

D_IN, N, D_OUT, T, B = 3, 6, 2, 7, 4


def random_exprnn(seed, layers=1, activation="tanh", n=N):
    rng = np.random.default_rng(seed)
    model = init_exprnn(rng, input_dim=D_IN, output_dim=D_OUT, layers=layers, hidden=n, activation=activation,
                        input_scale=0.8)
    for key in model.params:
        if key.startswith("b_h"):
            model.params[key] = 0.3 * rng.standard_normal(model.params[key].shape)
    return model, rng


def test_gradient_through_A_matches_finite_differences():
    """dE/dA_hh_l from the Fréchet derivative against central differences of the loss in every entry of A_hh_l
    (those on and below the diagonal are not read: both sides are 0 there), for two layers and every other array."""
    model, rng = random_exprnn(1, layers=2)
    xs, targets = rng.standard_normal((T, B, D_IN)), rng.integers(0, D_OUT, (T, B))
    mask = np.ones((T, B))
    loss, grads, _, _ = cells.loss_and_grads(model, xs, targets, mask, "xent")
    f = lambda: cells.loss_and_grads(model, xs, targets, mask, "xent")[0]  # noqa: E731
    for key, param in model.params.items():
        numeric = central_difference(f, param)
        assert relative_error(grads[key], numeric) <= 1e-7, key
        if key.startswith("A_hh_"):
            assert np.all(np.tril(grads[key]) == 0.0) and np.abs(numeric[np.tril_indices(N)]).max() < 1e-9


def test_w_hh_stays_orthogonal_through_a_thousand_updates():
    """Adam at a large learning rate, clipped, on fresh batches: after every update ||W_hh||_2 = 1 and every
    singular value is 1, to 1e-12; meanwhile A has moved far from its start (the constraint is not idle)."""
    model, rng = random_exprnn(2)
    A0 = exprnn.skew_of(model.params["A_hh_0"])
    optimizer = make_optimizer("adam", 0.05)
    worst = 0.0
    for _ in range(1000):
        xs, targets = rng.standard_normal((T, B, D_IN)), rng.integers(0, D_OUT, (T, B))
        stats = train_step(model, optimizer, xs, targets, np.ones((T, B)), "xent", "global", 1.0)
        assert stats.finite
        sigma = np.linalg.svd(model.W_hh(0), compute_uv=False)
        worst = max(worst, np.abs(sigma - 1.0).max())
    assert worst <= 1e-12
    assert np.linalg.norm(exprnn.skew_of(model.params["A_hh_0"]) - A0) > 1.0


def test_a_linear_exprnn_keeps_every_norm_at_one():
    """Closed form: with a linear activation dh_t/dh_k = W^(t-k), an orthogonal matrix, so every log norm is 0."""
    model, rng = random_exprnn(3, activation="linear")
    M = log_norm_matrix(model, rng.standard_normal((T, D_IN)))
    pairs = np.tri(T + 1, k=-1, dtype=bool)
    np.testing.assert_allclose(M[pairs], 0.0, atol=1e-12)


def test_its_norms_stay_below_gamma_phi_to_the_lag():
    """With ||W_hh||_2 = 1 the global bound is (gamma_phi)^(t-k), 1 for tanh: every log norm <= 0."""
    model, rng = random_exprnn(4, layers=2)
    xs = rng.standard_normal((T, D_IN))
    for layer in (0, 1):
        measured = jacobian.log_norm_matrix(model, xs, layer=layer)
        product, global_ = jacobian.log_bound_matrices(model, xs, layer=layer)
        pairs = np.tri(T + 1, k=-1, dtype=bool)
        np.testing.assert_allclose(global_[pairs], 0.0, atol=1e-13)
        assert jacobian.bound_violations(measured, product, global_) == []


def test_init_draws_a_special_orthogonal_matrix_or_the_identity():
    for seed in range(6):  # both signs of det Q come up among six draws
        model, _ = random_exprnn(seed)
        W = model.W_hh(0)
        np.testing.assert_allclose(W @ W.T, np.eye(N), atol=1e-12)
        assert np.linalg.det(W) == pytest.approx(1.0, abs=1e-12)
        assert np.all(np.tril(model.params["A_hh_0"]) == 0.0)
    identity = init_exprnn(np.random.default_rng(0), input_dim=2, output_dim=1, hidden=3, init="identity")
    np.testing.assert_array_equal(identity.W_hh(0), np.eye(3))
    with pytest.raises(ValueError, match="init 'gaussian' has no W_hh in SO\\(n\\).*valid: orthogonal, identity"):
        init_exprnn(np.random.default_rng(0), input_dim=2, output_dim=1, hidden=3, init="gaussian")


def test_it_computes_the_vanilla_rnn_of_its_w_hh():
    model, rng = random_exprnn(5)
    vanilla = model.as_rnn()
    assert isinstance(vanilla, RNN) and vanilla.params["W_hh_0"].shape == (N, N)
    xs = rng.standard_normal((T, B, D_IN))
    np.testing.assert_array_equal(cells.forward(model, xs).y, forward(vanilla, xs).y)
    assert cells.n_params(model) == N * (N - 1) // 2 + N * D_IN + N + D_OUT * N + D_OUT


def test_its_model_file_is_a_vanilla_file(tmp_path):
    """Saved, it is the vanilla RNN it computes (no cell entry, W_hh = exp(A)), and the public API reads it."""
    model, rng = random_exprnn(6)
    save_model(model, tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz") as z:
        assert "cell" not in z.files and "A_hh_0" not in z.files
    loaded = load_model(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.params["W_hh_0"], model.W_hh(0))
    xs = rng.standard_normal((T, D_IN))
    np.testing.assert_array_equal(log_norm_matrix(loaded, xs), log_norm_matrix(model, xs))


def test_a_non_finite_A_gives_nan_not_an_exception():
    model, _ = random_exprnn(7)
    model.params["A_hh_0"][0, 1] = np.nan
    assert np.isnan(model.W_hh(0)).all()
    G = np.ones((N, N))
    assert np.isnan(exprnn.grad_through_exp(model.params["A_hh_0"], G)).all()


def test_omega_is_refused():
    model, rng = random_exprnn(8)
    xs = rng.standard_normal((T, B, D_IN))
    with pytest.raises(ValueError, match="omega .* is for cell rnn only, got a exprnn model"):
        train_step(model, make_optimizer("sgd", 0.1), xs, rng.integers(0, D_OUT, (T, B)), np.ones((T, B)), "xent",
                   omega=1.0)
    _, dy = loss_and_dy(cells.forward(model, xs).y, rng.integers(0, D_OUT, (T, B)), np.ones((T, B)), "xent")
    with pytest.raises(ValueError, match="exist for cell rnn only"):
        cells.bptt(model, cells.forward(model, xs), dy, backward=[])


def test_w_hh_follows_every_change_of_A_and_is_the_exponential_bit_for_bit():
    """W_hh is taken again after A_hh changes in place (as the optimiser changes it), equals a fresh exp(A) bit for
    bit each time, and a caller's changes to a returned W_hh do not reach the next one."""
    model, rng = random_exprnn(5)
    for _ in range(3):
        W = model.W_hh(0)
        assert np.array_equal(W, exprnn.orthogonal_of(model.params["A_hh_0"]))
        W[0, 0] = 7.0
        assert np.array_equal(model.W_hh(0), exprnn.orthogonal_of(model.params["A_hh_0"]))
        model.params["A_hh_0"] += 0.01 * rng.standard_normal((N, N))  # in place, as Adam updates it
    model.params["A_hh_0"][0, 1] = np.nan
    assert np.all(np.isnan(model.W_hh(0)))
