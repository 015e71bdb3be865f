"""A sweep against a real `mlflow server` (MLFLOW_TRACKING_URI=http://...) logs the same runs and artifacts.

Starts `mlflow server` on a free local port with a sqlite backend and proxied artifacts in a temp dir, runs the
mini sweep of test_sweep with the fake runner, checks runs and artifacts through the server and on its disk, and
always stops the server (its own process group) in `finally`.
"""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline import tracking
from pipeline.benchmarks import services
from pipeline.run.spec import load_spec
from pipeline.sweep import run_sweep
from test_sweep import fake_execute, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    port = services.free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path}/srv.db", "--artifacts-destination", str(tmp_path / "art")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        services.wait_healthy(url, proc, 90)
        yield url, tmp_path / "art"
    finally:
        services.stop_group(proc)
        log.close()


def test_sweep_against_a_tracking_server(server, tmp_path, monkeypatch):
    url, artifact_dir = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("FAKE_CALLS_LOG", str(tmp_path / "calls.log"))
    project = tmp_path / "project"
    project.mkdir()
    spec = load_spec(write_spec(project, gammas=[0.5, 2.0, 3.0]), "quick")

    store = tracking.open_store(project)
    assert (store.tracking_uri, store.artifact_root) == (url, None)
    result = run_sweep(spec, project / "data", project / "results", store, jobs=2, execute=fake_execute)
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()

    exp = tracking.ensure_experiment(store, "rnngrad/mini")
    runs = tracking.find_runs(store, exp)
    children = [r for r in runs if "config_hash" in r.tags]
    assert sorted(r.tags["cell"] for r in children) == ["gamma_w=0.5,seed=0", "gamma_w=2.0,seed=0", "gamma_w=3.0,seed=0"]
    assert sorted(r.run_name for r in children) == ["γW=0.5", "γW=2", "γW=3"]
    assert {r.status for r in runs} == {"FINISHED"} and len(runs) == 4
    assert {r.tags["mlflow.parentRunId"] for r in children} == {result.parent_run_id}

    c = tracking.client(store)
    run_id = children[0].run_id
    probe = {a.path for a in c.list_artifacts(run_id, "probe")}
    assert {"probe/model_init.npz", "probe/model_final.npz", "probe/inputs.npy", "probe/h0.npy",
            "probe/jacobian.parquet"} <= probe
    assert len(list(artifact_dir.rglob("jacobian_heatmap.png"))) == 3  # stored by the server, not the client
    assert [p.step for p in c.get_metric_history(run_id, "by_lag/log10_norm_init")] == list(range(1, 7))
    table = pd.read_parquet(project / "results" / "mini.parquet")
    assert set(table["run_id"]) == {r.run_id for r in children}

    again = run_sweep(spec, project / "data", project / "results", store, jobs=2, execute=fake_execute)
    assert (again.ran, len(again.skipped)) == ([], 3)
