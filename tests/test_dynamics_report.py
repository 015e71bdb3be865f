"""The training dynamics in the report (report/dynamics.py): the table and headline from the fake study's
probe/dynamics.parquet (tests/fixtures_runs.py states its formula), the per-side counts against the runs' own
summaries, the finding's answer, and the figure: one line per run in each panel at the run's checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import fixtures_runs as fx
from pipeline import cli
from pipeline.report import dynamics, figures
from pipeline.report.reductions import rate

cli._register()


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """The fake weight_norms runs and one that diverged, analysed: (runs, metrics.json, tables/training_dynamics.csv)."""
    root = tmp_path_factory.mktemp("dynamics")
    runs = [r for r in fx.standard_runs() if r.spec == "weight_norms"]
    runs += [fx.make_run("weight_norms", outcome="diverged", gamma_w=3.0, seed=1),
             fx.make_run("weight_norms", gamma_w=1.5, init="gaussian", seed=2, overrides={"lyapunov_final": math.nan})]
    fx.write_study(root / "results", runs)
    result = CliRunner().invoke(cli.app, ["analyze", "--results-dir", str(root / "results"), "--out",
                                          str(root / "reports")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    table = pd.read_csv(root / "reports" / "tables" / f"{dynamics.TABLE}.csv")
    summaries = {r.run_id: json.loads((root / "results" / r.spec / "runs" / r.config_hash / "summary.json").read_text())
                 for r in runs}
    return runs, metrics, table, summaries


def test_the_table_holds_each_runs_checkpoints_from_its_initial_numbers(analysed):
    runs, _, table, summaries = analysed
    assert set(table["run_id"]) == {r.run_id for r in runs}
    for r in runs:
        rows = table[table["run_id"] == r.run_id]
        want = [0, 25] if r.outcome == "diverged" else [0, 50, 100]  # the fixture's checkpoints
        assert rows["iter"].tolist() == want
        s = summaries[r.run_id]
        assert rows["w_norm"].iloc[0] == pytest.approx(s["gamma_w_init"], rel=1e-12)
        assert (rows["w_norm_start"] == rows["w_norm"].iloc[0]).all()
        assert rows["lyap"].iloc[0] == pytest.approx(s["lyapunov_init"], rel=1e-12)


def test_the_headline_counts_each_side_on_the_runs_where_both_ends_are_finite(analysed):
    """Expected from the summaries, not from the table: the diverged run's last checkpoint is its initial model
    (no change, counted as not closer), the run with no final lambda_1 is left out."""
    runs, metrics, _, summaries = analysed
    got = metrics["specs"]["weight_norms"]["headline"]["training"]
    ends = []
    for r in runs:
        s = summaries[r.run_id]
        start = s["lyapunov_init"]
        end = start if r.outcome == "diverged" else s["lyapunov_final"]
        if start is not None and end is not None:
            ends.append((start, end, s["gamma_w_init"], s["gamma_w_init"] if r.outcome == "diverged"
                         else s["gamma_w_final"]))
    assert got["n_runs"] == len(runs) and got["n_matched"] == len(ends) == len(runs) - 1
    assert list(got["by_init"]) == ["orthogonal"]  # the one Gaussian run has no final lambda_1
    for side, keep in (("ordered", lambda a: a < 0), ("chaotic", lambda a: a > 0)):
        mine = [(a, b) for a, b, _, _ in ends if keep(a)]
        if not mine:
            assert side not in got["by_init"]["orthogonal"]
            continue
        closer = sum(abs(b) < abs(a) for a, b in mine)
        want = rate(closer, len(mine))
        assert got["by_init"]["orthogonal"][side]["closer"]["k"] == closer and got["by_init"]["orthogonal"][side]["closer"]["n"] == len(mine)
        assert got["by_init"]["orthogonal"][side]["closer"]["low"] == pytest.approx(want["low"], abs=1e-4)
        assert got["by_init"]["orthogonal"][side]["n_crossed"] == sum(np.sign(a) != np.sign(b) for a, b in mine)
        assert got["by_init"]["orthogonal"][side]["lyap_end"] == pytest.approx(np.median([b for _, b in mine]), rel=1e-3)
        assert got["by_init"]["orthogonal"][side]["lyap_start_q1"] == pytest.approx(np.quantile([a for a, _ in mine], 0.25), rel=1e-3)
    unit = [(w1, b) for a, b, w0, w1 in ends if w0 <= 1 + 1e-9]
    assert got["unit_start"]["n"] == len(unit)
    assert got["unit_start"]["w_end_high"] == pytest.approx(max(w for w, _ in unit), rel=1e-3)


@pytest.mark.parametrize("closer, n, answer", [(9, 10, "towards"), (1, 10, "away"), (2, 3, "no direction")])
def test_the_finding_answers_by_a_sign_test_per_side(closer, n, answer):
    side = {"closer": rate(closer, n), "n_crossed": 0, "lyap_start": -0.3, "lyap_end": -0.1}
    head = {"training": {"n_runs": n + 1, "n_matched": n, "by_init": {"gaussian": {"ordered": side}}}}
    parts = dynamics.finding("specs.weight_norms.headline", head)
    text = "".join(p for p in parts if isinstance(p, str))
    assert answer in text and "gaussian-init runs that started ordered" in text and "started chaotic" not in text
    assert dynamics.finding("h", {"training": {"n_runs": 2, "n_matched": 0}}) is None


def test_the_figure_draws_one_line_per_run_at_its_checkpoints():
    table = pd.DataFrame([
        ("a", "weight_norms", "orthogonal", 0, 0.5, 0, 0, 0.5, 0.5, -0.7, -0.6),
        ("a", "weight_norms", "orthogonal", 0, 0.5, 200, 0, 0.9, 0.9, -0.2, -0.2),
        ("a", "weight_norms", "orthogonal", 0, 0.5, 400, 0, 1.2, 1.1, -0.05, -0.1),
        ("b", "weight_norms", "gaussian", 0, 3.0, 0, 0, 3.0, 1.6, 0.3, 0.2),
        ("b", "weight_norms", "gaussian", 0, 3.0, 100, 0, 2.6, 1.4, 0.1, 0.1),  # diverged after iteration 100
        ("c", "weight_norms", "gaussian", 1, 1.5, 0, 0, 1.5, 0.8, -0.1, -0.1),
        ("c", "weight_norms", "gaussian", 1, 1.5, 400, 0, 1.4, 0.9, np.nan, -0.2),  # lambda_1 lost at the end
    ], columns=list(dynamics.COLUMNS))
    fig, caption, ids = dynamics.draw({dynamics.TABLE: table}, figures.new_figure)
    ax_w, ax_l = fig.axes[:2]
    assert ids == ["a", "b", "c"] and "3 runs" in caption
    for ax, column in ((ax_w, "w_norm"), (ax_l, "lyap")):
        lines = {line.get_gid(): line for line in ax.get_lines() if (line.get_gid() or "").startswith("run:")}
        assert sorted(lines) == ["run:a", "run:b", "run:c"]
        for rid, rows in table.groupby("run_id"):
            x, y = lines[f"run:{rid}"].get_data()
            assert list(x) == rows["iter"].tolist()
            np.testing.assert_array_equal(np.asarray(y, float), rows[column].to_numpy(float))
    colours = {rid: lines[f"run:{rid}"].get_color() for rid in "abc"}
    assert len(set(map(str, colours.values()))) == 3  # three starting norms, three colours
    assert lines["run:a"].get_linestyle() == "-" and lines["run:b"].get_linestyle() == "--"
    assert dynamics.draw({dynamics.TABLE: table.iloc[:0]}, figures.new_figure) is None


# ---- the clipping control (report/clipcontrol.py) ----------------------------------------------------------------


def clip_history(scales: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"iter": range(1, len(scales) + 1), "loss": 0.1, "grad_norm": 1.0, "clip_scale": scales})


def test_the_effective_step_is_the_mean_of_lr_times_the_clip_scale_over_completed_steps():
    from pipeline.report.clipcontrol import effective_step

    assert effective_step(clip_history([1.0, 0.5, 0.25, np.nan]), 0.4) == pytest.approx(0.4 * 1.75 / 3, rel=1e-15)
    assert math.isnan(effective_step(clip_history([np.nan]), 0.4))


def test_the_control_is_compared_with_the_global_arm_whose_step_it_matches_and_kept_out_of_the_unclipped():
    from pipeline.report import clipcontrol, studies

    rows, histories = [], {}
    arms = [("global", 1.0, 0.3, [1.0, 1.0, 0.9, 1.0]), ("global", 0.1, 0.3, [0.2, 0.2, 0.2, 0.2]),
            ("elementwise", 0.01, 0.3, [0.98, 0.98, 0.98, 0.98]), ("none", 1.0, 0.3, [1.0, 1.0, np.nan]),
            ("none", 1.0, 0.06, [1.0, 1.0, 1.0, 1.0]), ("none", 1.0, 5.0, [1.0])]  # the last: faster, no control
    for a, (mode, threshold, lr, scales) in enumerate(arms):
        for seed in (0, 1, 2):
            rid = f"r{a}{seed}"
            diverged = mode == "none" and lr >= 0.3
            rows.append({"run_id": rid, "spec": "clipping", "clip_mode": mode, "clip_threshold": threshold, "lr": lr,
                         "seed": seed, "outcome": "diverged" if diverged else "ok",
                         "learned": mode == "global" and seed < 2, "beat_chance": mode == "global" and seed < 2,
                         "solved": False, "final_val_loss": np.nan if diverged else 0.1,
                         "final_train_loss": np.nan if diverged else 0.1, "chance_loss": 0.17})
            histories[rid] = clip_history(scales)
    runs = pd.DataFrame(rows)
    assert clipcontrol.is_control(runs).tolist() == [False] * 12 + [True] * 3 + [False] * 3
    table, head = clipcontrol.summary(runs, histories)
    c = head["control_1"]  # 0.06 = 0.3 x 0.2: global 0.1's step, not the elementwise arm's 0.294 nor global 1's
    assert (c["threshold"], c["n_seeds"]) == (0.1, 3)
    assert c["effective_step"] == pytest.approx(0.06, rel=1e-12) and c["lr_over_step"] == pytest.approx(1.0)
    assert {"k": 2, "n": 3}.items() <= c["clipped"]["learned"].items()
    assert {"k": 0, "n": 3}.items() <= c["control"]["learned"].items()
    assert table["arm"].tolist() == ["global clip 0.1", "unclipped, lr 0.06"]
    summary = studies.clipping_summary(studies.SpecRuns(runs, histories, {}, pd.DataFrame()))
    none = summary.tables["clip"][summary.tables["clip"]["clip_mode"] == "none"]
    assert none["n_runs"].tolist() == [6] and none["n_diverged"].tolist() == [6]  # the control is not pooled in
    assert set(summary.tables["clip_curves"]["run_id"]) == {r for r in histories if not r.startswith("r4")}
    assert summary.headline["control_1"] == c
    (shown,) = clipcontrol.blocks(table)  # each interval end named with its rate, not a bare "high"
    assert [h for h in shown.columns if "CI" in h] == ["learned 95% CI low", "learned 95% CI high",
                                                       "blew up 95% CI low", "blew up 95% CI high"]


def test_a_move_towards_the_edge_smaller_than_the_lyapunov_spread_is_not_counted_closer():
    """lambda_1 is estimated on two driven trajectories; a change smaller than their difference is not resolved."""
    rows = [(rid, "weight_norms", "orthogonal", 0, 3.0, it, 0, 3.0, 1.0, lyap, 0.2)
            for rid, (a, b) in {"moved": (0.3, 0.1), "jitter": (0.243, 0.2374)}.items()
            for it, lyap in ((0, a), (400, b))]
    table = pd.DataFrame(rows, columns=list(dynamics.COLUMNS))
    spreads = pd.Series({"moved": 0.01, "jitter": 0.03})
    chaotic = dynamics.headline(table, spreads)["by_init"]["orthogonal"]["chaotic"]
    assert (chaotic["closer"]["k"], chaotic["closer"]["n"], chaotic["n_unresolved"]) == (1, 2, 1)
    assert dynamics.headline(table)["by_init"]["orthogonal"]["chaotic"]["closer"]["k"] == 2  # no spread known


def test_every_run_of_a_side_is_counted_once_closer_unresolved_or_farther():
    """A run that moved away from lambda_1 = 0 by more than its spread is counted too: the three add up to n."""
    moves = {"closer": (0.3, 0.1), "jitter": (0.243, 0.2374), "away": (0.1, 0.4), "crossed": (0.1, -0.35)}
    rows = [(rid, "weight_norms", "orthogonal", 0, 3.0, it, 0, 3.0, 1.0, lyap, 0.2)
            for rid, (a, b) in moves.items() for it, lyap in ((0, a), (400, b))]
    table = pd.DataFrame(rows, columns=list(dynamics.COLUMNS))
    side = dynamics.headline(table, pd.Series(0.03, index=list(moves)))["by_init"]["orthogonal"]["chaotic"]
    assert (side["closer"]["k"], side["n_unresolved"], side["n_farther"], side["n_crossed"]) == (1, 1, 2, 1)
    assert side["closer"]["k"] + side["n_unresolved"] + side["n_farther"] == side["closer"]["n"] == 4
    words = "".join(p if isinstance(p, str) else "#" for p in dynamics.side_parts("k", side, "orthogonal-init",
                                                                                 "started chaotic"))
    assert "# ended farther from it by more than that" in words
