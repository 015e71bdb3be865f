"""`rnngrad report` end to end on a fake sweep with one planted violation and one missing artifact:
numbers in the HTML equal metrics.json, the HTML is self-contained, figures decode, the PDF holds every section."""

from __future__ import annotations

import base64
import codecs
import io
import json
import re
import shutil
import tempfile
import warnings
from datetime import datetime, timezone
from html.parser import HTMLParser

import pytest
from PIL import Image
from typer.testing import CliRunner

import fixtures_runs as fx
from pipeline import cli
from pipeline.report.document import Bullets, Link, Paragraph, Section, SectionLink, Table, plain_text
from pipeline.report.html import findings_section
from pipeline.report.pdf import render_pdf
from pipeline.report import formatting
from pipeline.report.formatting import shown_within
from pipeline.report.reductions import parse_metric

cli._register()


def invoke(*args):
    """The CLI, run from an empty folder without a tracking URI: `report` links and logs to the MLflow store of the
    folder it runs in, and a test must neither read nor write the developer's own store (a `dvc repro` leaves one
    in the repository)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tempfile.mkdtemp(prefix="rnngrad-test-"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        return CliRunner().invoke(cli.app, [str(a) for a in args])


class Page(HTMLParser):
    """Collects metric spans, images, run references, section ids/titles and table rows of the report."""

    def __init__(self):
        super().__init__()
        self.metrics, self.images, self.sections, self.rows = [], [], {}, []
        self.runs_by_section: dict[str, set[str]] = {}
        self.images_by_section: dict[str, list[str]] = {}  # each image's alt text (its caption)
        self.paragraphs: dict[str, list[str]] = {}  # the text of each <p> in each section
        self._paragraph = None
        self._metric, self._section, self._in_h2, self._row = None, None, False, None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and "data-metric" in a:
            self._metric = [a["data-metric"], "", a.get("data-style", "value")]
        elif tag == "img":
            self.images.append(a.get("src", ""))
            self.images_by_section[self._section].append(a.get("alt", ""))
        elif tag == "section":
            self._section = a["id"]
            self.runs_by_section[self._section] = set()
            self.images_by_section[self._section], self.paragraphs[self._section] = [], []
        elif tag == "p":
            self._paragraph = ""
        elif tag == "h2":
            self._in_h2 = True
            self.sections[self._section] = ""
        elif tag == "abbr" and "title" in a:
            self.runs_by_section[self._section].add(a["title"])
            if self._row is not None:
                self._row.append(a["title"])
        elif tag == "tr":
            self._row = [self._section]
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "span" and self._metric:
            self.metrics.append(tuple(self._metric))
            self._metric = None
        elif tag == "h2":
            self._in_h2 = False
        elif tag == "p" and self._paragraph is not None:
            self.paragraphs[self._section].append(self._paragraph)
            self._paragraph = None
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._paragraph is not None:
            self._paragraph += data
        if self._metric:
            self._metric[1] += data
        if self._in_h2:
            self.sections[self._section] += data
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    results, out = root / "results", root / "reports"
    runs = fx.write_study(results, fx.standard_runs())
    planted = runs[4]  # weight_norms sigmoid gamma_w=1
    fx.plant_violation(results, planted, "init", 0, t=6, k=3, excess=0.25)
    lost = runs[20]
    (fx.run_folder(results, lost) / "probe" / "signal.parquet").unlink()
    with warnings.catch_warnings():  # an exploding run's losses (1e300) must not overflow a figure's axes
        warnings.simplefilter("error", RuntimeWarning)
        assert invoke("analyze", "--results-dir", results, "--out", out).exit_code == 1  # the planted violation
        result = invoke("report", "--analysis-dir", out, "--out", out)
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    return {"runs": runs, "out": out, "html": html, "page": page, "planted": planted, "lost": lost,
            "metrics": json.loads((out / "metrics.json").read_text())}


def lookup(metrics: dict, key: str):
    node = metrics
    for part in key.split("."):
        node = node[part]
    return node


def test_every_number_in_the_html_equals_metrics_json(built):
    page, metrics = built["page"], built["metrics"]
    assert len(page.metrics) > 40
    for key, text, style in page.metrics:  # each at its precision: a share at 2 digits, an interval outwards
        value = lookup(metrics, key)
        assert (text == "n/a") if value is None else shown_within(text, value, style), (key, text, value, style)
    assert {s for _, _, s in page.metrics} >= {"value", "share_low", "share_high"}
    shown = {k for k, _, _ in page.metrics}
    for key in ("n_runs", "n_probes", "violations", "n_missing_artifacts", "regimes.init.n_sufficient",
                "regimes.init.n_sufficient_observed_vanishing", "regimes.init.n_bounded", "regimes.init.contradictions",
                "regimes.final.contradictions", "regimes.init.observed_when_not_predicted.exploding",
                "outcomes.unstable", "learning.long_range.learned.k", "learning.long_range.learned.low",
                "learning.clipping.n_at_chance", "specs.long_range.headline.adding.learned_at_max_T.high",
                "specs.clipping.headline.unstable_clipped.n", "tightness.median_gap_product_decades",
                "tightness.median_gap_global_decades", "rate.median_abs_slope_minus_lyapunov",
                "specs.clipping.headline.best_final_loss", "spot_checks.n", "spot_checks.skipped",
                "spot_checks.mismatches", "spot_checks.max_abs_dlog"):
        assert key in shown, key
    assert "agreement" not in built["html"].lower()


def test_an_analysis_json_of_an_older_layout_is_refused_with_one_line(built, tmp_path):
    old = tmp_path / "reports"
    shutil.copytree(built["out"], old)
    report = json.loads((old / "analysis.json").read_text())
    (old / "analysis.json").write_text(json.dumps(report | {"format": 1}))
    result = invoke("report", "--analysis-dir", old, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not written by this version of `rnngrad analyze`" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_report_calls_the_bound_check_a_sanity_check_and_the_spot_check_independent(built):
    text = re.sub(r"<[^>]+>", "", built["html"])
    summary = text[text.index("\nSummary\n"):text.index("\nSweep: ")]
    bound = text[text.index("\nBound check\n"):]
    assert "holds by construction" in summary and "no φ′" in summary
    assert "sanity check" in bound and "The independent check is the spot check" in bound
    # the evidence first, then the checks: the bound check, the spot check, the theorem's (a sanity check)
    assert (summary.index("Decay:") < summary.index("Checks. We checked") < summary.index("violations of")
            < summary.index("holds by construction") < summary.index("Sanity check of the theorem"))
    assert re.search(r"Lyapunov exponent λ₁ and lay above it in \d+ of \d+ runs \(95% CI [^)]*\), a one-sided bias",
                     " ".join(summary.split()))


def test_opening_sentences_state_runs_probes_and_violations(built):
    text = re.sub(r"<[^>]+>", "", built["html"])
    m = built["metrics"]
    # the planted pair lies above the product bound and so above the step-norm bound below it: two violations
    assert m["n_runs"] == 32 and m["n_probes"] == 62 and m["violations"] == 2
    assert "The study: 32 runs and 62 probes" in text
    assert "2 violations of" in text and "(expected 0)" in text
    summary = text[text.index("\nSummary\n"):text.index("\nSweep: ")]
    assert summary.index("The study:") < summary.index("violations of") < summary.index("Sanity check of the theorem")


def findings(html_text: str) -> list[str]:
    """The findings' list items as HTML."""
    start = html_text.index('<section id="findings">')
    return re.findall(r"<li>(.*?)</li>", html_text[start:html_text.index("</section>", start)])


