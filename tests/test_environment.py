"""Each run records the numerical environment it was computed in (run/environment.py): in summary.json, never in its
identity; one line of it in the results table and on its MLflow run."""

from __future__ import annotations

import json
import platform
import types
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import tracking
from pipeline.run import environment, runner
from pipeline.run.config import RunConfig, config_hash
from pipeline.sweep.plan import Cell
from pipeline.sweep.results import write_results_table
from test_tracking import CONFIG, empty_db, store, write_fake_run_folder  # noqa: F401 (fixtures)

TINY = dict(task="adding", seq_len=6, hidden=4, batch=4, iters=2, val_size=16, eval_every=1, probe_len=4)


def env(numpy: str = "2.4.6", arch: str = "SkylakeX", cpu: str = "Intel(R) Xeon(R) Processor") -> dict:
    """An environment as run/environment.gather records one."""
    return {"python": "3.11.7", "numpy": numpy, "scipy": "1.17.1",
            "blas": [{"library": "numpy", "internal_api": "openblas", "version": "0.3.31", "architecture": arch}],
            "machine": "x86_64", "cpu": cpu}


def run(tmp_path: Path, name: str, **overrides) -> runner.RunResult:
    cfg = RunConfig(**{**TINY, **overrides})
    return runner.execute_run(cfg, tmp_path / "data", tmp_path / name)


# ---- the run ------------------------------------------------------------------------------------------------


def test_a_runs_summary_records_the_environment_it_was_computed_in(tmp_path):
    result = run(tmp_path, "a")
    recorded = json.loads((result.run_dir / "summary.json").read_text())["environment"]
    assert recorded == result.summary["environment"]
    assert recorded["numpy"] == np.__version__ and recorded["python"] == platform.python_version()
    assert recorded["machine"] == platform.machine()
    numpy_blas = recorded["blas"][0]  # numpy's, the one the engine computes with, first
    assert numpy_blas["library"] == "numpy" and numpy_blas["internal_api"] and numpy_blas["version"]
    assert not any("/" in str(v) for b in recorded["blas"] for v in b.values())  # no path of the user's folders
    assert "environment" not in json.loads((result.run_dir / "config.json").read_text())


def test_the_environment_is_no_part_of_a_runs_identity(tmp_path, monkeypatch):
    """A study resumed on another machine skips its finished cells: two environments, one config hash."""
    results = {}
    for name, machine in (("here", env()), ("there", env(numpy="2.3.0", arch="Haswell"))):
        monkeypatch.setattr(environment, "gather", lambda machine=machine: machine)
        results[name] = run(tmp_path, name)
    here, there = results["here"], results["there"]
    assert (here.summary["environment"], there.summary["environment"]) == (env(), env("2.3.0", "Haswell"))
    assert here.config_hash == there.config_hash == config_hash(RunConfig(**TINY), here.summary["inputs"])
    assert (here.run_dir / "config.json").read_bytes() == (there.run_dir / "config.json").read_bytes()


def test_gathering_the_environment_never_fails_a_run(tmp_path, monkeypatch):
    def broken():
        raise RuntimeError("no threadpool info here")

    monkeypatch.setattr(environment, "CPUINFO", tmp_path / "no-cpuinfo")
    monkeypatch.setattr(environment, "_blas", broken)
    monkeypatch.setattr(environment.platform, "processor", lambda: "")
    result = run(tmp_path, "a")
    assert result.outcome == "ok"
    assert result.summary["environment"]["blas"] == [] and result.summary["environment"]["cpu"] is None
    assert environment.describe(result.summary["environment"]) == (
        f"numpy {np.__version__}, {platform.machine()}, Python {platform.python_version()}")


def test_the_cpu_model_is_the_first_model_name_of_proc_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n\n"
                       "processor\t: 1\nmodel name\t: Another\n")
    monkeypatch.setattr(environment, "CPUINFO", cpuinfo)
    assert environment.gather()["cpu"] == "Intel(R) Xeon(R) Processor"


def test_the_one_line_form(tmp_path):
    assert environment.describe(env()) == ("numpy 2.4.6, OpenBLAS 0.3.31 SkylakeX, x86_64 Intel(R) Xeon(R) Processor, "
                                           "Python 3.11.7")
    for older in (None, {}, "text", {"blas": "not a list"}):
        assert environment.describe(older) == environment.NOT_RECORDED
    odd = environment.describe({"blas": [{"internal_api": ["a list"], "version": 1}], "numpy": "9" * 1000})
    assert odd.startswith("numpy 999") and len(odd) == environment.LINE_CHARS  # a summary handed over: no error


# ---- the results table and MLflow ---------------------------------------------------------------------------


def test_the_results_table_has_the_environment_in_one_line(tmp_path):
    cells = []
    for name, summary_env in (("now", env()), ("older", None)):
        folder = tmp_path / "mini" / "runs" / name
        write_fake_run_folder(CONFIG, folder)
        summary = json.loads((folder / "summary.json").read_text())
        if summary_env is not None:
            (folder / "summary.json").write_text(json.dumps(summary | {"environment": summary_env}))
        cells.append(Cell(name=f"cell={name}", config=None, config_hash=name, run_dir=folder))
    spec = types.SimpleNamespace(name="mini", description="")
    table = write_results_table(spec, cells, {"now": "r1", "older": "r2"}, tmp_path, tmp_path / "mini.parquet")
    written = pd.read_parquet(tmp_path / "mini.parquet")
    assert list(written["environment"]) == list(table["environment"]) == [environment.describe(env()),
                                                                         environment.NOT_RECORDED]


def test_each_mlflow_run_is_tagged_with_its_environment(store, tmp_path):  # noqa: F811 (a fixture)
    exp = tracking.ensure_experiment(store, "rnngrad/test")
    tags = {}
    for name, summary_env in (("now", env()), ("older", None)):
        folder = tmp_path / name
        write_fake_run_folder(CONFIG, folder)
        if summary_env is not None:
            summary = json.loads((folder / "summary.json").read_text())
            (folder / "summary.json").write_text(json.dumps(summary | {"environment": summary_env}))
        run_id = tracking.start_run(store, exp, name)
        tracking.log_folder_and_end(store, run_id, folder)
        tags[name] = tracking.client(store).get_run(run_id).data.tags.get("environment")
    assert tags == {"now": environment.describe(env()), "older": environment.NOT_RECORDED}
