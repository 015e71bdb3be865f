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
