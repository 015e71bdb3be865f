"""The cost model (run/cost.py): sizes, the memory estimate that train and sweep refuse cells by, and the counts of
work that `rnngrad plan` prices; the counts against the trainer itself, the memory bound against every spec."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pipeline.engine import evaluation, trainer
from pipeline.engine.init import init_model
from pipeline.engine.optim import make_optimizer
from pipeline.errors import UserError
from pipeline.run import cost
from pipeline.run.config import RunConfig
from pipeline.run.spec import load_spec

SPECS = sorted(Path("experiments").glob("*.yaml"))
SMALL = RunConfig(task="adding", seq_len=30, hidden=32, batch=16, val_size=1000, probe_len=30, iters=500)


@pytest.mark.parametrize("text, expected", [("1.5G", 1.5 * 2**30), ("2Gi", 2 * 2**30), ("2GiB", 2 * 2**30),
                                            ("1500M", 1500 * 2**20), ("512k", 512 * 2**10), ("1T", 2**40),
                                            (" 3 gb ", 3 * 2**30), ("4096", 4096)])
def test_sizes_read_as_slurm_and_kubernetes_write_them(text, expected):
    assert cost.parse_bytes(text) == int(expected)


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "0G", "1.5X", "G", "1e9"])
def test_a_size_that_is_not_one_is_refused_naming_the_option(text):
    with pytest.raises(UserError, match=r"--max-memory: .* is not a memory size; give .*1\.5G"):
        cost.parse_bytes(text)


def test_sizes_of_synthetic_tasks():
    sizes = cost.run_sizes(dataclasses.replace(SMALL, task="copy", seq_len=10, probe_len=100))
    assert (sizes.steps, sizes.input_dim, sizes.output_dim, sizes.loss) == (30, 10, 10, "xent")
    assert sizes.probe_steps == 30 and sizes.val_sequences == 1000
    assert sizes.data_bytes == 8 * 1000 * 30 * (10 + 1 + 1)  # x, int targets, mask
    probe = cost.run_sizes(dataclasses.replace(SMALL, task="probe"))
    assert probe.val_sequences == 0  # the probe task scores nothing: no validation pass


def test_a_text_run_needs_its_corpus_for_its_sizes():
    cfg = RunConfig(task="text", text="default", seq_len=25, probe_len=25)
    with pytest.raises(ValueError, match="corpus"):
        cost.run_sizes(cfg)
    sizes = cost.run_sizes(cfg, lambda c: (100_000, 80))
    assert (sizes.input_dim, sizes.output_dim, sizes.val_sequences, sizes.steps) == (80, 80, 128, 25)


@pytest.mark.parametrize("iters, every", [(0, 100), (1, 0), (7, 0), (300, 100), (250, 100), (30, 7), (5, 10)])
def test_validation_passes_are_counted_as_the_trainer_validates(iters, every):
    seen = []
    settings = trainer.TrainSettings(iters, "mse", eval_every=every)
    rng = np.random.default_rng(0)
    model = init_model(rng, input_dim=2, output_dim=1, hidden=3)[0]
    batch = (rng.standard_normal((4, 2, 2)), rng.standard_normal((4, 2, 1)), np.ones((4, 2)))
    trainer.train(model, make_optimizer("sgd", 0.01), lambda: batch, lambda m: seen.append(1) or (1.0, None), settings)
    counts = cost.work_counts(dataclasses.replace(SMALL, iters=iters, eval_every=every), cost.run_sizes(SMALL))
    assert counts.validation_passes == len(seen) and counts.train_steps == iters
    assert counts.probes == (1 if iters == 0 else 2)


def test_memory_grows_with_what_a_run_holds():
    base = cost.peak_bytes(SMALL, cost.run_sizes(SMALL))
    assert base > cost.BASE_BYTES
    for change in (dict(val_size=10_000), dict(hidden=256), dict(probe_len=30, seq_len=300), dict(layers=4),
                   dict(cell_type="lstm", form="elman")):
        cfg = dataclasses.replace(SMALL, **change)
        assert cost.peak_bytes(cfg, cost.run_sizes(cfg)) > base, change


def test_the_validation_chunk_is_the_one_the_run_uses():
    cfg = dataclasses.replace(SMALL, val_size=10_000, seq_len=200, hidden=128)
    sizes = cost.run_sizes(cfg)
    per_sequence = evaluation.trace_bytes_per_sequence("rnn", "elman", 1, 128, 1, 200)
    chunk = evaluation.chunk_sequences(10_000, per_sequence, evaluation.CHUNK_BYTES)
    assert chunk * per_sequence <= cost.validation_bytes(cfg, sizes) < 2 * evaluation.CHUNK_BYTES + 20 * 200 * 10_000


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_full_profile_cell_fits_in_1_5_gib(path):
    spec = load_spec(path, "full")
    sizes_of = cost.sizes_reader(Path("data"))
    needs = [cost.peak_bytes(cfg, sizes_of(cfg)) for cfg in spec.cells]
    assert max(needs) <= 1.5 * cost.GIB, (path.stem, cost.format_bytes(max(needs)))


def test_a_cell_above_the_limit_is_refused_with_its_number_and_the_largest_named():
    small, big = SMALL, dataclasses.replace(SMALL, val_size=100_000, seq_len=200)
    cells = [(f"cell {i}", cfg, cost.run_sizes(cfg)) for i, cfg in enumerate([small, big, small])]
    limit = cost.peak_bytes(small, cost.run_sizes(small))
    cost.check_memory(cells[:1], limit)  # at the limit: accepted
    with pytest.raises(UserError, match=r"^cell 1: needs about .* of memory, above --max-memory .* \(1 of 3 cells"):
        cost.check_memory(cells, limit)
    cost.check_memory(cells, None)  # no limit: no check


def test_the_default_limit_is_the_machines_memory_shared_by_its_workers(monkeypatch):
    monkeypatch.setattr(cost, "physical_memory", lambda: 16 * cost.GIB)
    assert cost.memory_limit("", 4) == 4 * cost.GIB
    assert cost.memory_limit("", None) is None  # workers elsewhere: no default
    assert cost.memory_limit("3G", None) == 3 * cost.GIB
    assert cost.format_bytes(1.5 * cost.GIB) == "1.50 GiB" and cost.format_bytes(300 * cost.MIB) == "300 MiB"
