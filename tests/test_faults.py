"""Faults a real lab hits, and hostile input: failed cells retried, unreadable run folders recomputed, dead
workers, symlinked locks, limits on specs, paths outside the project, broken stores, dead tracking servers.

The sweep tests use test_sweep's fake runner (`fake_execute`) and mini spec against temporary sqlite stores."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import tracking
from pipeline.run.config import config_hash
from pipeline.run.spec import load_spec
from test_sweep import GAMMAS, _calls, _runs, _sweep, env  # noqa: F401 (env is a fixture)
from test_tracking import empty_db  # noqa: F401 (a fixture)

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def cli_app():
    from pipeline import cli

    cli._register()
    return cli.app


def _one_error_line(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# ---- failed is not done ---------------------------------------------------------------------------------------


def test_a_failed_cell_is_retried_by_the_next_sweep_but_a_diverged_one_stays(env, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL_GAMMA", "1.5")
    store, spec, first = _sweep(env)
    assert len(first.ran) == 6 and not first.crashed and not first.retried
    table = pd.read_parquet(env / "results" / "mini.parquet")
    assert table.set_index("gamma_w").loc[1.5, "outcome"] == "failed"
    monkeypatch.delenv("FAKE_FAIL_GAMMA")
    seen = []
    _, _, again = _sweep(env, progress=lambda *a: seen.append(a))
    assert again.retried == again.ran == ["gamma_w=1.5,seed=0"]
    assert sorted(again.skipped) == sorted(f"gamma_w={g},seed=0" for g in GAMMAS if g != 1.5)  # diverged stays
    assert _calls(env, "start").count(config_hash(spec.cells[GAMMAS.index(1.5)])) == 2
    table = pd.read_parquet(env / "results" / "mini.parquet")
    assert list(table["outcome"]) == ["ok"] * 4 + ["unstable", "diverged"]
    assert not [s for s in seen if s[3].startswith("warning")]
    parents, _ = _runs(store)
    metrics = tracking.client(store).get_run(parents[0].run_id).data.metrics
    assert metrics["cells_retried"] == 1


def test_a_run_folder_whose_summary_does_not_parse_is_computed_again_with_one_warning(env):
    store, spec, _ = _sweep(env)
    victim = env / "results" / "mini" / "runs" / config_hash(spec.cells[0])
    (victim / "summary.json").write_text('{"outcome": "ok", "final_')  # a disk that filled up mid-write
    seen = []
    _, _, again = _sweep(env, progress=lambda *a: seen.append(a))
    assert again.retried == again.ran == ["gamma_w=0.5,seed=0"] and len(again.skipped) == 5
    warnings = [s for s in seen if s[3].startswith("warning")]
    assert len(warnings) == 1 and warnings[0][2] == "gamma_w=0.5,seed=0"
    assert "summary.json is missing or does not parse; computing the cell again" in warnings[0][3]
    assert "\n" not in warnings[0][3]
    assert json.loads((victim / "summary.json").read_text())["outcome"] == "ok"
    assert len(pd.read_parquet(env / "results" / "mini.parquet")) == 6


def test_the_sweep_command_says_how_many_cells_it_retried(cli_app, env, monkeypatch):
    import pipeline.sweep as sweep_module
    from test_sweep import fake_execute

    real = sweep_module.run_sweep
    monkeypatch.setattr(sweep_module, "run_sweep", lambda *a, **k: real(*a, **k, execute=fake_execute))
    monkeypatch.chdir(env)
    monkeypatch.setenv("FAKE_FAIL_GAMMA", "2.0")
    assert CliRunner().invoke(cli_app, ["sweep", "mini.yaml", "--jobs", "1"]).exit_code == 0
    monkeypatch.delenv("FAKE_FAIL_GAMMA")
    result = CliRunner().invoke(cli_app, ["sweep", "mini.yaml", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "mini: 1 ran (1 of them retried after failing), 5 already done, 0 re-logged" in result.stdout


# ---- bad paths and data: exit 2, one line, nothing created ---------------------------------------------------

LONG = "a" * 300  # one name beyond every file system's 255 bytes


@pytest.mark.parametrize("args", [
    ["generate", "--out", LONG], ["generate", "--out", f"x/{LONG}/data"],
    ["sweep", "mini.yaml", "--results-dir", LONG], ["sweep", "mini.yaml", "--data-dir", LONG],
    ["analyze", "--out", LONG], ["analyze", "--results-dir", LONG],
    ["report", "--out", LONG], ["report", "--analysis-dir", LONG],
    ["train", "--task", "adding", "--out", LONG],
])
def test_a_path_with_a_name_too_long_is_one_line(cli_app, env, monkeypatch, args):
    monkeypatch.chdir(env)
    before = sorted(p.name for p in env.iterdir())
    line = _one_error_line(CliRunner().invoke(cli_app, args))
    assert "a name of 300 bytes" in line and len(line) < 300
    assert sorted(p.name for p in env.iterdir()) == before


@pytest.mark.parametrize("args, message", [
    (["generate", "--out", "afile/data"], "--out afile/data: afile is a file, not a folder"),
    (["generate", "--out", "afile"], "--out afile: afile is a file, not a folder"),
    (["generate", "--out", "ro/data"], "--out ro/data: ro is not writable"),
    (["analyze", "--out", "afile"], "--out afile: afile is a file, not a folder"),
    (["analyze", "--out", "afile/x"], "--out afile/x: afile is a file, not a folder"),
    (["analyze", "--out", "ro/reports"], "--out ro/reports: ro is not writable"),
    (["report", "--out", "afile/x"], "--out afile/x: afile is a file, not a folder"),
    (["sweep", "mini.yaml", "--results-dir", "res"], "--results-dir res: res/mini/runs is a file, not a folder"),
])
def test_an_output_folder_at_a_file_or_read_only_is_one_line(cli_app, env, monkeypatch, args, message):
    import pipeline.run.paths as paths

    monkeypatch.chdir(env)
    (env / "afile").write_text("x")
    (env / "ro").mkdir()
    (env / "res" / "mini").mkdir(parents=True)
    (env / "res" / "mini" / "runs").write_text("a file where the run folders go")
    real_access = os.access  # root may write anywhere: stand in for a read-only folder
    monkeypatch.setattr(paths.os, "access", lambda p, mode: Path(p).name != "ro" and real_access(p, mode))
    before = sorted(str(p) for p in env.rglob("*"))
    assert message in _one_error_line(CliRunner().invoke(cli_app, args))
    assert sorted(str(p) for p in env.rglob("*")) == before


def test_a_bad_source_date_epoch_is_one_line_in_a_fresh_process(tmp_path):
    """In a fresh process: a library the report imports reads SOURCE_DATE_EPOCH on import, before any check made
    later would run (an in-process test, with it imported already, misses that)."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": "abc", "PYTHONPATH": str(TESTS.parent)}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "report", "--analysis-dir", str(tmp_path / "a"),
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "Error: SOURCE_DATE_EPOCH=abc: not a date; expected whole seconds since 1970 (e.g. 1700000000), or unset "
        "it to date the PDF by the analysis"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, message", [
    ("x", "array x is float64 (40, 6, 3), expected numbers of shape (40, 6, 2)"),
    ("y", "array y is float64 (40, 6), expected numbers of shape (40, 6, 1)"),
    ("truncated", "not a readable dataset (BadZipFile)"),
])
def test_a_data_file_of_the_wrong_shape_is_refused_before_any_run_is_created(cli_app, env, monkeypatch, damage,
                                                                              message):
    import numpy as np

    from pipeline.run import datasets

    monkeypatch.chdir(env)
    (env / "mini.yaml").write_text((env / "mini.yaml").read_text().replace("hidden: 4", "hidden: 4, val_size: 40"))
    ds = datasets.build_dataset("adding", 6, 40, 0)
    arrays = datasets.dataset_arrays(ds)
    path = env / "data" / f"{ds.name}.npz"
    path.parent.mkdir()
    if damage == "truncated":
        np.savez(path, **arrays)
        path.write_bytes(path.read_bytes()[:100])
    else:
        arrays[damage] = np.zeros((40, 6, 3)) if damage == "x" else np.zeros((40, 6))
        np.savez(path, **arrays)
    line = _one_error_line(CliRunner().invoke(cli_app, ["sweep", "mini.yaml"]))
    assert f"{path.relative_to(env)}: {message}" in line
    assert not (env / "results").exists()
    assert not tracking.find_runs(tracking.open_store(env), tracking.ensure_experiment(
        tracking.open_store(env), "rnngrad/mini"))


