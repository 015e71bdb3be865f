"""`rnngrad analyze` against fake sweeps whose numbers come from closed forms and explicit matrix products
(tests/fixtures_runs.py). Expected values are derived from how the fixture was built, never from analyze's output."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import fixtures_runs as fx
from pipeline import cli
from pipeline.engine import jacobian
from pipeline.report import analysis, reductions, studies
from pipeline.run import probe

cli._register()


def run_analyze(results, out):
    result = CliRunner().invoke(cli.app, ["analyze", "--results-dir", str(results), "--out", str(out)])
    return result


def analyze_ok(results, out) -> dict:
    result = run_analyze(results, out)
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def analyze_violated(results, out) -> dict:
    """A bound violation is a bug: analyze writes its outputs, prints the violations and exits 1."""
    result = run_analyze(results, out)
    assert result.exit_code == 1, result.output
    assert "violation: run " in result.output and "so this is a bug" in result.output
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture
def study(tmp_path):
    results = tmp_path / "results"
    runs = fx.write_study(results, fx.standard_runs())
    return results, runs


def pairs(T: int) -> int:
    return T * (T + 1) // 2


# ---- the bound check itself --------------------------------------------------------------------------------


def test_exceeds_allows_1e9_relative_rounding_and_handles_infinities():
    b = np.array([5.0, 5.0, 0.5, 0.5, -np.inf, -np.inf, 3.0, 3.0, 3.0, -200.0, np.inf])
    a = np.array([5.0 + 1e-8, 5.0 + 2e-9, 0.5 + 2e-9, 0.5 + 5e-10, -np.inf, -1e300, -np.inf, np.nan, np.inf, -199.9999,
                  np.inf])
    # slack is 1e-9 * max(1, |a|, |b|) over the finite magnitudes: 5e-9 at 5, 1e-9 at 0.5, 2e-7 at -200
    expected = [True, False, True, False, False, True, False, False, True, True, False]
    assert jacobian.exceeds(a, b).tolist() == expected
    assert jacobian.BOUND_RTOL == 1e-9


def test_one_slack_for_the_runs_and_the_analysis():
    low, high = np.array([2000.0, 0.25, np.inf, -np.inf, 7.0]), np.array([-3.0, -0.5, 4.0, -8.0, np.nan])
    np.testing.assert_allclose(jacobian.bound_slack(low, high), [2e-6, 1e-9, 4e-9, 8e-9, 7e-9], rtol=1e-15)
    # the analysis's check is the engine's: a pair the run counted is a pair the analysis counts
    measured = np.array([[np.nan, np.nan], [1.0 + 3e-9, np.nan]])
    product = np.array([[np.nan, np.nan], [1.0, np.nan]])
    assert jacobian.bound_violations(measured, product, product + 1) == [(1, 0, "measured>product")]
    jac = pd.DataFrame({"when": ["init"], "layer": [0], "t": [1], "k": [0], "lag": [1], "log_norm": [1.0 + 3e-9],
                        "log_bound_product": [1.0], "log_bound_global": [2.0]})
    assert reductions.bound_violations(jac)["kind"].tolist() == ["measured>product"]


@pytest.mark.parametrize("when", [["init", "final"], pd.Categorical(["init", "final"], ["init", "final", "later"])])
def test_a_run_with_nothing_to_report_gets_what_the_reduction_of_no_rows_gives(when):
    """bound_violations and nonfinite_summary of a clean run return a result built once per kind of table: the
    same frame as reducing its (no) qualifying rows, whatever the columns' types; a run that has some still gets
    them, and the shared result is never handed out to be changed."""
    clean = pd.DataFrame({"when": when, "layer": [0, 0], "t": [1, 2], "k": [0, 0], "lag": [1, 2],
                          "log_norm": [0.5, -1.0], "log_bound_product": [1.0, 0.0], "log_bound_global": [2.0, 3.0]})
    checks = [("measured>product", "log_norm", "log_bound_product"), ("product>global", "log_bound_product",
                                                                      "log_bound_global")]
    reduced = reductions._violation_rows(clean, checks, [np.zeros(2, bool)] * 2)
    for _ in range(2):
        got = reductions.bound_violations(clean)
        pd.testing.assert_frame_equal(got, reduced)
        got["kind"] = "changed"
    got = reductions.nonfinite_summary(clean)
    pd.testing.assert_frame_equal(got, reductions._first_nonfinite(clean[np.zeros(2, bool)]))
    bad = clean.assign(log_norm=[np.nan, 5.0])
    assert reductions.nonfinite_summary(bad)[["n", "first_t"]].values.tolist() == [[1, 1]]
    assert reductions.bound_violations(bad)["t"].tolist() == [2]


def test_the_probe_tables_columns_are_named_once():
    assert analysis.JACOBIAN_REQUIRED is probe.JACOBIAN_REQUIRED and analysis.SIGNAL_COLUMNS is probe.SIGNAL_COLUMNS
    assert analysis.SPOT_COLUMNS is probe.SPOT_COLUMNS
    # the reader asks for every column but the step-norm bound and the LSTM's cell-state norm, which folders from
    # before them lack
    assert probe.JACOBIAN_REQUIRED == tuple(c for c in probe.JACOBIAN_COLUMNS
                                            if c not in ("log_bound_stepnorm", "log_norm_cell"))


def test_clean_study_has_no_violations_and_counts_every_pair(study, tmp_path):
    results, runs = study
    m = analyze_ok(results, tmp_path / "reports")
    T = fx.BASE_CONFIG["probe_len"]
    probed = [r for r in runs if r.outcome != "failed"]  # a failed run has no probe, and that is not "missing"
    assert m["n_runs"] == len(runs) == 32
    assert m["n_probes"] == 2 * len(probed) == 62
    assert m["n_checks"] == sum(2 * r.config["layers"] * pairs(T) for r in probed)
    assert m["violations"] == 0 and m["violations_reported_by_runs"] == 0
    # only the diverged run's final probe is NaN: one layer, every pair
    assert m["nonfinite"] == pairs(T) and m["nonfinite_in_ok_runs"] == 0
    assert m["outcomes"] == {"ok": 30, "unstable": 0, "diverged": 1, "failed": 1}
    assert m["n_missing_artifacts"] == 0
    failed = json.loads((tmp_path / "reports" / "analysis.json").read_text())["failed"]
    assert failed == [{"run_id": runs[-1].run_id, "spec": "mystery", "error": "FloatingPointError: planted failure"}]


# ---- the spot check ------------------------------------------------------------------------------------------


def spot_path(results, run):
    return fx.run_folder(results, run) / "probe" / "spot_checks.parquet"


def test_spot_checks_are_counted_and_the_largest_difference_reported(study, tmp_path):
    results, runs = study
    m = analyze_ok(results, tmp_path / "reports")
    probed = [r for r in runs if r.outcome != "failed"]
    T = fx.BASE_CONFIG["probe_len"]
    # 4 pairs per probe and layer; skipped where the measured value is not finite: the diverged run's final probe
    # (NaN) and the dead relu run's pairs (-inf)
    spots = [fx.spot_rows(pd.read_parquet(fx.run_folder(results, r) / "probe" / "jacobian.parquet")) for r in probed]
    within = sum(4 * 2 * r.config["layers"] for r in probed)
    cross = sum(2 * 2 * (r.config["layers"] - 1) for r in probed)  # (T, 0) and (T, T) per probe and source layer
    total = within + cross
    assert sum(len(s) for s in spots) == within
    skipped = sum(int(s["abs_dlog"].isna().sum()) for s in spots)
    assert skipped >= 4  # at least the diverged run's final probe
    assert m["spot_checks"] == {"n": total - skipped, "skipped": skipped, "mismatches": 0,
                                "max_abs_dlog": reductions.round_metric(fx.SPOT_OFFSET * T), "n_cross_layer": cross}
    table = pd.read_csv(tmp_path / "reports" / "tables" / "runs.csv").set_index("run_id")
    assert table["spot_checks"].sum() == total - skipped and table["spot_skipped"].sum() == skipped


def test_a_planted_spot_mismatch_is_the_largest_difference_of_its_run(study, tmp_path):
    results, runs = study
    path = spot_path(results, runs[3])
    spot = pd.read_parquet(path)
    spot.loc[2, "log_norm_fd"] = spot.loc[2, "log_norm"] + 0.75
    spot.loc[2, "abs_dlog"] = 0.75
    spot.to_parquet(path, index=False)
    m = analyze_ok(results, tmp_path / "reports")
    assert m["spot_checks"]["max_abs_dlog"] == 0.75 and m["spot_checks"]["mismatches"] == 1
    assert m["violations"] == 0  # the bound check cannot see it
    table = pd.read_csv(tmp_path / "reports" / "tables" / "runs.csv").set_index("run_id")
    assert table.loc[runs[3].run_id, "spot_max_abs_dlog"] == 0.75
    assert table.drop(index=runs[3].run_id)["spot_max_abs_dlog"].max() < 1e-6


def test_a_missing_spot_table_is_a_missing_artifact(study, tmp_path):
    results, runs = study
    spot_path(results, runs[5]).unlink()
    m = analyze_ok(results, tmp_path / "reports")
    assert m["n_missing_artifacts"] == 1
    missing = pd.read_csv(tmp_path / "reports" / "tables" / "missing.csv")
    assert missing["file"].str.endswith("probe/spot_checks.parquet").all()
    assert (missing["run_id"] == runs[5].run_id).all()
    table = pd.read_csv(tmp_path / "reports" / "tables" / "runs.csv").set_index("run_id")
    assert table.loc[runs[5].run_id, "spot_checks"] == 0 and table.loc[runs[5].run_id, "n_checks"] > 0


def test_spot_summary_counts_resolved_pairs_and_mismatches():
    spot = pd.DataFrame({"abs_dlog": [1e-9, np.nan, 3e-8, np.nan]})
    assert reductions.spot_summary(spot) == {"spot_checks": 2, "spot_skipped": 2, "spot_mismatches": 0,
                                             "spot_max_abs_dlog": 3e-8, "spot_cross_layer": 0}
    across = spot.assign(layer=[1, 1, 1, 1], source_layer=[1, 0, 0, 1])  # the second and third pairs cross layers
    assert reductions.spot_summary(across)["spot_cross_layer"] == 1  # of those, one was resolved
    none = reductions.spot_summary(pd.DataFrame({"abs_dlog": [np.nan]}))
    assert none["spot_checks"] == 0 and math.isnan(none["spot_max_abs_dlog"])
    # inf: the probe said exactly zero where the differences resolved a norm; 2e-4 is above SPOT_TOLERANCE = 1e-4
    bad = reductions.spot_summary(pd.DataFrame({"abs_dlog": [np.inf, 2e-4, 5e-5]}))
    assert bad["spot_checks"] == 3 and bad["spot_mismatches"] == 2 and bad["spot_max_abs_dlog"] == np.inf


def test_planted_violations_are_counted_and_listed_with_run_and_pair(study, tmp_path):
    results, runs = study
    target, other = runs[0], runs[7]
    fx.plant_violation(results, target, "init", 0, t=7, k=2, excess=1e-3)
    fx.plant_violation(results, target, "final", 0, t=5, k=1, excess=1e-13)  # within rounding: not a violation
    path = fx.run_folder(results, other) / "probe" / "jacobian.parquet"
    jac = pd.read_parquet(path)
    at = (jac["when"] == "final") & (jac["t"] == 9) & (jac["k"] == 3)
    jac.loc[at, "log_bound_product"] = jac.loc[at, "log_bound_global"] + 0.5
    jac.to_parquet(path, index=False)

    out = tmp_path / "reports"
    m = analyze_violated(results, out)
    assert m["violations"] == 3  # the planted measured value exceeds the step-norm bound too (it is below product)
    assert m["violations_measured_gt_product"] == 1 and m["violations_product_gt_global"] == 1
    assert m["violations_measured_gt_stepnorm"] == 1 and m["violations_stepnorm_gt_product"] == 0
    assert m["specs"][target.spec]["violations"] == 2
    table = pd.read_csv(out / "tables" / "violations.csv")
    rows = {(r.run_id, r.spec, r.when, r.layer, r.t, r.k, r.kind) for r in table.itertuples()}
    assert rows == {(target.run_id, target.spec, "init", 0, 7, 2, "measured>product"),
                    (target.run_id, target.spec, "init", 0, 7, 2, "measured>stepnorm"),
                    (other.run_id, other.spec, "final", 0, 9, 3, "product>global")}
    listed = json.loads((out / "analysis.json").read_text())["violations"]
    assert {(v["run_id"], v["t"], v["k"]) for v in listed} == {(target.run_id, 7, 2), (other.run_id, 9, 3)}


def test_a_violation_is_printed_at_full_precision_with_the_bound_it_broke(study, tmp_path):
    """The newcomer's case: a measured value 3.9e-9 above its step-norm bound at -1.386, four times the rounding
    allowed; rounded to 4 digits both sides read -1.386."""
    results, runs = study
    path = fx.run_folder(results, runs[2]) / "probe" / "jacobian.parquet"
    jac = pd.read_parquet(path)
    at = (jac["when"] == "init") & (jac["t"] == 7) & (jac["k"] == 6)
    jac.loc[at, ["log_norm", "log_bound_stepnorm"]] = [-1.3862943730, -1.3862943770]
    jac.loc[at, ["log_bound_product", "log_bound_global"]] = [-1.0, 0.0]
    jac.to_parquet(path, index=False)
    result = run_analyze(results, tmp_path / "reports")
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if x.startswith("violation: run "))
    assert "t = 7, k = 6" in line and runs[2].run_id in line
    assert "measured log-norm -1.386294373 > step-norm bound -1.386294377 by 4e-09 nats" in line
    assert "(rounding allowed 1.39e-09)" in line
    listed = json.loads((tmp_path / "reports" / "analysis.json").read_text())["violations"]
    assert [(v["value"], v["bound"]) for v in listed] == [(-1.3862943730, -1.3862943770)]  # every digit kept


def test_linear_identity_run_decays_at_exactly_log_a(study, tmp_path):
    results, runs = study
    out = tmp_path / "reports"
    analyze_ok(results, out)
    decay = pd.read_csv(out / "tables" / "decay.csv")
    lin = next(r for r in runs if r.spec == "activations" and r.config["activation"] == "linear")
    a = lin.config["gamma_w"]  # W = a I: ||dh_t/dh_k|| = a^(t-k) and both bounds are equal to it
    d = decay[(decay["run_id"] == lin.run_id) & (decay["when"] == "init")]
    assert len(d) == fx.BASE_CONFIG["probe_len"]
    np.testing.assert_allclose(d["log10_norm"], d["lag"] * math.log10(a), rtol=0, atol=1e-12)
    np.testing.assert_allclose(d[["gap_product", "gap_global"]], 0.0, atol=1e-12)
    runs_table = pd.read_csv(out / "tables" / "runs.csv").set_index("run_id")
    assert abs(runs_table.loc[lin.run_id, "gap_global"]) < 1e-12


def test_dead_relu_run_has_minus_inf_norms_but_no_violation(study, tmp_path):
    results, runs = study
    out = tmp_path / "reports"
    analyze_ok(results, out)
    dead = next(r for r in runs if r.spec == "mystery" and r.config["activation"] == "relu")
    jac = pd.read_parquet(fx.run_folder(results, dead) / "probe" / "jacobian.parquet")
    assert np.isneginf(jac["log_norm"]).all()  # the fixture really is -inf everywhere
    runs_table = pd.read_csv(out / "tables" / "runs.csv").set_index("run_id")
    assert runs_table.loc[dead.run_id, "violations"] == 0
    assert runs_table.loc[dead.run_id, "n_checks"] == 2 * pairs(fx.BASE_CONFIG["probe_len"])
    assert dead.run_id not in set(pd.read_csv(out / "tables" / "nonfinite.csv")["run_id"])


# ---- regimes and rates ---------------------------------------------------------------------------------------


def test_the_theorem_is_scored_as_stated_per_probe(tmp_path):
    """Hand-made (log rate, slope) pairs: predicted from log(gamma_W gamma_phi) (vanishing / bounded / unconstrained),
    observed from the slope (band 0.01); contradictions only where the bound forbids what was seen."""
    init = [(-0.5, -0.6),   # vanishing, observed vanishing
            (-0.5, 0.2),    # vanishing, observed exploding: contradiction
            (-0.5, 0.0),    # vanishing, observed neutral, but the bound demands a slope <= -0.5: contradiction
            (-0.005, -0.005),  # vanishing, observed neutral: the bound's own slope is inside the band, no contradiction
            (0.0, 0.0),     # bounded, observed neutral
            (1e-12, 0.3),   # bounded (within rounding of 1), observed exploding: contradiction
            (0.7, -0.4), (0.7, 0.0), (0.7, 0.5),  # unconstrained: vanishing, neutral, exploding; the theorem is silent
            (-0.5, None)]   # no slope: not labelled
    final = [(-1.0, -1.2)] * len(init)
    final[1] = (0.0, 0.5)  # the trained model of run 1: bounded, observed exploding
    runs = [fx.make_run("weight_norms", seed=i, overrides={"log_rate_init": a, "slope_init": b, "log_rate_final": c,
                                                           "slope_final": d})
            for i, ((a, b), (c, d)) in enumerate(zip(init, final))]
    results, out = tmp_path / "results", tmp_path / "reports"
    fx.write_study(results, runs)
    m = analyze_ok(results, out)
    assert m["regimes"]["init"] == {"n_probes": 9, "n_sufficient": 4, "n_sufficient_observed_vanishing": 1,
                                    "n_bounded": 2, "contradictions": 3, "n_unconstrained": 3,
                                    "observed_when_not_predicted": {"vanishing": 1, "neutral": 1, "exploding": 1}}
    assert m["regimes"]["final"] == {"n_probes": 10, "n_sufficient": 9, "n_sufficient_observed_vanishing": 9,
                                     "n_bounded": 1, "contradictions": 1, "n_unconstrained": 0,
                                     "observed_when_not_predicted": {"vanishing": 0, "neutral": 0, "exploding": 0}}
    assert m["specs"]["weight_norms"]["contradictions"] == {"init": 3, "final": 1}
    assert "agreement" not in json.dumps(m)
    contradictions = json.loads((out / "analysis.json").read_text())["contradictions"]
    assert contradictions == {"init": [runs[i].run_id for i in (1, 2, 5)], "final": [runs[1].run_id]}
    conf = pd.read_csv(out / "tables" / "regimes.csv")
    counts = {(r.when, r.predicted_regime, r.observed_regime): r.n for r in conf.itertuples()}
    assert counts == {("init", "vanishing", "vanishing"): 1, ("init", "vanishing", "exploding"): 1,
                      ("init", "vanishing", "neutral"): 2, ("init", "bounded", "neutral"): 1,
                      ("init", "bounded", "exploding"): 1, ("init", "unconstrained", "vanishing"): 1,
                      ("init", "unconstrained", "neutral"): 1, ("init", "unconstrained", "exploding"): 1,
                      ("final", "vanishing", "vanishing"): 9, ("final", "bounded", "exploding"): 1}
    table = pd.read_csv(out / "tables" / "runs.csv").set_index("run_id")
    assert [table.loc[r.run_id, "predicted_regime"] for r in runs[4:7]] == ["bounded", "bounded", "unconstrained"]


def test_regime_counts_on_a_hand_made_table():
    runs = pd.DataFrame({"run_id": list("abcdef"),
                         "predicted_regime": ["vanishing", "vanishing", "bounded", "unconstrained", "unconstrained",
                                              None],
                         "observed_regime": ["vanishing", "neutral", "exploding", "exploding", "vanishing", "neutral"],
                         "log_rate_init": [-0.3, -0.3, 0.0, 0.5, 0.5, math.nan]})
    counts = reductions.regime_counts(runs, "init")
    assert counts == {"n_probes": 5, "n_sufficient": 2, "n_sufficient_observed_vanishing": 1, "n_bounded": 1,
                      "contradictions": 2, "n_unconstrained": 2,
                      "observed_when_not_predicted": {"vanishing": 1, "neutral": 0, "exploding": 1},
                      "contradiction_ids": ["b", "c"]}


def test_labels_come_from_the_numbers_so_older_labels_are_relabelled():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "predicted_regime": ["may_explode"] * 3,
                         "log_rate_init": [-0.2, 4e-16, 0.3], "slope_init": [-0.5, 0.005, math.nan],
                         "log_rate_final": [-0.2, -0.2, -0.2], "slope_final": [-0.5, -0.5, -0.5]})
    labelled = reductions.label_regimes(runs)
    assert list(labelled["predicted_regime"]) == ["vanishing", "bounded", "unconstrained"]
    assert list(labelled["observed_regime"]) == ["vanishing", "neutral", None]
    assert list(labelled["predicted_regime_final"]) == ["vanishing"] * 3


def test_slope_lyapunov_and_log_rate_errors_are_medians_over_runs(tmp_path):
    numbers = [(-0.5, -0.4, -0.3), (-0.2, -0.25, 0.0), (0.1, 0.4, 0.2)]  # slope, lyapunov, log rate
    runs = [fx.make_run("weight_norms", seed=i, overrides={"slope_init": s, "lyapunov_init": l, "log_rate_init": g})
            for i, (s, l, g) in enumerate(numbers)]
    results = tmp_path / "results"
    fx.write_study(results, runs)
    m = analyze_ok(results, tmp_path / "reports")
    assert m["rate"]["n_runs"] == 3
    assert m["rate"]["median_abs_slope_minus_lyapunov"] == pytest.approx(0.1)  # |diffs| 0.1, 0.05, 0.3
    assert m["rate"]["median_abs_slope_minus_log_rate"] == pytest.approx(0.2)  # |diffs| 0.2, 0.2, 0.1


# ---- per-spec summaries follow the fixture's stated formulas ---------------------------------------------------


def close(value, expected):
    return value == pytest.approx(expected, rel=1e-3)  # metrics keep 4 significant digits


def test_spec_headlines_follow_the_fixture_formulas(study, tmp_path):
    results, runs = study
    out = tmp_path / "reports"
    spec = analyze_ok(results, out)["specs"]
    one_of_one, none_of_one = {"k": 1, "n": 1, "rate": 1.0}, {"k": 0, "n": 1, "rate": 0.0}
    for task in ("adding", "temporal_order"):  # one run per T; learned iff 1 - exp(-T/20) < 0.45, i.e. T < 12.0
        h = spec["long_range"]["headline"][task]
        assert (h["min_T"], h["max_T"]) == (10, 80) and h["runs_per_T"] == 1
        assert h["longest_T_learned"] is None and h["n_at_longest_T_learned"] is None  # one run places no boundary
        assert one_of_one.items() <= h["learned_at_min_T"].items() and none_of_one.items() <= h["learned_at_max_T"].items()
        assert none_of_one.items() <= h["solved_at_min_T"].items()  # 1 - 0.9 (1 - e^(-1/4)) = 0.80 right < 0.99
        assert close(h["learned_at_max_T"]["high"], 0.7935)  # Wilson, k = 0 of n = 1
    clip = spec["clipping"]["headline"]
    assert close(clip["unclipped_final_loss"], 0.12) and close(clip["best_final_loss"], 0.02)
    assert clip["best_threshold"] == 0.1
    assert {"k": 1, "n": 2, "rate": 0.5}.items() <= clip["diverged_unclipped"].items()
    assert {"k": 0, "n": 4, "rate": 0.0}.items() <= clip["diverged_clipped"].items()
    assert {"k": 4, "n": 4, "rate": 1.0}.items() <= clip["beat_chance_clipped"].items()  # T = 20: 0.63 x chance
    assert {"k": 0, "n": 4, "rate": 0.0}.items() <= clip["learned_clipped"].items()  # not below 0.5 x chance
    assert {"k": 1, "n": 2}.items() <= clip["beat_chance_unclipped"].items()  # the diverged run did not
    assert {"k": 1, "n": 2, "rate": 0.5}.items() <= clip["blew_up_unclipped"].items()
    assert close(clip["chance_loss"], fx.CHANCE_LOSS["adding"])
    for mode in ("global", "elementwise"):  # both thresholds tie (none learned, same loss): the lower wins
        assert clip[f"best_{mode}"]["threshold"] == 0.1
        assert {"k": 1, "n": 1, "rate": 1.0}.items() <= clip[f"best_{mode}"]["beat_chance"].items()
    assert spec["clipping"]["outcomes"] == {"ok": 5, "unstable": 0, "diverged": 1, "failed": 0}
    depth = spec["depth"]["headline"]["tanh"]  # log10 signal and weight gradient drop 0.5 per layer below the top
    assert depth["max_layers"] == 3 and close(depth["signal_input_minus_top"], -1.0)
    assert close(depth["wgrad_input_minus_top"], -1.0) and depth["n_stacked"] == 4
    assert close(depth["log10_paths"], math.log10(math.comb(10 - 1 + 2, 2)))  # from (0, 0) to (2, T = 10)
    text = spec["text"]["headline"]
    assert close(text["rnn"]["final_train_loss"], 1.5) and close(text["chance_loss"], math.log(30))  # per arm
    assert set(spec["activations"]["headline"]) == {"tanh", "sigmoid", "relu", "linear"}
    linear = spec["activations"]["headline"]["linear"]  # W = 0.8 I: slope = lambda_1 = log 0.8 on the one run
    assert linear["n_both"] == 1 and linear["median_abs_slope_minus_lyapunov"] < 1e-9
    assert spec["mystery"]["n_runs"] == 3 and "headline" not in spec["mystery"]
    success = pd.read_csv(out / "tables" / "success_vs_T.csv")
    assert len(success) == 6 and set(success["T"]) == {10, 40, 80}
    adding = success[success["task"] == "adding"].set_index("T")
    assert close(adding.loc[40, "accuracy"], 0.1 + 0.9 * math.exp(-1))
    assert list(adding["beat_chance_rate"]) == [1.0, 1.0, 0.0] and list(adding["n_scored"]) == [1, 1, 1]
    assert list(adding["learned_rate"]) == [1.0, 0.0, 0.0] and list(adding["n_solved"]) == [0, 0, 0]
    report = json.loads((out / "analysis.json").read_text())
    text_run = next(r for r in runs if r.spec == "text")
    assert [s["iter"] for s in report["specs"]["text"]["samples"][text_run.run_id]] == [0, 50, 99]


def test_the_longest_T_learned_needs_three_runs_at_every_T(tmp_path):
    """With 3 seeds per T the boundary is placed (learned iff T < 12.0: every run at T = 10, none at T = 40); with
    one seed fewer at one T it is not."""
    runs = [fx.make_run("long_range", task="adding", seq_len=T, seed=s) for T in (10, 40) for s in (0, 1, 2)]
    fx.write_study(tmp_path / "results", runs)
    h = analyze_ok(tmp_path / "results", tmp_path / "reports")["specs"]["long_range"]["headline"]["adding"]
    assert h["runs_per_T"] == 3 and h["longest_T_learned"] == 10 and h["n_at_longest_T_learned"] == 3
    fx.write_study(tmp_path / "fewer", runs[:-1])
    h = analyze_ok(tmp_path / "fewer", tmp_path / "reports2")["specs"]["long_range"]["headline"]["adding"]
    assert h["runs_per_T"] == 2 and h["longest_T_learned"] is None


@pytest.mark.parametrize("specs", [["mystery"], ["depth"], ["text", "clipping"]])
def test_any_subset_of_specs_is_analyzed(tmp_path, specs):
    runs = [r for r in fx.standard_runs() if r.spec in specs]
    results = tmp_path / "results"
    fx.write_study(results, runs)
    m = analyze_ok(results, tmp_path / "reports")
    assert set(m["specs"]) == set(specs) and m["n_runs"] == len(runs)


# ---- the spec's description, and specs without a study of their own ------------------------------------------


def test_every_spec_carries_its_description_into_analysis_json(study, tmp_path):
    results, runs = study
    out = tmp_path / "reports"
    analyze_ok(results, out)
    specs = json.loads((out / "analysis.json").read_text())["specs"]
    assert {s: specs[s]["description"] for s in specs} == {r.spec: fx.description(r.spec) for r in runs}


def test_results_without_a_description_column_are_analysed_as_before(tmp_path):
    runs = [r for r in fx.standard_runs() if r.spec in ("mystery", "clipping")]
    out = {}
    for described in (True, False):
        results = tmp_path / f"results{described}"
        fx.write_study(results, [fx.make_run(r.spec, r.outcome, r.bias, r.overrides, **r.config) for r in runs],
                       described=described)
        out[described] = tmp_path / f"reports{described}"
        analyze_ok(results, out[described])
    assert (out[True] / "metrics.json").read_bytes() == (out[False] / "metrics.json").read_bytes()
    plain = json.loads((out[False] / "analysis.json").read_text())["specs"]
    assert all("description" not in s for s in plain.values())


def test_a_spec_without_a_study_gets_an_outcome_table_of_every_run(tmp_path):
    runs = [fx.make_run("brand_new", activation=a, gamma_w=g, seed=s)
            for a in ("tanh", "relu") for g in (0.5, 2.0) for s in (0, 1)]
    runs += [fx.make_run("brand_new", outcome="diverged", activation="tanh", gamma_w=4.0, seed=0),
             fx.make_run("brand_new", outcome="failed", activation="relu", gamma_w=4.0, seed=0)]
    results, out = tmp_path / "results", tmp_path / "reports"
    fx.write_study(results, runs)
    m = analyze_ok(results, out)
    assert not studies.is_known("brand_new") and m["specs"]["brand_new"]["n_runs"] == len(runs)
    report = json.loads((out / "analysis.json").read_text())["specs"]["brand_new"]
    assert report["description"] == fx.description("brand_new")
    assert report["varied"] == ["activation", "gamma_w", "seed"]  # the grid axes, in RunConfig order
    table = pd.read_csv(out / "tables" / "outcomes.csv")
    assert list(table.columns) == ["run_id", "spec", "activation", "gamma_w", "seed", "outcome", "verdict",
                                   "final_val_loss", "val_accuracy", "chance_loss", "chance_accuracy"]
    assert list(table["run_id"]) == [r.run_id for r in runs]  # results order
    for run, row in zip(runs, table.itertuples()):
        cfg = run.config
        assert (row.activation, row.gamma_w, row.seed, row.outcome) == (cfg["activation"], cfg["gamma_w"],
                                                                       cfg["seed"], run.outcome)
        assert row.verdict == ("beat chance" if run.outcome == "ok" else run.outcome)  # seq_len 20: 0.63 x chance
        if run.outcome == "ok":  # the fixture's stated formulas
            assert row.final_val_loss == pytest.approx(fx.validation_loss(cfg))
            assert row.val_accuracy == pytest.approx(fx.task_success(cfg))
        else:
            assert math.isnan(row.final_val_loss) and math.isnan(row.val_accuracy)
        if run.outcome != "failed":  # a failed run's summary has no chance numbers
            assert row.chance_loss == pytest.approx(fx.CHANCE_LOSS["adding"])
            assert row.chance_accuracy == pytest.approx(fx.CHANCE_ACCURACY["adding"])


def test_specs_without_a_study_share_the_outcome_table_and_it_goes_when_they_do(tmp_path):
    runs = [fx.make_run("first_new", gamma_w=g) for g in (0.5, 2.0)] + [fx.make_run("second_new", hidden=h)
                                                                       for h in (3, 5)]
    runs += [r for r in fx.standard_runs() if r.spec == "depth"]
    results, out = tmp_path / "results", tmp_path / "reports"
    fx.write_study(results, runs)
    analyze_ok(results, out)
    table = pd.read_csv(out / "tables" / "outcomes.csv")
    assert list(table["spec"]) == ["first_new"] * 2 + ["second_new"] * 2  # studied specs are not in it
    first = table[table["spec"] == "first_new"]
    assert list(first["gamma_w"]) == [0.5, 2.0] and first["hidden"].isna().all()
    varied = {s: v.get("varied") for s, v in json.loads((out / "analysis.json").read_text())["specs"].items()}
    assert varied == {"first_new": ["gamma_w"], "second_new": ["hidden"], "depth": None}
    for spec in ("first_new", "second_new"):
        (results / f"{spec}.parquet").unlink()
    analyze_ok(results, out)
    assert not (out / "tables" / "outcomes.csv").exists()


# ---- missing artifacts and empty results ----------------------------------------------------------------------


def test_missing_artifacts_are_listed_and_skipped(study, tmp_path):
    results, runs = study
    no_signal, no_jacobian, no_folder, bad_summary = runs[0], runs[1], runs[2], runs[3]
    (fx.run_folder(results, no_signal) / "probe" / "signal.parquet").unlink()
    (fx.run_folder(results, no_jacobian) / "probe" / "jacobian.parquet").unlink()
    shutil.rmtree(fx.run_folder(results, no_folder))
    (fx.run_folder(results, bad_summary) / "summary.json").write_text("{not json")
    out = tmp_path / "reports"
    m = analyze_ok(results, out)
    assert m["n_runs"] == 32 and m["n_missing_artifacts"] == 4 and m["n_runs_incomplete"] == 4
    assert m["n_probes"] == 2 * (32 - 1 - 2)  # the failed run and the two without a jacobian table
    missing = pd.read_csv(out / "tables" / "missing.csv")
    got = {(r.run_id, r.file.replace("\\", "/").split(f"{r.spec}/runs/")[1].split("/", 1)[-1], r.problem.split(" ")[0])
           for r in missing.itertuples()}
    assert got == {(no_signal.run_id, "probe/signal.parquet", "missing"),
                   (no_jacobian.run_id, "probe/jacobian.parquet", "missing"),
                   (no_folder.run_id, "", "run"), (bad_summary.run_id, "summary.json", "unreadable")}


def test_no_results_is_a_one_line_error_with_exit_2(tmp_path):
    missing_dir = run_analyze(tmp_path / "nothing", tmp_path / "reports")
    (tmp_path / "results").mkdir()
    pd.DataFrame({"spec": [], "run_id": [], "config_hash": [], "outcome": []}).to_parquet(
        tmp_path / "results" / "weight_norms.parquet")
    zero_rows = run_analyze(tmp_path / "results", tmp_path / "reports")
    for result in (missing_dir, zero_rows):
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "no runs found" in lines[0] and "rnngrad sweep experiments/<spec>.yaml" in lines[0]
    assert not (tmp_path / "reports").exists()


def test_unreadable_results_table_names_the_file(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "depth.parquet").write_bytes(b"not a parquet file")
    result = run_analyze(tmp_path / "results", tmp_path / "reports")
    assert result.exit_code == 2 and "depth.parquet" in result.output and "cannot be read" in result.output


def test_the_best_clip_threshold_learns_most_then_validates_best_then_is_lowest():
    table = pd.DataFrame({"clip_threshold": [0.1, 1.0, 3.0, 10.0], "n_runs": [4, 3, 3, 3],
                          "n_learned": [3, 3, 3, 0], "final_val_loss": [0.01, 0.02, 0.02, 0.001]})
    assert reductions.best_threshold(table)["clip_threshold"] == 1.0  # 3 of 3 beats 3 of 4; 0.02 ties; 1 < 3
    table.loc[2, "final_val_loss"] = 0.015
    assert reductions.best_threshold(table)["clip_threshold"] == 3.0
    assert reductions.best_threshold(table.iloc[:0]) is None


# ---- the number format shared by metrics.json and the report ------------------------------------------------


@pytest.mark.parametrize("x, text", [
    (186420, "186,420"), (3936, "3,936"), (999, "999"), (-1234567, "-1,234,567"), (0, "0"),
    (1234.0, "1,234"), (-1500.25, "-1,500"), (0.01748, "0.01748"), (2.5e-7, "2.5e-07"), (1.5e6, "1.5e+06"),
])
def test_large_numbers_print_with_thousands_separators(x, text):
    assert reductions.format_metric(x) == text


@given(st.integers(-10**15, 10**15))
def test_separators_group_an_integer_in_threes(x):
    text = reductions.format_metric(x)
    groups = text.lstrip("-").split(",")
    assert 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]) and "".join(groups) == str(abs(x))


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**12, 10**12))
def test_formatted_numbers_parse_back_to_the_stored_metric(x):
    stored, text = reductions.round_metric(x), reductions.format_metric(x)
    if stored is None:
        assert text == "n/a" and not math.isfinite(x)
    else:
        assert reductions.parse_metric(text) == stored
        assert json.loads(json.dumps(stored)) == stored
        if isinstance(x, float):
            assert stored == pytest.approx(x, rel=1e-3, abs=0)


# ---- prediction versus measurement: the mean-field rate, lambda_1's spread, the gap decomposition ----------------


def test_meanfield_and_lyapunov_spread_metrics_follow_the_fixture(study, tmp_path):
    """The fixture's mean-field rate is the slope plus MEANFIELD_OFFSET[init] and every spread LYAPUNOV_SPREAD."""
    results, runs = study
    m = analyze_ok(results, tmp_path / "reports")["rate"]
    with_probe = [r for r in runs if r.outcome != "failed"]
    finite_slope = [r for r in with_probe if not (r.spec == "mystery" and r.bias < 0)]  # dead relu: no slope
    orth = [r for r in finite_slope if r.config["init"] == "orthogonal"]
    assert m["n_meanfield"] == len(finite_slope) and m["n_meanfield_orthogonal"] == len(orth)
    assert m["median_abs_slope_minus_meanfield_orthogonal"] == pytest.approx(0.02)
    assert m["n_meanfield_gaussian"] == 0 and m["median_abs_slope_minus_meanfield_gaussian"] is None
    ident = [r for r in finite_slope if r.config["init"] == "identity"]  # the IRNN's init, stated apart
    assert ident and m["n_meanfield_identity"] == len(ident)
    assert m["median_abs_slope_minus_meanfield_identity"] == pytest.approx(abs(fx.MEANFIELD_OFFSET["identity"]))
    assert m["lyapunov_trajectory_spread"] == pytest.approx(fx.LYAPUNOV_SPREAD)
    within = m["slope_within_lyapunov_spread"]
    assert 0 <= within["k"] <= within["n"] and within["low"] <= within["rate"] <= within["high"]
    assert m["longest_probe_steps"] == fx.BASE_CONFIG["probe_len"]


