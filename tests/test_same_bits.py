"""The engine's faster forms compute the same bits as the plain formulas they replace: a run's numbers must not move
when its code gets faster (the LSTM's gates in four passes over all gates, Lanczos's products a few at a time)."""

import numpy as np
import pytest

from pipeline.engine import gru, linalg, lstm


@pytest.mark.parametrize("seed", range(20))
def test_the_lstm_gates_in_one_pass_are_sigmoid_and_tanh_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    B, n = int(rng.integers(1, 40)), int(rng.integers(1, 70))
    a = rng.standard_normal((B, 4 * n)) * rng.uniform(0.1, 30.0)
    a[0, :4] = [0.0, -0.0, 40.0, -40.0][: min(4, 4 * n)]  # zeros of both signs, saturation
    plain = a.copy()
    for part in (slice(0, 2 * n), slice(3 * n, 4 * n)):
        lstm.sigmoid(plain[:, part], out=plain[:, part])
    np.tanh(plain[:, 2 * n : 3 * n], out=plain[:, 2 * n : 3 * n])
    fused = a.copy()
    lstm._activate_gates(fused, *lstm._gate_affine(n))
    assert np.array_equal(fused, plain) and np.array_equal(np.signbit(fused), np.signbit(plain))


@pytest.mark.parametrize("m, n", [(1, 3), (7, 5), (40, 128), (65, 128), (300, 20)])
def test_lanczos_products_a_few_at_a_time_are_the_whole_stacks_bits(m, n):
    rng = np.random.default_rng(m * n)
    stack, v = rng.standard_normal((m, n, n)), rng.standard_normal((m, n))
    whole = np.matmul(stack, np.matmul(stack.transpose(0, 2, 1), v[:, :, None]))[:, :, 0]
    assert np.array_equal(linalg._normal_matvecs(stack, v), whole)


def _plain_gru_backward(W, gates, h, hn, dh_in):
    """The GRU's BPTT through one layer written step by step from `gru._step_factors`: (dE/di_t, dE/dm_t, dE/dh_0)."""
    T, B, n = dh_in.shape
    r, z, f_n, f_z, f_r = gru._step_factors(gates, h[:-1], hn)
    dA_in, dA_hid, dh_rec = np.empty((T, B, 3 * n)), np.empty((T, B, 3 * n)), np.zeros((B, n))
    for t in reversed(range(T)):
        dh = dh_in[t] + dh_rec
        da_n = dh * f_n[t]
        dA_in[t] = np.concatenate([da_n * f_r[t], dh * f_z[t], da_n], axis=1)
        dA_hid[t] = np.concatenate([da_n * f_r[t], dh * f_z[t], da_n * r[t]], axis=1)
        dh_rec = dA_hid[t] @ W
        dh_rec += dh * z[t]
    return dA_in, dA_hid, dh_rec


@pytest.mark.parametrize("seed", range(10))
def test_the_gru_backward_in_fused_passes_is_the_step_by_step_formulas_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    T, B, n, d = int(rng.integers(1, 30)), int(rng.integers(1, 25)), int(rng.integers(1, 30)), 3
    model = gru.GRU({"W_ih_0": rng.standard_normal((3 * n, d)), "W_hh_0": rng.standard_normal((3 * n, n)) / np.sqrt(n),
                     "b_ih_0": rng.standard_normal(3 * n), "b_hh_0": rng.standard_normal(3 * n),
                     "W_hy": rng.standard_normal((2, n)), "b_y": rng.standard_normal(2)})
    trace = gru.forward(model, rng.standard_normal((T, B, d)) * 2.0)
    dh_in = rng.standard_normal((T, B, n))
    dA_in, dA_hid, signal = np.empty((T, B, 3 * n)), np.empty((T, B, 3 * n)), np.empty(T + 1)
    gru._layer_backward(model.params["W_hh_0"], trace.gates[0], trace.h[0], trace.hn[0], dh_in, dA_in, dA_hid, signal)
    plain_in, plain_hid, dh_0 = _plain_gru_backward(model.params["W_hh_0"], trace.gates[0], trace.h[0], trace.hn[0],
                                                    dh_in)
    assert np.array_equal(dA_in, plain_in) and np.array_equal(dA_hid, plain_hid)
    assert signal[0] == np.sqrt(np.vdot(dh_0, dh_0))
