"""The depth study's analysis, section and figures against fake stacked runs whose Jacobians across layers are
explicit products over the (time, layer) grid and whose bounds are explicit sums over its paths
(tests/fixtures_runs.py). Expected values come from how the fixture was built, never from analyze's output."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import fixtures_runs as fx
from pipeline import cli
from pipeline.report import depthfigures, figures
from pipeline.report.reductions import LN10, wilson_interval

cli._register()
T = fx.BASE_CONFIG["probe_len"]


def depth_runs():
    # adding at T = 10: below the partial baseline by the fixture's stated loss, so every run learned
    return [fx.make_run("depth", layers=L, seed=s, activation=a, seq_len=10)
            for a in ("tanh", "sigmoid") for L in (1, 2, 3) for s in (0, 1)]


def analyze(results, out) -> dict:
    result = CliRunner().invoke(cli.app, ["analyze", "--results-dir", str(results), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    runs = fx.write_study(root / "results", depth_runs())
    return root, runs, analyze(root / "results", root / "reports")


def summary(root, run) -> dict:
    return json.loads((fx.run_folder(root / "results", run) / "summary.json").read_text())


def test_metrics_depth_per_activation_and_depth(study):
    root, runs, m = study
    for act in ("tanh", "sigmoid"):
        for L in (1, 2, 3):
            cell = [r for r in runs if r.config["activation"] == act and r.config["layers"] == L]
            got = m["depth"][act][str(L)]
            assert got["n"] == 2 and got["learned"]["k"] == 2 and got["learned"]["n"] == 2  # adding T = 10 learns
            assert got["learned"]["low"] == pytest.approx(wilson_interval(2, 2)[0], rel=1e-3)
            want = np.median([summary(root, r)["rate_time_init"] for r in cell])
            assert got["rate_time"] == pytest.approx(want, rel=1e-3)
            if L > 1:
                want = np.median([summary(root, r)["rate_depth_init"] for r in cell])
                assert got["rate_depth"] == pytest.approx(want, rel=1e-3)
            else:
                assert got["rate_depth"] is None


def test_every_pair_across_layers_is_checked_against_its_bounds(study):
    root, runs, m = study
    per_probe = T * (T + 1) // 2 + T  # k < t and the depth chain t = k >= 1
    assert m["depth"]["n_checks"] == sum(2 * (r.config["layers"] - 1) * per_probe for r in runs)
    assert m["depth"]["violations"] == 0
    assert m["spot_checks"]["n_cross_layer"] == sum(2 * 2 * (r.config["layers"] - 1) for r in runs)


def test_a_planted_violation_across_layers_is_counted(tmp_path):
    runs = fx.write_study(tmp_path / "results", depth_runs()[:6])
    path = fx.run_folder(tmp_path / "results", runs[4]) / "probe" / "jacobian_depth.parquet"
    table = pd.read_parquet(path)
    table.loc[5, "log_norm"] = table.loc[5, "log_bound_stepnorm"] + 0.1  # above its step-norm bound only
    table.to_parquet(path, index=False)
    assert analyze(tmp_path / "results", tmp_path / "reports")["depth"]["violations"] == 1


def test_the_input_layer_against_the_top_is_the_fixtures_explicit_products(study):
    root, runs, m = study
    for act in ("tanh", "sigmoid"):
        deepest = [r for r in runs if r.config["activation"] == act and r.config["layers"] == 3]
        jac, within = [], []
        for r in deepest:
            cross = r.cross[(r.cross["when"] == "init") & (r.cross["t"] == T) & (r.cross["k"] == 0)]
            own = pd.read_parquet(fx.run_folder(root / "results", r) / "probe" / "jacobian.parquet")
            own = own[(own["when"] == "init") & (own["layer"] == 2) & (own["t"] == T) & (own["k"] == 0)]
            jac.append((cross[cross["source_layer"] == 0]["log_norm"].iloc[0] - own["log_norm"].iloc[0]) / LN10)
        head = m["specs"]["depth"]["headline"][act]
        assert head["jacobian_input_minus_top"] == pytest.approx(np.median(jac), abs=1e-3)
        assert head["log10_paths"] == pytest.approx(math.log10(math.comb(T - 1 + 2, 2)), rel=1e-3)
        assert head["per_path_input_minus_top"] == pytest.approx(np.median(jac) - math.log10(math.comb(T + 1, 2)),
                                                                 abs=1e-3)
        assert head["signal_input_minus_top"] == pytest.approx(-1.0)  # the fixture's signal: -0.5 per layer down
        assert head["wgrad_input_minus_top"] == pytest.approx(-1.0)  # and its weight gradients likewise


def test_which_direction_is_faster_counts_the_runs(study):
    root, runs, m = study
    for act in ("tanh", "sigmoid"):
        stacked = [summary(root, r) for r in runs if r.config["activation"] == act and r.config["layers"] > 1]
        faster = sum(s["rate_depth_init"] < s["rate_time_init"] for s in stacked)
        head = m["specs"]["depth"]["headline"][act]
        assert head["depth_faster"]["k"] == faster and head["depth_faster"]["n"] == len(stacked) == 4
        difference = np.median([s["rate_depth_init"] - s["rate_time_init"] for s in stacked])
        assert head["difference"] == pytest.approx(difference, abs=1e-3)


def test_the_chain_gap_parts_add_up(study):
    _, _, m = study
    for head in m["specs"]["depth"]["headline"].values():
        parts = head["chain_saturation"] + head["chain_own_norms"] + head["chain_alignment"]
        assert parts == pytest.approx(head["chain_bound"] - head["chain"], abs=2e-3)
        assert min(head["chain_saturation"], head["chain_own_norms"], head["chain_alignment"]) >= -1e-9


def test_the_chain_gap_parts_add_up_over_any_number_of_runs():
    """Five runs whose parts' medians, taken one by one, miss the gap between the medians by 0.5 decades: the chain
    is summarised by the means of its logs over the runs where all are finite, so its parts add up."""
    from pipeline.report import depth

    chains = pd.DataFrame({"run_id": list("abcdef"), "when": "init", "depth": 3,
                           "log10_norm": [-9.0, -8.0, -1.0, -1.0, -1.0, np.nan],
                           "log10_stepnorm": [-1.0, -1.0, -1.0, -0.5, -0.5, 0.0],
                           "log10_product": [0.0, 0.0, -0.5, -0.5, -0.5, 0.0],
                           "log10_global": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]})
    medians_one_by_one = (np.median([0.0, 0.0, 0.5, 0.5, 0.5]) + np.median([1.0, 1.0, 0.5, 0.0, 0.0])
                          + np.median([8.0, 7.0, 0.0, 0.5, 0.5]))
    assert medians_one_by_one - (0.0 - np.median([-9.0, -8.0, -1.0, -1.0, -1.0])) == pytest.approx(0.5)
    got = depth.deepest_chain(chains, pd.DataFrame({"run_id": list("abcdef")}))
    assert got["n_chain"] == 5 and got["chain"] == pytest.approx(-4.0)  # f: no finite norm, left out
    parts = got["chain_saturation"] + got["chain_own_norms"] + got["chain_alignment"]
    assert parts == pytest.approx(got["chain_bound"] - got["chain"], abs=1e-12)


def test_a_missing_table_across_layers_is_a_missing_artifact(tmp_path):
    runs = fx.write_study(tmp_path / "results", depth_runs()[:4])
    (fx.run_folder(tmp_path / "results", runs[2]) / "probe" / "jacobian_depth.parquet").unlink()
    m = analyze(tmp_path / "results", tmp_path / "reports")
    assert m["n_missing_artifacts"] == 1
    missing = pd.read_csv(tmp_path / "reports" / "tables" / "missing.csv")
    assert missing["file"].str.endswith("probe/jacobian_depth.parquet").all()


def drawn(root, name):
    tables = {p.stem: pd.read_csv(p) for p in (root / "reports" / "tables").glob("*.csv")}
    return depthfigures.drawers(figures.new_figure)[name](tables)


def test_the_figures_show_what_their_captions_say(study):
    root, runs, _ = study
    fig, caption, ids = drawn(root, "depth_learned")
    (ax,) = fig.axes
    labels = sorted(t.get_text() for t in ax.get_legend().get_texts())
    # each activation's own T and measured norm (the fixture's W_hh = gamma_w Q: ||W_hh||_2 = gamma_w = 1): the
    # panel compares depths within an activation, not the two activations
    assert {r.config["gamma_w"] for r in runs} == {1.0}
    assert labels == ["sigmoid (T = 10, ‖W_hh‖₂ 1)", "tanh (T = 10, ‖W_hh‖₂ 1)"]
    assert "2 seeds per cell" in caption and set(ids) == {r.run_id for r in runs}
    assert "not the activations with each other" in caption
    fig, caption, ids = drawn(root, "depth_grid")
    titles = sorted(a.get_title() for a in fig.axes if a.get_title())
    assert titles == ["sigmoid, L = 2", "sigmoid, L = 3", "tanh, L = 2", "tanh, L = 3"]
    fig, caption, _ = drawn(root, "depth_rates")
    assert [a.get_title() for a in fig.axes] == ["sigmoid", "tanh"]
    fig, caption, _ = drawn(root, "depth_chain")
    for ax in fig.axes:
        assert list(ax.lines[0].get_xdata()) == [1, 2]  # layers crossed from the top of a 3-layer stack
    fig, caption, _ = drawn(root, "depth_weights")
    assert len(fig.axes[0].lines) == 3  # one line per layer of the deepest stack


def test_the_grid_hatches_the_unmeasured_identity_cell_and_draws_no_grid_lines_through_it(study):
    # ∂h^L_t/∂h^L_t = I is never probed: drawn under the report's whitegrid style, its empty cell showed the
    # style's grid lines as a grey cross
    import seaborn as sns

    root, _, _ = study
    with sns.axes_style("whitegrid"):
        fig, caption, _ = drawn(root, "depth_grid")
    panels = [a for a in fig.axes if a.get_title()]
    assert len(panels) == 4
    for ax in panels:
        assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
        (cell,) = [p for p in ax.patches if p.get_hatch()]
        assert (cell.get_x() + cell.get_width() / 2, cell.get_y() + cell.get_height() / 2) == (0, 0)
    assert "hatched cell (lag 0, 0 layers crossed)" in caption and "other cell" not in caption


def test_the_grid_counts_any_other_empty_cell_in_its_caption():
    med = pd.DataFrame({"activation": "tanh", "layers": 2, "depth": [0, 1, 1, 1, 0],
                        "lag": [1, 0, 1, 2, 2], "log10_norm": -1.0})
    assert depthfigures.empty_words(med) == ("The hatched cell (lag 0, 0 layers crossed) is ∂h^L_t/∂h^L_t = I, "
                                             "not measured.")
    assert depthfigures.empty_words(med.drop(index=4)).endswith("Hatched: 1 other cell with no finite pair.")
    assert depthfigures.empty_words(med[med["depth"] == 1]) == ""
