"""The RNN engine against independent references: finite differences of the loss, min-char-rnn's hand-written
BPTT, a hand-computed loss, and the step equations of docs/math.md (section 2); plus its input checks and model files."""

import itertools
import math

import numpy as np
import pytest

from pipeline.engine.activations import ACTIVATIONS
from pipeline.benchmarks.throughput import _MinCharRNN
from pipeline.engine.init import init_model
from pipeline.engine.rnn import (
    RNN,
    Workspace,
    bptt,
    forward,
    loss_and_dy,
    loss_and_grads,
    model_arrays,
    model_from_arrays,
    one_hot,
    step_factors,
)
from pipeline.run.files import load_model, save_model

EPS = 1e-6  # central-difference step
KINK_MARGIN = 1e-4  # reject draws whose phi arguments come this close to a kink
KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "hard_tanh": (-1.0, 1.0)}
D_IN, N, D_OUT, T, B = 3, 4, 3, 5, 2


# ---- helpers -------------------------------------------------------------------------------------------------


def random_problem(rng, form, activation, layers, kind):
    """A small model with nonzero biases, a batch, targets, a mask with one position off, and a random h0."""
    model, _ = init_model(
        rng, input_dim=D_IN, output_dim=D_OUT, form=form, activation=activation, leaky_slope=0.2,
        layers=layers, hidden=N, init="gaussian", gamma_w=1.2, input_scale=0.8,
    )
    for key in model.params:
        if key.startswith("b_"):
            model.params[key] = 0.3 * rng.standard_normal(model.params[key].shape)
    xs = rng.standard_normal((T, B, D_IN))
    h0 = 0.5 * rng.standard_normal((layers, B, N))
    targets = rng.integers(0, D_OUT, (T, B)) if kind == "xent" else rng.standard_normal((T, B, D_OUT))
    mask = np.ones((T, B))
    mask[1, 0] = 0.0
    return model, xs, h0, targets, mask


def phi_arguments(model, xs, h0):
    """Per layer, what phi is applied to, recomputed from the equations: elman a_t, pascanu h_{t-1}."""
    trace, p = forward(model, xs, h0), model.params
    args = []
    for l in range(model.layers):
        h_prev = trace.h[l][:-1]
        if model.form == "elman":
            args.append(h_prev @ p[f"W_hh_{l}"].T + trace.inputs[l] @ p[f"W_xh_{l}"].T + p[f"b_h_{l}"])
        else:
            args.append(h_prev)
    return args


def near_kink(model, xs, h0):
    kinks = KINKS.get(model.activation, ())
    return any(np.min(np.abs(a - k)) < KINK_MARGIN for a in phi_arguments(model, xs, h0) for k in kinks)


def draw_away_from_kinks(seed, form, activation, layers, kind):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        problem = random_problem(rng, form, activation, layers, kind)
        if not near_kink(*problem[:3]):
            return problem
    raise AssertionError("could not draw a problem away from the kinks")


def loss_of(model, xs, h0, targets, mask, kind):
    return loss_and_dy(forward(model, xs, h0).y, targets, mask, kind)[0]


