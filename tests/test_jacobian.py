"""pipeline.engine.jacobian against independent references: closed forms, dense products + np.linalg.norm(P, 2)
on a forward pass written out here, finite differences, and the bounds of docs/math.md (section 4)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine import jacobian
from pipeline.engine.activations import ACTIVATIONS, get_activation
from pipeline.engine.rnn import RNN, step_factors

# docs/math.md's table (section 5), typed in again so that the bounds are checked against the spec, not the code
GAMMA_PHI = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "hard_tanh": 1.0, "softplus": 1.0,
             "gaussian": math.sqrt(2 / math.e), "linear": 1.0}


def gamma_phi(activation, leaky_slope):
    return max(1.0, leaky_slope) if activation == "leaky_relu" else GAMMA_PHI[activation]


def random_model(rng, form="elman", activation="tanh", layers=1, n=4, d=2, scale=1.0, leaky_slope=0.1):
    """Gaussian weights; W_hh has entries of size scale / sqrt(n)."""
    params = {}
    for i in range(layers):
        d_in = d if i == 0 else n
        params[f"W_hh_{i}"] = scale * rng.standard_normal((n, n)) / np.sqrt(n)
        params[f"W_xh_{i}"] = rng.standard_normal((n, d_in)) / np.sqrt(d_in)
        params[f"b_h_{i}"] = 0.3 * rng.standard_normal(n)
    params["W_hy"], params["b_y"] = rng.standard_normal((2, n)), np.zeros(2)
    return RNN(form, activation, leaky_slope, params)


def linear_model(W, form="elman", d=2):
    """Linear activation: J_t = W whatever the state (zero bias, so zero inputs keep the state at 0)."""
    n = W.shape[0]
    params = {"W_hh_0": W, "W_xh_0": np.ones((n, d)), "b_h_0": np.zeros(n), "W_hy": np.ones((1, n)), "b_y": np.zeros(1)}
    return RNN(form, "linear", 0.0, params)


def orthogonal(n, rng):
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diagonal(R))


# ---- independent reference: forward pass and Jacobians written out, dense products -------------------------


def reference_jacobians(model, xs, h0, layer):
    """(Js (T, n, n), dphi (T, n)) of `layer` from a plain loop over the equations of docs/math.md (section 2)."""
    act, p, L, n = get_activation(model.activation, model.leaky_slope), model.params, model.layers, model.hidden
    h0 = np.zeros((L, n)) if h0 is None else h0
    inputs = xs
    for i in range(L):
        W, U, b = p[f"W_hh_{i}"], p[f"W_xh_{i}"], p[f"b_h_{i}"]
        h, states, Js, dphis = h0[i], [], [], []
        for x in inputs:
            if model.form == "elman":
                a = W @ h + U @ x + b
                dphi = act.dphi(a)
                Js.append(np.diag(dphi) @ W)
                h = act.phi(a)
            else:
                dphi = act.dphi(h)
                Js.append(W @ np.diag(dphi))
                h = W @ act.phi(h) + U @ x + b
            dphis.append(dphi)
            states.append(h)
        if i == layer % L:
            return np.array(Js), np.array(dphis)
        inputs = np.array(states)


def dense_log_norms(Js):
    """[t, k] = log ||J_t ... J_{k+1}||_2 by dense products, rescaled by the largest entry to stay in range."""
    T, n, _ = Js.shape
    out = np.full((T + 1, T + 1), np.nan)
    for k in range(T):
        P, log_scale = np.eye(n), 0.0
        for t in range(k + 1, T + 1):
            P = Js[t - 1] @ P
            size = np.max(np.abs(P))  # not the Frobenius norm: its squares underflow below 1e-154
            if size == 0:
                out[t:, k] = -np.inf
                break
            P, log_scale = P / size, log_scale + np.log(size)
            out[t, k] = log_scale + np.log(np.linalg.norm(P, 2))
    return out


def pairs(T):
    t, k = np.tril_indices(T + 1, -1)
    return t, k


# ---- closed forms ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("a", [0.05, 0.9, 1.0, 1.1, 10.0])
@pytest.mark.parametrize("kind", ["orthogonal", "identity"])
def test_matrix_mode_closed_form_long(a, kind):
    """Linear W = a Q or a I: log ||dh_t/dh_k|| = (t - k) ln a exactly, at every lag up to 400, never +-inf."""
    rng = np.random.default_rng(7)
    T, n = 400, 4
    W = a * (orthogonal(n, rng) if kind == "orthogonal" else np.eye(n))
    got = jacobian.log_norm_matrix(linear_model(W), np.zeros((T, 2)))
    t, k = pairs(T)
    assert got.shape == (T + 1, T + 1) and got.dtype == np.float64
    assert np.all(np.isfinite(got[t, k]))
    np.testing.assert_allclose(got[t, k], (t - k) * np.log(a), rtol=1e-9, atol=1e-9)
    assert np.isnan(got[k, t]).all() and np.isnan(np.diagonal(got)).all()


@pytest.mark.parametrize("a", [0.05, 0.9, 1.0, 1.1, 10.0])
@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_column_mode_closed_form_long(a, form):
    rng = np.random.default_rng(8)
    T, n = 3000, 8
    W = a * orthogonal(n, rng)
    got = jacobian.log_norm_column(linear_model(W, form), np.zeros((T, 2)))
    assert got.shape == (T + 1,) and np.isnan(got[T])
    np.testing.assert_allclose(got[:T], (T - np.arange(T)) * np.log(a), rtol=1e-9, atol=1e-9)


def test_matrix_mode_overflow_free_with_spread():
    """W = diag(10, 0.05) linear: the norm is 10^(t-k); the small direction underflows 0.05^400 harmlessly."""
    T = 400
    got = jacobian.log_norm_matrix(linear_model(np.diag([10.0, 0.05])), np.zeros((T, 2)))
    t, k = pairs(T)
    np.testing.assert_allclose(got[t, k], (t - k) * np.log(10.0), rtol=1e-9)


@pytest.mark.parametrize("a", [1e-160, 1e160])
def test_matrix_mode_extreme_step_scales(a):
    """One step of norm 1e-160 makes sigma^2 underflow and 1e160 overflow: still (t - k) ln a, no inf."""
    rng = np.random.default_rng(12)
    T = 12
    got = jacobian.log_norm_matrix(linear_model(a * orthogonal(3, rng)), np.zeros((T, 2)))
    t, k = pairs(T)
    np.testing.assert_allclose(got[t, k], (t - k) * np.log(a), rtol=1e-12)
    column = jacobian.log_norm_column(linear_model(a * orthogonal(3, rng)), np.zeros((T, 2)))
    np.testing.assert_allclose(column[:T], (T - np.arange(T)) * np.log(a), rtol=1e-12)


# ---- against dense products on random networks -------------------------------------------------------------


network = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "form": st.sampled_from(["elman", "pascanu"]),
    "activation": st.sampled_from(ACTIVATIONS),
    "layers": st.integers(1, 3),
    "n": st.integers(1, 6),
    "d": st.integers(1, 3),
    "T": st.integers(1, 8),
    "scale": st.floats(0.05, 5.0),
    "input_scale": st.floats(0.0, 3.0),
    # 0 or a slope float64 can multiply by without leaving its normal range: at a subnormal slope (5e-324) a step whose
    # units are all negative has a Jacobian of subnormal entries, rounded to a few bits, and the dense reference and
    # the engine then disagree by tenths of a nat for a reason that is float64's, not the code's
    "leaky_slope": st.one_of(st.just(0.0), st.floats(1e-12, 2.0)),
    "with_h0": st.booleans(),
    "layer_pick": st.integers(0, 5),
})


def build(case):
    rng = np.random.default_rng(case["seed"])
    model = random_model(rng, case["form"], case["activation"], case["layers"], case["n"], case["d"],
                         case["scale"], case["leaky_slope"])
    xs = case["input_scale"] * rng.standard_normal((case["T"], case["d"]))
    h0 = rng.standard_normal((case["layers"], case["n"])) if case["with_h0"] else None
    layer = case["layer_pick"] % (2 * case["layers"]) - case["layers"]  # negative and positive indices
    return model, xs, h0, layer


@settings(max_examples=60)
@given(network)
def test_matrix_mode_matches_dense_products(case):
    model, xs, h0, layer = build(case)
    got = jacobian.log_norm_matrix(model, xs, h0, layer)
    Js, _ = reference_jacobians(model, xs, h0, layer)
    np.testing.assert_allclose(got, dense_log_norms(Js), rtol=0, atol=1e-9)


@settings(max_examples=40)
@given(network)
def test_column_mode_is_last_row(case):
    model, xs, h0, layer = build(case)
    T = xs.shape[0]
    column = jacobian.log_norm_column(model, xs, h0, layer)
    np.testing.assert_allclose(column, jacobian.log_norm_matrix(model, xs, h0, layer)[T], rtol=0, atol=1e-9)


@settings(max_examples=60)
@given(network)
def test_measured_below_product_below_global(case):
    model, xs, h0, layer = build(case)
    measured = jacobian.log_norm_matrix(model, xs, h0, layer)
    product, global_ = jacobian.log_bound_matrices(model, xs, h0, layer)
    assert jacobian.bound_violations(measured, product, global_) == []
    # the bounds themselves, from the reference pass and docs/math.md's gamma_phi
    _, dphis = reference_jacobians(model, xs, h0, layer)
    W = model.params[f"W_hh_{layer % model.layers}"]
    gamma_w = np.linalg.svd(W, compute_uv=False)[0]
    T = xs.shape[0]
    for t, k in zip(*pairs(T), strict=True):
        steps = [np.log(gamma_w * np.max(np.abs(dphis[i - 1]))) if np.max(np.abs(dphis[i - 1])) > 0 else -np.inf
                 for i in range(k + 1, t + 1)]
        want = -np.inf if -np.inf in steps else sum(steps)
        np.testing.assert_allclose(product[t, k], want, rtol=1e-12, atol=1e-12)
        rate = np.log(gamma_w * gamma_phi(model.activation, model.leaky_slope))
        np.testing.assert_allclose(global_[t, k], (t - k) * rate, rtol=1e-12, atol=1e-12)
    assert np.isnan(product[np.triu_indices(T + 1)]).all() and np.isnan(global_[np.triu_indices(T + 1)]).all()


bigger_network = network.map(lambda case: case | {"n": 7 + case["seed"] % 18, "T": 4 + case["seed"] % 37})


@settings(max_examples=20)
@given(bigger_network)
def test_bounds_hold_on_bigger_networks(case):
    """n up to 24, T up to 40: the Lanczos iteration runs for many steps here."""
    model, xs, h0, layer = build(case)
    measured = jacobian.log_norm_matrix(model, xs, h0, layer)
    assert jacobian.bound_violations(measured, *jacobian.log_bound_matrices(model, xs, h0, layer)) == []


@settings(max_examples=15)
@given(bigger_network.map(lambda case: case | {"T": min(case["T"], 12)}))
def test_matrix_mode_matches_dense_products_bigger(case):
    model, xs, h0, layer = build(case)
    got = jacobian.log_norm_matrix(model, xs, h0, layer)
    np.testing.assert_allclose(got, dense_log_norms(reference_jacobians(model, xs, h0, layer)[0]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("form", ["elman", "pascanu"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "gaussian"])
def test_matrix_mode_matches_dense_medium(form, activation):
    """n = 32: the Lanczos iteration really iterates (the small cases end in n steps)."""
    rng = np.random.default_rng(3)
    model = random_model(rng, form, activation, layers=2, n=32, d=3, scale=1.5)
    xs, h0 = rng.standard_normal((24, 3)), rng.standard_normal((2, 32))
    got = jacobian.log_norm_matrix(model, xs, h0, layer=1)
    np.testing.assert_allclose(got, dense_log_norms(reference_jacobians(model, xs, h0, 1)[0]), rtol=0, atol=1e-9)


def test_diagonal_weights_where_the_top_direction_switches():
    """Diagonal W with tanh: which unit dominates changes with the inputs, so the previous lag's singular
    vector is orthogonal to the new top one. Warm starts must still find it."""
    rng = np.random.default_rng(5)
    n, T = 12, 30
    params = {"W_hh_0": np.diag(rng.uniform(0.5, 1.5, n)), "W_xh_0": 3.0 * np.eye(n),
              "b_h_0": np.zeros(n), "W_hy": np.ones((1, n)), "b_y": np.zeros(1)}
    model = RNN("elman", "tanh", 0.0, params)
    xs = rng.standard_normal((T, n)) * rng.uniform(0, 2, (T, 1))
    got = jacobian.log_norm_matrix(model, xs)
    np.testing.assert_allclose(got, dense_log_norms(reference_jacobians(model, xs, None, 0)[0]), rtol=0, atol=1e-9)


def one_step(model, h, x):
    """h_t from h_{t-1} for a one-layer model, straight from docs/math.md (section 2.1)."""
    act, p = get_activation(model.activation, model.leaky_slope), model.params
    if model.form == "elman":
        return act.phi(p["W_hh_0"] @ h + p["W_xh_0"] @ x + p["b_h_0"])
    return p["W_hh_0"] @ act.phi(h) + p["W_xh_0"] @ x + p["b_h_0"]


def test_step_jacobians_match_finite_differences():
    """The reference's J_t agree with central differences of one step of the layer (checks the reference)."""
    rng = np.random.default_rng(11)
    for form in ("elman", "pascanu"):
        model = random_model(rng, form, "tanh", n=5, d=2, scale=1.3)
        xs, h0 = rng.standard_normal((3, 2)), rng.standard_normal((1, 5))
        Js, _ = reference_jacobians(model, xs, h0, 0)
        h, eps = h0[0], 1e-6
        for t in range(3):
            columns = [(one_step(model, h + eps * e, xs[t]) - one_step(model, h - eps * e, xs[t])) / (2 * eps)
                       for e in np.eye(5)]
            np.testing.assert_allclose(Js[t], np.array(columns).T, atol=1e-8)
            h = one_step(model, h, xs[t])


