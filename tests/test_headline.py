"""What DVC shows of a study: the short headline (reports/headline.json, dvc.yaml's metrics file), each spec's own
numbers (reports/metrics/<spec>.json), and `analyze --params`, which reads only the specs params.yaml lists. Expected
values come from how the fixture was built and from metrics.json, which the headline is cut from."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

import fixtures_runs as fx
from pipeline import cli
from pipeline.report import headline

cli._register()


def analyze(results, out, *extra):
    return CliRunner().invoke(cli.app, ["analyze", "--results-dir", str(results), "--out", str(out), *extra])


def leaves(tree) -> int:
    return sum(leaves(v) for v in tree.values()) if isinstance(tree, dict) else 1


def test_the_headline_is_short_and_cut_from_metrics_json(tmp_path):
    runs = fx.standard_runs()
    fx.write_study(tmp_path / "results", runs)
    out = tmp_path / "reports"
    assert analyze(tmp_path / "results", out).exit_code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    head = json.loads((out / headline.HEADLINE).read_text())
    assert leaves(head) <= 40 < leaves(metrics)
    assert head["runs"] == len(runs) and head["violations"] == metrics["violations"]
    assert head["rate_error_lyapunov"] == metrics["rate"]["median_abs_slope_minus_lyapunov"]
    assert head["rate_error_meanfield"] == metrics["rate"]["median_abs_slope_minus_meanfield"]
    for spec in {r.spec for r in runs}:
        mine = [r for r in runs if r.spec == spec]
        assert head[spec]["runs"] == len(mine) == metrics["learning"][spec]["n_runs"]
        scored = metrics["learning"][spec]["learned"]["n"]
        assert head[spec]["learned"] == (metrics["learning"][spec]["n_learned"] if scored else None)
        assert head[spec]["solved"] == (metrics["learning"][spec]["n_solved"] if scored else None)
        own = json.loads((out / headline.SPEC_METRICS / f"{spec}.json").read_text())
        assert own["learning"] == metrics["learning"][spec]
        assert {k: v for k, v in own.items() if k != "learning"} == metrics["specs"].get(spec, {})


def test_an_untrained_spec_shows_no_learned_count_rather_than_zero():
    def counts(k_learned, k_solved, scored):
        return {"n_runs": 4, "n_learned": k_learned, "n_solved": k_solved,
                "learned": {"k": k_learned, "n": scored}, "solved": {"k": k_solved, "n": scored}}

    metrics = {"n_runs": 8, "n_checks": 80, "violations": 0, "outcomes": {},
               "learning": {"probes": counts(0, 0, 0), "trained": counts(3, 1, 4)}}
    head = headline.headline(metrics)
    assert head["probes"] == {"runs": 4, "learned": None, "solved": None}
    assert head["trained"] == {"runs": 4, "learned": 3, "solved": 1}
    assert head["rate_error_lyapunov"] is None  # no rate measured: nothing shown


def test_analyze_reads_only_the_specs_params_yaml_lists_and_names_the_others(tmp_path):
    runs = fx.standard_runs()
    fx.write_study(tmp_path / "results", runs)
    out = tmp_path / "reports"
    assert analyze(tmp_path / "results", out).exit_code == 0
    assert (out / "metrics" / "depth.json").exists()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"profile": "quick", "specs": ["weight_norms", "text"]}))
    done = analyze(tmp_path / "results", out, "--params", str(params))
    assert done.exit_code == 0, done.output
    assert "ignored (not in" in done.output and "depth" in done.output and "mystery" in done.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["learning"]) == {"weight_norms", "text"}
    assert metrics["n_runs"] == sum(r.spec in ("weight_norms", "text") for r in runs)
    assert sorted(p.stem for p in (out / "metrics").glob("*.json")) == ["text", "weight_norms"]  # no stale spec


def test_a_bad_params_file_is_refused_in_one_line(tmp_path):
    fx.write_study(tmp_path / "results", fx.standard_runs())
    for content, words in (("specs: depth\n", "expected a non-empty list of spec names"),
                           (None, "no such file")):
        params = tmp_path / "p.yaml"
        params.unlink(missing_ok=True)
        if content is not None:
            params.write_text(content)
        done = analyze(tmp_path / "results", tmp_path / "reports", "--params", str(params))
        assert done.exit_code == 2 and words in done.output and "Traceback" not in done.output
        assert not (tmp_path / "reports" / "metrics.json").exists()
    params.write_text("specs: [absent]\n")
    done = analyze(tmp_path / "results", tmp_path / "reports", "--params", str(params))
    assert done.exit_code == 2 and "no runs of the specs" in done.output