def central_difference(f, x):
    """Gradient of scalar f() with respect to array x (perturbed in place, then restored)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        keep = x[i]
        x[i] = keep + EPS
        up = f()
        x[i] = keep - EPS
        down = f()
        x[i] = keep
        grad[i] = (up - down) / (2 * EPS)
    return grad


def relative_error(a, b):
    """||a - b|| / max(||a||, ||b||), with a floor of 1e-8 on the denominator for gradients that are ~0."""
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-8)


# ---- gradients -------------------------------------------------------------------------------------------------

CASES = list(itertools.product(ACTIVATIONS, ("elman", "pascanu"), (1, 2, 3), ("xent", "mse")))


@pytest.mark.parametrize("activation, form, layers, kind", CASES)
def test_bptt_matches_finite_differences(activation, form, layers, kind):
    seed = CASES.index((activation, form, layers, kind))
    model, xs, h0, targets, mask = draw_away_from_kinks(seed, form, activation, layers, kind)
    _, grads, signal, _ = loss_and_grads(model, xs, targets, mask, kind, h0)
    f = lambda: loss_of(model, xs, h0, targets, mask, kind)  # noqa: E731
    for key, param in model.params.items():
        numeric = central_difference(f, param)
        assert relative_error(grads[key], numeric) <= 1e-6, key
    # the BPTT signal at k = 0 is the norm of dE/dh_0, and h0 is an input of forward
    dE_dh0 = central_difference(f, h0)
    for l in range(layers):
        assert signal[l, 0] == pytest.approx(np.linalg.norm(dE_dh0[l]), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    "form, activation", [("elman", "tanh"), ("pascanu", "tanh"), ("elman", "sigmoid"), ("pascanu", "softplus")]
)
def test_bptt_signal_at_every_step_matches_finite_differences(form, activation):
    """One layer: E as a function of h_k (readout at k, then the run restarted from h_k) gives ||dE/dh_k||."""
    model, xs, h0, targets, mask = draw_away_from_kinks(7, form, activation, 1, "xent")
    _, _, signal, trace = loss_and_grads(model, xs, targets, mask, "xent", h0)
    W_hy, b_y = model.params["W_hy"], model.params["b_y"]

    def loss_from_state(k, h_k):  # h_k (B, n) replaces the state after x_k
        y = trace.y.copy()
        y[k - 1] = h_k @ W_hy.T + b_y
        if k < T:
            y[k:] = forward(model, xs[k:], h_k[None]).y
        return loss_and_dy(y, targets, mask, "xent")[0]

    for k in range(1, T + 1):
        h_k = trace.h[0][k].copy()
        numeric = central_difference(lambda: loss_from_state(k, h_k), h_k)
        assert signal[0, k] == pytest.approx(np.linalg.norm(numeric), rel=1e-6), k


def test_token_ids_give_the_same_model_as_one_hot_vectors():
    rng = np.random.default_rng(3)
    for form, layers in itertools.product(("elman", "pascanu"), (1, 2)):
        model, _ = init_model(rng, input_dim=7, output_dim=5, form=form, layers=layers, hidden=6)
        ids = rng.integers(0, 7, (9, 4))
        targets, mask = rng.integers(0, 5, (9, 4)), np.ones((9, 4))
        loss_ids, g_ids, s_ids, _ = loss_and_grads(model, ids, targets, mask, "xent")
        loss_dense, g_dense, s_dense, _ = loss_and_grads(model, np.eye(7)[ids], targets, mask, "xent")
        assert loss_ids == pytest.approx(loss_dense, rel=1e-14)
        for key in g_dense:
            np.testing.assert_allclose(g_ids[key], g_dense[key], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(s_ids, s_dense, rtol=1e-12)


def test_agrees_with_min_char_rnn_loss_fun():
    """Karpathy's hand-written elman/tanh/xent BPTT is an independent reference (summed loss, so E * T)."""
    rng = np.random.default_rng(4)
    ref = _MinCharRNN(np.zeros(10, dtype=int), rng)
    V, H = ref.Wxh.shape[1], ref.Wxh.shape[0]
    ids = rng.integers(0, V, 26)
    hprev = 0.1 * rng.standard_normal((H, 1))
    loss, dWxh, dWhh, dWhy, dbh, dby, h_last = ref.loss_fun(list(ids[:-1]), list(ids[1:]), hprev)
    params = {"W_hh_0": ref.Whh, "W_xh_0": ref.Wxh, "b_h_0": ref.bh[:, 0], "W_hy": ref.Why, "b_y": ref.by[:, 0]}
    model = RNN("elman", "tanh", 0.01, {k: v.copy() for k, v in params.items()})
    E, grads, _, trace = loss_and_grads(model, ids[:-1, None], ids[1:, None], np.ones((25, 1)), "xent", hprev.T[None])
    assert np.max(np.abs(np.concatenate([g.ravel() for g in (dWxh, dWhh, dWhy, dbh, dby)]))) < 5  # clip inactive
    assert E * 25 == pytest.approx(loss, rel=1e-12)
    for key, theirs in {"W_xh_0": dWxh, "W_hh_0": dWhh, "W_hy": dWhy, "b_h_0": dbh[:, 0], "b_y": dby[:, 0]}.items():
        np.testing.assert_allclose(grads[key] * 25, theirs, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(trace.h[0][-1, 0], h_last[:, 0], rtol=1e-13)


def test_loss_is_the_masked_mean_by_hand():
    y = np.array([[[1.0, 2.0, 0.5]], [[0.0, -1.0, 3.0]]])  # (T=2, B=1, o=3)
    targets, mask = np.array([[1], [2]]), np.array([[1.0], [0.0]])
    expected = -(2.0 - math.log(math.exp(1.0) + math.exp(2.0) + math.exp(0.5)))  # only position 0 counts
    assert loss_and_dy(y, targets, mask, "xent")[0] == pytest.approx(expected, rel=1e-14)
    reals = np.array([[[0.0, 2.0, 1.0]], [[1.0, 1.0, 1.0]]])
    expected_mse = ((1.0 - 0.0) ** 2 + 0.0 + (0.5 - 1.0) ** 2 + (0.0 - 1.0) ** 2 + 4.0 + 4.0) / 2
    assert loss_and_dy(y, reals, np.ones((2, 1)), "mse")[0] == pytest.approx(expected_mse, rel=1e-14)


def test_xent_is_stable_for_huge_logits():
    y = np.array([[[1000.0, -1000.0]]])
    loss, dy = loss_and_dy(y, np.array([[1]]), np.ones((1, 1)), "xent")
    assert loss == pytest.approx(2000.0) and np.allclose(dy, [[[1.0, -1.0]]])


# ---- the step equations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_forward_follows_the_design_equations(form):
    rng = np.random.default_rng(5)
    model, _ = init_model(rng, input_dim=3, output_dim=2, form=form, activation="sigmoid", layers=2, hidden=4)
    xs, h0 = rng.standard_normal((6, 3)), rng.standard_normal((2, 4))
    trace = forward(model, xs[:, None], h0[:, None])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    p, x = model.params, xs
    for l in range(2):
        W, U, b, h = p[f"W_hh_{l}"], p[f"W_xh_{l}"], p[f"b_h_{l}"], h0[l]
        states = []
        for t in range(6):
            h = sig(W @ h + U @ x[t] + b) if form == "elman" else W @ sig(h) + U @ x[t] + b
            states.append(h)
        x = np.array(states)
        np.testing.assert_allclose(trace.h[l][1:, 0], x, rtol=1e-13)
    np.testing.assert_allclose(trace.y[:, 0], x @ p["W_hy"].T + p["b_y"], rtol=1e-13)


@pytest.mark.parametrize("form, activation", [("elman", "tanh"), ("pascanu", "gaussian"), ("elman", "softplus")])
def test_step_factors_give_the_step_jacobians(form, activation):
    rng = np.random.default_rng(6)
    model, _ = init_model(rng, input_dim=2, output_dim=2, form=form, activation=activation, layers=2, hidden=3)
    xs, h0 = rng.standard_normal((4, 2)), rng.standard_normal((2, 3))
    W, D = step_factors(model, xs, h0, layer=1)
    trace = forward(model, xs[:, None], h0[:, None])
    inputs, p = trace.inputs[1][:, 0], model.params

    def step(t, h_prev):  # h_t from h_{t-1} for layer 1
        a = p["W_hh_1"] @ h_prev if form == "elman" else p["W_hh_1"] @ model.act.phi(h_prev)
        a = a + p["W_xh_1"] @ inputs[t - 1] + p["b_h_1"]
        return model.act.phi(a) if form == "elman" else a

    for t in range(1, 5):
        h_prev = trace.h[1][t - 1, 0].copy()
        numeric = np.column_stack([(step(t, h_prev + EPS * e) - step(t, h_prev - EPS * e)) / (2 * EPS) for e in np.eye(3)])
        J = D[t - 1][:, None] * W if form == "elman" else W * D[t - 1][None, :]
        np.testing.assert_allclose(J, numeric, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_saturated_steps_keep_their_derivative(form, activation):
    # arguments of phi around +-50: read from y = phi(z), phi' would be exactly 0 there (and 4 e^-2|z|, e^-|z|
    # are its values to 1e-21)
    n, T = 3, 6
    params = {"W_hh_0": 0.1 * np.eye(n), "W_xh_0": np.eye(n), "b_h_0": np.zeros(n), "W_hy": np.ones((1, n)),
              "b_y": np.zeros(1)}
    model = RNN(form, activation, 0.0, params)
    xs = 50.0 * np.array([1.0, -1.0, 0.9])[None, :] * np.ones((T, 1))
    h0 = xs[:1]  # pascanu applies phi to h_{t-1}: start saturated too
    W, D = step_factors(model, xs, h0)
    trace = forward(model, xs[:, None], h0[:, None])
    z = trace.h[0][:-1, 0] if form == "pascanu" else (trace.h[0][:-1, 0] @ W.T + xs)  # phi's arguments
    far = np.exp(-2.0 * np.abs(z)) * 4.0 if activation == "tanh" else np.exp(-np.abs(z))
    assert np.abs(z).min() > 40.0
    np.testing.assert_allclose(D, far, rtol=1e-12)
    np.testing.assert_array_equal(D, model.act.dphi(z))


# ---- the workspace ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_workspace_changes_nothing_but_where_arrays_live(form):
    rng = np.random.default_rng(8)
    model, _ = init_model(rng, input_dim=4, output_dim=3, form=form, activation="gaussian", layers=2, hidden=5)
    ws = Workspace()
    for T_ in (6, 6, 3):  # a repeat (stale buffers) and a new shape (reallocation)
        xs, targets = rng.standard_normal((T_, 2, 4)), rng.integers(0, 3, (T_, 2))
        loss, grads, signal, _ = loss_and_grads(model, xs, targets, np.ones((T_, 2)), "xent")
        trace = forward(model, xs, None, ws)
        loss_ws, dy = loss_and_dy(trace.y, targets, np.ones((T_, 2)), "xent", ws)
        grads_ws, signal_ws = bptt(model, trace, dy, ws)
        assert loss_ws == loss
        np.testing.assert_array_equal(signal_ws, signal)
        for key in grads:
            np.testing.assert_array_equal(grads_ws[key], grads[key])


def test_bptt_without_signal_gives_the_same_gradients():
    rng = np.random.default_rng(9)
    for form in ("elman", "pascanu"):
        model, xs, h0, targets, mask = random_problem(rng, form, "tanh", 2, "xent")
        trace = forward(model, xs, h0)
        _, dy = loss_and_dy(trace.y, targets, mask, "xent")
        grads, signal = bptt(model, trace, dy)
        grads_only, none = bptt(model, trace, dy, with_signal=False)
        assert signal.shape == (2, T + 1) and none is None
        for key in grads:
            np.testing.assert_array_equal(grads_only[key], grads[key])


# ---- bad input --------------------------------------------------------------------------------------------------


@pytest.fixture
def small():
    model, _ = init_model(np.random.default_rng(0), input_dim=3, output_dim=2, layers=2, hidden=4)
    return model


@pytest.mark.parametrize(
    "xs, h0, message",
    [
        (np.zeros((5, 2)), None, r"xs must have shape \(T, B, d\)"),
        (np.zeros((5, 2, 4)), None, "d = 3"),
        (np.zeros((0, 2, 3)), None, "T >= 1"),
        (np.full((5, 2, 3), np.nan), None, "xs contains NaN"),
        (np.zeros((5, 2, 3)), np.zeros((2, 4)), "h0 must have shape"),
        (np.zeros((5, 2, 3)), np.full((2, 2, 4), np.inf), "h0 contains NaN or inf"),
        (np.full((5, 2), 3), None, r"token ids xs must lie in \[0, 2\]"),
        (np.full((5,), 1), None, r"token ids xs must have shape \(T, B\)"),
    ],
)
def test_forward_names_bad_inputs(small, xs, h0, message):
    with pytest.raises(ValueError, match=message):
        forward(small, xs, h0)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: setattr(m, "activation", "swish"), "unknown activation 'swish'"),
        (lambda m: setattr(m, "form", "lstm"), "unknown form 'lstm'"),
        (lambda m: m.params.__setitem__("W_hh_1", np.zeros((4, 3))), r"W_hh_1 must be square"),
        (lambda m: m.params.__setitem__("W_xh_1", np.zeros((4, 3))), r"W_xh_1 must have shape \(4, 4\)"),
        (lambda m: m.params.__setitem__("b_h_0", np.zeros(3)), r"b_h_0 must have shape \(4,\)"),
        (lambda m: m.params.pop("b_y"), "missing keys: b_y"),
    ],
)
def test_bad_models_are_named(small, change, message):
    change(small)
    with pytest.raises(ValueError, match=message):
        forward(small, np.zeros((2, 1, 3)))


