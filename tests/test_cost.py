"""The cost model (run/cost.py): sizes, the memory estimate that train and sweep refuse cells by, and the counts of
work that `rnngrad plan` prices; the counts against the trainer itself, the memory bound against every spec."""

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline.engine import evaluation, trainer
from pipeline.engine.init import init_model
from pipeline.engine.optim import make_optimizer
from pipeline.errors import UserError
from pipeline.engine.cells import forward
from pipeline.run import cost, depthprobe, runner
from pipeline.run.depthprobe import cross_layer
from pipeline.run.sources import make_source, scores_positions
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
    trainer.train(model, make_optimizer("sgd", 0.01), lambda: batch, lambda m, state: seen.append(1) or (1.0, None), settings)
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


def test_jobs_0_counts_the_cpus_this_process_may_use(monkeypatch):
    from pipeline.run import cost

    monkeypatch.setattr(cost.os, "sched_getaffinity", lambda pid: {1}, raising=False)  # as under `taskset -c 1`
    monkeypatch.setattr(cost.os, "cpu_count", lambda: 8)
    assert cost.usable_cpus() == 1
    monkeypatch.delattr(cost.os, "sched_getaffinity")  # no affinity on this system (macOS): every CPU
    assert cost.usable_cpus() == 8


# ---- the other cells and the probe across layers: the estimate against what numpy allocates ----------------------

MEASURED = RunConfig(task="adding", seq_len=60, probe_len=60, hidden=48, batch=32, val_size=512, iters=3,
                     init="orthogonal", gamma_w=1.0, clip_mode="global", clip_threshold=1.0)


def traced_peak(work) -> int:
    """The peak of the bytes Python and numpy allocate while `work()` runs, above what was held before."""
    tracemalloc.start()
    try:
        held = tracemalloc.get_traced_memory()[0]
        work()
        return tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()


def twin(cfg: RunConfig, tmp_path: Path):
    src = make_source(cfg, tmp_path)  # nothing written there: a synthetic task is built in memory
    return src, runner.new_model(cfg, src, np.random.default_rng(0))


@pytest.mark.parametrize("cell, layers", [("rnn", 1), ("rnn", 3), ("lstm", 2), ("gru", 1), ("gru", 3),
                                          ("exprnn", 2)])
def test_a_training_step_needs_what_the_estimate_says(cell, layers, tmp_path):
    cfg = dataclasses.replace(MEASURED, cell_type=cell, layers=layers, form="elman")
    sizes = cost.run_sizes(cfg)
    src, model = twin(cfg, tmp_path)
    batch = src.draw(np.random.default_rng(1))
    settings = trainer.TrainSettings(3, src.loss_kind, "global", 1.0, 0, 1, scores_positions(src))
    used = traced_peak(lambda: trainer.train(model.copy(), make_optimizer("adam", 0.001), lambda: batch,
                                             lambda m, state: (None, None), settings))
    assert used <= cost.training_bytes(cfg, sizes) <= 2 * used, (used, cost.training_bytes(cfg, sizes))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_validation_chunk_holds_the_trace_the_chunk_size_assumes(cell, tmp_path):
    cfg = dataclasses.replace(MEASURED, cell_type=cell, layers=2)
    src, model = twin(cfg, tmp_path)
    xs = src.val[0][:, :8]
    trace = forward(model, xs)
    arrays = [a for part in vars(trace).values() for a in (part if isinstance(part, list) else [part])
              if isinstance(a, np.ndarray)]
    owners = {id(a.base if a.base is not None else a): a.base if a.base is not None else a for a in arrays}
    held = sum(a.nbytes for a in owners.values() if not np.shares_memory(a, xs)) / xs.shape[1]  # each buffer once
    per_sequence = evaluation.trace_bytes_per_sequence(cell, "elman", 2, cfg.hidden, 1, cfg.seq_len)
    assert held <= per_sequence <= 1.5 * held, (held, per_sequence)


@pytest.mark.parametrize("layers, form", [(3, "elman"), (4, "pascanu")])
def test_the_probe_across_layers_needs_what_the_estimate_says(layers, form, tmp_path):
    cfg = dataclasses.replace(MEASURED, layers=layers, form=form)
    sizes = cost.run_sizes(cfg)
    src, model = twin(cfg, tmp_path)
    used = traced_peak(lambda: cross_layer(model, src.probe, "init"))
    assert used <= cost.across_bytes(cfg, sizes) <= 2 * used, (used, cost.across_bytes(cfg, sizes))
    assert cost.peak_bytes(cfg, sizes) >= cost.BASE_BYTES + cost.across_bytes(cfg, sizes)


def test_only_a_stacked_vanilla_run_probes_across_layers_and_does_so_twice(tmp_path, monkeypatch):
    calls = []
    real = depthprobe.cross_layer
    monkeypatch.setattr(depthprobe, "cross_layer", lambda *a: calls.append(1) or real(*a))
    for cfg in (RunConfig(task="adding", seq_len=5, hidden=4, batch=2, iters=2, val_size=8, probe_len=5, layers=l,
                          cell_type=c, init="orthogonal", gamma_w=1.0, eval_every=0)
                for c, l in (("rnn", 2), ("exprnn", 2), ("rnn", 1), ("gru", 2))):
        calls.clear()
        runner.execute_run(cfg, tmp_path, tmp_path / f"{cfg.cell_type}{cfg.layers}")
        counts = cost.work_counts(cfg, cost.run_sizes(cfg))
        assert counts.across_probes == len(calls) == (2 if cfg.layers > 1 and cfg.cell_type != "gru" else 0)
        assert (cost.across_bytes(cfg, cost.run_sizes(cfg)) > 0) == (counts.across_probes > 0)
