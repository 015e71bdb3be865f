"""A run whose final model is its initial one (iters 0: the activations spec's 160 cells) probes it once, and its
folder holds what probing it twice wrote."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.run import probe, runner
from pipeline.run.config import RunConfig

PROBE_CELL = dict(task="probe", seq_len=16, probe_len=16, hidden=12, val_size=1, iters=0, gamma_w=1.5)


@pytest.mark.parametrize("cell", [dict(activation="tanh"), dict(activation="relu", form="pascanu"),
                                  dict(cell_type="lstm", init="orthogonal")])
def test_an_untrained_run_probes_once_and_writes_what_two_probes_wrote(cell, tmp_path, monkeypatch):
    cfg = RunConfig(**PROBE_CELL, **cell)
    calls = []
    monkeypatch.setattr(runner, "probe_model", lambda *a: calls.append(a[2]) or probe.probe_model(*a))
    once = runner.execute_run(cfg, tmp_path / "data", tmp_path / "once")
    assert calls == ["init"] and once.outcome == "ok"
    monkeypatch.setattr(runner, "same_model", lambda a, b: False)  # force the second probe
    twice = runner.execute_run(cfg, tmp_path / "data", tmp_path / "twice")
    assert calls == ["init", "init", "final"]
    drop = {"seconds", "cpu_seconds"}
    assert {k: v for k, v in once.summary.items() if k not in drop} == \
        {k: v for k, v in twice.summary.items() if k not in drop}
    for table in ("jacobian", "signal", "spot_checks", "spectra"):
        a, b = (pd.read_parquet(Path(r.run_dir) / "probe" / f"{table}.parquet") for r in (once, twice))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert set(a["when"]) <= {"init", "final"} and (a["when"] == "final").sum() == (a["when"] == "init").sum()
    pd.testing.assert_frame_equal(*(pd.read_parquet(Path(r.run_dir) / "series.parquet") for r in (once, twice)),
                                  check_exact=True)


def test_a_trained_model_is_another_model():
    rng = np.random.default_rng(0)
    cfg = RunConfig(**{**PROBE_CELL, "task": "adding", "seq_len": 8, "probe_len": 8, "iters": 2})
    model = runner.new_model(cfg, runner.make_source(cfg, Path("/nonexistent")), rng)
    other = model.copy()
    assert probe.same_model(model, other)
    other.params["W_hh_0"][0, 0] = np.nextafter(other.params["W_hh_0"][0, 0], np.inf)  # one last bit
    assert not probe.same_model(model, other)
