"""pipeline.engine.depth: Jacobians across layers and time of a stacked RNN, against a closed form (the sum over
paths of a linear stack with every W = a Q), dense products of edge Jacobians written out here, finite differences of
a forward pass written out here, and the bounds of docs/math.md (section 4.7)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import log_norm_matrix
from pipeline.engine import depth, gridpairs, jacobian
from pipeline.engine.rnn import RNN

PHI = {"tanh": (np.tanh, lambda y, z: 1 - np.tanh(z) ** 2),
       "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda y, z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
       "linear": (lambda z: z, lambda y, z: np.ones_like(z))}


def random_model(rng, form="elman", activation="tanh", layers=3, n=4, d=2, scale=1.0, x_scale=1.0):
    """Gaussian weights with entries of size scale / sqrt(n) (W_hh) and x_scale / sqrt(fan-in) (W_xh)."""
    params = {}
    for i in range(layers):
        d_in = d if i == 0 else n
        params[f"W_hh_{i}"] = scale * rng.standard_normal((n, n)) / np.sqrt(n)
        params[f"W_xh_{i}"] = x_scale * rng.standard_normal((n, d_in)) / np.sqrt(d_in)
        params[f"b_h_{i}"] = 0.3 * rng.standard_normal(n)
    params["W_hy"], params["b_y"] = rng.standard_normal((2, n)), np.zeros(2)
    return RNN(form, activation, 0.0, params)


def orthogonal(n, rng):
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diagonal(R))


# ---- independent references: the stack's forward pass written out, its node derivatives two ways ----------------


def reference_states(model, xs, h0, override=None):
    """h[l][s] for every layer and step, from the equations of docs/math.md (section 2); `override` (l, k, v) replaces
    the state h^l_k by v before anything reads it (the node h^l_k as an independent variable)."""
    phi = PHI[model.activation][0]
    p, L = model.params, model.layers
    h = [[h0[l]] for l in range(L)]
    if override is not None and override[1] == 0:
        h[override[0]][0] = override[2]
    for s in range(1, len(xs) + 1):
        for l in range(L):
            W, U, b = p[f"W_hh_{l}"], p[f"W_xh_{l}"], p[f"b_h_{l}"]
            below = xs[s - 1] if l == 0 else h[l - 1][s]
            prev = h[l][s - 1]
            new = phi(W @ prev + U @ below + b) if model.form == "elman" else W @ phi(prev) + U @ below + b
            h[l].append(override[2] if override is not None and (l, s) == override[:2] else new)
    return h


def dense_node_jacobian(model, xs, h0, top, l, k, t):
    """dh^top_t/dh^l_k by explicit products of the edge Jacobians, forward over the grid from (l, k)."""
    dphi = PHI[model.activation][1]
    p, n = model.params, model.hidden
    h = reference_states(model, xs, h0)
    N = {(l, k): np.eye(n)}

    def edge(j, s, kind):
        W, U, b = p[f"W_hh_{j}"], p[f"W_xh_{j}"], p[f"b_h_{j}"]
        if model.form == "elman":
            below = xs[s - 1] if j == 0 else h[j - 1][s]
            d = dphi(None, W @ h[j][s - 1] + U @ below + b)
            return d[:, None] * (W if kind == "h" else U)
        return W * dphi(None, h[j][s - 1])[None, :] if kind == "h" else U

    for s in range(k, t + 1):
        for j in range(l, top + 1):
            if (j, s) == (l, k):
                continue
            total = np.zeros((n, n))
            if s > k and (j, s - 1) in N:
                total += edge(j, s, "h") @ N[(j, s - 1)]
            if j > l and s >= 1 and (j - 1, s) in N:
                total += edge(j, s, "v") @ N[(j - 1, s)]
            N[(j, s)] = total
    return N[(top, t)]


def fd_node_jacobian(model, xs, h0, top, l, k, t, step=1e-3):
    """dh^top_t/dh^l_k by central differences of the whole forward pass, Richardson-extrapolated (truncation
    O(step^4); rounding about eps / step relative to the states, so this resolves norms down to about 1e-3 to 1e-8)."""
    base = reference_states(model, xs, h0)[l][k]
    cols = []
    for j in range(model.hidden):
        def at(delta):
            v = base.copy()
            v[j] += delta
            return reference_states(model, xs, h0, (l, k, v))[top][t]
        wide = (at(step) - at(-step)) / (2 * step)
        narrow = (at(step / 2) - at(-step / 2)) / step
        cols.append((4 * narrow - wide) / 3)
    return np.stack(cols, axis=1)


def complex_step_node_jacobian(model, xs, h0, top, l, k, t, step=1e-30):
    """dh^top_t/dh^l_k by differences along the imaginary axis (Squire & Trapp 1998): Im f(x + i step e_j) / step has
    no subtraction, so it is exact to rounding whatever the norm's size (tanh, sigmoid and linear are analytic)."""
    base = reference_states(model, xs, h0)[l][k].astype(complex)
    cols = []
    for j in range(model.hidden):
        v = base.copy()
        v[j] += 1j * step
        cols.append(reference_states(model, xs, h0.astype(complex), (l, k, v))[top][t].imag / step)
    return np.stack(cols, axis=1)