# ---- zero and non-finite steps -----------------------------------------------------------------------------


def test_dead_relu_step_gives_minus_inf_not_nan():
    """All relu units off at step 3: every product through step 3 is the zero matrix."""
    rng = np.random.default_rng(2)
    n, T = 5, 7
    model = random_model(rng, "elman", "relu", n=n, d=1, scale=1.0)
    model.params["W_xh_0"] = np.ones((n, 1))
    xs = np.ones((T, 1))
    xs[2] = -1e3  # a_3 < 0 in every unit
    got = jacobian.log_norm_matrix(model, xs)
    product, global_ = jacobian.log_bound_matrices(model, xs)
    t, k = pairs(T)
    through = (k < 3) & (t >= 3)
    assert np.all(np.isneginf(got[t[through], k[through]])) and np.all(np.isfinite(got[t[~through], k[~through]]))
    assert np.all(np.isneginf(product[t[through], k[through]]))
    assert np.all(np.isfinite(product[t[~through], k[~through]]))
    assert np.all(np.isfinite(global_[t, k]))
    assert jacobian.bound_violations(got, product, global_) == []
    column = jacobian.log_norm_column(model, xs)
    assert np.all(np.isneginf(column[:3])) and np.all(np.isfinite(column[3:T]))


def test_non_finite_step_gives_nan_only_through_it():
    rng = np.random.default_rng(4)
    W, D = rng.standard_normal((4, 4)), rng.uniform(0.1, 1, (6, 4))
    D[2, 1] = np.nan  # step 3
    got = jacobian.log_norms_from_factors(W, D, "elman")
    t, k = pairs(6)
    through = (k < 3) & (t >= 3)
    assert np.all(np.isnan(got[t[through], k[through]])) and np.all(np.isfinite(got[t[~through], k[~through]]))
    column = jacobian.log_column_from_factors(W, D, "elman")
    assert np.all(np.isnan(column[:3])) and np.all(np.isfinite(column[3:6]))


