"""Faults a real lab hits, and hostile input: failed cells retried, unreadable run folders recomputed, dead
workers, symlinked locks, limits on specs, paths outside the project, broken stores, dead tracking servers.

The sweep tests use test_sweep's fake runner (`fake_execute`) and mini spec against temporary sqlite stores."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import tracking
from pipeline.run.spec import load_spec
from test_sweep import GAMMAS, _calls, _runs, _sweep, config_hash, env  # noqa: F401 (env is a fixture)
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
    ("truncated", "not a readable .npz (BadZipFile)"),
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


# ---- limits and hostile YAML: refused before anything runs, in a line of bounded length -------------------------


def _bomb(levels: int, use: str) -> str:
    """A 'billion laughs' spec: each level an anchored list of nine aliases to the level below (9**levels values)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nname: bomb\nbase: {{task: adding, hidden: {use}}}\nprofiles: {{quick: {{}}}}\n"


@pytest.mark.parametrize("levels", [3, 6, 8, 12])
def test_a_yaml_alias_bomb_is_refused_in_one_short_line(cli_app, env, monkeypatch, levels):
    monkeypatch.chdir(env)
    (env / "bomb.yaml").write_text(_bomb(levels, f"*l{levels}"))
    assert (env / "bomb.yaml").stat().st_size < 1024
    line = _one_error_line(CliRunner().invoke(cli_app, ["sweep", "bomb.yaml"]))
    if levels > 3:
        assert "its aliases expand to more than 100000 values" in line
    else:  # 9**4 values: small enough to read, and refused for what it says
        assert "bomb.yaml: unknown key 'l0'" in line
    assert len(line) < 400 and not (env / "results").exists()


@pytest.mark.parametrize("text, message", [
    ("name: mini\nname: mini\nprofiles: {quick: {}}\n", "line 2, column 1 (the key 'name' appears twice"),
    ("name: mini\nbase: {hidden: 4, hidden: 8}\nprofiles: {quick: {}}\n", "the key 'hidden' appears twice"),
    ("name: mini\nprofiles:\n  quick: {grid: {seed: [0]}}\n  quick: {grid: {seed: [1]}}\n",
     "line 4, column 3 (the key 'quick' appears twice"),
])
def test_a_key_given_twice_is_refused(cli_app, env, monkeypatch, text, message):
    monkeypatch.chdir(env)
    (env / "mini.yaml").write_text(text)
    assert message in _one_error_line(CliRunner().invoke(cli_app, ["sweep", "mini.yaml"]))


def test_keys_a_merge_brings_in_may_be_overridden(env):
    (env / "mini.yaml").write_text("name: mini\nshared: &s {task: adding, hidden: 4}\n"
                                   "profiles: {quick: {base: {<<: *s, hidden: 8}}}\n".replace("shared", "base"))
    assert load_spec(env / "mini.yaml", "quick").cells[0].hidden == 8


@pytest.mark.parametrize("grid, cells", [("{gamma_w: [0.5, 1.0], seed: [0, 1, 2]}", 6),
                                         ("[{seed: [0, 1]}, {seed: [2, 3, 4], gamma_w: [2.0]}]", 5)])