def test_gap_decades_are_medians_of_the_runs_parts_and_the_gaps_table_adds_up(study, tmp_path):
    results, runs = study
    out = tmp_path / "reports"
    m = analyze_ok(results, out)
    table = pd.read_csv(out / "tables" / "runs.csv")
    for part in ("global_to_product", "product_to_stepnorm", "stepnorm_to_measured"):
        col = table[f"gap_{part}_init"].dropna()
        assert m["gap_decades"][part] == pytest.approx(float(np.median(col)), rel=1e-3, abs=1e-6)  # 4 digits
        assert m["gap_decades"][part] >= 0  # each bound lies above the next
    gaps = pd.read_csv(out / "tables" / "gaps.csv").set_index("spec")
    lin = next(r for r in runs if r.spec == "activations" and r.config["activation"] == "linear")
    assert lin.run_id in gaps.loc["activations", "run_ids"]
    # W = a I and a linear phi: the three bounds equal the measurement, every part is 0 for that run
    row = table.set_index("run_id").loc[lin.run_id]
    for part in ("global_to_product", "product_to_stepnorm", "stepnorm_to_measured"):
        assert abs(row[f"gap_{part}_init"]) < 1e-9


def test_a_planted_stepnorm_violation_is_counted(study, tmp_path):
    results, runs = study
    target = runs[2]
    path = fx.run_folder(results, target) / "probe" / "jacobian.parquet"
    jac = pd.read_parquet(path)
    at = (jac["when"] == "init") & (jac["t"] == 6) & (jac["k"] == 4)
    jac.loc[at, "log_bound_stepnorm"] = jac.loc[at, "log_bound_product"] + 0.1
    jac.to_parquet(path, index=False)
    m = analyze_violated(results, tmp_path / "reports")
    assert m["violations"] == 1 and m["violations_stepnorm_gt_product"] == 1