# ---- norms of one matrix -----------------------------------------------------------------------------------


def test_spectral_norm_and_radius():
    rng = np.random.default_rng(6)
    Q = orthogonal(5, rng)
    assert jacobian.spectral_norm(-3.0 * Q) == pytest.approx(3.0, rel=1e-12)
    # upper triangular: eigenvalues on the diagonal, norm larger than the radius
    A = np.array([[0.5, 4.0], [0.0, -0.7]])
    assert jacobian.spectral_radius(A) == pytest.approx(0.7, rel=1e-12)
    assert jacobian.spectral_norm(A) == pytest.approx(np.sqrt(np.max(np.linalg.eigvalsh(A.T @ A))), rel=1e-12)
    rotation = 2.0 * np.array([[0.0, -1.0], [1.0, 0.0]])  # eigenvalues +-2i
    assert jacobian.spectral_radius(rotation) == pytest.approx(2.0, rel=1e-12)
    assert math.isnan(jacobian.spectral_norm(np.array([[np.nan]])))
    with pytest.raises(ValueError, match="square"):
        jacobian.spectral_radius(np.ones((2, 3)))
    with pytest.raises(ValueError, match="2-D"):
        jacobian.spectral_norm(np.ones(3))


# ---- summaries ---------------------------------------------------------------------------------------------