def test_the_report_opens_with_findings_that_link_to_its_sections(built):
    page, html_text = built["page"], built["html"]
    assert list(page.sections)[:2] == ["terms", "findings"] and page.sections["findings"] == "Findings"
    items = findings(html_text)
    assert 4 <= len(items) <= 10
    for item in items:  # each sentence quotes metrics.json and links to a section that exists
        assert 'data-metric="' in item, item
        hrefs = re.findall(r'<a href="#([^"]+)">', item)
        assert hrefs and set(hrefs) <= set(page.sections), item
    text = [re.sub(r"<[^>]+>", "", i) for i in items]
    assert text[0].startswith("Runs that learned")  # the evidence first, the checks after it
    spot = next(i for i, t in enumerate(text) if t.startswith("The independent spot check recomputed 306 sampled "
                                                              "(t, k) pairs from the forward equations alone (24 of "
                                                              "them across layers)"))
    theorem = next(i for i, t in enumerate(text) if t.startswith("Sanity check of the theorem (it holds by "
                                                                 "construction"))
    assert 0 < spot < theorem
    assert "below γ_W γ_φ = 1, all 6 runs were observed vanishing" in text[theorem]
    assert "0 at initialisation" in text[theorem]
    # a spec's runs span settings that change the answer: a count, no interval that would pretend one population
    assert any("long_range: 2 of 6 runs learned, 0 solved, 4 beat chance" in t for t in text)
    assert "no interval is given for a pool" in text[0]
    assert any("at T = 80, 0 of 1 run learned it (0 solved it) (too few runs per T for a boundary)" in t
               for t in text)  # one seed: no "longest T at which every run learned"
    assert any(re.search(r"clipped at [\d.]+, .* learned .*\(the best of its \d+ thresholds, chosen on these same runs\)",
                         t) for t in text)
    assert any(t.startswith("Of 32 runs, 30 ended ok") for t in text)  # said only because two runs did not
    assert any(t.startswith("In clipping, 1 of 2 unclipped runs blew up (1 diverged, 0 went unstable; 95% CI")
               and "with the global norm clipped at 0.1, 0 of 1 run learned" in t
               and "with each entry clipped at 0.1, 0 of 1 run learned" in t for t in text)


def finding_texts(metrics: dict) -> list[str]:
    section = findings_section(metrics, list(metrics["specs"]), {"regimes", "bound"})
    return ["".join(plain_text(p, metrics) for p in item) for item in section.blocks[0].items]


