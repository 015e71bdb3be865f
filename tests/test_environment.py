"""Each run records the numerical environment it was computed in (run/environment.py): in summary.json, never in its
identity; one line of it in the results table, on its MLflow run, in metrics.json's counts and in the report's
Reproducibility paragraph, escaped there."""

from __future__ import annotations

import html
import json
import platform
import re
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fixtures_runs as fx
from pipeline import cli, tracking
from pipeline.run import environment, runner
from pipeline.run.config import RunConfig, config_hash
from pipeline.sweep.plan import Cell
from pipeline.sweep.results import write_results_table
from test_tracking import CONFIG, empty_db, store, write_fake_run_folder  # noqa: F401 (fixtures)

cli._register()  # the commands, for report_of

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


# ---- analyze and the report ---------------------------------------------------------------------------------

HOSTILE = env(cpu="<script>alert(1)</script> & Co")


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> dict:
    """Four clipping runs: two in one environment, one in another (whose CPU name is markup), one from before runs
    recorded it; analysed and reported."""
    runs = [fx.make_run("clipping", clip_mode="global", clip_threshold=c, overrides={"environment": env()})
            for c in (0.1, 10.0)]
    runs += [fx.make_run("clipping", clip_mode="elementwise", clip_threshold=0.1, overrides={"environment": HOSTILE}),
             fx.make_run("clipping", clip_mode="none", clip_threshold=1.0)]
    root = tmp_path_factory.mktemp("study")
    out = fx.report_of(root, runs)
    return {"metrics": json.loads((out / "metrics.json").read_text()),
            "runs": pd.read_csv(out / "tables" / "runs.csv"), "html": (out / "report.html").read_text()}


def test_metrics_count_the_runs_of_each_environment_most_first(reported):
    assert reported["metrics"]["environment"] == [  # ties in name order
        {"environment": environment.describe(env()), "n_runs": 2},
        {"environment": environment.NOT_RECORDED, "n_runs": 1},
        {"environment": environment.describe(HOSTILE), "n_runs": 1}]
    assert sorted(reported["runs"]["environment"]) == sorted(
        [environment.describe(env())] * 2 + [environment.describe(HOSTILE), environment.NOT_RECORDED])


def test_the_report_says_where_the_runs_were_computed_and_what_reproduces(reported):
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", reported["html"])).split())
    paragraph = text[text.index("Reproducibility."):]
    assert paragraph.startswith(
        f"Reproducibility. Where recorded, the runs were computed in 2 environments: {environment.describe(env())} "
        f"(2 runs); {environment.describe(HOSTILE)} (1 run). For 1 run the environment was not recorded")
    assert ("Runs reproduce bit for bit with the same code, data, seed and environment. Another CPU or BLAS build "
            "changes the last bits of floating-point sums, which training amplifies: individual runs, and so the "
            "counts of learned runs, can differ between machines.") in paragraph


def test_an_environment_from_the_machine_is_escaped_in_the_html(reported):
    page = reported["html"]
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in page


def test_one_environment_is_named_as_one():
    from pipeline.report.html import REPRODUCIBILITY, reproducibility_paragraph

    line = environment.describe(env())
    one = reproducibility_paragraph({"environment": [{"environment": line, "n_runs": 1200}]})
    assert one.parts == [f"Reproducibility. The runs were computed in one environment: {line} (1,200 runs). "
                         + REPRODUCIBILITY]
    older = reproducibility_paragraph({"environment": [{"environment": environment.NOT_RECORDED, "n_runs": 3}]})
    assert older.parts == ["Reproducibility. For 3 runs the environment was not recorded (run folders written before "
                           "runs recorded it). " + REPRODUCIBILITY]