def test_a_probe_table_without_the_stepnorm_bound_is_still_checked(study, tmp_path):
    """A run folder written before the step-norm bound existed: its pairs are checked against the two others."""
    results, runs = study
    path = fx.run_folder(results, runs[0]) / "probe" / "jacobian.parquet"
    pd.read_parquet(path).drop(columns="log_bound_stepnorm").to_parquet(path, index=False)
    m = analyze_ok(results, tmp_path / "reports")
    assert m["violations"] == 0 and m["n_missing_artifacts"] == 0


def test_prediction_tables_are_written(study, tmp_path):
    results, runs = study
    out = tmp_path / "reports"
    analyze_ok(results, out)
    pred = pd.read_csv(out / "tables" / "prediction.csv")
    assert {"slope_init", "meanfield_rate_init", "lyapunov_init", "lyapunov_spread_init", "log_rate_init"} <= set(
        pred.columns)
    np.testing.assert_allclose(pred["meanfield_rate_init"] - pred["slope_init"],
                               [fx.MEANFIELD_OFFSET[i] for i in pred["init"]], atol=1e-12)
    spectra = pd.read_csv(out / "tables" / "spectra.csv")
    assert set(spectra["run_id"]) == set(pd.read_csv(out / "tables" / "heatmaps.csv")["run_id"])
    assert (spectra.groupby(["run_id", "when"])["log10_sigma"].apply(lambda v: (np.diff(v) <= 1e-12).all())).all()


