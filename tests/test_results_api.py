"""`rnngrad.results`: a study's runs as a DataFrame and one run folder read back, over the fixture study (run folders
and results tables of tests/fixtures_runs.py). `runs(spec="clipping", learned=True)` must return the runs the
report's clipping table counts as learned."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fixtures_runs import standard_runs, write_study
from pipeline.report.analysis import analyze, load_results


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    results = tmp_path_factory.mktemp("study") / "results"
    results.mkdir()
    write_study(results, standard_runs())
    return results


def test_import_names_rnngrad_and_pipeline_give_the_same_api():
    import pipeline
    import rnngrad
    from pipeline import results as own
    from rnngrad import results

    assert results.runs is own.runs is pipeline.results.runs and rnngrad.results.load_run is pipeline.results.load_run
    assert rnngrad.load_model is pipeline.load_model and rnngrad.log_norm_matrix is pipeline.log_norm_matrix


def test_the_learned_clipping_runs_are_those_the_reports_clipping_table_counts(study):
    from rnngrad import results

    table = analyze(study, load_results(study)).tables["clip"]
    # the fixture's clipping runs (T = 20) beat chance but stay above the partial baseline: both levels are checked,
    # and the first is not empty
    assert len(results.runs(spec="clipping", results_dir=study, learned=True)) == table["n_learned"].sum()
    learned = results.runs(spec="clipping", results_dir=study, beat_chance=True)
    assert len(learned) == table["n_beat_chance"].sum() > 0
    assert set(learned["spec"]) == {"clipping"} and learned["beat_chance"].all()
    def group(mode, threshold):  # the table's groups: an unclipped run has no threshold
        return (mode, None if mode == "none" else float(threshold))

    mine = pd.Series([group(m, t) for m, t in zip(learned["clip_mode"], learned["clip_threshold"])]).value_counts()
    theirs = {group(m, t): n for m, t, n in zip(table["clip_mode"], table["clip_threshold"], table["n_beat_chance"])
              if n}
    assert mine.to_dict() == theirs
    every = results.runs(spec="clipping", results_dir=study)
    assert len(every) == table["n_runs"].sum() and set(learned["run_id"]) < set(every["run_id"])
    both = results.runs(spec="clipping", results_dir=study, clip_mode=["global", "elementwise"])
    assert set(both["clip_mode"]) == {"global", "elementwise"} and len(both) == 4
    assert every["name"].is_unique  # each run told apart by its varied axes


def test_load_run_reads_a_run_folder_back(study):
    from pipeline.engine.init import init_model
    from pipeline.run.files import save_model
    from rnngrad import results

    row = results.runs(spec="depth", results_dir=study).iloc[0]
    folder = study / "depth" / "runs" / row["config_hash"]
    model, _ = init_model(np.random.default_rng(0), input_dim=2, output_dim=1, hidden=3)
    save_model(model, folder / "probe" / "model_final.npz")
    config, summary, history, models = results.load_run(row)
    assert config == json.loads((folder / "config.json").read_text())
    assert summary == json.loads((folder / "summary.json").read_text())
    pd.testing.assert_frame_equal(history, pd.read_csv(folder / "history.csv"))
    assert list(models) == ["model_final"]
    np.testing.assert_array_equal(models["model_final"].params["W_hh_0"], model.params["W_hh_0"])
    assert results.load_run(folder)[0] == config  # a folder's path does as well


@pytest.mark.parametrize("call, message", [
    (lambda r, d: r.runs(spec="clippin", results_dir=d), "spec 'clippin': no runs of it in"),
    (lambda r, d: r.runs(results_dir=d, learnt=True), "learnt=: no such column; filter by one of"),
    (lambda r, d: r.runs(results_dir=d / "nowhere"), "no runs found"),
    (lambda r, d: r.load_run(d), "not a readable run folder"),
])
def test_bad_arguments_are_one_clear_value_error(study, call, message):
    from rnngrad import results

    with pytest.raises(ValueError, match=message):
        call(results, study)