def theorem_text(metrics: dict) -> str:
    """The findings' sentence on the theorem, without its sanity-check preamble."""
    text = next(t for t in finding_texts(metrics) if t.startswith("Sanity check of the theorem"))
    return text[text.index("): ") + 3:]


def test_the_findings_wording_follows_the_numbers(built):
    metrics = json.loads(json.dumps(built["metrics"]))
    regimes = theorem_text(metrics)
    assert "as the theorem requires" in regimes and "none of the 21 runs grew" in regimes
    metrics["regimes"]["init"]["contradictions"] = 2
    metrics["regimes"]["init"]["n_sufficient_observed_vanishing"] = 5
    regimes = theorem_text(metrics)
    assert "as the theorem requires" not in regimes and "grew" not in regimes
    assert regimes.startswith("below γ_W γ_φ = 1, 5 of 6 runs were observed vanishing")
    assert "contradictions: 2 at initialisation" in regimes and "contradicting runs" in regimes
    metrics["regimes"]["init"]["n_sufficient_observed_vanishing"] = 0
    assert theorem_text(metrics).startswith("below γ_W γ_φ = 1, none of the 6 runs were observed vanishing")

    spot = next(t for t in finding_texts(metrics) if "spot check" in t)
    assert "found 2 violations" in spot and "holds by construction" not in spot
    metrics["violations"] = 0
    spot = next(t for t in finding_texts(metrics) if "spot check" in t)
    assert "the 4,070-pair bound check holds by construction (0 violations)" in spot

    metrics["learning"]["clipping"]["learned"] |= {"k": 0, "rate": 0.0}
    assert any("clipping: none of the 6 runs learned, " in t for t in finding_texts(metrics))
    metrics["specs"]["clipping"] |= {"n_runs": 6, "n_seeds": 6}  # seeds of one setting: a rate, with its interval
    assert any("clipping: none of the 6 runs learned (95% CI " in t for t in finding_texts(metrics))

    del metrics["tightness"]["median_gap_global_decades"]
    metrics["outcomes"] |= {"ok": 32, "diverged": 0, "failed": 0}
    texts = finding_texts(metrics)
    assert not any("decades above" in t for t in texts) and not any(t.startswith("Of 32 runs") for t in texts)
    theorem = next(i for i in findings_section(metrics, list(metrics["specs"]), {"regimes"}).blocks[0].items
                   if i[0].startswith("Sanity check of the theorem"))
    links = [p for p in theorem if isinstance(p, SectionLink)]
    assert [link.anchor for link in links] == ["regimes"]  # and no link to a section the report lacks
    assert not any(isinstance(p, SectionLink) for i in findings_section(metrics, ["long_range"], set()).blocks[0].items
                   for p in i)


def test_html_has_no_external_references(built):
    html = built["html"]
    assert not re.search(r"""(src|href|action|poster|data)\s*=\s*["']?\s*(https?:|//|ftp:)""", html, re.I)
    assert not re.search(r"@import|<script|<link|<iframe|url\(\s*['\"]?(?!data:)", html, re.I)
    for src in built["page"].images:
        assert src.startswith("data:image/png;base64,")


def test_every_figure_is_embedded_as_a_decodable_png(built):
    images = built["page"].images
    pngs = sorted((built["out"] / "figures").glob("*.png"))
    assert len(pngs) >= 10 and len(images) == len(pngs)
    for src in images:
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True))) as im:
            assert im.format == "PNG"
            im.verify()


def test_planted_violation_is_counted_and_listed_with_run_and_pair(built):
    planted, page = built["planted"], built["page"]
    assert built["metrics"]["violations"] == 2 and built["metrics"]["specs"]["weight_norms"]["violations"] == 2
    rows = [r for r in page.rows if r[0] == "bound" and planted.run_id in r]
    assert len(rows) == 2  # above the product bound, hence above the step-norm bound too
    assert {tuple(r[2:8]) for r in rows} == {(planted.run_id[:8], "weight_norms", "init", "0", "6", "3")}
    # at full precision, each with the bound it broke
    assert {r[8].split(" by ")[0].split(" > ")[1].rsplit(" ", 1)[0] for r in rows} == {"product bound",
                                                                                       "step-norm bound"}
    assert all(r[8].startswith("measured log-norm ") and "rounding allowed" in r[8] for r in rows)


def test_missing_artifact_section_names_run_and_file(built):
    lost, page = built["lost"], built["page"]
    assert page.sections["missing"] == "Missing artifacts"
    rows = [r for r in page.rows if r[0] == "missing" and lost.run_id in r]
    assert len(rows) == 1 and rows[0][-2].endswith("probe/signal.parquet") and rows[0][-1] == "missing"
    assert built["metrics"]["n_missing_artifacts"] == 1


def test_failed_runs_are_listed_with_their_error_not_as_missing(built):
    failed = next(r for r in built["runs"] if r.outcome == "failed")
    rows = [r for r in built["page"].rows if r[0] == "failed" and failed.run_id in r]
    assert len(rows) == 1 and rows[0][-1] == "FloatingPointError: planted failure"
    assert not [r for r in built["page"].rows if r[0] == "missing" and failed.run_id in r]


