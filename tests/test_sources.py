"""A run's data stream: fresh training batches from the run's seeded stream, a fixed validation set from its own
generator, and the chance numbers the runner reports."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.engine import tasks
from pipeline.run import datasets, sources
from pipeline.run.config import RunConfig


def source(tmp_path, **overrides) -> sources.Source:
    cfg = RunConfig(**{**dict(task="adding", seq_len=12, val_size=50, batch=8, hidden=4), **overrides})
    return sources.make_source(cfg, tmp_path / "no_data")  # absent data/: the same arrays, built in memory


def draws(src: sources.Source, seed: int, n: int = 3) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [src.draw(rng) for _ in range(n)]


@pytest.mark.parametrize("task", ["adding", "temporal_order", "copy"])
def test_training_batches_are_fresh_and_reproducible(tmp_path, task):
    src = source(tmp_path, task=task)
    first, again, other = draws(src, 1), draws(src, 1), draws(src, 2)
    for a, b in zip(first, again):  # same seed: the same batches, bit for bit
        assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(first[0][0], other[0][0])  # another seed: other sequences
    assert not np.array_equal(first[0][0], first[1][0])  # every step a new batch, not a resample of a fixed set
    xs, targets, mask = first[0]
    S = tasks.sequence_steps(task, 12)
    assert xs.shape[:2] == (S, 8) and targets.shape[:2] == (S, 8) and mask.shape == (S, 8)  # time-major (T, B)
    want = tasks.make_task(task, 12, 8, np.random.default_rng(1))  # exactly make_task on the batch stream
    assert np.array_equal(xs, np.swapaxes(want.x, 0, 1)) and np.array_equal(mask, want.mask.T)


def test_training_never_draws_from_the_validation_generator(tmp_path):
    """Even with seed = data_seed, the run's batch stream (spawned from `seed`) is not the validation generator
    (default_rng(data_seed)): no training sequence is a validation sequence."""
    cfg = RunConfig(task="adding", seq_len=12, val_size=200, batch=200, seed=0, data_seed=0)
    src = sources.make_source(cfg, tmp_path / "no_data")
    val_x = np.swapaxes(src.val[0], 0, 1)  # (N, S, d)
    assert np.array_equal(val_x, datasets.build_dataset("adding", 12, 200, 0).x)
    rng_batch = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(3)[1])  # as runner._run spawns it
    for _ in range(5):
        train_x = np.swapaxes(src.draw(rng_batch)[0], 0, 1)  # (B, S, d)
        same = (train_x[:, None] == val_x[None, :]).all(axis=(2, 3))  # (B, N): sequence pairs equal
        assert not same.any()


def test_validation_is_the_whole_held_out_set(tmp_path):
    src = source(tmp_path, val_size=1500)  # more than any former cap: all of it validates
    assert src.val[0].shape[1] == 1500 and src.val[2].shape == (12, 1500)
    assert src.chance_loss == pytest.approx(1 / 24) and src.tolerance == tasks.ADDING_TOLERANCE


def test_unigram_chance_by_hand():
    ids = np.array([0, 0, 1, 2, 0, 1])  # "aabcab": a 3/6, b 2/6, c 1/6; the fourth character never occurs
    loss, accuracy = sources.unigram_chance(ids, 4)
    assert loss == pytest.approx(-(0.5 * math.log(0.5) + (1 / 3) * math.log(1 / 3) + (1 / 6) * math.log(1 / 6)))
    assert accuracy == pytest.approx(0.5)
    assert sources.unigram_chance(np.zeros(7, dtype=np.int64), 3) == (0.0, 1.0)  # one character: nothing to guess