def test_slope_above_lyapunov_and_spectrum_metrics_count_runs(tmp_path):
    numbers = [(-0.5, -0.4, 5.0, 4), (-0.2, -0.25, 12.0, 2), (0.1, 0.05, 3.0, 4)]  # slope, lambda_1, spread, resolved
    runs = [fx.make_run("weight_norms", seed=i, overrides={"slope_init": s, "lyapunov_init": l,
                                                           "spectrum_spread_init": sp, "spectrum_resolved_init": k})
            for i, (s, l, sp, k) in enumerate(numbers)]
    results = tmp_path / "results"
    fx.write_study(results, runs)
    m = analyze_ok(results, tmp_path / "reports")
    assert (m["rate"]["slope_above_lyapunov"]["k"], m["rate"]["slope_above_lyapunov"]["n"]) == (2, 3)
    assert {k: m["spectrum"][k] for k in ("median_spread_decades", "n_runs", "n_fully_resolved")} == {
        "median_spread_decades": 5.0, "n_runs": 3, "n_fully_resolved": 2}  # hidden = 4
    # the censored run's 12 decades are a lower bound: the resolved runs' median leaves it out
    assert (m["spectrum"]["median_spread_resolved_decades"], m["spectrum"]["n_censored"],
            m["spectrum"]["median_spread_censored_decades"]) == (4.0, 1, 12.0)


