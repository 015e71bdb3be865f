"""A study folder copied elsewhere opens in `mlflow ui` with every artifact (tracking/artifacts.py).

A small real study (two runs of the real runner) is swept, its folder copied to another place and the original
moved away, so that no absolute path into it resolves; then `mlflow ui`, started as the command rnngrad prints
says (on 127.0.0.1, a free port), serves a run's figures/decay.png through its REST API byte for byte. The UI is
its own process group, stopped in `finally`.
"""

import json
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import tracking
from pipeline.benchmarks import services
from test_sweep import TINY_SPEC, cli_app  # noqa: F401 (cli_app is a fixture)
from test_tracking import empty_db  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow
UI_START_SECONDS = 240  # a shared 2-core machine can take minutes to start the UI's workers


def _get(url: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return r.read()


def test_a_copied_study_opens_in_mlflow_ui_with_its_figures(cli_app, tmp_path, monkeypatch, empty_db):  # noqa: F811
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = tmp_path / "study"
    (study / "experiments").mkdir(parents=True)
    (study / "experiments" / "tiny.yaml").write_text(TINY_SPEC)
    shutil.copy(empty_db, study / "mlflow.db")
    monkeypatch.chdir(study)
    result = CliRunner().invoke(cli_app, ["sweep", "experiments/tiny.yaml", "--jobs", "1"])
    assert result.exit_code == 0, result.output

    copy = tmp_path / "elsewhere" / "study copy"  # a space in the path: the printed command must quote it
    shutil.copytree(study, copy)
    shutil.move(study, tmp_path / "gone")  # nothing may still point into the original folder
    monkeypatch.chdir(tmp_path)  # and the UI is started from outside the study, as a user would
    command = shlex.split(tracking.Store(f"sqlite:///{copy}/mlflow.db", None).ui_command())
    assert command[:2] == ["mlflow", "ui"]
    port = services.free_port()
    log = open(tmp_path / "ui.log", "w")
    ui = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), *command[1:], "--host", "127.0.0.1",
                           "--port", str(port), "--workers", "1"],
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        services.wait_healthy(base, ui, UI_START_SECONDS)
        experiments = json.loads(_get(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 10}))
        tiny = next(e for e in experiments["experiments"] if e["name"] == "rnngrad/tiny")
        runs = json.loads(_get(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [tiny["experiment_id"]]}))
        children = [r for r in runs["runs"]
                    if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
        assert len(children) == 2
        for run in children:
            run_id = run["info"]["run_id"]
            listed = json.loads(_get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=figures"))
            assert "figures/decay.png" in {f["path"] for f in listed["files"]}
            served = _get(f"{base}/get-artifact?path=figures/decay.png&run_uuid={run_id}")
            config_hash = next(t["value"] for t in run["data"]["tags"] if t["key"] == "config_hash")
            on_disk = copy / "results" / "tiny" / "runs" / config_hash / "figures" / "decay.png"
            assert served.startswith(b"\x89PNG") and served == on_disk.read_bytes()
    finally:
        services.stop_group(ui)
        log.close()
