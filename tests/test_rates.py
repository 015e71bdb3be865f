"""Learning-rate selection (run/rates.py): the `select` block of a spec profile, the stage-one cells, the choice, and
`rnngrad sweep` running both stages with real runs."""

import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.errors import UserError
from pipeline.run import rates
from pipeline.run.config import RunConfig
from pipeline.run.spec import load_spec
from test_sweep import cli_app  # noqa: F401 (a fixture)
from test_tracking import empty_db  # noqa: F401 (a fixture)

SPEC = """\
name: pick
description: two arms, their rates chosen on other seeds
base: {{task: adding, seq_len: 6, val_size: 40, hidden: 4, iters: {iters}, batch: 4, probe_len: 6, optimizer: adam}}
profiles:
  quick:
    grid: {{seed: [0, 1]}}
  full:
    select: {select}
    grid:
      - {{seq_len: [6, 8], seed: [0, 1], init: [orthogonal]}}
      - {{seq_len: [6, 8], seed: [0, 1], cell_type: [gru], init: [orthogonal]}}
"""
SELECT = "{lr: [0.001, 0.1], seeds: [7, 8], seq_len: 6}"


def write(tmp_path, select=SELECT, iters=3):
    path = tmp_path / "experiments" / "pick.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(SPEC.format(select=select, iters=iters))
    return path


def test_stage_one_is_every_arm_at_every_rate_on_the_selection_seeds(tmp_path):
    spec = load_spec(write(tmp_path), "full")
    assert spec.selection == rates.Selection((0.001, 0.1), (7, 8), 6)
    stage = spec.selection_stage()
    assert stage.name == "pick_rates" and len(stage.cells) == 2 * 2 * 2  # arms x rates x seeds
    assert {(c.cell_type, c.lr, c.seed, c.seq_len) for c in stage.cells} == {
        (cell, lr, seed, 6) for cell in ("rnn", "gru") for lr in (0.001, 0.1) for seed in (7, 8)}
    assert {c.seed for c in stage.cells}.isdisjoint({c.seed for c in spec.cells})
    assert len(spec.data) == 2  # the selection length is one of the grid's: no dataset of its own


@pytest.mark.parametrize("select, message", [
    ("{lr: [0.001], seeds: [1, 8], seq_len: 6}", r"select.seeds: \[1\] are also seeds of the grid"),
    ("{lr: [0.001], seeds: [7]}", "select: missing key 'seq_len'"),
    ("{lr: [0.001], seeds: [7], seq_len: 6, T: 3}", "select: unknown key 'T'"),
    ("{lr: [], seeds: [7], seq_len: 6}", r"select.lr: expected a non-empty list of distinct values"),
    ("{lr: [0.001, -1], seeds: [7], seq_len: 6}", r"select.lr\[1\]: -1 is out of range"),
    ("[0.001]", "select: expected a mapping"),
])
def test_a_bad_select_block_is_named(tmp_path, select, message):
    with pytest.raises(UserError, match=message):
        load_spec(write(tmp_path, select), "quick")  # every profile is validated, not only the one run


def run(lr, seed, outcome="ok", loss=1.0, stored=None):
    """A stage-one run: chance 2, partial baseline 1, so it learned below 0.9 (`stored`: summary.json's own verdict,
    written by the code of its day)."""
    return RunConfig(lr=lr, seed=seed), {"outcome": outcome, "learned": stored, "final_val_loss": loss,
                                         "chance_loss": 2.0, "partial_loss": 1.0}


def choose(*runs):
    (chosen,) = rates.choose([c for c, _ in runs], [s for _, s in runs]).values()
    return chosen