def test_lag_profile_and_slope_closed_form():
    """log-norm (t-k) ln a + 0.01 k: per-lag mean is lag ln a + 0.01 mean(k), min/max at the ends."""
    T, a = 6, 0.8
    t, k = pairs(T)
    logmat = np.full((T + 1, T + 1), np.nan)
    logmat[t, k] = (t - k) * np.log(a) + 0.01 * k
    profile = jacobian.lag_profile(logmat)
    lags = np.arange(1, T + 1)
    np.testing.assert_array_equal(profile["lag"], lags)
    np.testing.assert_allclose(profile["mean"], lags * np.log(a) + 0.01 * (T - lags) / 2)
    np.testing.assert_allclose(profile["min"], lags * np.log(a))
    np.testing.assert_allclose(profile["max"], lags * np.log(a) + 0.01 * (T - lags))
    assert jacobian.decay_slope(logmat) == pytest.approx(np.log(a) - 0.005, rel=1e-12)


def test_lag_profile_skips_nan_and_keeps_zero_products():
    logmat = np.full((4, 4), np.nan)
    logmat[1, 0], logmat[2, 1], logmat[3, 2] = -1.0, -np.inf, np.nan
    logmat[2, 0], logmat[3, 1] = -np.inf, -np.inf
    profile = jacobian.lag_profile(logmat)
    assert profile["mean"][0] == -1.0 and profile["min"][0] == -np.inf and profile["max"][0] == -1.0
    assert profile["count"].tolist() == [1, 0, 0]
    assert profile["mean"][1] == -np.inf and np.isnan(profile["mean"][2])
    assert math.isnan(jacobian.decay_slope(logmat))


