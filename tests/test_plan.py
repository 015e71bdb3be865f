"""`rnngrad plan`: every cell of a profile with its memory (the estimate train and sweep refuse by) and its
calibrated core-seconds, per spec and in total; bad input answered in one line with exit code 2; and the
`--max-memory` refusals of train and sweep."""

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import cli
from pipeline.run import cost
from pipeline.run.calibrate import DIRECT_PROBE, UnitCosts, estimate_seconds, grown
from pipeline.run.spec import load_spec

cli._register()

SPEC = """\
name: {name}
description: a tiny spec for the plan's tests
base: {{task: adding, seq_len: 6, hidden: 4, batch: 4, val_size: 16, probe_len: 6, eval_every: 5}}
profiles:
  quick:
    base: {{iters: 10}}
    grid: {{gamma_w: [0.5, 1.5], seed: [0, 1]}}
  full:
    base: {{iters: 20}}
    grid: {{gamma_w: [0.5], cell_type: [rnn, lstm]}}
"""


def invoke(*args, cwd: Path):
    import os

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli.app, list(args))
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "experiments").mkdir()
    for name in ("tiny_a", "tiny_b"):
        (root / "experiments" / f"{name}.yaml").write_text(SPEC.format(name=name), encoding="utf-8")
    (root / "params.yaml").write_text("profile: quick\nspecs: [tiny_b]\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def planned(project) -> dict:
    done = invoke("plan", "experiments/tiny_a.yaml", "experiments/tiny_b.yaml", "--profile", "full", "--jobs", "2",
                  "--json", cwd=project)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_cell_is_planned_with_the_memory_estimate_train_and_sweep_use(planned, project):
    spec = load_spec(project / "experiments" / "tiny_a.yaml", "full")
    rows = [r for r in planned["rows"] if r["spec"] == "tiny_a"]
    assert [r["cell"] for r in rows] == ["gamma_w=0.5,cell_type=rnn", "gamma_w=0.5,cell_type=lstm"]
    for row, cfg in zip(rows, spec.cells):
        assert row["memory_bytes"] == cost.peak_bytes(cfg, cost.run_sizes(cfg))
        assert row["core_seconds"] > 0
    assert planned["cells"] == 4 and set(planned["specs"]) == {"tiny_a", "tiny_b"}
    assert planned["core_seconds"] == pytest.approx(sum(r["core_seconds"] for r in planned["rows"]))
    assert planned["worker_memory_bytes"] == max(r["memory_bytes"] for r in planned["rows"])
    assert planned["wall_seconds"] >= planned["core_seconds"] / 2


def test_the_table_names_each_spec_and_the_total(project):
    done = invoke("plan", "--profile", "quick", cwd=project)  # params.yaml's specs
    assert done.exit_code == 0, done.output
    assert "tiny_b" in done.stdout and "tiny_a" not in done.stdout and "total" in done.stdout
    assert "each worker needs" in done.stdout


@pytest.mark.parametrize("args, words", [(["--profile", "huge"], "--profile"), (["--jobs", "-1"], "--jobs"),
                                         (["missing.yaml"], "missing.yaml"), (["--max-cells", "0"], "--max-cells"),
                                         (["--against", "nowhere"], "--against nowhere")])
def test_bad_input_is_one_line_and_exit_2(project, args, words):
    done = invoke("plan", *args, cwd=project)
    assert done.exit_code == 2
    assert "Traceback" not in done.output and words in done.output and done.output.startswith("Error:")


def test_a_run_is_priced_by_its_counts():
    units = UnitCosts(train_step=0.01, validation_pass=0.5, probe=2.0, fixed=1.0, across_probe=3.0)
    assert estimate_seconds(cost.WorkCounts(100, 3, 2), units) == pytest.approx(1.0 + 1.5 + 4.0 + 1.0)
    assert estimate_seconds(cost.WorkCounts(100, 3, 2, 2), units) == pytest.approx(1.0 + 1.5 + 4.0 + 6.0 + 1.0)


@pytest.mark.parametrize("a, b", [(0.02, 2e-4), (0.0, 1e-4), (0.05, 0.0)])
def test_a_long_probe_is_priced_per_step_and_per_pair_from_its_two_timings(a, b):
    def cost_at(steps):
        return a * steps + b * steps**2

    half = DIRECT_PROBE // 2
    assert grown(cost_at(half), cost_at(DIRECT_PROBE), 200) == pytest.approx(cost_at(200))
    # a per-pair cost that does not show at these lengths (noise) grows the probe linearly, never less
    assert grown(1.0, 1.9, 4 * DIRECT_PROBE) == pytest.approx(1.9 * 4)


def test_train_refuses_a_run_above_max_memory_before_it_starts(project):
    done = invoke("train", "--task", "adding", "--seq-len", "200", "--val-size", "20000", "--max-memory", "200M",
                  cwd=project)
    assert done.exit_code == 2 and "this run: needs about" in done.output and "--max-memory 200 MiB" in done.output
    assert not (project / "runs").exists() and not (project / "mlflow.db").exists()


def test_sweep_refuses_a_spec_with_a_cell_above_max_memory(project):
    done = invoke("sweep", "experiments/tiny_a.yaml", "--max-memory", "1M", cwd=project)
    assert done.exit_code == 2
    assert "experiments/tiny_a.yaml: cell gamma_w=" in done.output and "(4 of 4 cells are above it)" in done.output
    assert not (project / "results").exists() and not (project / "mlflow.db").exists()
    bad = invoke("sweep", "experiments/tiny_a.yaml", "--max-memory", "much", cwd=project)
    assert bad.exit_code == 2 and "--max-memory: 'much' is not a memory size" in bad.output


def test_a_profile_with_a_learning_rate_selection_prices_it_as_its_own_spec(tmp_path):
    """The full remedies profile sweeps remedies_rates (every arm at every candidate rate on the selection seeds)
    before its grid: the plan that left it out under-priced the spec by its most expensive stage."""
    (tmp_path / "experiments").mkdir()
    text = SPEC.format(name="picky").replace(
        "    base: {{iters: 20}}".replace("{{", "{").replace("}}", "}"),
        "    base: {iters: 20}\n    select: {lr: [0.001, 0.01], seeds: [100, 101, 102], seq_len: 6}")
    assert "select:" in text
    (tmp_path / "experiments" / "picky.yaml").write_text(text, encoding="utf-8")
    done = invoke("plan", "experiments/picky.yaml", "--profile", "full", "--json", cwd=tmp_path)
    assert done.exit_code == 0, done.output
    planned = json.loads(done.stdout.strip().splitlines()[-1])
    counts = {name: sum(r["spec"] == name for r in planned["rows"]) for name in planned["specs"]}
    assert counts == {"picky_rates": 2 * 2 * 3, "picky": 2}  # 2 arms x 2 rates x 3 seeds, then the grid


def test_against_a_results_folder_it_sets_each_runs_cpu_seconds_beside_the_estimate(project):
    import pandas as pd

    swept = invoke("sweep", "experiments/tiny_a.yaml", "--profile", "full", "--no-track", "--jobs", "1",
                   "--results-dir", "results", "--data-dir", "data", cwd=project)
    assert swept.exit_code == 0, swept.output
    table = pd.read_parquet(project / "results" / "tiny_a.parquet")
    assert (table["cpu_seconds"] > 0).all()
    done = invoke("plan", "experiments/tiny_a.yaml", "--profile", "full", "--against", "results", "--json",
                  cwd=project)
    assert done.exit_code == 0, done.output
    measured = json.loads(done.stdout.strip().splitlines()[-1])["measured"]
    mine = measured["specs"]["tiny_a"]
    assert (mine["cells"], mine["cells_run"], mine["cells_wall"]) == (2, 2, 0)
    assert mine["measured_seconds"] == pytest.approx(table["cpu_seconds"].sum())
    assert mine["measured_over_planned"] == pytest.approx(mine["measured_seconds"] / mine["planned_core_seconds"])
    text = invoke("plan", "experiments/tiny_a.yaml", "--profile", "full", "--against", "results", cwd=project)
    assert "Against the finished runs" in text.stdout and "2 of 2" in text.stdout

    # runs that recorded no CPU time (older runs): their wall seconds, counted and said
    old = project / "old"
    (old / "tiny_a").mkdir(parents=True)
    table.drop(columns=["cpu_seconds"]).to_parquet(old / "tiny_a.parquet")
    done = invoke("plan", "experiments/tiny_a.yaml", "--profile", "full", "--against", "old", "--json", cwd=project)
    mine = json.loads(done.stdout.strip().splitlines()[-1])["measured"]["specs"]["tiny_a"]
    assert mine["cells_wall"] == 2 and mine["measured_seconds"] == pytest.approx(table["seconds"].sum())


def test_against_a_stopped_sweep_it_reads_the_finished_run_folders(tmp_path):
    """A sweep writes its results table at its end: a study stopped midway is measured from its run folders; one
    being written (.tmp), a failed one and a link are passed over."""
    import shutil

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "tiny_c.yaml").write_text(SPEC.format(name="tiny_c"), encoding="utf-8")
    swept = invoke("sweep", "experiments/tiny_c.yaml", "--profile", "full", "--no-track", "--jobs", "1",
                   "--results-dir", "results", "--data-dir", "data", cwd=tmp_path)
    assert swept.exit_code == 0, swept.output
    runs = sorted((tmp_path / "results" / "tiny_c" / "runs").iterdir())
    stopped = tmp_path / "stopped" / "tiny_c" / "runs"
    stopped.mkdir(parents=True)
    shutil.copytree(runs[0], stopped / runs[0].name)  # one cell finished, no results table yet
    shutil.copytree(runs[1], stopped / f".{runs[1].name}.1234.tmp")  # the other still being written
    cpu = json.loads((runs[0] / "summary.json").read_text())["cpu_seconds"]

    def measured(where):
        done = invoke("plan", "experiments/tiny_c.yaml", "--profile", "full", "--against", where, "--json",
                      cwd=tmp_path)
        assert done.exit_code == 0, done.output
        return json.loads(done.stdout.strip().splitlines()[-1])["measured"]

    got = measured("stopped")
    assert (got["cells_run"], got["cells_from_folders"]) == (1, 1)
    assert got["specs"]["tiny_c"]["measured_seconds"] == pytest.approx(cpu)
    text = invoke("plan", "experiments/tiny_c.yaml", "--profile", "full", "--against", "stopped", cwd=tmp_path)
    assert "1 of 2" in text.stdout and "1 runs read from their run folders" in text.stdout

    summary = stopped / runs[0].name / "summary.json"  # a failed run took no time worth pricing
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "outcome": "failed"}), encoding="utf-8")
    assert measured("stopped")["cells_run"] == 0
    shutil.rmtree(stopped / runs[0].name)
    (stopped / runs[0].name).symlink_to(runs[0], target_is_directory=True)  # a link rnngrad would not write
    assert measured("stopped")["cells_run"] == 0

    done = measured("results")  # a finished sweep: its table, and nothing counted twice from its folders
    assert (done["cells_run"], done["cells_from_folders"]) == (2, 0)
    (tmp_path / "empty").mkdir()  # neither a table nor a run folder: refused before the calibration
    refused = invoke("plan", "experiments/tiny_c.yaml", "--profile", "full", "--against", "empty", cwd=tmp_path)
    assert refused.exit_code == 2 and "no finished runs there" in refused.output and "Traceback" not in refused.output
