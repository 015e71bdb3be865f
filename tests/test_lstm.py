"""The LSTM engine against independent references: finite differences of the loss and of one step, the step
equations of docs/math.md (section 13) written out plainly, one-hot inputs; plus its init and model files."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from pipeline.engine import cells
from pipeline.engine.init import init_lstm
from pipeline.engine.lstm import (
    LSTM, bptt, forward, from_torch_state, jacobians_from_trace, last_state, step_jacobians,
)
from pipeline.engine.optim import make_optimizer
from pipeline.engine.rnn import loss_and_dy, one_hot
from pipeline.engine.trainer import train_step
from pipeline.run.files import load_model, save_model
from tests.test_rnn import central_difference, relative_error

D_IN, N, D_OUT, T, B = 3, 4, 3, 5, 2


def random_lstm(rng, layers, input_dim=D_IN):
    """A small LSTM with random biases (every gate away from its saturation)."""
    model = init_lstm(rng, input_dim=input_dim, output_dim=D_OUT, layers=layers, hidden=N, init="gaussian",
                      gamma_w=1.1, input_scale=0.8)
    for key in model.params:
        if key.startswith("b"):
            model.params[key] = 0.4 * rng.standard_normal(model.params[key].shape)
    return model


def random_problem(seed, layers, kind):
    rng = np.random.default_rng(seed)
    model = random_lstm(rng, layers)
    xs = rng.standard_normal((T, B, D_IN))
    h0 = 0.5 * rng.standard_normal((layers, B, 2 * N))
    targets = rng.integers(0, D_OUT, (T, B)) if kind == "xent" else rng.standard_normal((T, B, D_OUT))
    mask = np.ones((T, B))
    mask[1, 0] = 0.0
    return model, xs, h0, targets, mask


def loss_of(model, xs, h0, targets, mask, kind):
    return loss_and_dy(forward(model, xs, h0).y, targets, mask, kind)[0]


def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_forward(model, xs, h0):
    """The equations of docs/math.md 13.1, one sequence (T, d) at a time, no shared code with lstm.py: (hs, cs)
    per layer, each (T+1, n), and the readout (T, o)."""
    p, n = model.params, model.hidden
    x, hs, cs = xs, [], []
    for l in range(model.layers):
        h, c = [h0[l, :n]], [h0[l, n:]]
        for t in range(xs.shape[0]):
            a = p[f"W_ih_{l}"] @ x[t] + p[f"W_hh_{l}"] @ h[-1] + p[f"b_{l}"]
            i, f, g, o = sig(a[:n]), sig(a[n:2 * n]), np.tanh(a[2 * n:3 * n]), sig(a[3 * n:])
            c.append(f * c[-1] + i * g)
            h.append(o * np.tanh(c[-1]))
        hs.append(np.array(h))
        cs.append(np.array(c))
        x = hs[-1][1:]
    return hs, cs, x @ p["W_hy"].T + p["b_y"]


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
    # the signal at k = 0 is the norm of dE/d(h_0, c_0), and the initial state is an input of forward
    dE_ds0 = central_difference(f, h0)
    for l in range(layers):
        assert signal[l, 0] == pytest.approx(np.linalg.norm(dE_ds0[l]), rel=1e-6, abs=1e-9)


def test_signal_at_every_step_matches_finite_differences():
    """One layer: E as a function of the state (h_k, c_k) (readout of h_k at k, the run restarted from it)."""
    model, xs, h0, targets, mask = random_problem(3, 1, "xent")
    trace = forward(model, xs, h0)
    _, dy = loss_and_dy(trace.y, targets, mask, "xent")
    _, signal = bptt(model, trace, dy)
    W_hy, b_y = model.params["W_hy"], model.params["b_y"]

    def loss_from_state(k, s_k):  # s_k (B, 2n) replaces the state after x_k
        y = trace.y.copy()
        y[k - 1] = s_k[:, :N] @ W_hy.T + b_y
        if k < T:
            y[k:] = forward(model, xs[k:], s_k[None]).y
        return loss_and_dy(y, targets, mask, "xent")[0]

    for k in range(1, T + 1):
        s_k = np.concatenate([trace.h[0][k], trace.c[0][k]], axis=-1)
        numeric = central_difference(lambda: loss_from_state(k, s_k), s_k)
        assert signal[0, k] == pytest.approx(np.linalg.norm(numeric), rel=1e-6), k


# ---- the forward pass ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 3])
def test_forward_follows_the_equations(layers):
    rng = np.random.default_rng(layers)
    model = random_lstm(rng, layers)
    xs, h0 = rng.standard_normal((T, B, D_IN)), rng.standard_normal((layers, B, 2 * N))
    trace = forward(model, xs, h0)
    for b in range(B):
        hs, cs, y = reference_forward(model, xs[:, b], h0[:, b])
        for l in range(layers):
            np.testing.assert_allclose(trace.h[l][:, b], hs[l], rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(trace.c[l][:, b], cs[l], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(trace.y[:, b], y, rtol=1e-13, atol=1e-15)
    final = last_state(trace)
    np.testing.assert_array_equal(final[:, :, :N], np.stack([h[-1] for h in trace.h]))
    np.testing.assert_array_equal(final[:, :, N:], np.stack([c[-1] for c in trace.c]))


def test_token_ids_give_the_same_model_as_one_hot_vectors():
    rng = np.random.default_rng(5)
    model = random_lstm(rng, 2, input_dim=7)
    ids = rng.integers(0, 7, (T, B))
    targets, mask = rng.integers(0, D_OUT, (T, B)), np.ones((T, B))
    by_ids, by_vectors = forward(model, ids), forward(model, one_hot(ids, 7))
    np.testing.assert_allclose(by_ids.y, by_vectors.y, rtol=1e-14, atol=1e-15)
    g_ids = bptt(model, by_ids, loss_and_dy(by_ids.y, targets, mask, "xent")[1])[0]
    g_vec = bptt(model, by_vectors, loss_and_dy(by_vectors.y, targets, mask, "xent")[1])[0]
    for key in model.params:
        np.testing.assert_allclose(g_ids[key], g_vec[key], rtol=1e-12, atol=1e-15, err_msg=key)


def test_forward_names_a_bad_initial_state():
    model = random_lstm(np.random.default_rng(0), 1)
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 2, 8\).*h then c"):
        forward(model, np.zeros((T, B, D_IN)), np.zeros((1, B, N)))


# ---- step Jacobians -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers, layer", [(1, 0), (2, 0), (2, 1)])
def test_step_jacobians_match_finite_differences_of_one_step(layers, layer):
    """J_t against central differences of the step (h_{t-1}, c_{t-1}) -> (h_t, c_t) with x_t's drive fixed."""
    rng = np.random.default_rng(layers + layer)
    model = random_lstm(rng, layers)
    xs, h0 = rng.standard_normal((T, D_IN)), rng.standard_normal((layers, 2 * N))
    J = step_jacobians(model, xs, h0, layer)
    trace = forward(model, xs[:, None], h0[:, None])
    one_layer = LSTM({"W_ih_0": model.params[f"W_ih_{layer}"], "W_hh_0": model.params[f"W_hh_{layer}"],
                      "b_0": model.params[f"b_{layer}"], "W_hy": model.params["W_hy"], "b_y": model.params["b_y"]})
    x_in = trace.inputs[layer][:, 0]
    for t in range(1, T + 1):
        s = np.concatenate([trace.h[layer][t - 1, 0], trace.c[layer][t - 1, 0]])

        def step():
            out = forward(one_layer, x_in[t - 1 : t, None], s[None, None])
            return np.concatenate([out.h[0][1, 0], out.c[0][1, 0]])

        numeric = np.zeros((2 * N, 2 * N))
        for j in range(2 * N):
            keep = s[j]
            s[j] = keep + 1e-6
            up = step()
            s[j] = keep - 1e-6
            down = step()
            s[j] = keep
            numeric[:, j] = (up - down) / 2e-6
        np.testing.assert_allclose(J[t - 1], numeric, rtol=1e-7, atol=1e-9, err_msg=f"t={t}")


