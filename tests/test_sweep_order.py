"""The order a sweep computes its cells in (longest first, the table still in grid order) and its worker pool started
before the store is opened."""

import dataclasses
import multiprocessing
import textwrap
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from pipeline import tracking
from pipeline.errors import UserError
from pipeline.run import cost
from pipeline.run.config import RunConfig
from pipeline.run.spec import load_spec
from pipeline.sweep import cells_to_compute, plan_cells, run_sweep
from pipeline.sweep.order import estimated_work, longest_first
from test_sweep import _calls, cli_app, config_hash, env, fake_execute  # noqa: F401 (cli_app, env: fixtures)
from test_tracking import empty_db  # noqa: F401 (a fixture)


def work(**changes) -> float:
    cfg = dataclasses.replace(RunConfig(task="adding", seq_len=20, hidden=16, iters=100), **changes)
    return estimated_work(cfg, cost.run_sizes(cfg))


def test_the_estimate_grows_with_every_size_a_run_repeats_its_work_over():
    base = work()
    for changes in ({"seq_len": 40}, {"hidden": 32}, {"layers": 2}, {"iters": 200}, {"batch": 64},
                    {"probe_len": 40, "seq_len": 40}, {"cell_type": "lstm"}, {"cell_type": "gru"}):
        assert work(**changes) > base, changes
    assert work(gamma_w=3.0, seed=4, lr=0.1) == base  # what does not change the work does not change the estimate


def order_spec(folder: Path) -> Path:
    path = folder / "mini.yaml"
    path.write_text(textwrap.dedent("""\
        name: mini
        description: cells of three lengths, in grid order short, long, middle
        base: {task: adding, hidden: 4, iters: 3}
        profiles:
          quick:
            grid: {seq_len: [4, 40, 12], seed: [0, 1]}
        """))
    return path


def test_cells_are_computed_longest_first_and_ties_keep_the_grid_order(tmp_path):
    spec = load_spec(order_spec(tmp_path), "quick")
    cells = plan_cells(spec, tmp_path / "results")
    ordered = longest_first(cells, tmp_path / "data")
    assert [(c.config.seq_len, c.config.seed) for c in ordered] == [(40, 0), (40, 1), (12, 0), (12, 1), (4, 0), (4, 1)]
    assert sorted(c.config_hash for c in ordered) == sorted(c.config_hash for c in cells)


def test_a_sweep_computes_the_longest_cells_first_and_writes_its_table_in_grid_order(env):
    store = tracking.open_store(env)
    spec = load_spec(order_spec(env), "quick")
    result = run_sweep(spec, env / "data", env / "results", store, 1, execute=fake_execute)
    assert len(result.ran) == 6
    started = [next(c for c in spec.cells if config_hash(c) == h) for h in _calls(env, "start")]
    assert [(c.seq_len, c.seed) for c in started] == [(40, 0), (40, 1), (12, 0), (12, 1), (4, 0), (4, 1)]
    table = pd.read_parquet(result.table_path)
    assert list(zip(table["seq_len"], table["seed"])) == [(c.seq_len, c.seed) for c in spec.cells]


def test_cells_to_compute_counts_the_missing_and_failed_folders_only(env, monkeypatch):
    spec = load_spec(env / "mini.yaml", "quick")
    assert cells_to_compute(spec, env / "results", env / "data") == len(spec.cells)
    monkeypatch.setenv("FAKE_FAIL_GAMMA", "1.0")
    run_sweep(spec, env / "data", env / "results", tracking.open_store(env), 2, execute=fake_execute)
    assert cells_to_compute(spec, env / "results", env / "data") == 1  # the failed one is computed again


def test_the_workers_start_before_the_store_opens_and_none_outlives_a_refusal(cli_app, env, monkeypatch):
    """The stage starts its pool, then opens the store: a store that refuses (here, at once) stops the workers."""
    from pipeline.stages import sweep as stage

    seen = []

    def refusing_store(track):
        seen.append(len(multiprocessing.active_children()))
        raise UserError("MLFLOW_TRACKING_URI: refused for the test")

    monkeypatch.setattr(stage, "_open_store", refusing_store)
    monkeypatch.chdir(env)
    (env / "data").mkdir()
    result = CliRunner().invoke(cli_app, ["sweep", "mini.yaml", "--jobs", "2"])
    assert result.exit_code == 2 and "refused for the test" in result.output
    assert seen == [2]  # both workers were started before the store was asked for
    assert multiprocessing.active_children() == []


def test_a_sweep_with_nothing_to_compute_starts_no_worker(cli_app, env, monkeypatch):
    from pipeline.stages import sweep as stage

    spec = load_spec(env / "mini.yaml", "quick")
    run_sweep(spec, env / "data", env / "results", tracking.open_store(env), 2, execute=fake_execute)
    seen = []
    opened = stage._open_store

    def counting_store(track):
        seen.append(len(multiprocessing.active_children()))
        return opened(track)

    monkeypatch.setattr(stage, "_open_store", counting_store)
    monkeypatch.chdir(env)
    (env / "data").mkdir(exist_ok=True)
    result = CliRunner().invoke(cli_app, ["sweep", "mini.yaml", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert "0 ran, 6 already done" in result.output
    assert seen == [0]
