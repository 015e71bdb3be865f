"""The layers hold and DVC sees every module a stage runs.

- `lint-imports` checks the contracts in pyproject.toml ([tool.importlinter]): engine -> nothing above it,
  run -> no report/sweep/tracking/stages, only tracking imports mlflow, no import cycles.
- Every project module that a dvc.yaml stage's command imports, transitively (grimp's graph, function-level imports
  included), lies under one of that stage's deps, so changing it reruns the stage.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=project, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(project)}, timeout=120)


def test_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_an_engine_module_importing_the_run_layer_breaks_a_contract(tmp_path):
    """The contracts can fail: plant `from ..run import config` in the engine of a copy of the package."""
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    rnn = tmp_path / "pipeline" / "engine" / "rnn.py"
    rnn.write_text(rnn.read_text(encoding="utf-8") + "\nfrom ..run import config  # planted\n", encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "pipeline.engine.rnn -> pipeline.run.config" in result.stdout


# ---- dvc.yaml deps against the import graph ---------------------------------------------------------------------


def stage_deps() -> dict[str, tuple[str, list[str]]]:
    """{stage name: (the rnngrad subcommand it runs, its deps)}; a foreach stage once, with its first item."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        cmd = body["cmd"].split()
        assert cmd[0] == "rnngrad", f"stage {name} does not run an rnngrad command: {body['cmd']}"
        out[name] = (cmd[1], [str(d) for d in body.get("deps", [])])
    return out


def module_file(module: str) -> Path:
    """A project module's source file, relative to the project root."""
    path = ROOT.joinpath(*module.split("."))
    return (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(ROOT)


def modules_run_by(graph: grimp.ImportGraph, command: str) -> set[str]:
    """What `rnngrad <command>` executes: the command's stage module and everything it imports, plus the entry
    point (`pipeline.cli`, the package `pipeline`). The other stage modules are registered by cli.py but their
    commands do not run, so their code cannot change this stage's outputs."""
    stage = f"pipeline.stages.{command}"
    upstream = graph.find_upstream_modules(stage)
    return {m for m in upstream | {stage} if m.split(".")[0] == "pipeline"} | {"pipeline.cli", "pipeline"}


def uncovered(modules: set[str], deps: list[str]) -> list[str]:
    """The modules' files that lie under none of the deps (a file or a folder each)."""
    files = sorted(str(module_file(m)) for m in modules)
    return [f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("pipeline", cache_dir=None)


@pytest.mark.parametrize("stage", sorted(stage_deps()))
def test_every_module_a_stage_runs_is_a_dep(graph, stage):
    command, deps = stage_deps()[stage]
    missing = uncovered(modules_run_by(graph, command), deps)
    assert not missing, f"dvc.yaml stage {stage!r} runs these files but does not list them (or a folder) as deps: {missing}"


@pytest.mark.parametrize("stage", sorted(stage_deps()))
def test_removing_a_code_dep_is_caught(graph, stage):
    """The check is not vacuous: dropping any one code dep of the stage leaves some module it runs uncovered."""
    command, deps = stage_deps()[stage]
    modules = modules_run_by(graph, command)
    code_deps = [d for d in deps if d.startswith("pipeline")]
    assert code_deps
    for dep in code_deps:
        assert uncovered(modules, [d for d in deps if d != dep]), f"{stage}: {dep} is listed but never run"