@pytest.mark.parametrize("umask, folder, file", [(0o077, 0o700, 0o600), (0o022, 0o755, 0o644)])
def test_generate_gives_data_the_umasks_permissions(cli_app, tmp_path, monkeypatch, umask, folder, file):
    """A lab that keeps its data private (umask 077) must not find it opened to everyone (0755)."""
    import stat

    monkeypatch.chdir(tmp_path)  # no params.yaml, no experiments/: the text corpus only
    previous = os.umask(umask)
    try:
        result = CliRunner().invoke(cli_app, ["generate", "--out", "data"])
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == folder
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "data").iterdir()} == {file}


# ---- lock and output files: no symbolic link followed, no foreign file overwritten -----------------------------


@pytest.mark.parametrize("kind", ["symlink", "foreign", "fifo"])
def test_the_lock_never_follows_a_link_nor_overwrites_a_file_it_did_not_write(cli_app, env, monkeypatch, kind):
    monkeypatch.chdir(env)
    target = env / "precious.txt"
    target.write_text("a file elsewhere\n")
    lock = env / "results" / "mini" / ".lock"
    lock.parent.mkdir(parents=True)
    if kind == "symlink":
        lock.symlink_to(target)
    elif kind == "foreign":
        lock.write_text("notes someone keeps here\n")
    else:
        os.mkfifo(lock)
    line = _one_error_line(CliRunner().invoke(cli_app, ["sweep", "mini.yaml"]))
    assert {"symlink": "is a symbolic link, which the sweep will not write through",
            "foreign": "a file the sweep did not write (notes someone keeps here)",
            "fifo": "is not a regular file"}[kind] in line
    assert target.read_text() == "a file elsewhere\n"
    assert kind != "foreign" or lock.read_text() == "notes someone keeps here\n"
    assert _calls(env, "start") == []


def test_the_results_table_is_written_to_a_new_file_never_through_a_link(env):
    target = env / "precious.txt"
    target.write_text("a file elsewhere\n")
    (env / "results").mkdir()
    (env / "results" / ".mini.parquet.tmp").symlink_to(target)  # where the table's temp file once went
    _sweep(env)
    assert target.read_text() == "a file elsewhere\n"
    assert len(pd.read_parquet(env / "results" / "mini.parquet")) == 6
    assert (env / "results" / "mini" / ".lock").read_text().startswith(f"pid {os.getpid()} on ")