def test_the_rate_with_most_runs_learned_wins_then_the_lower_loss_then_the_lower_rate():
    # 0.1: one of two learned (0.5), median loss 1.2; 0.01: none learned (1.0 each), a lower median: most learned wins
    assert choose(run(0.1, 1, loss=0.5), run(0.1, 2, loss=1.9), run(0.01, 1), run(0.01, 2)) == 0.1
    assert choose(run(0.1, 1, loss=0.9), run(0.01, 1, loss=0.5)) == 0.01
    assert choose(run(0.1, 1), run(0.01, 1)) == 0.01
    assert choose(run(0.01, 1, outcome="diverged", loss=0.1), run(0.1, 1, loss=1.9)) == 0.1  # diverged: infinite
    assert rates.rank([{"outcome": "failed"}], 0.1) == (0, float("inf"), 0.1)


def test_learned_is_judged_from_each_runs_numbers_not_read_from_its_summary():
    """A folder written before the margin below the partial baseline stores learned = true at 0.95 x the baseline:
    the choice must judge it by today's rule, as the report does, or the two would disagree on the rate's count."""
    assert rates.rank([run(0.1, 1, loss=0.95, stored=True)[1]], 0.1)[0] == 0
    assert rates.rank([run(0.1, 1, loss=0.85, stored=False)[1]], 0.1)[0] == -1
    assert choose(run(0.1, 1, loss=0.95, stored=True), run(0.01, 1, loss=0.85, stored=False)) == 0.01


def test_stage_two_puts_each_cell_at_its_arms_rate(tmp_path):
    spec = load_spec(write(tmp_path), "full")
    chosen = {rates.arm_key(c): (0.1 if c.cell_type == "gru" else 0.001) for c in spec.cells}
    final = spec.at_rates(chosen)
    assert [(c.cell_type, c.lr) for c in final.cells] == [("rnn", 0.001)] * 4 + [("gru", 0.1)] * 4
    assert final.selection is None and all(g["lr"] == c.lr for g, c in zip(final.grid, final.cells))
    with pytest.raises(UserError, match=r"cell 4 .*no finished rate-selection runs of its arm"):
        spec.at_rates({k: v for k, v in chosen.items() if v == 0.001})


def test_sweep_runs_the_selection_then_the_grid_at_the_chosen_rates(cli_app, tmp_path, monkeypatch,  # noqa: F811
                                                                    empty_db):  # noqa: F811
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    write(tmp_path, iters=30)
    result = CliRunner().invoke(cli_app, ["sweep", "experiments/pick.yaml", "--profile", "full", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    stage = pd.read_parquet(tmp_path / "results" / "pick" / "pick_rates.parquet")  # inside the spec's folder
    final = pd.read_parquet(tmp_path / "results" / "pick.parquet")
    assert len(stage) == 8 and set(stage["seed"]) == {7, 8} and len(final) == 8 and set(final["seed"]) == {0, 1}
    spec = load_spec(tmp_path / "experiments" / "pick.yaml", "full")
    stage_cells = spec.selection_stage().cells
    by_config = {(r["cell_type"], r["lr"], r["seed"]): r for r in stage.to_dict("records")}
    summaries = [by_config[(c.cell_type, c.lr, c.seed)] for c in stage_cells]
    expected = {cfg.cell_type: lr for cfg in spec.cells for key, lr in rates.choose(stage_cells, summaries).items()
                if key == rates.arm_key(cfg)}
    assert {r["cell_type"]: r["lr"] for r in final.to_dict("records")} == expected
    assert "pick: learning rates chosen on pick_rates: " in result.stdout
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["pick", "pick.parquet"]  # dvc.yaml's outs
    from pipeline.report.analysis import load_results, run_records

    table = load_results(tmp_path / "results")
    assert table.groupby("spec").size().to_dict() == {"pick": 8, "pick_rates": 8}
    records, files = run_records(tmp_path / "results", table)
    for row in records[records["spec"] == "pick_rates"].to_dict("records"):
        assert files[row["run_id"]].folder == tmp_path / "results" / "pick" / "pick_rates" / "runs" / row["config_hash"]
        assert not files[row["run_id"]].problems
