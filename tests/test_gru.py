"""The GRU engine against independent references: finite differences of the loss and of one step, nn.GRU's
documented equations written out plainly on a state dict, PyTorch's nn.GRU itself (tests/references/torch_gru.npz),
one-hot inputs; plus its init and model files."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from pipeline.engine import cells
from pipeline.engine.gru import GRU, bptt, forward, from_torch_state, jacobians_from_trace, step_jacobians
from pipeline.engine.init import init_gru
from pipeline.engine.optim import make_optimizer
from pipeline.engine.rnn import loss_and_dy, one_hot
from pipeline.engine.trainer import train_step
from pipeline.run.files import load_model, save_model
from tests.test_rnn import central_difference, relative_error

D_IN, N, D_OUT, T, B = 3, 4, 3, 5, 2


def random_gru(rng, layers, input_dim=D_IN):
    """A small GRU with random biases on both sides (every gate away from its saturation)."""
    model = init_gru(rng, input_dim=input_dim, output_dim=D_OUT, layers=layers, hidden=N, init="gaussian",
                     gamma_w=1.1, input_scale=0.8)
    for key in model.params:
        if key.startswith("b_"):
            model.params[key] = 0.4 * rng.standard_normal(model.params[key].shape)
    return model


def random_problem(seed, layers, kind):
    rng = np.random.default_rng(seed)
    model = random_gru(rng, layers)
    xs = rng.standard_normal((T, B, D_IN))
    h0 = 0.5 * rng.standard_normal((layers, B, N))
    targets = rng.integers(0, D_OUT, (T, B)) if kind == "xent" else rng.standard_normal((T, B, D_OUT))
    mask = np.ones((T, B))
    mask[1, 0] = 0.0
    return model, xs, h0, targets, mask


def loss_of(model, xs, h0, targets, mask, kind):
    return loss_and_dy(forward(model, xs, h0).y, targets, mask, kind)[0]


def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def documented_forward(state, xs, h0):
    """nn.GRU's documented equations on a state dict's arrays, one sequence xs (T, d) from h0 (L, n), no code shared
    with gru.py: the top layer's states (T, n) and every layer's last state (L, n)."""
    layers = sum(1 for k in state if k.startswith("weight_hh_l"))
    x, last = xs, []
    for l in range(layers):
        Wi, Wh = state[f"weight_ih_l{l}"], state[f"weight_hh_l{l}"]
        bi, bh = state[f"bias_ih_l{l}"], state[f"bias_hh_l{l}"]
        n = Wh.shape[1]
        blk = lambda M, j: M[j * n:(j + 1) * n]  # noqa: E731
        h, out = h0[l], []
        for t in range(xs.shape[0]):
            r = sig(blk(Wi, 0) @ x[t] + blk(bi, 0) + blk(Wh, 0) @ h + blk(bh, 0))
            z = sig(blk(Wi, 1) @ x[t] + blk(bi, 1) + blk(Wh, 1) @ h + blk(bh, 1))
            cand = np.tanh(blk(Wi, 2) @ x[t] + blk(bi, 2) + r * (blk(Wh, 2) @ h + blk(bh, 2)))
            h = (1 - z) * cand + z * h
            out.append(h)
        x = np.array(out)
        last.append(h)
    return x, np.array(last)


def torch_state(model):
    """The model's arrays under nn.GRU's state-dict names."""
    names = {"W_ih": "weight_ih", "W_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
    return {f"{names[k.rsplit('_', 1)[0]]}_l{k.rsplit('_', 1)[1]}": v for k, v in model.params.items()
            if k.rsplit("_", 1)[0] in names}


# ---- gradients -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers, kind", list(itertools.product((1, 2), ("xent", "mse"))))
def test_bptt_matches_finite_differences(layers, kind):
    model, xs, h0, targets, mask = random_problem(layers * 10 + len(kind), layers, kind)
    trace = forward(model, xs, h0)
    _, dy = loss_and_dy(trace.y, targets, mask, kind)
    grads, signal = bptt(model, trace, dy)
    f = lambda: loss_of(model, xs, h0, targets, mask, kind)  # noqa: E731
    for key, param in model.params.items():
        assert relative_error(grads[key], central_difference(f, param)) <= 1e-6, key
    dE_dh0 = central_difference(f, h0)  # the signal at k = 0 is ||dE/dh_0||
    for l in range(layers):
        assert signal[l, 0] == pytest.approx(np.linalg.norm(dE_dh0[l]), rel=1e-6, abs=1e-9)


def test_signal_at_every_step_matches_finite_differences():
    """One layer: E as a function of the state h_k (readout of h_k at k, the run restarted from it)."""
    model, xs, h0, targets, mask = random_problem(3, 1, "xent")
    trace = forward(model, xs, h0)
    _, dy = loss_and_dy(trace.y, targets, mask, "xent")
    _, signal = bptt(model, trace, dy)
    W_hy, b_y = model.params["W_hy"], model.params["b_y"]

    def loss_from_state(k, h_k):
        y = trace.y.copy()
        y[k - 1] = h_k @ W_hy.T + b_y
        if k < T:
            y[k:] = forward(model, xs[k:], h_k[None]).y
        return loss_and_dy(y, targets, mask, "xent")[0]

    for k in range(1, T + 1):
        h_k = trace.h[0][k].copy()
        numeric = central_difference(lambda: loss_from_state(k, h_k), h_k)
        assert signal[0, k] == pytest.approx(np.linalg.norm(numeric), rel=1e-6), k


# ---- the forward pass ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 3])
def test_forward_follows_nn_grus_documented_equations(layers):
    rng = np.random.default_rng(layers)
    model = random_gru(rng, layers)
    xs, h0 = rng.standard_normal((T, B, D_IN)), rng.standard_normal((layers, B, N))
    trace = forward(model, xs, h0)
    for b in range(B):
        top, last = documented_forward(torch_state(model), xs[:, b], h0[:, b])
        np.testing.assert_allclose(trace.h[-1][1:, b], top, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(cells.last_state(trace)[:, b], last, rtol=1e-13, atol=1e-15)
        y = top @ model.params["W_hy"].T + model.params["b_y"]
        np.testing.assert_allclose(trace.y[:, b], y, rtol=1e-13, atol=1e-15)


def test_a_pytorch_state_dict_keeps_both_biases():
    """from_torch_state keeps b_hn apart: the reset gate multiplies W_hn h + b_hn, so b_ih + b_hh would be wrong."""
    rng = np.random.default_rng(8)
    model = random_gru(rng, 2)
    state = torch_state(model)
    again = from_torch_state(state, model.params["W_hy"], model.params["b_y"])
    xs = rng.standard_normal((T, D_IN))
    np.testing.assert_array_equal(forward(again, xs[:, None]).y, forward(model, xs[:, None]).y)
    merged = {**state, "bias_ih_l0": state["bias_ih_l0"] + state["bias_hh_l0"], "bias_hh_l0": 0 * state["bias_hh_l0"]}
    assert not np.allclose(documented_forward(merged, xs, np.zeros((2, N)))[0],
                           documented_forward(state, xs, np.zeros((2, N)))[0])


def test_token_ids_give_the_same_model_as_one_hot_vectors():
    rng = np.random.default_rng(5)
    model = random_gru(rng, 2, input_dim=7)
    ids = rng.integers(0, 7, (T, B))
    targets, mask = rng.integers(0, D_OUT, (T, B)), np.ones((T, B))
    by_ids, by_vectors = forward(model, ids), forward(model, one_hot(ids, 7))
    np.testing.assert_allclose(by_ids.y, by_vectors.y, rtol=1e-14, atol=1e-15)
    g_ids = bptt(model, by_ids, loss_and_dy(by_ids.y, targets, mask, "xent")[1])[0]
    g_vec = bptt(model, by_vectors, loss_and_dy(by_vectors.y, targets, mask, "xent")[1])[0]
    for key in model.params:
        np.testing.assert_allclose(g_ids[key], g_vec[key], rtol=1e-12, atol=1e-15, err_msg=key)


def test_forward_names_a_bad_initial_state():
    model = random_gru(np.random.default_rng(0), 1)
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 2, 4\)"):
        forward(model, np.zeros((T, B, D_IN)), np.zeros((1, B, 2 * N)))


# ---- step Jacobians -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers, layer", [(1, 0), (2, 0), (2, 1)])
def test_step_jacobians_match_finite_differences_of_one_step(layers, layer):
    """J_t against central differences of the step h_{t-1} -> h_t with x_t's drive fixed (the forward pass alone)."""
    rng = np.random.default_rng(layers + layer)
    model = random_gru(rng, layers)
    xs, h0 = rng.standard_normal((T, D_IN)), rng.standard_normal((layers, N))
    J = step_jacobians(model, xs, h0, layer)
    trace = forward(model, xs[:, None], h0[:, None])
    p = model.params
    one_layer = GRU({"W_ih_0": p[f"W_ih_{layer}"], "W_hh_0": p[f"W_hh_{layer}"], "b_ih_0": p[f"b_ih_{layer}"],
                     "b_hh_0": p[f"b_hh_{layer}"], "W_hy": p["W_hy"], "b_y": p["b_y"]})
    x_in = trace.inputs[layer][:, 0]
    for t in range(1, T + 1):
        s = trace.h[layer][t - 1, 0].copy()
        step = lambda: forward(one_layer, x_in[t - 1 : t, None], s[None, None]).h[0][1, 0]  # noqa: E731
        numeric = np.zeros((N, N))
        for j in range(N):
            keep = s[j]
            s[j] = keep + 1e-6
            up = step()
            s[j] = keep - 1e-6
            down = step()
            s[j] = keep
            numeric[:, j] = (up - down) / 2e-6
        np.testing.assert_allclose(J[t - 1], numeric, rtol=1e-7, atol=1e-9, err_msg=f"t={t}")