def test_a_missing_global_bound_is_not_finite_for_a_vanilla_row_and_expected_for_an_lstm_row():
    from pipeline.report.reductions import nonfinite_mask

    nan, inf = float("nan"), float("inf")
    jac = pd.DataFrame({"log_norm": [-1.0, -1.0, nan, -1.0, -1.0], "log_bound_product": [0.0, 0.0, 0.0, 0.0, inf],
                        "log_bound_global": [nan, nan, nan, 1.0, 1.0],
                        "log_norm_cell": [nan, -2.0, -2.0, nan, nan]})  # rows 1 and 2 are an LSTM's
    assert nonfinite_mask(jac).tolist() == [True, False, True, False, True]
    assert nonfinite_mask(jac.drop(columns="log_norm_cell")).tolist() == [True, True, True, False, True]


def test_the_activation_table_is_per_gamma_and_compares_slope_and_lambda_1_on_matched_runs():
    """No median runs across the gamma_W grid; an exploding run whose lambda_1 is NaN is left out of |slope - lambda_1|
    and the n says so (on matched runs linear's slope and lambda_1 agree where the old medians did not)."""
    runs = pd.DataFrame({"run_id": list("abcdef"), "activation": ["tanh"] * 3 + ["linear"] * 3, "outcome": ["ok"] * 6,
                         "gamma_w": [0.5, 1.0, 2.0] * 2, "w_norm_init": [0.5, 1.0, 2.0] * 2,
                         "slope_init": [-0.7, -0.2, -0.1, -0.69, 0.0, 0.69],
                         "lyapunov_init": [-0.6, -0.25, -0.1, -0.693, 0.0, np.nan],
                         "log_rate_init": list(np.log([0.5, 1.0, 2.0])) * 2, "val_accuracy": [np.nan] * 6,
                         "final_val_loss": [1.0] * 6})
    table, head = reductions.activation_table(runs)
    assert len(table) == 6 and set(table["gamma_w"]) == {0.5, 1.0, 2.0}
    row = table[(table["activation"] == "linear") & (table["gamma_w"] == 2.0)].iloc[0]
    assert (row["n_both"], row["slope"], row["w_norm"]) == (0, 0.69, 2.0) and np.isnan(row["lyapunov"])
    assert head["linear"]["n_both"] == 2 and head["linear"]["median_abs_slope_minus_lyapunov"] == pytest.approx(0.0015)
    assert head["tanh"]["n_both"] == 3 and head["tanh"]["median_abs_slope_minus_lyapunov"] == pytest.approx(0.05)


