"""The validation pass in chunks (engine/evaluation.py) gives the numbers of one forward pass over the whole batch,
bit for bit, on every task, both cells, stacks and both forms; and a chunk is sized to its memory budget."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from pipeline.engine import evaluation, tasks
from pipeline.engine.cells import forward
from pipeline.engine.init import init_lstm, init_model
from pipeline.engine.rnn import loss_and_dy
from pipeline.run.sources import task_accuracy

OUTPUTS = {"adding": 1, "temporal_order": 6, "copy": 10}


def time_major(a):
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


def make_model(cell, rng, d, o):
    if cell == "lstm":
        return init_lstm(rng, input_dim=d, output_dim=o, layers=2, hidden=12, init="orthogonal", gamma_w=1.0,
                         input_scale=None, output_scale=None)
    form, activation = {"elman": ("elman", "tanh"), "pascanu": ("pascanu", "tanh"), "relu": ("elman", "relu")}[cell]
    return init_model(rng, form=form, activation=activation, leaky_slope=0.01, input_dim=d, output_dim=o,
                      layers=2 if cell == "relu" else 1, hidden=16, init="gaussian", gamma_w=1.5, input_scale=None,
                      output_scale=None)[0]


def one_pass(model, xs, targets, mask, kind, tolerance):
    """What validation computed before it was chunked: one forward pass over the whole batch."""
    y = forward(model, xs).y
    return loss_and_dy(y, targets, mask, kind)[0], task_accuracy(y, targets, mask, kind, tolerance)


@pytest.mark.parametrize("task", sorted(OUTPUTS))
@pytest.mark.parametrize("cell", ["elman", "pascanu", "relu", "lstm"])
@pytest.mark.parametrize("batch", [1, 13, 64, 203])
def test_chunks_equal_one_pass_bit_for_bit(task, cell, batch):
    rng = np.random.default_rng(batch)
    data = tasks.make_task(task, 12, batch, rng)
    xs, targets, mask = time_major(data.x), time_major(data.y), time_major(data.mask)
    kind, tolerance = ("mse", tasks.ADDING_TOLERANCE) if task == "adding" else ("xent", None)
    model = make_model(cell, rng, xs.shape[-1], OUTPUTS[task])
    with threadpool_limits(limits=1, user_api="blas"):  # as a run computes
        expected = one_pass(model, xs, targets, mask, kind, tolerance)
        for chunk in (8, 24, 200, batch):
            assert evaluation.evaluate_in_chunks(model, xs, targets, mask, kind, tolerance, chunk) == expected


def test_token_ids_in_chunks_equal_one_pass():
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 30, size=(20, 37)), rng.integers(0, 30, size=(20, 37))
    mask = np.ones((20, 37))
    model = make_model("elman", rng, 30, 30)
    expected = one_pass(model, ids, targets, mask, "xent", None)
    assert evaluation.evaluate_in_chunks(model, ids, targets, mask, "xent", None, 8) == expected


def test_mse_without_tolerance_has_no_success_rate():
    rng = np.random.default_rng(1)
    data = tasks.make_task("adding", 10, 16, rng)
    xs, targets, mask = time_major(data.x), time_major(data.y), time_major(data.mask)
    model = make_model("elman", rng, 2, 1)
    loss, accuracy = evaluation.evaluate_in_chunks(model, xs, targets, mask, "mse", None, 8)
    assert accuracy is None and loss == one_pass(model, xs, targets, mask, "mse", None)[0]


def test_chunk_sizes_fit_the_budget_in_multiples_of_the_alignment():
    assert evaluation.chunk_sequences(10_000, 1000, 64_000) == 64
    assert evaluation.chunk_sequences(10_000, 1000, 60_000) == 56  # rounded down to a multiple of 8
    assert evaluation.chunk_sequences(10_000, 10**9, 1000) == evaluation.CHUNK_ALIGN  # at least one aligned chunk
    assert evaluation.chunk_sequences(5, 1000, 10**9) == 5  # never more than the batch
    # a long_range validation set (10,000 sequences of 200 steps, 128 units) in chunks of at most CHUNK_BYTES
    per_sequence = evaluation.trace_bytes_per_sequence("rnn", "elman", 1, 128, 1, 200)
    chunk = evaluation.chunk_sequences(10_000, per_sequence, evaluation.CHUNK_BYTES)
    assert chunk % evaluation.CHUNK_ALIGN == 0 and chunk * per_sequence <= evaluation.CHUNK_BYTES < 10_000 * per_sequence


@pytest.mark.parametrize("chunk", [0, 12, 2.0])
def test_a_chunk_that_breaks_the_alignment_is_refused(chunk):
    mask = np.ones((3, 40))
    with pytest.raises(ValueError, match="chunk must be"):
        evaluation.evaluate_in_chunks(make_model("elman", np.random.default_rng(0), 2, 1), np.zeros((3, 40, 2)),
                                      np.zeros((3, 40, 1)), mask, "mse", None, chunk)