def test_with_zero_recurrent_weights_the_step_is_diag_z():
    """A sanity check of the layout (not independent of the code): with W_hh = 0, h_t = (1-z) n + z h_{t-1} with
    z and n independent of h_{t-1}, so J_t = diag(z)."""
    n = 3
    rng = np.random.default_rng(1)
    gates = sig(rng.standard_normal((2, 3 * n)))
    J = jacobians_from_trace(np.zeros((3 * n, n)), gates, rng.standard_normal((3, n)), rng.standard_normal((2, n)))
    for t in range(2):
        np.testing.assert_allclose(J[t], np.diag(gates[t, n:2 * n]), rtol=0, atol=0)


# ---- init, training, files -----------------------------------------------------------------------------------


def test_init_follows_its_recipe():
    model = init_gru(np.random.default_rng(0), input_dim=5, output_dim=2, layers=2, hidden=6, init="orthogonal",
                     gamma_w=0.9)
    assert (model.layers, model.hidden, model.input_dim, model.output_dim) == (2, 6, 5, 2)
    for l in range(2):
        np.testing.assert_array_equal(model.params[f"b_ih_{l}"], 0.0)
        np.testing.assert_array_equal(model.params[f"b_hh_{l}"], 0.0)
        for j in range(3):  # every gate's block is 0.9 times an orthogonal matrix
            block = model.params[f"W_hh_{l}"][6 * j : 6 * (j + 1)]
            np.testing.assert_allclose(block @ block.T, 0.81 * np.eye(6), atol=1e-12)
    assert model.params["W_ih_1"].shape == (18, 6)
    assert cells.n_params(model) == 2 * 3 * (36 + 6 + 6) + 3 * (6 * 5) + 3 * 36 + 2 * 6 + 2