def grid_pairs(T, top):
    """Every (l, t, k) that log_norm_grid defines."""
    return [(l, t, k) for l in range(top + 1) for t in range(1, T + 1) for k in range(t + (l < top))]


# ---- closed form -----------------------------------------------------------------------------------------------


def linear_stack(a, b, Q, layers, d=2):
    """Linear activation, every W_hh = a Q and every W_xh above layer 0 = b Q (one Q): each path from (l, k) to
    (L, t) multiplies a^(t-k) b^(L-l) Q^(t-k+L-l), so dh^L_t/dh^l_k = (number of paths) a^(t-k) b^(L-l) Q^(...)."""
    n = Q.shape[0]
    params = {}
    for l in range(layers):
        params |= {f"W_hh_{l}": a * Q, f"W_xh_{l}": np.ones((n, d)) if l == 0 else b * Q, f"b_h_{l}": np.zeros(n)}
    return RNN("elman", "linear", 0.0, params | {"W_hy": np.ones((1, n)), "b_y": np.zeros(1)})


def closed_form(a, b, top, l, t, k):
    """log ||dh^top_t/dh^l_k||_2 of `linear_stack` (docs/math.md 3.7): paths from (l, k) take t - k horizontal and
    top - l vertical edges in any order, but from k = 0 the first edge is horizontal (no vertical edge leaves step 0)."""
    up = top - l
    paths = math.comb(t - k + up, up) if k > 0 else math.comb(t - 1 + up, up)
    return math.log(paths) + (t - k) * math.log(abs(a)) + up * math.log(abs(b))


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (0.9, 0.5), (1.1, 2.0), (-0.7, 1.3)])
@pytest.mark.parametrize("layers", [2, 3, 5])
def test_linear_stack_equals_the_sum_over_paths(a, b, layers):
    rng = np.random.default_rng(layers)
    Q, T = orthogonal(6, rng), 20
    model = linear_stack(a, b, Q, layers)
    grid = depth.log_norm_grid(model, rng.standard_normal((T, 2)))
    top = layers - 1
    for l, t, k in grid_pairs(T, top):
        assert grid[l, t, k] == pytest.approx(closed_form(a, b, top, l, t, k), abs=1e-10), (l, t, k)


def test_long_lags_and_deep_chains_stay_in_log_space():
    """3^600 overflows float64 and 0.1^400 underflows it; the log norms are exact all the same."""
    rng = np.random.default_rng(0)
    Q, T = orthogonal(5, rng), 600
    for a, b in ((3.0, 2.0), (0.1, 0.2)):
        grid = depth.log_norm_grid(linear_stack(a, b, Q, 4), np.zeros((T, 2)))
        for l, t, k in ((0, T, 0), (1, T, 1), (2, T, T), (0, 300, 7)):
            assert grid[l, t, k] == pytest.approx(closed_form(a, b, 3, l, t, k), abs=1e-9)
        assert np.all(np.isfinite(grid[:, 1:, :][~np.isnan(grid[:, 1:, :])]))



@pytest.mark.parametrize("a, b", [(0.5, 1e100), (2.0, 1e-100), (1.0, 1e150), (0.9, 1e-3)])
def test_layers_at_far_apart_scales_stay_exact(a, b):
    """Elman stacks are stored at one scale per target and anti-diagonal l + k (`gridpairs._ElmanAdjoint`); with a
    vertical edge 1e100 times the horizontal one the two layers of an anti-diagonal lie e^230 apart, beyond
    SCALE_SPREAD, and take the weighted path: exact all the same."""
    rng = np.random.default_rng(5)
    Q, T = orthogonal(5, rng), 30
    grid = depth.log_norm_grid(linear_stack(a, b, Q, 4), np.zeros((T, 2)))
    for l, t, k in grid_pairs(T, 3):
        assert grid[l, t, k] == pytest.approx(closed_form(a, b, 3, l, t, k), abs=1e-9), (l, t, k)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("spread", [None, 0.0])
