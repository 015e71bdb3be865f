"""Text runs in the report: a user's own text spec gets the text study's validation curve, both readings of the
validation loss and a sample per arm; each spec's figure draws its own runs, one line per run, solid where the
loss was read with the state carried and dash-dot where on windows from h = 0, as its caption says."""

from __future__ import annotations

import tempfile
import warnings

import pandas as pd
import pytest
from typer.testing import CliRunner

import fixtures_runs as fx
from pipeline import cli
from pipeline.report import figures
from pipeline.report.analysis import read_analysis
from test_report import Page

cli._register()
LOSSES = {"consecutive": {"val_loss_carried": 2.1, "val_loss_windows": 3.1},
          "random": {"val_loss_carried": 2.3, "val_loss_windows": 2.2}}


def text_run(spec: str, windows: str, seed: int) -> fx.FakeRun:
    config = {**fx.BASE_CONFIG, "task": "text", "seq_len": 16, "iters": 100, "seed": seed, "windows": windows}
    read = "carried" if windows == "consecutive" else "windows"
    final = LOSSES[windows][f"val_loss_{read}"]
    return fx.FakeRun(spec, config, overrides={**LOSSES[windows], "final_val_loss": final, "val_read": read})


def invoke(*args):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tempfile.mkdtemp(prefix="rnngrad-test-"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        return CliRunner().invoke(cli.app, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    results, out = root / "results", root / "reports"
    runs = fx.write_study(results, [text_run("text", "consecutive", 0), text_run("sonnets", "consecutive", 0),
                                    text_run("sonnets", "random", 1), fx.make_run("mystery")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert invoke("analyze", "--results-dir", results, "--out", out).exit_code == 0
        result = invoke("report", "--analysis-dir", out, "--out", out)
    assert result.exit_code == 0, result.output
    page = Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    return {"runs": runs, "out": out, "page": page, "tables": read_analysis(out)[2]}


def test_a_users_text_spec_gets_the_validation_curve_and_samples(built):
    page, out = built["page"], built["out"]
    captions = page.images_by_section["spec-sonnets"]
    assert captions[0].startswith("Text models (sonnets): validation loss per character")
    assert (out / "figures" / "text-sonnets.png").is_file()
    assert not (out / "figures" / "text-mystery.png").exists()  # not a text spec: no text figure
    assert len(page.images_by_section["spec-mystery"]) == 1
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "vanilla RNN (seed 0, consecutive windows): its last sample, at iteration 99, continuing the held-out " \
           "text from its carried state" in html
    assert "vanilla RNN (seed 1, random windows): its last sample, at iteration 99, from h = 0" in html
    assert "vanilla RNN (seed 0): its last sample, at iteration 99, continuing the held-out" in html  # text: one way


def test_each_text_run_shows_both_readings_of_its_validation_loss(built):
    page, runs = built["page"], [r for r in built["runs"] if r.spec == "sonnets"]
    rows = [r for r in page.rows if r[0] == "spec-sonnets"]
    assert ["spec-sonnets", "arm", "seed", "windows: read as", "val loss (verdict)", "state carried",
            "windows from h = 0", "chance"] in rows
    body = {r[2]: r[3:] for r in rows if r[1] == "vanilla RNN"}  # by seed
    assert body["0"][:4] == ["consecutive: state carried", "2.1", "2.1", "3.1"]
    assert body["1"][:4] == ["random: windows from h = 0", "2.2", "2.3", "2.2"]


@pytest.mark.parametrize("spec", ["text", "sonnets"])
def test_each_text_figure_draws_its_own_runs_with_the_line_style_of_their_reading(built, spec):
    fig, caption, ids = figures.draw_text(built["tables"], spec=spec)
    mine = [r for r in built["runs"] if r.spec == spec]
    assert sorted(ids) == sorted(r.run_id for r in mine)
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]  # the runs, not the two levels
    assert len(curves) == len(mine)
    styles = sorted(line.get_linestyle() for line in curves)
    expected = sorted("-" if r.config["windows"] == "consecutive" else "--" for r in mine)  # dash-dot: a dash pattern
    assert styles == expected
    chars = pd.to_numeric(built["tables"]["text_val_curve"].query("spec == @spec")["chars"]) / 1e6
    assert max(max(line.get_xdata()) for line in curves) == pytest.approx(chars.max())
    assert caption.startswith(f"Text models ({spec})")
    # the caption names the line styles drawn, and no other (dash-dot stays for the bigram model's level)
    kinds = {r.config["windows"] for r in mine}
    assert ("solid, a run on consecutive windows" in caption) == ("consecutive" in kinds)
    assert ("dash-dot, a run on random windows" in caption) == ("random" in kinds)