def test_a_training_step_lowers_the_loss_of_its_batch():
    model, xs, h0, targets, mask = random_problem(11, 2, "xent")
    before = loss_of(model, xs, h0, targets, mask, "xent")
    stats = train_step(model, make_optimizer("sgd", 0.05, 0.0), xs, targets, mask, "xent", "none", 1.0, h0)
    assert stats.finite and stats.h_last.shape == (2, B, N)
    assert loss_of(model, xs, h0, targets, mask, "xent") < before


def test_save_load_round_trip_is_exact(tmp_path):
    model = random_gru(np.random.default_rng(2), 2)
    save_model(model, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        assert str(z["cell"]) == "gru"
    back = load_model(tmp_path / "m.npz")
    assert isinstance(back, GRU) and back.params.keys() == model.params.keys()
    for key in model.params:
        np.testing.assert_array_equal(back.params[key], model.params[key])


@pytest.mark.parametrize("arrays, message", [
    ({"cell": np.array("exprnn")}, "unknown cell 'exprnn'; valid: rnn, lstm, gru"),
    ({"cell": np.array("gru"), "W_hh_0": np.zeros((6, 2))}, "missing keys: W_ih_0, b_ih_0, b_hh_0, W_hy, b_y"),
    ({"cell": np.array("gru"), "W_hh_0": np.zeros((6, 2)), "W_ih_0": np.zeros((6, 3)), "b_ih_0": np.zeros(6),
      "b_hh_0": np.zeros(5), "W_hy": np.zeros((1, 2)), "b_y": np.zeros(1)}, r"b_hh_0 must have shape \(6,\)"),
    ({"cell": np.array("gru"), "W_hh_0": np.zeros((8, 2)), "W_ih_0": np.zeros((8, 3)), "b_ih_0": np.zeros(8),
      "b_hh_0": np.zeros(8), "W_hy": np.zeros((1, 2)), "b_y": np.zeros(1)}, r"W_hh_0 must have shape \(3n, n\)"),
])
def test_bad_model_arrays_are_named(arrays, message):
    with pytest.raises(ValueError, match=message):
        cells.model_from_arrays(arrays)


# ---- PyTorch itself --------------------------------------------------------------------------------------------

TORCH = Path(__file__).parent / "references" / "torch_gru.npz"  # written by references/make_torch_gru.py


def _torch_reference(prefix: str) -> tuple[dict, GRU]:
    """The reference's arrays, and its model under `prefix` (torch_: as initialised, trained_: after the steps)."""
    ref = dict(np.load(TORCH))
    state = {k.removeprefix(prefix): v for k, v in ref.items() if k.startswith(prefix)}
    return ref, from_torch_state(state, state["W_hy"], state["b_y"])


def _last_step_batch(ref: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    T_ref, B_ref = ref["xs"].shape[:2]
    targets, mask = np.zeros((T_ref, B_ref), dtype=np.int64), np.zeros((T_ref, B_ref))
    targets[-1], mask[-1] = ref["targets"], 1.0
    return ref["xs"], targets, mask


def test_forward_and_gradients_match_pytorchs_nn_gru():
    """PyTorch computed these: a 2-layer nn.GRU (both biases), scored at the last step; every output, the final
    states, the loss and every gradient to 1e-10 relative."""
    ref, model = _torch_reference("torch_")
    xs, targets, mask = _last_step_batch(ref)
    trace = forward(model, xs)
    np.testing.assert_allclose(trace.h[-1][1:], ref["outputs"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(trace.y[-1], ref["y_last"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(cells.last_state(trace), ref["h_n"], rtol=1e-10, atol=1e-14)
    loss, dy = loss_and_dy(trace.y, targets, mask, "xent")
    assert loss == pytest.approx(float(ref["loss"]), rel=1e-10)
    grads, _ = bptt(model, trace, dy)
    for l in range(model.layers):
        for ours, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
            np.testing.assert_allclose(grads[f"{ours}_{l}"], ref[f"grad_{theirs}_l{l}"], rtol=1e-10, atol=1e-14,
                                       err_msg=f"{ours}_{l}")
    for key in ("W_hy", "b_y"):
        np.testing.assert_allclose(grads[key], ref[f"grad_{key}"], rtol=1e-10, atol=1e-14, err_msg=key)


def _train_like_the_reference(lr: float) -> tuple[dict, GRU]:
    ref, model = _torch_reference("torch_")
    xs, targets, mask = _last_step_batch(ref)
    optimizer = make_optimizer("adam", lr)
    for _ in range(int(ref["steps"])):
        stats = train_step(model, optimizer, xs, targets, mask, "xent", "global", float(ref["clip"]))
        assert stats.finite and stats.clip_scale < 1  # the clip acted at every step, so it is compared too
    return ref, model


def test_clipped_adam_steps_land_where_pytorchs_do():
    ref, model = _train_like_the_reference(float(ref_lr()))
    _, trained = _torch_reference("trained_")
    for key, value in trained.params.items():
        np.testing.assert_allclose(model.params[key], value, rtol=1e-10, atol=1e-13, err_msg=key)


def test_a_learning_rate_off_by_a_thousandth_misses_pytorchs_weights():
    """The comparison above can fail: the same steps at 1.001 x the learning rate land measurably elsewhere."""
    _, model = _train_like_the_reference(1.001 * float(ref_lr()))
    _, trained = _torch_reference("trained_")
    worst = max(relative_error(model.params[k], v) for k, v in trained.params.items())
    assert worst > 1e-7


def ref_lr() -> float:
    return float(np.load(TORCH)["lr"])