@pytest.mark.parametrize(
    "targets, mask, kind, message",
    [
        (np.zeros((4, 2), dtype=int), np.ones((4, 3)), "xent", r"mask must have shape \(T, B\)"),
        (np.zeros((4, 2), dtype=int), np.full((4, 2), np.nan), "xent", "mask must hold finite weights"),
        (np.zeros((4, 2)), np.ones((4, 2)), "xent", "xent targets must be integers"),
        (np.full((4, 2), 2), np.ones((4, 2)), "xent", r"classes in \[0, 1\]"),
        (np.zeros((4, 2, 3)), np.ones((4, 2)), "mse", r"mse targets must have shape \(T, B, o\)"),
        (np.full((4, 2, 2), np.nan), np.ones((4, 2)), "mse", "mse targets contain NaN"),
        (np.zeros((4, 2), dtype=int), np.ones((4, 2)), "hinge", "unknown loss 'hinge'"),
    ],
)
def test_loss_names_bad_inputs(targets, mask, kind, message):
    with pytest.raises(ValueError, match=message):
        loss_and_dy(np.zeros((4, 2, 2)), targets, mask, kind)


def test_step_factors_rejects_a_bad_layer(small):
    with pytest.raises(ValueError, match="layer must be in"):
        step_factors(small, np.zeros((3, 3)), layer=2)


