"""Sweeps on a real Dask cluster logging to a real MLflow server on PostgreSQL, all on 127.0.0.1.

Per module: a PostgreSQL cluster (`initdb` + `pg_ctl`, as the `postgres` user when run as root) on a free port and
`mlflow server` on it (pipeline/benchmarks/services.py, which the cluster benchmark uses too). Per test: `dask
scheduler` and `dask worker --nworkers 2 --nthreads 1` subprocesses whose workers run the fake runner of
test_sweep (found through PYTHONPATH), and drivers as subprocesses where a test kills them. Every process is stopped in `finally`. Needs PostgreSQL's server binaries (Debian: `apt-get install
postgresql`); without them these tests skip, except under .ci/run (RNNGRAD_CI=1), where they fail.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline import cluster, tracking
from pipeline.benchmarks import services
from pipeline.run.spec import load_spec
from pipeline.sweep import run_sweep
from test_sweep import _append, _calls, config_hash, fake_execute, write_spec  # the hash a cell's folder is named by

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
GAMMAS = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on a throwaway PostgreSQL, proxying artifacts to a temp folder; yields its URL."""
    if not services.postgres_bin("initdb"):
        if os.environ.get("RNNGRAD_CI"):
            pytest.fail(services.INSTALL_HINT)
        pytest.skip(services.INSTALL_HINT)
    with services.postgres() as database:
        with services.mlflow_server(database, tmp_path_factory.mktemp("mlflow-server")) as server:
            yield server.url


def _python_path() -> str:
    return os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])