def test_a_grid_beyond_max_cells_is_refused_before_it_is_expanded_and_the_option_raises_it(
        cli_app, env, monkeypatch, grid, cells):
    import pipeline.sweep as sweep_module
    from test_sweep import fake_execute

    real = sweep_module.run_sweep
    monkeypatch.setattr(sweep_module, "run_sweep", lambda *a, **k: real(*a, **k, execute=fake_execute))
    monkeypatch.chdir(env)
    (env / "mini.yaml").write_text(f"name: mini\nbase: {{task: adding, seq_len: 6, hidden: 4}}\n"
                                   f"profiles: {{quick: {{grid: {grid}}}}}\n")
    line = _one_error_line(CliRunner().invoke(cli_app, ["sweep", "mini.yaml", "--max-cells", str(cells - 1)]))
    assert f"mini.yaml: profiles.quick.grid: {cells} cells, more than the {cells - 1}" in line
    assert f"--max-cells {cells}" in line and not (env / "results").exists()
    result = CliRunner().invoke(cli_app, ["sweep", "mini.yaml", "--max-cells", str(cells), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert len(_calls(env, "done")) == cells


def test_a_grid_of_a_trillion_cells_is_refused_at_once_and_only_the_chosen_profile_must_fit(env):
    from pipeline.errors import UserError

    axis = "[" + ", ".join(str(i) for i in range(1, 101)) + "]"
    huge = f"{{seed: {axis}, data_seed: {axis}, hidden: {axis}, batch: {axis}, iters: {axis}, eval_every: {axis}}}"
    (env / "mini.yaml").write_text(f"name: mini\nbase: {{task: adding, seq_len: 6}}\n"
                                   f"profiles: {{quick: {{grid: {{seed: [0]}}}}, full: {{grid: {huge}}}}}\n")
    assert len(load_spec(env / "mini.yaml", "quick").cells) == 1  # the full profile is validated, not expanded
    with pytest.raises(UserError, match=r"profiles.full.grid: 1000000000000 cells, more than the 10000 a sweep"):
        load_spec(env / "mini.yaml", "full")
    bad = huge.replace("hidden: [1,", "hidden: [0,")  # still validated value by value
    (env / "mini.yaml").write_text((env / "mini.yaml").read_text().replace(huge, bad))
    with pytest.raises(UserError, match=r"profiles.full.grid.hidden\[0\]: 0 is out of range"):
        load_spec(env / "mini.yaml", "quick")


@pytest.mark.parametrize("args, message", [
    (["sweep", "mini.yaml", "--max-cells", "0"], "--max-cells: 0 is below 1"),
    (["generate", "--max-cells", "-3"], "--max-cells: -3 is below 1"),
    (["sweep", "big.yaml"], "big.yaml: 1048600 bytes; a sweep spec (docs/internals.md, Sweep specs) is at most 256 KiB"),
    (["train", "--config", "big.yaml"], "big.yaml: 1048600 bytes; a YAML mapping of RunConfig fields is at most"),
])
def test_limits_on_options_and_file_sizes(cli_app, env, monkeypatch, args, message):
    monkeypatch.chdir(env)
    (env / "big.yaml").write_text("# " + "x" * (1048600 - 3) + "\n")
    assert message in _one_error_line(CliRunner().invoke(cli_app, args))


def test_messages_shorten_a_huge_value_before_formatting_it(env):
    from pipeline.errors import UserError, shown

    many = list(range(90_000))
    assert len(shown(many)) <= 80 and len(shown(10 ** 5000)) < 40 and shown("ab") == "'ab'"
    (env / "mini.yaml").write_text(f"name: mini\ndescription: {many[:30_000]}\nprofiles: {{quick: {{}}}}\n")
    with pytest.raises(UserError) as e:
        load_spec(env / "mini.yaml", "quick")
    assert "description: expected one sentence of text, got [0, 1, 2, 3, ...]" in str(e.value)
    assert len(str(e.value)) < 200


# ---- specs read only inside the project ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["sweep", "generate"])
@pytest.mark.parametrize("text", ["absolute", "../else/secret.txt", "inside_link.txt"])
def test_a_spec_reading_a_file_outside_the_project_is_refused_unless_its_folder_is_allowed(
        cli_app, tmp_path, monkeypatch, command, text):
    project, elsewhere = tmp_path / "project", tmp_path / "else"
    project.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    secret = elsewhere / "secret.txt"
    secret.write_text("the lab's private notes\n" * 20)
    (project / "inside_link.txt").symlink_to(secret)  # a link inside the project to a file outside it
    if text == "absolute":
        text = str(secret)
    (project / "peek.yaml").write_text(f"name: peek\nbase: {{task: text, text: {text}, seq_len: 5, hidden: 4, "
                                       "iters: 1, samples: 1}\nprofiles: {quick: {}}\n")
    args = ["sweep", "peek.yaml"] if command == "sweep" else ["generate", "--spec", "peek.yaml"]
    line = _one_error_line(CliRunner().invoke(cli_app, args))
    assert f"peek.yaml: profiles.quick: cell 0 {{}}: text {text}: outside the project ({project})" in line
    assert f"--data-root {elsewhere.resolve()}" in line
    assert sorted(p.name for p in project.iterdir()) == ["inside_link.txt", "peek.yaml"]
    allowed = CliRunner().invoke(cli_app, [*args, "--data-root", str(elsewhere)])
    assert "outside the project" not in allowed.output


def test_a_spec_reading_a_file_inside_the_project_needs_no_option(cli_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("some text to learn from. " * 40)
    (tmp_path / "ok.yaml").write_text("name: ok\nbase: {task: text, text: texts/a.txt, seq_len: 5}\n"
                                      "profiles: {quick: {}}\n")
    result = CliRunner().invoke(cli_app, ["generate", "--spec", "ok.yaml"])
    assert result.exit_code == 0, result.output


# ---- a worker's death costs one cell ---------------------------------------------------------------------------


def test_a_worker_killed_from_outside_costs_its_cell_only_and_the_sweep_goes_on(env, monkeypatch):
    import signal
    import threading
    import time

    # long enough that the killer below, polling every 50 ms, finds the victim still computing even on a loaded
    # machine (a kill that lands after the cell finished hits an idle worker, and no cell is to blame)
    monkeypatch.setenv("FAKE_RUN_SECONDS", "3.0")
    victim = config_hash(load_spec(env / "mini.yaml", "quick").cells[2])  # gamma_w=1.5

    def kill_its_worker() -> None:  # as the out-of-memory killer would, while the cell computes
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = (env / "calls.log").read_text().splitlines() if (env / "calls.log").exists() else []
            pids = [int(line.split()[2]) for line in lines if line.startswith(f"start {victim}")]
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_its_worker)
    killer.start()
    store, _, result = _sweep(env, jobs=2)
    killer.join()
    assert list(result.crashed) == ["gamma_w=1.5,seed=0"]
    assert "its worker process was killed by SIGKILL (the out-of-memory killer sends it" in result.crashed[
        "gamma_w=1.5,seed=0"]
    assert sorted(result.ran) == sorted(f"gamma_w={g},seed=0" for g in GAMMAS if g != 1.5)
    parents, children = _runs(store)
    assert [p.status for p in parents] == ["FAILED"] and not [c for c in children if c.status == "RUNNING"]
    failed = [c for c in children if c.status == "FAILED"]
    assert [c.tags["cell"] for c in failed] == ["gamma_w=1.5,seed=0"] and failed[0].tags["outcome"] == "failed"
    # the cell stopped with the pool (it shared it with the victim) was computed again, and logged once
    assert sorted(c.tags["config_hash"] for c in children if c.status == "FINISHED") == sorted(
        h for h in map(config_hash, load_spec(env / "mini.yaml", "quick").cells) if h != victim)
    _, _, again = _sweep(env)
    assert again.ran == ["gamma_w=1.5,seed=0"] and not again.crashed


# ---- a store that cannot be half-made, and is never another application's --------------------------------------


def test_another_applications_sqlite_file_named_mlflow_db_is_refused_untouched(cli_app, env, monkeypatch):
    import sqlite3

    monkeypatch.chdir(env)
    (env / "mlflow.db").unlink()
    with sqlite3.connect(env / "mlflow.db") as con:
        con.execute("CREATE TABLE experiments (id INTEGER, note TEXT)")  # even a name MLflow uses
        con.execute("INSERT INTO experiments VALUES (1, 'the lab inventory')")
    con.close()
    before = (env / "mlflow.db").read_bytes()
    line = _one_error_line(CliRunner().invoke(cli_app, ["sweep", "mini.yaml"]))
    assert "mlflow.db: an SQLite database of another application (1 tables, none of them MLflow's migration" in line
    assert (env / "mlflow.db").read_bytes() == before
    assert sorted(p.name for p in env.iterdir() if p.name.startswith(("mlflow", ".mlflow"))) == ["mlflow.db"]
    assert not (env / "results").exists() and _calls(env, "start") == []


def test_an_empty_mlflow_db_left_by_a_killed_creation_becomes_a_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow.db").write_bytes(b"")
    store = tracking.open_store(tmp_path)
    assert tracking.ensure_experiment(store, "rnngrad/x")
    assert sorted(p.name for p in tmp_path.iterdir() if "mlflow.db" in p.name and "-" not in p.name) == ["mlflow.db"]


def _store_is_whole(db: Path) -> bool:
    import sqlite3

    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return bool(con.execute("SELECT version_num FROM alembic_version").fetchall())
    finally:
        con.close()


@pytest.mark.slow
def test_kills_while_the_first_sweep_creates_the_store_never_leave_it_half_made(tmp_path, monkeypatch):
    """kill -9 at spread-out moments while the first sweep in a fresh folder creates and migrates mlflow.db; then
    a sweep exits 0 and every cell finishes."""
    import signal
    import time

    from test_sweep import _start_sweep_process, _wait_for, write_spec

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("FAKE_CALLS_LOG", str(tmp_path / "calls.log"))
    write_spec(tmp_path)
    kills = []
    for delay in (0.0, 0.3, 0.7, 1.2, 2.0, 3.0, 4.5, 6.5):
        proc = _start_sweep_process(tmp_path, jobs=2)
        try:
            _wait_for(lambda: list(tmp_path.glob(".mlflow.db.*.tmp")) or (tmp_path / "mlflow.db").exists()
                      or proc.poll() is not None, "the store's creation to start", 120)
            if (tmp_path / "mlflow.db").exists():
                break  # made whole by an earlier run: nothing more to kill during creation
            time.sleep(delay)
            created = (tmp_path / "mlflow.db").exists()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills.append((delay, created))
        finally:
            proc.kill()
            proc.wait()
        db = tmp_path / "mlflow.db"
        assert not db.exists() or _store_is_whole(db), f"a half-made store after a kill {delay} s into creation"
    assert len(kills) >= 3  # most kills fell inside the creation
    proc = _start_sweep_process(tmp_path, jobs=2)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    store = tracking.open_store(tmp_path)
    finished = tracking.finished_runs(store, tracking.ensure_experiment(store, "rnngrad/mini"))
    assert sorted(finished) == sorted(config_hash(c) for c in load_spec(tmp_path / "mini.yaml", "quick").cells)


# ---- a tracking server that dies: bounded waits, one line, nothing lost ----------------------------------------


def _cli_sweep_process(root: Path, url: str, seconds: str = "1.0") -> subprocess.Popen:
    """`rnngrad sweep mini.yaml --jobs 2` with the fake runner, in its own process, logging to `url`."""
    code = ("import sys, test_sweep, pipeline.sweep as s; real = s.run_sweep; "
            "s.run_sweep = lambda *a, **k: real(*a, **k, execute=test_sweep.fake_execute); "
            "sys.argv = ['rnngrad', 'sweep', 'mini.yaml', '--jobs', '2']; from pipeline.cli import main; main()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]), "FAKE_RUN_SECONDS": seconds,
           "MLFLOW_TRACKING_URI": url, "FAKE_CALLS_LOG": str(root / "calls.log")}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _server(tmp_path: Path):
    """(start, url) of a real `mlflow server` on a free local port (its own process group)."""
    from pipeline.benchmarks import services

    port = services.free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path}/srv.db", "--artifacts-destination",
               str(tmp_path / "art")]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                cwd=tmp_path, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
        services.wait_healthy(url, proc, 90)
        return proc

    return start, url