def test_the_activation_table_keeps_the_forms_apart_when_the_runs_have_two():
    """The full profile runs each activation in the Elman and the Pascanu form: a row per form, not their median;
    runs of one form keep one row per activation and gamma_W, with no form column."""
    runs = pd.DataFrame({"run_id": list("abcd"), "activation": ["tanh"] * 4, "outcome": ["ok"] * 4,
                         "form": ["elman", "pascanu"] * 2, "gamma_w": [0.5, 0.5, 2.0, 2.0],
                         "w_norm_init": [0.5, 0.5, 2.0, 2.0], "slope_init": [-1.0, -0.7, -0.2, 0.1],
                         "lyapunov_init": [-1.0, -0.7, -0.2, 0.1], "log_rate_init": list(np.log([0.5, 0.5, 2, 2])),
                         "val_accuracy": [np.nan] * 4, "final_val_loss": [np.nan] * 4})
    table, _ = reductions.activation_table(runs)
    assert table[["form", "gamma_w", "slope"]].values.tolist() == [["elman", 0.5, -1.0], ["elman", 2.0, -0.2],
                                                                   ["pascanu", 0.5, -0.7], ["pascanu", 2.0, 0.1]]
    one, _ = reductions.activation_table(runs[runs["form"] == "elman"])
    assert "form" not in one and len(one) == 2


