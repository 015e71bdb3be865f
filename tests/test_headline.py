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
    for spec in {r.spec for r in runs}:
        mine = [r for r in runs if r.spec == spec]
        assert head[spec]["runs"] == len(mine) == metrics["learning"][spec]["n_runs"]
        assert head[spec]["learned"] == metrics["learning"][spec]["n_learned"]
        own = json.loads((out / headline.SPEC_METRICS / f"{spec}.json").read_text())
        assert own["learning"] == metrics["learning"][spec]
        assert {k: v for k, v in own.items() if k != "learning"} == metrics["specs"].get(spec, {})


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