def test_block_layout_with_zero_recurrent_weights():
    """A sanity check of the block layout (not independent of the code): with W_hh = 0 the Jacobian is
    [[0, diag(q f)], [0, diag(f)]]."""
    n = 3
    rng = np.random.default_rng(1)
    gates = sig(rng.standard_normal((2, 4 * n)))
    c, tc = rng.standard_normal((3, n)), np.tanh(rng.standard_normal((2, n)))
    J = jacobians_from_trace(np.zeros((4 * n, n)), gates, c, tc)
    f, o = gates[:, n:2 * n], gates[:, 3 * n:]
    for t in range(2):
        np.testing.assert_array_equal(J[t, :, :n], 0.0)
        np.testing.assert_allclose(J[t, n:, n:], np.diag(f[t]))
        np.testing.assert_allclose(J[t, :n, n:], np.diag(o[t] * (1 - tc[t] ** 2) * f[t]))


# ---- init, training, files -----------------------------------------------------------------------------------


def test_init_follows_its_recipe():
    model = init_lstm(np.random.default_rng(0), input_dim=5, output_dim=2, layers=2, hidden=6, init="orthogonal",
                      gamma_w=0.9)
    assert (model.layers, model.hidden, model.input_dim, model.output_dim) == (2, 6, 5, 2)
    for l in range(2):
        b = model.params[f"b_{l}"]
        np.testing.assert_array_equal(b[6:12], 1.0)  # the forget gate
        np.testing.assert_array_equal(np.delete(b, np.s_[6:12]), 0.0)
        for j in range(4):  # every gate's block is 0.9 times an orthogonal matrix
            block = model.params[f"W_hh_{l}"][6 * j : 6 * (j + 1)]
            np.testing.assert_allclose(block @ block.T, 0.81 * np.eye(6), atol=1e-12)
    assert model.params["W_ih_1"].shape == (24, 6)