def test_the_bounds_gap_is_a_rate_per_step_with_the_decades_at_the_longest_lag_beside_it():
    """A gap that grows 0.72 nats per step of lag: its rate is 0.72 whatever lags the probe has, the decades at the
    longest lag 0.72 x 9 / ln 10, and per spec the median and IQR over runs with n."""
    t, k = np.tril_indices(10, -1)
    jac = pd.DataFrame({"when": "init", "layer": 0, "t": t, "k": k, "log_norm": -0.1 * (t - k),
                        "log_bound_global": -0.1 * (t - k) + 0.72 * (t - k), "log_bound_product": 0.0})
    got = reductions.gap_rates(jac)
    assert got["gap_rate"] == pytest.approx(0.72, abs=1e-12) and got["gap_longest_lag"] == 9
    assert got["gap_longest_decades"] == pytest.approx(0.72 * 9 / math.log(10), abs=1e-12)
    runs = pd.DataFrame({"spec": ["a", "a", "a", "b", "b"], "gap_rate": [0.5, 0.7, 0.9, 0.1, 0.3],
                         "gap_longest_decades": [1.0, 2.0, 3.0, 0.2, 5.0], "gap_longest_lag": [9.0] * 4 + [30.0]})
    m = reductions.gap_rate_metrics(runs)
    assert m["a"] == {"median": 0.7, "q1": 0.6, "q3": 0.8, "n": 3, "decades_at_longest_lag": 2.0, "longest_lag": 9.0,
                      "n_at_longest_lag": 3}
    # probes of two lengths: the decades at the longest lag that exists, over the one run probed that far
    assert (m["b"]["n"], m["b"]["longest_lag"], m["b"]["decades_at_longest_lag"], m["b"]["n_at_longest_lag"]) == (
        2, 30.0, 5.0, 1)