@pytest.fixture
def start_dask(tmp_path):
    """start_dask(**env) -> tcp://127.0.0.1:PORT: a scheduler and `dask worker --nworkers 2 --nthreads 1`, whose
    workers see `env` (the fake runner's switches) and write the fake runner's call log in tmp_path."""
    procs, logs = [], []

    def start(**env) -> str:
        port = services.free_port()
        address = f"tcp://127.0.0.1:{port}"
        dask = str(Path(sys.executable).with_name("dask"))
        full = {**os.environ, "PYTHONPATH": _python_path(), "FAKE_CALLS_LOG": str(tmp_path / "calls.log"), **env}
        for name, args in (("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]),
                           ("worker", ["worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
                                       "--local-directory", str(tmp_path / "workers")])):
            logs.append(open(tmp_path / f"dask-{name}.log", "w"))
            procs.append(subprocess.Popen([dask, *args], stdout=logs[-1], stderr=subprocess.STDOUT, env=full,
                                          start_new_session=True, cwd=tmp_path))
        _wait_for(lambda: _workers_up(address) == 2, "2 dask workers", 60)
        return address

    try:
        yield start
    finally:
        for proc in reversed(procs):
            services.stop_group(proc)
        for log in logs:
            log.close()


def _workers_up(address: str) -> int:
    import distributed

    try:
        with distributed.Client(address, timeout=2) as client:
            return len(client.scheduler_info()["workers"])
    except OSError:
        return 0


def _wait_for(condition, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        time.sleep(0.2)


def marked_execute(cfg, data_dir, run_dir, progress=None):
    """fake_execute, but the cell with gamma_w = $FAKE_MARKED_GAMMA takes $FAKE_MARKED_SECONDS (long enough to be
    killed while it runs) and logs `marked <pid>` when it starts."""
    if str(cfg.gamma_w) == os.environ.get("FAKE_MARKED_GAMMA"):
        _append(os.environ["FAKE_CALLS_LOG"], f"marked {config_hash(cfg)} {os.getpid()}")
        time.sleep(float(os.environ["FAKE_MARKED_SECONDS"]))
    fake_execute(cfg, data_dir, run_dir)


def driver_main(root: str, spec_name: str, address: str) -> None:
    """A sweep driver in its own process (the tests kill it or one of its workers)."""
    root = Path(root)
    store = tracking.open_store(root)
    spec = load_spec(root / f"{spec_name}.yaml", "quick")
    with cluster.connect(address) as opened:
        run_sweep(spec, root / "data", root / "results", store, opened.slots, execute=marked_execute,
                  executor=opened.executor(root / "data"))


def _start_driver(root: Path, spec_name: str, address: str, url: str) -> subprocess.Popen:
    code = f"import test_cluster_server as t; t.driver_main({str(root)!r}, {spec_name!r}, {address!r})"
    log = open(root / f"driver-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, cwd=root,
                            env={**os.environ, "PYTHONPATH": _python_path(), "MLFLOW_TRACKING_URI": url})


def _children(store, spec_name: str) -> list[tracking.RunRecord]:
    exp = tracking.ensure_experiment(store, f"rnngrad/{spec_name}")
    return [r for r in tracking.find_runs(store, exp) if "config_hash" in r.tags]


def _one_finished_child_per_hash(store, spec_name: str, hashes: set[str]) -> None:
    children = _children(store, spec_name)
    finished = [r.tags["config_hash"] for r in children if r.status == "FINISHED"]
    assert sorted(finished) == sorted(hashes)  # exactly one each
    assert [r for r in children if r.status == "RUNNING"] == []


def _project(tmp_path: Path, url: str, monkeypatch, spec_name: str) -> tuple[Path, object, set[str]]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("FAKE_CALLS_LOG", str(tmp_path / "calls.log"))
    root = tmp_path / "project"
    root.mkdir()
    spec = load_spec(write_spec(root, GAMMAS, name=spec_name), "quick")
    return root, tracking.open_store(root), {config_hash(c) for c in spec.cells}


def test_a_sigkilled_worker_has_its_cell_rerun_and_nothing_is_lost(server, start_dask, tmp_path, monkeypatch):
    root, store, hashes = _project(tmp_path, server, monkeypatch, "workerkill")
    address = start_dask(FAKE_RUN_SECONDS="0.3", FAKE_MARKED_GAMMA="1.5", FAKE_MARKED_SECONDS="3")
    driver = _start_driver(root, "workerkill", address, server)
    try:
        _wait_for(lambda: _calls(tmp_path, "marked"), "the marked cell to start")
        time.sleep(0.5)  # the worker is inside the marked cell now
        marked_hash, pid = (tmp_path / "calls.log").read_text().split("marked ")[1].split()[:2]
        os.kill(int(pid), signal.SIGKILL)
        assert driver.wait(timeout=120) == 0
    finally:
        driver.kill()
    _one_finished_child_per_hash(store, "workerkill", hashes)
    table = pd.read_parquet(root / "results" / "workerkill.parquet")
    assert set(table["config_hash"]) == hashes and len(table) == len(hashes)
    marked = _calls(tmp_path, "marked")
    assert marked.count(marked_hash) >= 2  # killed once, then ran again on another worker
    done = _calls(tmp_path, "done")
    assert sorted(set(done)) == sorted(hashes) and done.count(marked_hash) == 1
    assert all(_calls(tmp_path, "start").count(h) == 1 for h in hashes - {marked_hash})


def test_a_cell_that_kills_every_worker_ends_failed_and_the_rest_finish(server, start_dask, tmp_path, monkeypatch):
    root, store, hashes = _project(tmp_path, server, monkeypatch, "deadly")
    address = start_dask(FAKE_DIE_GAMMA="2.0")
    spec = load_spec(root / "deadly.yaml", "quick")
    with cluster.connect(address) as opened:
        result = run_sweep(spec, root / "data", root / "results", store, opened.slots, execute=fake_execute,
                           executor=opened.executor(root / "data"))
    assert list(result.crashed) == ["gamma_w=2.0,seed=0"]
    assert "KilledWorker" in result.crashed["gamma_w=2.0,seed=0"]
    deadly = config_hash(spec.cells[GAMMAS.index(2.0)])
    assert _calls(tmp_path, "start").count(deadly) >= 2  # rescheduled after each death, up to allowed-failures
    children = _children(store, "deadly")
    failed = [r for r in children if r.status == "FAILED"]
    assert [r.tags["config_hash"] for r in failed] == [deadly] and "KilledWorker" in failed[0].tags["error"]
    _one_finished_child_per_hash(store, "deadly", hashes - {deadly})
    assert len(pd.read_parquet(result.table_path)) == len(hashes) - 1


def test_a_sigkilled_driver_restarted_runs_only_the_missing_cells(server, start_dask, tmp_path, monkeypatch):
    root, store, hashes = _project(tmp_path, server, monkeypatch, "driverkill")
    address = start_dask(FAKE_RUN_SECONDS="1")
    first = _start_driver(root, "driverkill", address, server)
    try:
        _wait_for(lambda: len(_calls(tmp_path, "done")) >= 2 and any(
            r.status == "FINISHED" for r in _children(store, "driverkill")), "two cells of the first driver", 120)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    logged = {r.tags["config_hash"] for r in _children(store, "driverkill") if r.status == "FINISHED"}
    folders = {p.name for p in (root / "results" / "driverkill" / "runs").iterdir() if not p.name.startswith(".")}
    starts_before = len(_calls(tmp_path, "start"))
    second = _start_driver(root, "driverkill", address, server)
    try:
        assert second.wait(timeout=120) == 0
    finally:
        second.kill()
    rerun = set(_calls(tmp_path, "start")[starts_before:])
    assert logged and not rerun & (logged | folders)  # nothing finished (or computed and returned) ran again
    _one_finished_child_per_hash(store, "driverkill", hashes)
    assert set(pd.read_parquet(root / "results" / "driverkill.parquet")["config_hash"]) == hashes


def test_the_driver_logging_benchmark_logs_every_cell_to_its_own_server(tmp_path, monkeypatch):
    from pipeline.benchmarks import cluster as bench

    if not services.postgres_bin("initdb") and not os.environ.get("RNNGRAD_CI"):
        pytest.skip(services.INSTALL_HINT)
    spec = write_spec(tmp_path, [0.5, 1.0, 2.0], name="benchlog")
    logged = []
    real = tracking.log_folder_and_end
    monkeypatch.setattr("pipeline.tracking.runs.log_folder_and_end",  # where the sweep reads it
                        lambda *a: logged.append(a[0].tracking_uri) or real(*a))
    fig = bench.bench_driver_logging(spec, data_dir=tmp_path / "data", server_workers=1)
    assert fig["driver_log_cells"] == 3 and fig["driver_log_cells_per_s"] > 0
    assert fig["driver_log_cells_per_s_1_thread"] > 0
    assert len(logged) == 6 and all(uri.startswith("http://127.0.0.1:") for uri in logged)  # 2 sweeps of 3 cells
