"""dvc.yaml's plots: one file per line (reports/plots/<plot>/<group>.csv), each sorted by its x, so that DVC draws one
line per spec and phase, task or text arm instead of one zigzag through every run; and dvc.yaml names the files that
`analyze` writes, with columns they hold. Expected medians are worked out by hand from the tables built here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import fixtures_runs as fx
from pipeline import cli
from pipeline.errors import UserError
from pipeline.report import dvc_plots

cli._register()
ROOT = Path(__file__).resolve().parents[1]


def dvc_plot_definitions() -> dict[str, dict]:
    """{plot id: its properties} of dvc.yaml's top-level plots."""
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    return {k: v for entry in raw for k, v in entry.items()}


def interleaved_decay() -> pd.DataFrame:
    """Two runs of spec a and one of spec b, init and final rows alternating and lags descending, as a table that
    stacks every run's probes would hold them (a plot of it zigzags)."""
    rows = []
    for run, spec, slope in (("r1", "a", -1.0), ("r2", "a", -3.0), ("r3", "b", 0.5)):
        for lag in (3, 2, 1):
            rows += [{"run_id": run, "spec": spec, "when": "init", "lag": lag, "log10_norm": slope * lag},
                     {"run_id": run, "spec": spec, "when": "final", "lag": lag, "log10_norm": slope * lag + 10}]
    return pd.DataFrame(rows)


def test_decay_has_one_line_per_spec_and_phase_sorted_by_lag_with_the_median_over_runs():
    lines = dvc_plots.decay_lines(interleaved_decay())
    assert sorted(lines) == ["a.final", "a.init", "b.final", "b.init"]
    a = lines["a.init"]
    assert a["lag"].tolist() == [1, 2, 3]
    assert a["log10_norm"].tolist() == [-2.0, -4.0, -6.0]  # the median of two runs: (-1 - 3) / 2 per lag
    assert a["n_runs"].tolist() == [2, 2, 2]
    assert lines["a.final"]["log10_norm"].tolist() == [8.0, 6.0, 4.0]
    assert lines["b.init"]["log10_norm"].tolist() == [0.5, 1.0, 1.5]


def test_success_has_one_line_per_task_each_over_its_own_T():
    table = pd.DataFrame({"task": ["copy", "adding", "copy", "adding", "adding"], "T": [20, 50, 5, 10, 25],
                          "learned_rate": [0.0, 0.0, 1.0, 1.0, 0.5], "n_scored": 3})
    lines = dvc_plots.success_lines(table)
    assert sorted(lines) == ["adding", "copy"]
    assert lines["adding"]["T"].tolist() == [10, 25, 50] and lines["adding"]["learned_rate"].tolist() == [1, .5, 0]
    assert lines["copy"]["T"].tolist() == [5, 20]


def test_text_has_one_line_per_arm_and_read_with_the_median_over_seeds():
    rows = [{"spec": "text", "run_id": f"{arm}{seed}", "arm": arm, "seed": seed, "read": "carried", "iter": i,
             "chars": 100 * i, "val_loss": base - i + seed} for i in (0, 1, 2) for seed in (0, 1, 2)
            for arm, base in (("rnn", 5.0), ("lstm", 4.0))]
    lines = dvc_plots.text_lines(pd.DataFrame(rows))
    assert sorted(lines) == ["text.lstm.carried", "text.rnn.carried"]
    assert lines["text.rnn.carried"]["chars"].tolist() == [0, 100, 200]
    assert lines["text.rnn.carried"]["val_loss"].tolist() == [6.0, 5.0, 4.0]  # the median seed adds 1
    assert lines["text.lstm.carried"]["n_runs"].tolist() == [3, 3, 3]


def test_a_group_name_keeps_only_file_name_characters():
    assert dvc_plots.file_part("../a b/c") == "a_b_c"
    assert dvc_plots.file_part("") == "none"


def test_analyze_writes_every_plot_file_sorted_by_its_x_and_removes_a_stale_one(tmp_path):
    fx.write_study(tmp_path / "results", fx.standard_runs())
    out = tmp_path / "reports"
    stale = out / dvc_plots.PLOTS / "decay" / "gone.init.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("lag,log10_norm\n1,0\n")
    done = CliRunner().invoke(cli.app, ["analyze", "--results-dir", str(tmp_path / "results"), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert not stale.exists()
    definitions = dvc_plot_definitions()
    written = sorted((out / dvc_plots.PLOTS).glob("*/*.csv"))
    assert {"decay", "success_vs_T"} <= {p.parent.name for p in written}
    assert {"weight_norms.init.csv", "long_range.final.csv"} <= {p.name for p in written if p.parent.name == "decay"}
    for path in written:
        line = pd.read_csv(path)
        x = next(d["x"] for name, d in definitions.items() if any(f"/{path.parent.name}/" in f for f in d["y"]))
        assert len(line) and np.all(np.diff(line[x].to_numpy()) > 0), f"{path}: {x} not increasing"


def test_write_plots_refuses_a_linked_plots_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / dvc_plots.PLOTS).symlink_to(elsewhere)
    with pytest.raises(UserError, match="is a file or a link"):
        dvc_plots.write_plots({"decay": interleaved_decay()}, tmp_path / "out")
    assert not any(elsewhere.iterdir())


def test_dvc_yaml_plots_name_the_files_analyze_writes_for_the_listed_specs():
    """Every file a plot names is reports/plots/<plot>/<group>.csv of a plot analyze writes, for a spec params.yaml
    lists (decay), a task of the long_range spec, or an arm of the text spec; each spec's init decay is drawn; and
    each file's x and y are columns of that plot's lines. The analyze stage declares reports/plots as an output."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    specs = yaml.safe_load((ROOT / "params.yaml").read_text())["specs"]
    grid = yaml.safe_load((ROOT / "experiments" / "long_range.yaml").read_text())["profiles"]["quick"]["grid"]
    tasks = {t for block in grid for t in block["task"]}
    columns = {"decay": {"lag", "log10_norm"}, "success_vs_T": {"T", "learned_rate"},
               "text_val_curve": {"chars", "val_loss"}}
    assert set(columns) == set(dvc_plots.plot_lines({}))
    named = []
    for plot_id, d in dvc_plot_definitions().items():
        for file, y in d["y"].items():
            path = Path(file)
            assert path.parts[:2] == ("reports", dvc_plots.PLOTS) and path.suffix == ".csv", file
            plot = path.parts[2]
            assert {d["x"], y} <= columns[plot], f"{plot_id}: {file}"
            named.append((plot, path.stem))
    decay = [g for p, g in named if p == "decay"]
    assert all(g.split(".")[0] in specs and g.split(".")[1] in ("init", "final") for g in decay)
    assert {f"{s}.init" for s in specs} <= set(decay)
    assert {g for p, g in named if p == "success_vs_T"} == tasks
    assert {g.split(".")[0] for p, g in named if p == "text_val_curve"} == {"text"}
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in dvc["stages"]["analyze"]["outs"]]
    assert f"reports/{dvc_plots.PLOTS}" in outs