def test_run_labels_name_each_run_by_its_varied_axes_seed_included_and_a_lone_arm_by_its_cell():
    runs = pd.DataFrame({"cell_type": ["rnn", "rnn", "lstm", "lstm"], "hidden": [100, 100, 44, 44],
                         "seed": [0, 1, 0, 1], "gamma_w": [0.2] * 4})
    assert list(reductions.run_labels(runs)) == ["cell_type=rnn hidden=100"] * 2 + ["cell_type=lstm hidden=44"] * 2
    assert list(reductions.run_labels(runs, seeds=True)) == [  # one per run: the two seeds told apart
        "cell_type=rnn hidden=100 seed=0", "cell_type=rnn hidden=100 seed=1",
        "cell_type=lstm hidden=44 seed=0", "cell_type=lstm hidden=44 seed=1"]
    lone = runs.iloc[:1]
    assert list(reductions.run_labels(lone)) == ["cell_type=rnn"]  # not "all": the run's arm
    assert list(reductions.run_labels(runs.iloc[:2])) == ["cell_type=rnn"] * 2  # seeds of one arm: one group
    assert list(reductions.run_labels(runs.iloc[:2], seeds=True)) == ["seed=0", "seed=1"]


def test_an_unclipped_runs_label_does_not_name_the_threshold_it_ignores():
    """The clipping spec varies clip_threshold; its unclipped cell carries the default threshold, which clipping
    'none' never applies: the appendix read "clip_mode=none clip_threshold=5"."""
    runs = pd.DataFrame({"clip_mode": ["none", "global", "global"], "clip_threshold": [5.0, 1.0, 10.0],
                         "seed": [0, 0, 0]})
    assert list(reductions.run_labels(runs)) == ["clip_mode=none", "clip_mode=global clip_threshold=1",
                                                 "clip_mode=global clip_threshold=10"]


def test_a_grus_missing_global_bound_is_expected_and_a_vanilla_runs_is_counted_not_finite(tmp_path):
    """A GRU, like an LSTM, has no (gamma_W gamma_phi)^(t-k) bound, and its rows carry no cell-state norm to say so: the
    results table's cell_type does. The same NaN global bound in a vanilla run is a failed measurement."""
    results = tmp_path / "results"
    results.mkdir()
    runs = fx.write_study(results, [fx.make_run("remedies", seed=0), fx.make_run("remedies", seed=1)])
    for run in runs:
        path = fx.run_folder(results, run) / "probe" / "jacobian.parquet"
        jac = pd.read_parquet(path)
        jac["log_bound_global"] = float("nan")
        jac.to_parquet(path, index=False)
    table = pd.read_parquet(results / "remedies.parquet")
    table["cell_type"] = ["gru" if h == runs[0].config_hash else "rnn" for h in table["config_hash"]]
    table.to_parquet(results / "remedies.parquet", index=False)
    m = analyze_ok(results, tmp_path / "reports")
    assert m["nonfinite"] == m["nonfinite_in_ok_runs"] == 2 * pairs(fx.BASE_CONFIG["probe_len"])  # the vanilla run's
    listed = pd.read_csv(tmp_path / "reports" / "tables" / "nonfinite.csv")
    assert set(listed["run_id"]) == {runs[1].run_id}


def test_an_untrained_runs_final_probe_is_not_scored_after_training():
    """A run with no training step (the activations spec's iters 0) probes its initial model twice: its final probe
    is no evidence about trained networks, so the after-training regime counts leave it out."""
    from pipeline.report.reductions import label_regimes, regime_counts

    runs = pd.DataFrame({"run_id": ["untrained", "trained"], "iters_done": [0, 400],
                         "log_rate_init": [-0.5, -0.5], "slope_init": [-0.6, -0.6],
                         "log_rate_final": [-0.5, -0.4], "slope_final": [-0.6, -0.5]})
    labelled = label_regimes(runs)
    assert regime_counts(labelled, "init")["n_sufficient"] == 2
    final = regime_counts(labelled, "final")
    assert (final["n_probes"], final["n_sufficient"], final["n_sufficient_observed_vanishing"]) == (1, 1, 1)
    assert labelled["observed_regime_final"].tolist() == [None, "vanishing"]


def test_the_two_bounds_gaps_are_compared_on_the_same_runs():
    """A gated cell has a product gap and no global one: the two medians are taken over the runs that have both."""
    runs = pd.DataFrame({"gap_product": [1.0, 2.0, 3.0, 10.0, 12.0], "gap_global": [1.5, 2.5, 3.5, np.nan, np.nan]})
    t = analysis.tightness_metrics(runs)
    assert (t["median_gap_product_decades"], t["median_gap_global_decades"]) == (2.0, 2.5)  # unmatched: 3.0 and 2.5
    assert (t["n_runs"], t["n_product_only"]) == (3, 2)


def test_pairs_of_norm_exactly_zero_are_counted_per_probe_in_the_top_layer():
    from pipeline.report.reductions import zero_pairs

    ninf = float("-inf")
    jac = pd.DataFrame({"when": ["init", "init", "final", "final", "init"], "layer": [1, 1, 1, 1, 0],
                        "log_norm": [ninf, -1.0, ninf, ninf, ninf]})  # the last row is a lower layer's
    assert zero_pairs(jac) == {"zero_pairs_init": 1, "zero_pairs_final": 2}


def test_fishers_exact_test_of_two_arms_counts():
    from pipeline.report.clipcontrol import fisher_p

    assert fisher_p(0, 3, 3, 3) == pytest.approx(0.1)  # 2 / C(6, 3): the two extreme tables of 20
    assert fisher_p(2, 3, 0, 3) == pytest.approx(0.4)
    assert fisher_p(1, 1, 0, 0) != fisher_p(1, 1, 0, 0)  # NaN: an arm without runs


def test_the_mean_field_error_per_init_is_also_given_on_one_activation():
    from pipeline.report import prediction

    runs = pd.DataFrame({"init": ["orthogonal", "orthogonal", "gaussian"], "activation": ["tanh", "linear", "tanh"],
                         "slope_init": [-0.5, -0.7, -0.5], "meanfield_rate_init": [-0.4, -0.7, -0.3]})
    m = prediction.rate_metrics(runs)
    assert m["n_meanfield_orthogonal"] == 2 and m["n_meanfield_tanh_orthogonal"] == 1
    assert m["median_abs_slope_minus_meanfield_tanh_orthogonal"] == pytest.approx(0.1)  # the linear run left out
    assert m["median_abs_slope_minus_meanfield_tanh_gaussian"] == pytest.approx(0.2)