def test_decay_slope_of_linear_network():
    rng = np.random.default_rng(9)
    model = linear_model(0.7 * orthogonal(3, rng))
    got = jacobian.log_norm_matrix(model, rng.standard_normal((20, 2)), np.ones((1, 3)))
    assert jacobian.decay_slope(got) == pytest.approx(np.log(0.7), rel=1e-9)


def test_bound_violations_finds_planted_ones():
    T = 3
    t, k = pairs(T)
    measured, product, global_ = (np.full((T + 1, T + 1), np.nan) for _ in range(3))
    measured[t, k], product[t, k], global_[t, k] = -2.0, -1.0, 0.0
    assert jacobian.bound_violations(measured, product, global_) == []
    measured[2, 0] = -1.0 + 0.5e-9  # within the absolute floor of 1e-9
    product[3, 0] = 3e-9  # above global 0 by more than the floor
    measured[1, 0] = 5.0
    measured[3, 1], product[3, 1] = -0.5, -np.inf  # a finite norm above a zero-product bound
    got = jacobian.bound_violations(measured, product, global_)
    assert got == [(1, 0, "measured>product"), (3, 0, "product>global"), (3, 1, "measured>product")]
    big = np.where(np.isnan(measured), np.nan, 1e3)
    assert jacobian.bound_violations(big * (1 + 5e-10), big, big * 2) == []  # relative tolerance
    assert jacobian.bound_violations(big * (1 + 5e-9), big, big * 2) != []