def test_the_elman_recursion_agrees_with_dense_products(activation, spread, monkeypatch):
    """The elman path (one gemm per layer and lag from the stored stacks) against the benchmark's dense route on a
    random stack; SCALE_SPREAD 0 sends every layer with two differently scaled halves down the weighted path."""
    from pipeline.benchmarks.crosslayer import bench_stack, dense_grid_norms
    if spread is not None:
        monkeypatch.setattr(gridpairs, "SCALE_SPREAD", spread)
    rng = np.random.default_rng(len(activation))
    stack = bench_stack(4, 6, 3, rng, spectral_norm=1.5)
    model = RNN("elman", activation, 0.0, stack.params)
    F = depth.grid_factors(model, 2 * rng.standard_normal((25, 3)))
    assert isinstance(gridpairs.adjoint_of(F), gridpairs._ElmanAdjoint)
    fast, dense = gridpairs.log_norms_of_grid(F, with_top=False), dense_grid_norms(F)
    pairs = ~np.isnan(dense)
    assert np.array_equal(pairs, ~np.isnan(fast))
    assert np.max(np.abs(fast[pairs] - dense[pairs])) < 1e-8



def test_saturated_units_far_below_their_anti_diagonal_stay_exact():
    """softplus units with phi' near e^-180 put some stored stacks far below the scale of their anti-diagonal: they
    are stored at their own scale (a gemm output at the shared one would overflow Lanczos's sigma^4)."""
    from pipeline.benchmarks.crosslayer import dense_grid_norms
    rng = np.random.default_rng(7542)
    model = random_model(rng, "elman", "softplus", 4, n=5, scale=1.9375, x_scale=1.9375)
    F = depth.grid_factors(model, rng.standard_normal((10, 2)))
    fast = gridpairs.log_norms_of_grid(F, with_top=False)
    with np.errstate(divide="ignore"):
        dense = dense_grid_norms(F)
    pairs = ~np.isnan(dense)
    assert np.array_equal(pairs, ~np.isnan(fast))
    assert np.max(np.abs(fast[pairs] - dense[pairs])) < 1e-8


# ---- dense products and finite differences ---------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("form", ["elman", "pascanu"])
@pytest.mark.parametrize("layers", [2, 3, 4])
def test_every_pair_agrees_with_dense_products_and_finite_differences(form, activation, layers):
    rng = np.random.default_rng(100 * layers + len(activation))
    scale = 4.0 if activation == "sigmoid" else 1.0  # sigmoid's phi' <= 1/4: larger weights keep norms O(1)
    model = random_model(rng, form, activation, layers, scale=scale, x_scale=scale)
    T, top = 6, layers - 1
    xs, h0 = rng.standard_normal((T, 2)), 0.5 * rng.standard_normal((layers, 4))
    grid = depth.log_norm_grid(model, xs, h0)
    for l, t, k in grid_pairs(T, top):
        dense = np.log(np.linalg.norm(dense_node_jacobian(model, xs, h0, top, l, k, t), 2))
        complex_step = np.log(np.linalg.norm(complex_step_node_jacobian(model, xs, h0, top, l, k, t), 2))
        assert grid[l, t, k] == pytest.approx(dense, abs=1e-8), ("dense", l, t, k)
        assert grid[l, t, k] == pytest.approx(complex_step, abs=1e-8), ("complex step", l, t, k)
        if dense > math.log(1e-3):  # what real differences resolve to 1e-8
            fd = np.log(np.linalg.norm(fd_node_jacobian(model, xs, h0, top, l, k, t), 2))
            assert grid[l, t, k] == pytest.approx(fd, abs=1e-8), ("central differences", l, t, k)


@pytest.mark.parametrize("form", ["elman", "pascanu"])
def test_the_source_layer_itself_is_the_within_layer_matrix(form):
    rng = np.random.default_rng(3)
    model = random_model(rng, form, "tanh", 3, n=8)
    xs, h0 = rng.standard_normal((30, 2)), rng.standard_normal((3, 8))
    grid = depth.log_norm_grid(model, xs, h0)
    for top in range(3):
        within = jacobian.log_norm_matrix(model, xs, h0, layer=top)
        below = depth.log_norm_grid(model, xs, h0, layer=top)
        assert np.array_equal(np.isnan(below[top]), np.isnan(within))
        np.testing.assert_allclose(below[top], within, atol=1e-10, equal_nan=True)
    np.testing.assert_allclose(depth.log_norm_grid(model, xs, h0, lowest=1)[1:], grid[1:], atol=1e-10, equal_nan=True)


def test_the_public_api_takes_a_source_layer():
    rng = np.random.default_rng(4)
    model = random_model(rng, "elman", "tanh", 3, n=5)
    xs = rng.standard_normal((12, 2))
    grid = depth.log_norm_grid(model, xs)
    np.testing.assert_allclose(log_norm_matrix(model, xs, layer=2, source_layer=0), grid[0], atol=1e-10,
                               equal_nan=True)
    np.testing.assert_allclose(log_norm_matrix(model, xs, layer=-1, source_layer=-2), grid[1], atol=1e-10,
                               equal_nan=True)
    same = log_norm_matrix(model, xs, layer=1, source_layer=1)
    np.testing.assert_array_equal(same, log_norm_matrix(model, xs, layer=1))
    M = log_norm_matrix(model, xs, layer=2, source_layer=0)
    assert np.isnan(M[0, 0]) and np.all(np.isfinite(np.diagonal(M)[1:]))  # the depth chain at every t >= 1
    assert np.isnan(M[np.triu_indices(13, 1)]).all()