def test_each_section_counts_its_mlflow_runs_and_the_appendix_lists_each_once(built):
    page, runs = built["page"], built["runs"]
    for spec in ("weight_norms", "activations", "depth", "clipping", "long_range", "text", "mystery"):
        n = len({r.run_id for r in runs if r.spec == spec})
        note = page.paragraphs[f"spec-{spec}"][-1]
        listed = "listed" if n > 1 else "its ID is"
        assert note == f"MLflow runs behind this section: {n} ({listed} in the appendix).", spec  # no block of IDs
    assert page.paragraphs["summary"][-1].startswith(f"MLflow runs behind this section: {len(runs)} ")
    appendix = [r[1] for r in page.rows if r[0] == "appendix" and r[1] != "run ID"]
    assert sorted(appendix) == sorted(r.run_id for r in runs)  # every run, once


def test_text_samples_are_in_the_report(built):
    # the section shows each arm's last sample (analysis.json keeps them all): the fixture's run samples at 0, 50, 99
    assert "sample at 99: the quick brown" in built["html"]
    assert "vanilla RNN (seed 0): its last sample, at iteration 99" in built["html"]


def test_pdf_is_complete_and_has_every_section(built):
    pdf = (built["out"] / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    titles = [t for t in built["page"].sections.values()]
    assert "Bound check" in titles and "Missing artifacts" in titles and len(titles) >= 12
    for title in titles:  # outline entries: ASCII titles as literal strings, others as UTF-16BE hex
        literal = f"/Title ({title})".encode("latin-1", "ignore")
        hexed = f"/Title <{(codecs.BOM_UTF16_BE + title.encode('utf-16-be')).hex()}>".encode()
        assert literal in pdf or hexed in pdf, title
    figures = len(list((built["out"] / "figures").glob("*.png")))
    assert pdf.count(b"/Subtype /Image") >= figures


def test_rendering_the_same_analysis_again_gives_the_same_bytes(built, tmp_path, monkeypatch):
    first = {name: (built["out"] / name).read_bytes() for name in ("report.html", "report.pdf")}
    assert invoke("report", "--analysis-dir", built["out"], "--out", tmp_path).exit_code == 0
    assert {name: (tmp_path / name).read_bytes() for name in first} == first  # no wall-clock date in the PDF
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert invoke("report", "--analysis-dir", built["out"], "--out", tmp_path).exit_code == 0
    assert b"D:20231114221320" in (tmp_path / "report.pdf").read_bytes()  # its CreationDate, as the variable says


@pytest.mark.parametrize("epoch", ["-1", "1.5", "yesterday", "253402300800"])
def test_a_bad_source_date_epoch_is_a_one_line_error_and_writes_nothing(built, tmp_path, monkeypatch, epoch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    result = invoke("report", "--analysis-dir", built["out"], "--out", tmp_path / "out")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [f"Error: SOURCE_DATE_EPOCH={epoch}: not a date; expected whole seconds since 1970 "
                     "(e.g. 1700000000), or unset it to date the PDF by the analysis"], result.output
    assert not (tmp_path / "out").exists()


def test_report_without_analysis_is_a_one_line_error(tmp_path):
    result = invoke("report", "--analysis-dir", tmp_path / "nothing", "--out", tmp_path / "reports")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "analysis.json: missing" in lines[0] and "rnngrad analyze" in lines[0]
    assert not (tmp_path / "reports").exists()


def test_report_when_no_run_has_a_probe(tmp_path):
    results, out = tmp_path / "results", tmp_path / "reports"
    runs = fx.write_study(results, [fx.make_run("depth", outcome="failed", seed=s) for s in range(2)]
                          + [fx.make_run("clipping", seed=5)])
    shutil.rmtree(fx.run_folder(results, runs[2]))
    with warnings.catch_warnings():  # an exploding run's losses (1e300) must not overflow a figure's axes
        warnings.simplefilter("error", RuntimeWarning)
        assert invoke("analyze", "--results-dir", results, "--out", out).exit_code == 0
        result = invoke("report", "--analysis-dir", out, "--out", out)
    assert result.exit_code == 0, result.output
    page = Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert {"failed", "missing", "spec-depth", "spec-clipping"} <= set(page.sections)
    assert json.loads((out / "metrics.json").read_text())["n_probes"] == 0


def test_report_of_a_single_unknown_spec(tmp_path):
    results, out = tmp_path / "results", tmp_path / "reports"
    runs = fx.write_study(results, [r for r in fx.standard_runs() if r.spec == "mystery"])
    with warnings.catch_warnings():  # an exploding run's losses (1e300) must not overflow a figure's axes
        warnings.simplefilter("error", RuntimeWarning)
        assert invoke("analyze", "--results-dir", results, "--out", out).exit_code == 0
        result = invoke("report", "--analysis-dir", out, "--out", out)
    assert result.exit_code == 0, result.output
    page = Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert page.sections["spec-mystery"] == "Sweep: mystery" and "missing" not in page.sections
    assert {r.run_id for r in runs} <= page.runs_by_section["spec-mystery"]


def test_every_section_of_a_spec_opens_with_its_description(built):
    page = built["page"]
    for spec in ("weight_norms", "activations", "depth", "clipping", "long_range", "text", "mystery"):
        assert page.paragraphs[f"spec-{spec}"][0] == fx.description(spec), spec


def test_the_unknown_spec_has_its_outcome_table_and_decay_figure(built):
    page, runs = built["page"], [r for r in built["runs"] if r.spec == "mystery"]
    rows = [r for r in page.rows if r[0] == "spec-mystery"]
    heads = [r for r in rows if r[1] == "run"]
    assert heads[0][1:] == ["run", "activation", "hidden", "init", "outcome", "learning", "val loss", "accuracy",
                            "chance loss", "chance accuracy"]
    table = {r[1]: r[3:] for r in rows if len(r) > 3 and r[1] in {run.run_id for run in runs}}  # by full run ID
    assert set(table) == {r.run_id for r in runs}
    assert [table[r.run_id][3] for r in runs] == ["ok", "ok", "failed"]
    captions = page.images_by_section["spec-mystery"]
    assert len(captions) == 1 and captions[0].startswith("Spec mystery: mean log10 ‖∂h_t/∂h_k‖")
    assert (built["out"] / "figures" / "decay-mystery.png").is_file()


def test_a_new_spec_is_analysed_and_rendered_with_its_description_table_and_figure(tmp_path):
    """A spec the report has never heard of, as `rnngrad sweep experiments/<new>.yaml` would leave it: every run
    appears in its outcome table with its grid values, and its decay figure is in its section."""
    results, out = tmp_path / "results", tmp_path / "reports"
    runs = fx.write_study(results, [fx.make_run("saturation_probe", activation="sigmoid", gamma_w=g, seed=s)
                                    for g in (1.0, 4.0, 16.0) for s in (0, 1)]
                          + [fx.make_run("saturation_probe", outcome="diverged", activation="sigmoid", gamma_w=64.0)])
    with warnings.catch_warnings():  # an exploding run's losses (1e300) must not overflow a figure's axes
        warnings.simplefilter("error", RuntimeWarning)
        assert invoke("analyze", "--results-dir", results, "--out", out).exit_code == 0
        result = invoke("report", "--analysis-dir", out, "--out", out)
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    section = "spec-saturation_probe"
    assert page.sections[section] == "Sweep: saturation_probe"
    assert page.paragraphs[section][0] == fx.description("saturation_probe")
    assert page.paragraphs[section][1].startswith("Sweep spec 'saturation_probe'. 7 runs over 2 seeds (6 ok, "
                                                  "0 unstable, 1 diverged, 0 failed)")  # seeds 0 and 1
    assert "learned: 0 of 7 runs on a scored task (95% CI 0–0.36); solved 0, beat chance 6" in \
        page.paragraphs[section][1]
    rows = {r[1]: r[2:] for r in page.rows if r[0] == section and len(r) > 2 and r[1] in {x.run_id for x in runs}}
    assert [rows[r.run_id][:4] for r in runs] == [
        [r.run_id[:8], f"{r.config['gamma_w']:g}", str(r.config["seed"]), r.outcome] for r in runs]
    ok = runs[0]
    shown = formatting.format_value  # a measured value at the report's 3 significant digits
    assert rows[ok.run_id][4:] == ["beat chance", shown(fx.validation_loss(ok.config)),
                                   shown(fx.task_success(ok.config)), shown(fx.CHANCE_LOSS['adding']),
                                   shown(fx.CHANCE_ACCURACY['adding'])]
    assert rows[runs[-1].run_id][4] == "diverged"
    captions = page.images_by_section[section]
    assert len(captions) == 1 and captions[0].startswith("Spec saturation_probe: mean log10 ‖∂h_t/∂h_k‖")
    figure = out / "figures" / "decay-saturation_probe.png"
    with Image.open(figure) as im:
        assert im.format == "PNG"
    assert {r.run_id for r in runs} <= page.runs_by_section[section]
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.count(b"/Subtype /Image") >= len(list((out / "figures").glob("*.png")))

    # the spec gone from the results, its figure and table go too
    (results / "saturation_probe.parquet").unlink()
    fx.write_study(results, [fx.make_run("depth", seed=9)])
    assert invoke("analyze", "--results-dir", results, "--out", out).exit_code == 0
    assert invoke("report", "--analysis-dir", out, "--out", out).exit_code == 0
    assert not figure.exists() and not (out / "tables" / "outcomes.csv").exists()


def test_the_run_and_the_report_draw_the_same_heatmap_matrix():
    """The report's heatmaps come from the analysis's tidy rows; rebuilt, they are the probe's matrix."""
    import numpy as np

    from pipeline.report import figures, reductions
    from pipeline.run import probe

    T = 6
    logmat = np.full((T + 1, T + 1), np.nan)
    t, k = np.tril_indices(T + 1, -1)
    logmat[t, k] = -0.3 * (t - k) + 0.01 * t
    logmat[5, 2], logmat[6, 0] = -np.inf, np.nan  # an exact zero and an overflow: both drawn blank
    jac = probe.jacobian_table("init", 0, logmat, logmat + 1, logmat + 2)
    np.testing.assert_array_equal(figures.pair_matrix(reductions.heatmap_rows(jac)), logmat / probe.LN10)


def test_a_heatmap_panel_without_finite_values_says_so():
    import numpy as np
    from matplotlib.figure import Figure

    from pipeline.run import probe

    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    probe.draw_heatmap_panel(ax1, np.full((4, 4), np.nan), "init: layer 0")
    probe.draw_heatmap_panel(ax2, np.tril(np.ones((4, 4)), -1), "final: layer 0", colorbar=False)
    assert ax1.get_title() == "init: layer 0 (no finite values)" and ax2.get_title() == "final: layer 0"
    assert len(fig.axes) == 3  # one colour bar


def test_importing_run_imports_neither_matplotlib_nor_seaborn():
    import subprocess
    import sys

    code = ("import sys, pipeline.run.runner, pipeline.run.probe; "
            "print(sorted(m for m in ('matplotlib', 'seaborn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_clip_curves_mark_the_loss_ceiling_and_each_divergence():
    import pandas as pd

    from pipeline.report import figures

    curves = pd.DataFrame({
        "iter": [1, 2, 3, 4, 1, 2, 3, 4],
        "loss": [1.0, 1e30, 1e300, float("nan"), 1.0, 0.5, 0.4, 0.3],  # run a explodes, then diverges at 4
        "run_id": ["a"] * 4 + ["b"] * 4,
        "clip_mode": ["none"] * 4 + ["global"] * 4,
        "clip_threshold": [None] * 4 + [1.0] * 4,
    })
    runs = pd.DataFrame({"run_id": ["a", "b"], "outcome": ["diverged", "ok"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fig, caption, ids = figures.draw_clip_curves({"clip_curves": curves, "runs": runs})
        figures.png_bytes(fig)
    none, clipped = fig.axes[:2]

    def crosses(ax):
        return [tuple(zip(*line.get_data())) for line in ax.lines if line.get_marker() == "x" and len(line.get_xdata())]

    assert crosses(none) == [((3, figures.LOSS_CEILING),)]  # the last finite point, drawn at the ceiling
    assert crosses(clipped) == []  # run b finished
    assert [tuple(line.get_ydata()) for line in none.lines if line.get_linestyle() == ":"] == [(1e12, 1e12)]
    assert not [line for line in clipped.lines if line.get_linestyle() == ":"]  # nothing reached the ceiling
    assert none.get_legend() is None and clipped.get_legend() is not None
    assert "red x marks where a run diverged" in caption and sorted(ids) == ["a", "b"]


def test_the_loss_ceilings_label_covers_no_curve_or_marker():
    """The referee's clipping figure: "≥ 1e+12" sat at the left under the ceiling, over the exploding run's rise."""
    import numpy as np
    import pandas as pd

    from pipeline.report import figures

    it = np.arange(1, 201)
    rising = np.where(it < 10, 10.0 ** (2.0 * np.minimum(it, 10)), 1e300)  # explodes within ten steps, then runs along the ceiling
    curves = pd.concat([
        pd.DataFrame({"iter": it, "loss": np.where(it > end, np.nan, rising), "run_id": rid, "clip_mode": "none",
                      "clip_threshold": None}) for rid, end in (("a", 125), ("b", 130), ("c", 200))]
        + [pd.DataFrame({"iter": it, "loss": 0.1 + 0.0 * it, "run_id": "d", "clip_mode": "global",
                         "clip_threshold": 1.0})], ignore_index=True)
    runs = pd.DataFrame({"run_id": list("abcd"), "outcome": ["diverged"] * 3 + ["ok"]})
    fig, _, _ = figures.draw_clip_curves({"clip_curves": curves, "runs": runs})
    figures.png_bytes(fig)
    none = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in none.texts if t.get_text().startswith("≥")]
    assert len(labels) == 1
    box = labels[0].get_window_extent(renderer)
    points = []  # every curve sampled each pixel, and each marker's extent
    for line in none.lines:
        if line.get_linestyle() == ":":  # the ceiling itself: the label names it
            continue
        xy = none.transData.transform(line.get_xydata())
        xy = xy[np.isfinite(xy).all(axis=1)]
        if line.get_linestyle() not in ("None", "none") and len(xy) > 1:
            xy = np.concatenate([np.linspace(a, b, 50) for a, b in zip(xy[:-1], xy[1:])])
        if line.get_marker() not in (None, "None", "none", ""):
            r = line.get_markersize() * fig.dpi / 72 / 2
            xy = np.concatenate([xy + (dx, dy) for dx in (-r, 0, r) for dy in (-r, 0, r)])
        points.append(xy)
    points = np.concatenate(points)
    inside = (points[:, 0] >= box.x0) & (points[:, 0] <= box.x1) & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)
    assert not inside.any(), points[inside][:5]
    axes_box = none.get_window_extent(renderer)
    assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1  # within its panel, not over the next one


def test_clip_final_is_on_log_axes_and_shows_what_diverged():
    import pandas as pd

    from pipeline.report import figures

    clip = pd.DataFrame({
        "clip_mode": ["global", "global", "global", "none"],
        "clip_threshold": [0.1, 10.0, 100.0, None],
        "final_loss": [0.05, 40.0, float("nan"), float("nan")],  # at 100 no run was ok, nor was the unclipped
        "n_diverged": [0, 0, 1, 1], "n_unstable": [0, 0, 1, 0],
        "n_runs": [1, 1, 2, 1], "run_ids": ["a", "b", "c;e", "d"],
    })
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fig, caption, ids = figures.draw_clip_final({"clip": clip})
        figures.png_bytes(fig)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    crosses = [list(line.get_xdata()) for line in ax.lines if line.get_marker() == "x" and len(line.get_xdata())]
    assert crosses == [[100.0]]  # the threshold with no ok run, along the top
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["global", "no clipping: diverged 1 of 1, unstable 0 of 1 (no loss to draw)"]
    words = ax.get_legend().legend_handles[1]  # words alone: the legend shows no mark the panel does not draw
    assert words.get_marker() in ("None", "none", None, "") and words.get_linestyle() in ("None", "none")
    assert sorted(ids) == ["a", "b", "c", "d", "e"]


def test_log_ticks_skip_values_too_close_to_label_apart():
    from matplotlib.figure import Figure

    from pipeline.report import figures

    ax = Figure().subplots()
    ax.set_xscale("log")
    figures.plain_log_ticks(ax.xaxis, [2.0, 1.0, 1.1, 1.1658, 1.2, 0.5, 4.0])
    assert list(ax.xaxis.get_major_locator().locs) == [0.5, 1.0, 1.1658, 2.0, 4.0]
    assert ax.xaxis.get_major_formatter()(1.1658, 0) == "1.17"


def test_pdf_bullets_hang_every_line_of_an_item_at_its_text_not_under_the_bullet():
    long_item, short_item = ["word " * 80], ["short"]
    pdf = render_pdf([Section("s", "Title", [Bullets([long_item, short_item])])], {},
                     datetime(2024, 1, 1, tzinfo=timezone.utc), compress=False)
    starts = [(float(x), float(y)) for x, y in re.findall(rb"BT ([0-9.]+) ([0-9.]+) Td", pdf)]
    body = [(x, y) for x, y in starts if y > 100]  # the footer sits lower
    margin, bullet_x, text_x = sorted({x for x, _ in body})  # headings at the margin, then bullets, then text
    at_bullet = [y for x, y in body if x == bullet_x]
    at_text = [y for x, y in body if x == text_x]
    assert text_x - bullet_x > 2 * 72 / 25.4  # at least 2 mm between a bullet and its text
    assert len(at_bullet) == 2  # one bullet per item, and no wrapped line starts under it
    long_lines = [y for y in at_text if y > at_bullet[1]]
    assert len(long_lines) >= 3 and max(long_lines) == at_bullet[0]  # wrapped; the first line beside its bullet
    assert at_bullet[1] in at_text  # the short item beside its bullet


def test_the_summary_counts_each_spec_in_two_tables_and_links_it_to_its_section(built):
    page, metrics = built["page"], built["metrics"]
    ended = [r for r in page.rows if r[0] == "summary" and len(r) == 10 and r[1] in metrics["specs"]]
    learning = [r for r in page.rows if r[0] == "summary" and len(r) == 8 and r[1] in metrics["specs"]]
    assert {r[1] for r in ended} == {r[1] for r in learning} == set(metrics["specs"])
    for r in ended:  # runs, ok, unstable, diverged, failed as metrics.json counts them
        s = metrics["specs"][r[1]]
        assert [parse_metric(x) for x in r[2:7]] == [s["n_runs"], *(s["outcomes"][o] for o in
                                                                   ("ok", "unstable", "diverged", "failed"))]
    for r in learning:
        counts = metrics["learning"][r[1]]
        assert [parse_metric(x) for x in (r[2], r[3], r[4])] == [
            counts["learned"]["n"], counts["n_beat_chance"], counts["learned"]["k"]]
        text_only = counts["n_sequence_runs"] == 0 and counts["learned"]["n"]  # solved does not apply to a stream
        assert r[5] == "n/a (text)" if text_only else parse_metric(r[5]) == counts["n_solved"]
    summary = built["html"][built["html"].index('<section id="summary">'):]
    summary = summary[:summary.index("</section>")]
    assert '<a href="#spec-clipping">clipping</a>' in summary
    # a spec's counts pool settings that change the answer: no interval column pretends they sample one population
    assert learning and not re.findall(r"<th[^>]*>[^<]*CI[^<]*</th>", summary)


@pytest.mark.parametrize("room_mm, caption_page", [(10, 2), (120, 1)])
def test_a_pdf_table_without_room_for_a_few_rows_starts_on_the_next_page_with_its_caption(monkeypatch, room_mm,
                                                                                         caption_page):
    from pipeline.report import pdf as pdf_module
    doc = pdf_module.new_pdf(False, datetime(2024, 1, 1, tzinfo=timezone.utc))
    doc.set_y(doc.h - doc.b_margin - room_mm)
    captions, write = [], pdf_module.write_paragraph
    monkeypatch.setattr(pdf_module, "write_paragraph",
                        lambda pdf, text, *a, **k: (captions.append((text, pdf.page)), write(pdf, text, *a, **k)))
    pdf_module.write_table(doc, Table(["a", "b"], [["1", "2"]] * 6, "the caption"), {})
    assert captions == [("the caption", caption_page)]
def test_prediction_section_states_the_rates_and_shows_its_figures(built):
    page, out = built["page"], built["out"]
    assert page.sections["prediction"] == "Prediction versus measurement"
    for name in ("prediction", "gaps", "spectrum"):
        assert (out / "figures" / f"{name}.png").is_file()
    text = re.sub(r"<[^>]+>", "", built["html"])
    section = text[text.index("\nPrediction versus measurement\n"):]
    rate = built["metrics"]["rate"]
    assert f"{rate['median_abs_slope_minus_meanfield_orthogonal']:.4g} for orthogonal init" in section
    assert (f"{rate['median_abs_slope_minus_meanfield_identity']:.4g} for identity init (the IRNN) "
            f"(n = {rate['n_meanfield_identity']})") in section
    assert "An identity W_hh breaks the assumption outright" in section
    assert "global → product bound" in section and "step-norm bound → measured" in section


def test_gradient_spike_figure_draws_the_spikiest_run_of_each_clip_mode():
    import numpy as np
    import pandas as pd

    from pipeline.report import figures, prediction

    runs = pd.DataFrame({"run_id": ["a" * 32, "b" * 32, "c" * 32], "clip_mode": ["none", "none", "global"],
                         "clip_threshold": [1.0, 1.0, 5.0]})
    it = np.arange(1, 101)
    flat, spiky = np.ones(100), np.where(it % 30 == 0, 50.0, 1.0)
    histories = {"a" * 32: pd.DataFrame({"iter": it, "grad_norm": flat}),
                 "b" * 32: pd.DataFrame({"iter": it, "grad_norm": spiky}),
                 "c" * 32: pd.DataFrame({"iter": it, "grad_norm": 2 * spiky})}
    ids = prediction.spike_runs(runs, histories)
    assert set(ids) == {"b" * 32, "c" * 32}  # the flat unclipped run is not the spikiest of its mode
    rows = prediction.spike_rows(runs, histories, ids)
    assert len(rows) == 200 and set(rows["clip_mode"]) == {"none", "global"}
    by_k = pd.DataFrame({"run_id": "b" * 32, "iter": np.repeat([0, 50, 100], 11), "k": np.tile(np.arange(11), 3),
                         "log10_dE_dh": -0.1 * np.tile(np.arange(11)[::-1], 3)})
    fig, caption, drawn = figures.draw_gradients({"gradient_spikes": rows, "gradient_by_k": by_k})
    figures.png_bytes(fig)
    assert set(drawn) == {"b" * 32, "c" * 32} and "before clipping" in caption


def test_pdf_links_in_bullets_and_paragraphs_are_clickable_and_wrap_at_the_bullets_text():
    url = "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    item = ["rnngrad/weight_norms: " + "long words " * 30, Link(url, url)]
    pdf = render_pdf([Section("s", "Title", [Paragraph(["See ", Link("the UI", url + "&p=1"), "."]),
                                             Bullets([item, ["plain"]])])], {},
                     datetime(2024, 1, 1, tzinfo=timezone.utc), compress=False)
    assert pdf.count(f"/URI ({url})".encode()) >= 1 and f"/URI ({url}&p=1)".encode() in pdf
    starts = [(float(x), float(y)) for x, y in re.findall(rb"BT ([0-9.]+) ([0-9.]+) Td", pdf)]
    first_x: dict[float, float] = {}
    for x, y in starts:
        if y > 100:  # the footer sits lower
            first_x[y] = min(x, first_x.get(y, x))
    margin, bullet_x, text_x = sorted(set(first_x.values()))  # each line starts at one of three places
    wrapped = [y for y, x in first_x.items() if x == text_x]
    assert len(wrapped) >= 2 and text_x - bullet_x > 2 * 72 / 25.4  # the long item wraps under its own text


def test_every_table_heading_says_what_its_column_holds_on_its_own(built):
    """The referee's clipping table: "learned 95% CI low" then "high", and "contradictions at init" then "after
    training": a heading that leans on its left neighbour is read as a column of its own."""
    headings = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", built["html"], re.S)]
    assert "learned 95% CI high" in headings and "contradictions after training" in headings
    leaning = [h for h in headings if h in ("low", "high") or h.startswith(("after ", "high", "low"))]
    assert not leaning, leaning