def test_one_hot_is_rows_of_the_identity():
    ids = np.array([[0, 3], [2, 2], [1, 0]])  # (T, B)
    out = one_hot(ids, 4)
    assert out.dtype == np.float64 and out.shape == (3, 2, 4)
    np.testing.assert_array_equal(out, np.eye(4)[ids])


# ---- model files --------------------------------------------------------------------------------------------------


def test_model_arrays_round_trip_without_files(small):
    arrays = model_arrays(small)
    assert list(arrays)[:3] == ["form", "activation", "leaky_slope"]
    again = model_from_arrays(arrays)
    assert (again.form, again.activation, again.leaky_slope) == (small.form, small.activation, small.leaky_slope)
    assert all(np.array_equal(again.params[k], v) for k, v in small.params.items())
    with pytest.raises(ValueError, match="missing keys: activation"):
        model_from_arrays({k: v for k, v in arrays.items() if k != "activation"})


def test_save_load_round_trip_is_exact(tmp_path):
    model, _ = init_model(np.random.default_rng(1), input_dim=3, output_dim=2, form="pascanu",
                          activation="leaky_relu", leaky_slope=0.05, layers=3, hidden=4, init="sparse")
    save_model(model, tmp_path / "model_final.npz")
    loaded = load_model(tmp_path / "model_final.npz")
    assert (loaded.form, loaded.activation, loaded.leaky_slope) == ("pascanu", "leaky_relu", 0.05)
    assert loaded.params.keys() == model.params.keys()
    for key, value in model.params.items():
        assert loaded.params[key].dtype == np.float64
        np.testing.assert_array_equal(loaded.params[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["model_final.npz"]  # no temp file left behind


@pytest.mark.parametrize("dropped", ["W_hy", "W_xh_1", "form", "leaky_slope"])
def test_load_model_names_a_missing_key(tmp_path, small, dropped):
    save_model(small, tmp_path / "full.npz")
    with np.load(tmp_path / "full.npz") as z:
        kept = {k: z[k] for k in z.files if k != dropped}
    np.savez(tmp_path / "broken.npz", **kept)
    with pytest.raises(ValueError, match=rf"broken.npz.*missing keys: {dropped}"):
        load_model(tmp_path / "broken.npz")


def test_load_model_names_a_file_that_is_not_npz(tmp_path):
    (tmp_path / "model.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_model(tmp_path / "model.npz")
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "absent.npz")