@pytest.mark.parametrize("layer, source, words", [(0, 1, "lies above"), (1, 3, "source_layer must be in"),
                                                   (5, 0, "layer must be in")])
def test_bad_layers_are_named(layer, source, words):
    model = random_model(np.random.default_rng(0), layers=3)
    with pytest.raises(ValueError, match=words):
        log_norm_matrix(model, np.zeros((4, 2)), layer=layer, source_layer=source)


def test_an_lstm_has_no_cross_layer_norms():
    from pipeline.engine.init import init_lstm
    model = init_lstm(np.random.default_rng(0), input_dim=2, output_dim=2, layers=2, hidden=3)
    with pytest.raises(ValueError, match="vanilla RNN"):
        log_norm_matrix(model, np.zeros((4, 2)), layer=1, source_layer=0)


def test_a_non_finite_step_makes_only_the_pairs_whose_paths_cross_it_nan():
    rng = np.random.default_rng(5)
    F = depth.grid_factors(random_model(rng, layers=3), rng.standard_normal((8, 2)))
    d = F.d.copy()
    d[1, 4] = np.nan  # the edges into node (1, 5)
    grid = gridpairs.log_norms_of_grid(gridpairs.GridFactors(F.form, F.W, F.U, d, d, F.gamma_phi))
    clean = gridpairs.log_norms_of_grid(F)
    for l, t, k in grid_pairs(8, 2):
        crosses = l <= 1 and k <= 5 <= t and not (l == 1 and k == 5)
        assert np.isnan(grid[l, t, k]) == crosses, (l, t, k)
        if not crosses:
            assert grid[l, t, k] == pytest.approx(clean[l, t, k], abs=1e-12)


# ---- the bounds --------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), form=st.sampled_from(["elman", "pascanu"]),
       activation=st.sampled_from(["tanh", "sigmoid", "relu", "softplus", "linear"]), layers=st.integers(2, 4),
       scale=st.floats(0.2, 3.0), x_scale=st.floats(0.2, 3.0))
def test_measured_below_stepnorm_below_product_below_global(seed, form, activation, layers, scale, x_scale):
    rng = np.random.default_rng(seed)
    model = random_model(rng, form, activation, layers, n=5, scale=scale, x_scale=x_scale)
    xs = rng.standard_normal((10, 2))
    grid, bounds = depth.log_norm_grid(model, xs), depth.log_bound_grid(model, xs)
    for low, high in ((grid, bounds.stepnorm), (bounds.stepnorm, bounds.product), (bounds.product, bounds.global_)):
        assert not jacobian.exceeds(low, high).any()
    assert np.array_equal(np.isnan(grid), np.isnan(bounds.global_))


def test_global_bound_counts_the_paths():
    """Every W_hh with norm g_w and every W_xh with norm g_x: the global bound of a pair is the number of paths times
    (g_w gamma_phi)^(t-k) (g_x gamma_phi)^(top-l); at t = k it is the depth chain's (g_x gamma_phi)^(top-l)."""
    rng = np.random.default_rng(6)
    Q, T = orthogonal(5, rng), 9
    params = {}
    for l in range(4):
        params |= {f"W_hh_{l}": 1.5 * orthogonal(5, rng), f"W_xh_{l}": rng.standard_normal((5, 2)) if l == 0 else
                   0.7 * orthogonal(5, rng), f"b_h_{l}": np.zeros(5)}
    model = RNN("elman", "sigmoid", 0.0, params | {"W_hy": np.ones((1, 5)), "b_y": np.zeros(1)})
    bounds = depth.log_bound_grid(model, rng.standard_normal((T, 2)))
    for l, t, k in grid_pairs(T, 3):
        up = 3 - l
        paths = math.comb(t - k + up, up) if k > 0 else math.comb(t - 1 + up, up)
        want = math.log(paths) + (t - k) * math.log(1.5 / 4) + up * math.log(0.7 / 4)
        assert bounds.global_[l, t, k] == pytest.approx(want, abs=1e-12)
    del Q


def test_the_benchmark_routes_agree_on_every_cross_layer_pair():
    from pipeline.benchmarks.crosslayer import bench_crosslayer
    figures = bench_crosslayer(layers=3, n=6, T=10, repeats=1)
    assert figures["crosslayer_pairs"] == 2 * (10 * 11 // 2 + 10)  # sources 0 and 1: every k < t, and t = k >= 1
    assert figures["crosslayer_max_abs_log_diff"] < 1e-9
