"""Adding a spec is one file plus one name (README, "Adding an experiment spec"), end to end in a copy of the project:
DVC sees a new sweep stage, `generate` makes its data, and after sweep, analyze and report the spec has its own
section in report.html and its own MLflow experiment."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

SPEC = """\
name: my_spec
description: A two-seed adding check that a new spec reaches every output.
base: {task: adding, seq_len: 12, val_size: 64, hidden: 8, optimizer: adam, lr: 0.01, batch: 8, probe_len: 12}
profiles:
  quick:
    base: {iters: 20}
    grid: {seed: [0, 1]}
  full:
    base: {iters: 200}
    grid: {seed: [0, 1, 2]}
"""


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(DVC_NO_ANALYTICS="1", PATH=f"{BIN}:{env.get('PATH', '')}")
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.fixture()
def project(tmp_path) -> Path:
    """A copy of the project's pipeline definition with `my_spec` added the way the README says."""
    for name in ("experiments", ".dvc"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("tmp", "cache"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "experiments" / "my_spec.yaml").write_text(SPEC, encoding="utf-8")
    params = yaml.safe_load((tmp_path / "params.yaml").read_text(encoding="utf-8"))
    params["specs"].append("my_spec")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return tmp_path


def test_a_new_spec_reaches_dvc_the_report_and_mlflow(project):
    run(["git", "init", "-q"], project)
    stages = run(["dvc", "stage", "list", "--name-only"], project).stdout.split()
    assert "sweep@my_spec" in stages

    run(["rnngrad", "generate", "--profile", "quick", "--spec", "experiments/my_spec.yaml"], project)
    assert (project / "data" / "adding_T12_N64_s0.npz").is_file()
    run(["rnngrad", "sweep", "experiments/my_spec.yaml", "--profile", "quick", "--jobs", "1"], project)
    run(["rnngrad", "analyze"], project)
    run(["rnngrad", "report"], project)

    html = (project / "reports" / "report.html").read_text(encoding="utf-8")
    assert "my_spec" in html
    assert "A two-seed adding check that a new spec reaches every output." in html
    assert (project / "reports" / "figures" / "decay-my_spec.png").is_file()
    with sqlite3.connect(project / "mlflow.db") as db:
        names = {name for (name,) in db.execute("SELECT name FROM experiments")}
        runs = db.execute("SELECT COUNT(*) FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
                          "WHERE e.name = 'rnngrad/my_spec' AND r.status = 'FINISHED'").fetchone()[0]
    assert "rnngrad/my_spec" in names
    assert runs == 3  # the parent and its two cells