def test_a_training_step_lowers_the_loss_of_its_batch():
    model, xs, h0, targets, mask = random_problem(11, 2, "xent")
    before = loss_of(model, xs, h0, targets, mask, "xent")
    stats = train_step(model, make_optimizer("sgd", 0.05, 0.0), xs, targets, mask, "xent", "none", 1.0, h0)
    assert stats.finite and stats.h_last.shape == (2, B, 2 * N)
    assert loss_of(model, xs, h0, targets, mask, "xent") < before


def test_save_load_round_trip_is_exact(tmp_path):
    model = random_lstm(np.random.default_rng(2), 2)
    save_model(model, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        assert str(z["cell"]) == "lstm"
    back = load_model(tmp_path / "m.npz")
    assert isinstance(back, LSTM) and back.params.keys() == model.params.keys()
    for key in model.params:
        np.testing.assert_array_equal(back.params[key], model.params[key])


def test_a_vanilla_file_without_a_cell_entry_reads_as_rnn(tmp_path):
    from pipeline.engine.init import init_model

    model, _ = init_model(np.random.default_rng(0), input_dim=2, output_dim=1, hidden=3)
    save_model(model, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        assert "cell" not in z.files  # the vanilla file's keys are as they always were
    assert load_model(tmp_path / "m.npz").cell == "rnn"


@pytest.mark.parametrize("arrays, message", [
    ({"cell": np.array("elman")}, "unknown cell 'elman'; valid: rnn, lstm, gru"),
    ({"cell": np.array("lstm"), "W_hh_0": np.zeros((8, 2))}, "missing keys: W_ih_0, b_0, W_hy, b_y"),
    ({"cell": np.array("lstm"), "W_hh_0": np.zeros((8, 2)), "W_ih_0": np.zeros((8, 3)), "b_0": np.zeros(7),
      "W_hy": np.zeros((1, 2)), "b_y": np.zeros(1)}, r"b_0 must have shape \(8,\)"),
])
def test_bad_model_arrays_are_named(arrays, message):
    with pytest.raises(ValueError, match=message):
        cells.model_from_arrays(arrays)


def test_a_pytorch_state_dict_runs_as_pytorch_documents_it():
    """nn.LSTM's documented equations, with its two biases kept apart, written out here on a state dict's arrays."""
    from pipeline.engine.lstm import from_torch_state

    rng = np.random.default_rng(8)
    n, layers = 3, 2
    state = {}
    for l in range(layers):
        d_in = D_IN if l == 0 else n
        state |= {f"weight_ih_l{l}": rng.standard_normal((4 * n, d_in)),
                  f"weight_hh_l{l}": rng.standard_normal((4 * n, n)), f"bias_ih_l{l}": rng.standard_normal(4 * n), f"bias_hh_l{l}": rng.standard_normal(4 * n)}
    W_hy, b_y = rng.standard_normal((D_OUT, n)), rng.standard_normal(D_OUT)
    model = from_torch_state(state, W_hy, b_y)
    xs = rng.standard_normal((T, D_IN))
    x = xs
    for l in range(layers):
        h, c, out = np.zeros(n), np.zeros(n), []
        Wi, Wh = state[f"weight_ih_l{l}"], state[f"weight_hh_l{l}"]
        bi, bh = state[f"bias_ih_l{l}"], state[f"bias_hh_l{l}"]
        for t in range(T):
            gi, gf, gg, go = (Wi[j * n:(j + 1) * n] @ x[t] + bi[j * n:(j + 1) * n] + Wh[j * n:(j + 1) * n] @ h
                              + bh[j * n:(j + 1) * n] for j in range(4))
            c = sig(gf) * c + sig(gi) * np.tanh(gg)
            h = sig(go) * np.tanh(c)
            out.append(h)
        x = np.array(out)
    np.testing.assert_allclose(forward(model, xs[:, None]).y[:, 0], x @ W_hy.T + b_y, rtol=1e-12, atol=1e-14)


TORCH = Path(__file__).parent / "references" / "torch_lstm.npz"  # written by references/make_torch_lstm.py


def _torch_reference(prefix: str) -> tuple[dict, LSTM]:
    """The reference's arrays, and its model under `prefix` (torch_: as initialised, trained_: after the steps)."""
    ref = dict(np.load(TORCH))
    state = {k.removeprefix(prefix): v for k, v in ref.items() if k.startswith(prefix)}
    return ref, from_torch_state(state, state["W_hy"], state["b_y"])


def _last_step_batch(ref: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    T, B = ref["xs"].shape[:2]
    targets, mask = np.zeros((T, B), dtype=np.int64), np.zeros((T, B))
    targets[-1], mask[-1] = ref["targets"], 1.0
    return ref["xs"], targets, mask


def test_forward_and_gradients_match_pytorchs_nn_lstm():
    """PyTorch computed these (tests/references): a 2-layer nn.LSTM with both biases, scored at the last step."""
    ref, model = _torch_reference("torch_")
    xs, targets, mask = _last_step_batch(ref)
    trace = forward(model, xs)
    np.testing.assert_allclose(trace.y[-1], ref["y_last"], rtol=1e-12, atol=1e-14)
    n = model.hidden
    final = last_state(trace)  # (L, B, 2n): h then c
    np.testing.assert_allclose(final[..., :n], ref["h_n"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(final[..., n:], ref["c_n"], rtol=1e-12, atol=1e-14)
    loss, dy = loss_and_dy(trace.y, targets, mask, "xent")
    assert loss == pytest.approx(float(ref["loss"]), rel=1e-13)
    grads, _ = bptt(model, trace, dy)
    for l in range(model.layers):
        for ours, theirs in ((f"W_ih_{l}", f"weight_ih_l{l}"), (f"W_hh_{l}", f"weight_hh_l{l}"),
                             (f"b_{l}", f"bias_ih_l{l}"), (f"b_{l}", f"bias_hh_l{l}")):
            np.testing.assert_allclose(grads[ours], ref[f"grad_{theirs}"], rtol=1e-10, atol=1e-14, err_msg=ours)
    for key in ("W_hy", "b_y"):
        np.testing.assert_allclose(grads[key], ref[f"grad_{key}"], rtol=1e-10, atol=1e-14, err_msg=key)


def test_three_clipped_adam_steps_land_where_pytorchs_do():
    ref, model = _torch_reference("torch_")  # b = b_ih + b_hh: the one bias per layer the reference trained
    xs, targets, mask = _last_step_batch(ref)
    optimizer = make_optimizer("adam", float(ref["lr"]))
    for _ in range(int(ref["steps"])):
        stats = train_step(model, optimizer, xs, targets, mask, "xent", "global", float(ref["clip"]))
        assert stats.finite and stats.clip_scale < 1  # the clip acted at every step, so it is compared too
    _, trained = _torch_reference("trained_")
    for key, value in trained.params.items():
        np.testing.assert_allclose(model.params[key], value, rtol=1e-10, atol=1e-13, err_msg=key)
