"""The engine's faster forms compute the same bits as the plain formulas they replace: a run's numbers must not move
when its code gets faster (the LSTM's gates in four passes over all gates, Lanczos's products a few at a time)."""

import numpy as np
import pytest

from pipeline.engine import linalg, lstm


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