# ---- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", [jacobian.log_norm_matrix, jacobian.log_norm_column, jacobian.log_bound_matrices])
def test_bad_input_raises_value_error_naming_it(func):
    rng = np.random.default_rng(0)
    model = random_model(rng, layers=2, n=3, d=2)
    xs = rng.standard_normal((5, 2))
    with pytest.raises(ValueError, match="xs"):
        func(model, xs[:, :1])
    with pytest.raises(ValueError, match="xs"):
        func(model, xs[None])
    with pytest.raises(ValueError, match="h0"):
        func(model, xs, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        func(model, np.where(xs > 1, np.nan, xs))
    with pytest.raises(ValueError, match="NaN"):
        func(model, xs, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="layer"):
        func(model, xs, None, 2)
    with pytest.raises(ValueError, match="layer"):
        func(model, xs, None, -3)
    for change, word in (({"activation": "swish"}, "activation"), ({"form": "lstm"}, "form")):
        broken = random_model(rng, n=3, d=2)
        for key, value in change.items():
            setattr(broken, key, value)
        with pytest.raises(ValueError, match=word):
            func(broken, xs)
    broken = random_model(rng, n=3, d=2)
    broken.params["W_hh_0"] = np.ones((3, 4))
    with pytest.raises(ValueError, match="square"):
        func(broken, xs)


def test_factor_level_functions_check_their_arguments():
    W, D = np.eye(3), np.ones((4, 3))
    with pytest.raises(ValueError, match="form"):
        jacobian.log_norms_from_factors(W, D, "Elman")
    with pytest.raises(ValueError, match="form"):
        jacobian.log_column_from_factors(W, D, "gru")
    with pytest.raises(ValueError, match="square"):
        jacobian.log_norms_from_factors(np.ones((3, 2)), D, "elman")
    with pytest.raises(ValueError, match="D must"):
        jacobian.log_bounds_from_factors(W, np.ones((4, 2)), 1.0)


@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_a_saturated_tanh_layer_has_finite_norms(form):
    # n = 1, every argument of phi near 30: 1 - tanh^2 would be exactly 0 (log-norm -inf); tanh' = 4 e^-60 is not
    w, T = 0.5, 8
    params = {"W_hh_0": np.array([[w]]), "W_xh_0": np.array([[1.0]]), "b_h_0": np.array([30.0]),
              "W_hy": np.ones((1, 1)), "b_y": np.zeros(1)}
    model = RNN(form, "tanh", 0.0, params)
    xs, h0 = np.linspace(-0.5, 0.5, T)[:, None], np.array([[30.0]])
    assert np.all(step_factors(model, xs, h0)[1] > 0)
    h = [h0[0, 0]]
    for x in xs[:, 0]:
        h.append(math.tanh(w * h[-1] + x + 30.0) if form == "elman" else w * math.tanh(h[-1]) + x + 30.0)
    z = [w * h[i] + xs[i, 0] + 30.0 for i in range(T)] if form == "elman" else h[:T]
    step = [math.log(w) + math.log(4.0) - 2.0 * abs(zi) for zi in z]  # log(w tanh'(z)), tanh' = 4 e^-2|z| to 1e-26
    M = jacobian.log_norm_matrix(model, xs, h0)
    for k in range(T):
        for t in range(k + 1, T + 1):
            assert M[t, k] == pytest.approx(sum(step[k:t]), rel=1e-12)


# ---- the step-norm bound and the singular spectrum at the longest lag ------------------------------------------


@settings(max_examples=40)
@given(bigger_network)
def test_stepnorm_bound_lies_between_measurement_and_product_bound(case):
    """Sub-multiplicativity and ||diag(d) W||_2 <= max|d| ||W||_2, on random models: measured <= step-norm <= product,
    and every step norm equals the exact SVD's."""
    model, xs, h0, layer = build(case)
    measured = jacobian.log_norm_matrix(model, xs, h0, layer)
    product, global_ = jacobian.log_bound_matrices(model, xs, h0, layer)
    stepnorm = jacobian.log_stepnorm_bound_matrix(model, xs, h0, layer)
    assert not jacobian.exceeds(measured, stepnorm).any()
    assert not jacobian.exceeds(stepnorm, product).any()
    assert jacobian.bound_violations(measured, product, global_, stepnorm=stepnorm) == []
    W, D = step_factors(model, xs, h0, layer)  # the same steps, so that only the norm is compared
    Js = [d[:, None] * W if model.form == "elman" else W * d[None, :] for d in D]
    with np.errstate(divide="ignore"):
        exact = np.log([np.linalg.norm(J, 2) for J in Js])
    np.testing.assert_allclose(jacobian.log_step_norms(W, D, model.form), exact, rtol=0, atol=1e-9)


def test_stepnorm_bound_is_the_sum_of_step_norms_and_handles_zero_and_nan():
    steps = np.array([0.5, -1.0, -np.inf, 2.0, np.nan, 0.25])
    got = jacobian.log_stepnorm_bound(steps)
    assert got[2, 0] == pytest.approx(-0.5) and got[4, 3] == pytest.approx(2.0)
    assert got[3, 1] == -np.inf and got[4, 0] == -np.inf  # spans the zero step
    assert np.isnan(got[5, 4]) and np.isnan(got[6, 0]) and got[6, 5] == pytest.approx(0.25)
    assert np.isnan(got[np.triu_indices(7)]).all()


def test_bound_violations_finds_planted_stepnorm_ones():
    measured = np.full((3, 3), np.nan)
    measured[1, 0], measured[2, 0], measured[2, 1] = 0.0, -1.0, 0.0
    product, global_, stepnorm = measured + 1.0, measured + 2.0, measured + 0.5
    assert jacobian.bound_violations(measured, product, global_, stepnorm=stepnorm) == []
    stepnorm[2, 0] = -2.0  # below the measurement
    stepnorm[2, 1] = 1.5  # above the product bound
    assert jacobian.bound_violations(measured, product, global_, stepnorm=stepnorm) == [
        (2, 0, "measured>stepnorm"), (2, 1, "stepnorm>product")]


@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_singular_values_at_longest_lag_match_the_dense_product(form):
    rng = np.random.default_rng(3)
    model = random_model(rng, form, "tanh", n=6, scale=1.2)
    xs = rng.standard_normal((25, 2))
    W, D = step_factors(model, xs)
    Js, _ = reference_jacobians(model, xs, None, -1)
    P = np.eye(6)
    for J in Js:
        P = J @ P
    want = np.log(np.linalg.svd(P, compute_uv=False))
    got = jacobian.log_singular_values(W, D, form)
    resolved = np.isfinite(got)
    assert resolved[0] and got[0] == pytest.approx(jacobian.log_norm_matrix(model, xs)[25, 0], abs=1e-9)
    np.testing.assert_allclose(got[resolved], want[resolved], rtol=0, atol=1e-6)
    assert (want[~resolved] < want[0] + np.log(jacobian.SPECTRUM_FLOOR) + 1e-6).all()


def test_singular_spectrum_of_a_diagonal_linear_map_and_its_spread():
    d = np.array([2.0, -0.5, 0.1])
    got = jacobian.log_singular_values(np.diag(d), np.ones((4, 3)), "elman")
    np.testing.assert_allclose(got, 4 * np.sort(np.log(np.abs(d)))[::-1], rtol=0, atol=1e-12)
    assert jacobian.spectrum_spread_decades(got) == pytest.approx(4 * np.log10(20.0))
    assert np.isnan(jacobian.spectrum_spread_decades(np.array([0.0, np.nan])))
    assert np.isnan(jacobian.log_singular_values(np.eye(2), np.array([[1.0, np.nan]]), "elman")).all()
    assert np.isneginf(jacobian.log_singular_values(np.eye(2), np.zeros((3, 2)), "elman")).all()


# ---- clustered top singular values: where Lanczos cannot certify its answer ------------------------------------


def clustered_steps(seed: int, n: int, T: int, form: str):
    """Step factors whose every step has its top singular values within 1e-9..1e-3 (relative) of each other: an
    orthogonal W times phi' nearly constant across units, as a sigmoid or tanh layer near h = 0 makes them."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    D = 0.25 * (1.0 - rng.uniform(0.0, 1.0, (T, n)) * 10.0 ** rng.uniform(-9, -3, (T, 1)))
    Js = np.stack([d[:, None] * Q if form == "elman" else Q * d[None, :] for d in D])
    return Q, D, Js


@pytest.mark.parametrize("form", ["elman", "pascanu"])
@pytest.mark.parametrize("n", [8, 16, 32, 64])
def test_step_norms_are_exact_where_top_singular_values_cluster(form, n):
    """Each step norm against np.linalg.svd to 1e-12 on steps built with clustered top singular values (Lanczos
    stopped inside such a cluster under-estimated by up to 1.5e-7 nats)."""
    for seed in range(12):
        W, D, Js = clustered_steps(seed, n, 30, form)
        exact = np.log(np.linalg.svd(Js, compute_uv=False)[:, 0])
        np.testing.assert_allclose(jacobian.log_step_norms(W, D, form), exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [8, 16, 32])
def test_all_pairs_are_exact_where_top_singular_values_cluster(n):
    """Pairs whose Lanczos stops inside a cluster go to an exact SVD: every pair to 1e-12 of the dense product, and
    no pair above its step-norm bound."""
    for seed in range(12):
        W, D, Js = clustered_steps(seed, n, 20, "elman")
        got = jacobian.log_norms_from_factors(W, D, "elman")
        np.testing.assert_allclose(got, dense_log_norms(Js), rtol=0, atol=1e-12)
        stepnorm = jacobian.log_stepnorm_bound(jacobian.log_step_norms(W, D, "elman"))
        assert not jacobian.exceeds(got, stepnorm).any()


def test_step_norms_are_exact_in_a_tight_cluster_of_singular_values():
    """An orthogonal W with phi' within 1e-6 of 1 in a few units (an expRNN near h = 0 in them): the top singular
    values of a step lie within 1e-6 of each other, where an iterative estimate can stop at the second (a Lanczos
    estimate was 6.8e-7 low on this case). The step-norm bound is a bound: it must be the top singular value itself,
    or the measured lag-1 norm stands above it."""
    rng = np.random.default_rng(15)
    n, T = 44, 40
    W, _ = np.linalg.qr(rng.standard_normal((n, n)))
    D = rng.uniform(0.1, 1.0, (T, n))
    D[:, :6] = 1.0 - 1e-6 * rng.random((T, 6))
    exact = np.log([np.linalg.svd(D[s][:, None] * W, compute_uv=False)[0] for s in range(T)])
    np.testing.assert_allclose(jacobian.log_step_norms(W, D, "elman"), exact, rtol=0, atol=1e-14)
    measured = jacobian.log_norms_from_factors(W, D, "elman")
    bound = jacobian.log_stepnorm_bound(jacobian.log_step_norms(W, D, "elman"))
    assert not jacobian.exceeds(measured, bound).any()