def _resume_server(proc: subprocess.Popen) -> None:
    import signal

    from pipeline.benchmarks import services

    try:
        os.killpg(proc.pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
    services.stop_group(proc)


@pytest.mark.slow
def test_a_tracking_server_killed_mid_sweep_ends_it_in_one_line_and_the_next_sweep_loses_nothing(tmp_path):
    """A real `mlflow server` killed after two cells: the sweep ends (within tracking.SERVER_PATIENCE_SECONDS per
    call) with one line naming the URI; with the server back, the next sweep logs the folders computed meanwhile
    and runs the rest."""
    import signal
    import time

    from test_sweep import _wait_for, write_spec

    write_spec(tmp_path)
    start, url = _server(tmp_path)
    server = start()
    try:
        sweep = _cli_sweep_process(tmp_path, url)
        try:
            _wait_for(lambda: len(_calls(tmp_path, "done")) >= 2 or sweep.poll() is not None, "two cells", 120)
            assert sweep.poll() is None, sweep.stderr.read()
            os.killpg(server.pid, signal.SIGKILL)
            died = time.monotonic()
            out, err = sweep.communicate(timeout=4 * tracking.SERVER_PATIENCE_SECONDS)
            took = time.monotonic() - died
        finally:
            sweep.kill()
            sweep.wait()
        assert sweep.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"Error: MLFLOW_TRACKING_URI={url}: the tracking server stopped answering ("), err
        print(f"server killed: the sweep exited {took:.1f} s later")  # the figure for the notes (pytest -s)
        _resume_server(server)
        server = start()
        again = _cli_sweep_process(tmp_path, url, seconds="0")
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
        store = tracking.open_store(tmp_path, url)
        finished = tracking.finished_runs(store, tracking.ensure_experiment(store, "rnngrad/mini"))
        assert sorted(finished) == sorted(config_hash(c) for c in load_spec(tmp_path / "mini.yaml", "quick").cells)
        assert len(_calls(tmp_path, "start")) - len(set(_calls(tmp_path, "done"))) <= 2  # only cells cut short redone
    finally:
        _resume_server(server)


