"""`rnngrad sweep --no-track`: run folders and the results table only, no MLflow store made or touched; a later
tracked sweep logs what it finds, a later untracked one keeps the tracked runs' ids; the report reads the results.

The fast tests use test_sweep's fake runner; the CLI test runs the real one on a tiny grid, then analyze and report.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from pipeline import tracking
from pipeline.run.spec import load_spec
from pipeline.sweep import run_sweep
from test_sweep import GAMMAS, _calls, config_hash, fake_execute, write_spec
from test_tracking import empty_db  # noqa: F401 (a fixture)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with the mini spec and no store; the fake runner's call log."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("FAKE_CALLS_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("FAKE_RUN_SECONDS", "0")
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path)
    return tmp_path


def _sweep(root: Path, store=None):
    spec = load_spec(root / "mini.yaml", "quick")
    return spec, run_sweep(spec, root / "data", root / "results", store, 2, execute=fake_execute)


def _store_files(root: Path) -> list[str]:
    """What of a store is in the project folder: the SQLite file (and its journals) or the artifact folder."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(("mlflow", "mlartifacts", ".mlflow")))


def test_an_untracked_sweep_writes_the_folders_and_the_table_and_no_store(project):
    spec, result = _sweep(project)
    assert result.experiment_id is None and result.parent_run_id is None
    assert sorted(result.ran) == sorted(f"gamma_w={g},seed=0" for g in GAMMAS) and not result.crashed
    assert _store_files(project) == []
    table = pd.read_parquet(project / "results" / "mini.parquet")
    hashes = [config_hash(cfg) for cfg in spec.cells]
    assert sorted(table["config_hash"]) == sorted(hashes)
    assert sorted(table["run_id"]) == sorted(f"{h}-untracked" for h in hashes)  # unique, never an MLflow run's
    assert not any(tracking.is_tracked(i) for i in table["run_id"])
    assert all((project / "results" / d / "summary.json").is_file() for d in table["run_dir"])

    _, again = _sweep(project)  # done cells are found by their folders alone
    assert len(again.skipped) == len(GAMMAS) and not again.ran and not again.relogged
    assert sorted(_calls(project, "done")) == sorted(hashes)  # nothing computed twice
    assert _store_files(project) == []


def test_a_tracked_sweep_after_an_untracked_one_logs_its_folders_without_computing(project, empty_db):
    _sweep(project)
    shutil.copy(empty_db, project / "mlflow.db")
    store = tracking.open_store(project)
    _, tracked = _sweep(project, store)
    assert len(tracked.relogged) == len(GAMMAS) and not tracked.ran
    table = pd.read_parquet(project / "results" / "mini.parquet")
    children = {r.run_id for r in tracking.find_runs(store, tracked.experiment_id) if "config_hash" in r.tags}
    assert set(table["run_id"]) == children and len(children) == len(GAMMAS)
    assert len(_calls(project, "done")) == len(GAMMAS)


def test_an_untracked_sweep_after_a_tracked_one_keeps_its_run_ids(project, empty_db):
    shutil.copy(empty_db, project / "mlflow.db")
    store = tracking.open_store(project)
    _, tracked = _sweep(project, store)
    ids = pd.read_parquet(project / "results" / "mini.parquet").set_index("config_hash")["run_id"].to_dict()
    assert all(tracking.is_tracked(i) for i in ids.values())
    spec_file = project / "mini.yaml"  # one more cell, computed without MLflow
    spec_file.write_text(spec_file.read_text().replace("gamma_w: [", "gamma_w: [0.25, "))
    stat = (project / "mlflow.db").stat()
    spec, untracked = _sweep(project)
    assert untracked.ran == ["gamma_w=0.25,seed=0"] and len(untracked.skipped) == len(GAMMAS)
    after = pd.read_parquet(project / "results" / "mini.parquet").set_index("config_hash")["run_id"].to_dict()
    new = config_hash(spec.cells[0])
    assert after == ids | {new: f"{new}-untracked"}  # the report still links the runs MLflow holds
    assert (project / "mlflow.db").stat().st_mtime_ns == stat.st_mtime_ns  # the store was not touched


TINY_SPEC = """\
    name: tiny
    description: two tiny runs on either side of the bound's rate
    base: {task: adding, seq_len: 8, hidden: 6, iters: 20}
    profiles:
      quick:
        grid: {gamma_w: [0.5, 3.0], seed: [0]}
    """


@pytest.mark.slow
def test_rnngrad_sweep_no_track_leaves_no_store_and_the_report_reads_its_results(tmp_path):
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(TINY_SPEC))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"MLFLOW_DISABLE_TELEMETRY": "true"}

    def rnngrad(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)

    swept = rnngrad("sweep", "tiny.yaml", "--no-track", "--jobs", "1")
    assert swept.returncode == 0, swept.stderr
    assert "not logged to MLflow (--no-track)" in swept.stdout and "mlflow ui" not in swept.stdout
    assert rnngrad("analyze").returncode == 0
    reported = rnngrad("report")
    assert reported.returncode == 0, reported.stderr
    assert "Runs:   not in MLflow (swept with --no-track)" in reported.stdout
    assert (tmp_path / "reports" / "report.html").stat().st_size > 0
    html = (tmp_path / "reports" / "report.html").read_text()
    folders = [p.name for p in (tmp_path / "results" / "tiny" / "runs").iterdir()]
    assert all(f'title="{f}-untracked">{f[:8]}</abbr>' in html for f in folders)  # named by their folders
    assert "mlflow ui" not in html and "#/experiments" not in html  # no link to a run MLflow does not hold
    assert _store_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports", "results", "tiny.yaml"]


@pytest.mark.parametrize("command", ["sweep", "train"])
def test_the_help_names_no_track_and_no_python_types(command, monkeypatch):
    from typer.testing import CliRunner

    from pipeline import cli

    if command not in {c.name for c in cli.app.registered_commands}:
        cli._register()
    monkeypatch.setenv("COLUMNS", "200")
    shown = CliRunner().invoke(cli.app, [command, "--help"]).stdout
    assert "--no-track" in shown and "--data-root" in shown and "FOLDER" in shown
    assert "list[" not in shown and "<bool>" not in shown  # a metavar a new user reads, not a Python type