@pytest.mark.slow
def test_sigterm_stops_a_sweep_waiting_on_a_frozen_tracking_server_within_seconds(tmp_path):
    """A server frozen mid-sweep (SIGSTOP: a hung host) holds the sweep inside an HTTP call; SIGTERM stops it there
    instead of after the call's patience runs out, and ending its runs KILLED tries each once, briefly."""
    import signal
    import time

    from test_sweep import _wait_for, write_spec

    write_spec(tmp_path)
    start, url = _server(tmp_path)
    server = start()
    try:
        sweep = _cli_sweep_process(tmp_path, url)
        try:
            _wait_for(lambda: len(_calls(tmp_path, "done")) >= 2 or sweep.poll() is not None, "two cells", 120)
            assert sweep.poll() is None, sweep.stderr.read()
            os.killpg(server.pid, signal.SIGSTOP)
            time.sleep(4)  # the sweep's next call to the server is now waiting for an answer
            sweep.send_signal(signal.SIGTERM)
            asked = time.monotonic()
            out, err = sweep.communicate(timeout=tracking.SERVER_PATIENCE_SECONDS)  # far less: see the figure
            took = time.monotonic() - asked
        finally:
            sweep.kill()
            sweep.wait()
        assert sweep.returncode != 0 and "Traceback" not in err, err
        print(f"SIGTERM while the server hangs: the sweep exited {took:.1f} s later")  # for the notes (pytest -s)
    finally:
        _resume_server(server)
