"""The report as a reader sees it: numbers at the precision their n allows, terms defined before their first use,
citations that point to the references, PDF tables that never cut a word, and no path of the machine that wrote it.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

import fixtures_runs as fx
from pipeline.report import analysis, figures, formatting, html as report_html, pdf as report_pdf
from pipeline.report.document import Cite, MlflowLinks, Paragraph, Section, Table, plain_text
from pipeline.report.reductions import wilson_interval
from pipeline.report.references import REFERENCES
from pipeline.report.terms import cited_keys, inline_parts
from pipeline.stages.report import _portable_ui_command
from pipeline.tracking.connection import Store


# ---- the formatting rules -------------------------------------------------------------------------------------


def test_a_rate_is_its_count_with_its_interval_at_two_significant_digits():
    low, high = wilson_interval(2, 3)
    assert (round(low, 4), round(high, 4)) == (0.2077, 0.9385)
    assert formatting.format_count_rate(2, 3, low, high) == "2 of 3 (95% CI 0.2–0.94)"  # never 0.6667 (0.2077–…)
    assert formatting.format_count_rate(0, 0, math.nan, math.nan) == "0 of 0"
    for k, n in [(0, 5), (5, 5), (1, 3), (7, 40), (399, 400)]:
        low, high = wilson_interval(k, n)
        shown_low = float(formatting.format_share(low, "down"))
        shown_high = float(formatting.format_share(high, "up"))
        assert shown_low <= low and shown_high >= high  # rounded outwards: the printed interval holds the true one
        for shown, value in ((shown_low, low), (shown_high, high)):
            digits = re.sub(r"^0\.0*", "", formatting.format_share(value, "nearest").lstrip("-"))
            assert len(digits.replace(".", "")) <= 2 and abs(shown - value) <= 10 ** (math.floor(
                math.log10(value)) - 1) if value else shown == 0


def test_rounding_noise_of_a_log_rate_is_shown_as_0():
    assert formatting.format_styled(4.441e-16, "log_rate") == "0"
    assert formatting.format_styled(-2e-12, "log_rate") == "0"
    assert formatting.format_styled(0.0693147, "log_rate") == "0.0693"  # beyond the floor: a value's 3 digits
    assert formatting.format_styled(4.441e-16, "value") == "4.44e-16"  # a measured small value is not 0
    assert formatting.style_of("log_rate_init") == "log_rate" and formatting.style_of("rate.n_runs") == "value"
    assert formatting.style_of("learning.text.learned.low") == "share_low"
    assert formatting.style_of("meanfield_rate") == "value"  # nats per step, not a share
    with pytest.raises(ValueError, match="unknown number style"):
        formatting.format_styled(1.0, "percent")


def test_shown_within_accepts_the_rounding_a_style_allows_and_nothing_more():
    assert formatting.shown_within("0.2", 0.2077, "share_low") and not formatting.shown_within("0.21", 0.2077,
                                                                                             "share_low")
    assert formatting.shown_within("0.94", 0.9385, "share_high") and not formatting.shown_within("0.93", 0.9385,
                                                                                               "share_high")
    assert formatting.shown_within("0", 4.441e-16, "log_rate") and not formatting.shown_within("0", 0.01, "log_rate")
    assert formatting.shown_within("1,234", 1234, "value") and not formatting.shown_within("1,235", 1234, "value")


def test_a_measured_value_shows_3_significant_digits_and_a_log10_2_decimals():
    """The referee's "10^-5.357" for a median of 3 runs: the report shows the precision a few runs can carry."""
    assert [formatting.format_value(x) for x in (0.2289, -0.05977, 1.805, 2.362e-07, 6.935e102, 8502.0, 1123.0, 0.0,
                                                 3.0, 12, 8502.4, 1123.4)] == [
        "0.229", "-0.0598", "1.8", "2.36e-07", "6.93e+102", "8,502", "1,123", "0", "3", "12", "8,500", "1,120"]
    assert [formatting.format_label(x) for x in (6.935e102, 2.362e-07, 1e-12, 0.2289, 8502.0, None)] == [
        "6.93×10¹⁰²", "2.36×10⁻⁷", "1×10⁻¹²", "0.229", "8,502", "n/a"]  # a figure's: the same digits, as axes tick
    assert [formatting.format_decades(x) for x in (-5.357, 4.058, 1.805, 0.01974, 0.002565, -0.05977, 11.27, 0)] == [
        "-5.36", "4.06", "1.8", "0.02", "0.003", "-0.06", "11.3", "0"]
    for key in ("specs.depth.headline.sigmoid.signal_input_minus_top", "specs.depth.headline.tanh.chain_bound",
                "specs.depth.headline.tanh.log10_paths", "tightness.median_gap_global_decades",
                "gap_decades.stepnorm_to_measured", "gap_rate.depth.decades_at_longest_lag"):
        assert formatting.style_of(key) == "decades", key  # one rule by name, for the HTML and the PDF alike
    assert formatting.format_styled(-5.357, formatting.style_of("specs.depth.headline.sigmoid.wgrad_input_minus_top")
                                    ) == "-5.36"
    assert formatting.format_styled(0.06693, formatting.style_of("rate.median_abs_slope_minus_meanfield")) == "0.0669"
    assert formatting.style_of("lr") == "config" and formatting.format_styled(0.2955, "config") == "0.2955"  # a
    # setting prints as the config has it, as the arm's label does ("unclipped, lr 0.2955")
    assert formatting.shown_within("0.229", 0.2289, "value") and not formatting.shown_within("0.2289", 0.2289, "value")
    assert formatting.shown_within("-5.36", -5.357, "decades") and not formatting.shown_within("-5.357", -5.357,
                                                                                               "decades")


OVER_PRECISE = re.compile(r"(?<![\w.:/=^-])(-?)(\d{1,3}\.\d+)(?![\d.])")


def over_precise(text: str) -> list[str]:
    """Decimal numbers below 1,000 with more than 3 significant digits (run IDs, arXiv numbers and settings written
    as key=value are not numbers of the report's)."""
    out = []
    for m in OVER_PRECISE.finditer(text):
        digits = m.group(2).replace(".", "").lstrip("0")
        if len(digits) > 3:
            out.append(text[max(0, m.start() - 30):m.end()])
    return out


# ---- a built report ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    fx.write_study(root / "results", fx.standard_runs())
    done = subprocess.run(["rnngrad", "analyze", "--results-dir", "results", "--out", "reports"], cwd=root, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    metrics, report, tables = analysis.read_analysis(root / "reports")
    drawn = figures.draw_figures(tables, root / "reports" / "figures")
    here = Path.cwd()
    os.chdir(root)  # the report stage runs in the project folder, which holds the store
    try:
        ui = _portable_ui_command(Store(f"sqlite:///{root}/mlflow.db", None))
    finally:
        os.chdir(here)
    links = MlflowLinks(ui, {}, {r: f"http://127.0.0.1:5000/#/experiments/1/runs/{r}" for r in tables["runs"]["run_id"]})
    sections = report_html.build_sections(metrics, report, tables, drawn, links)
    return {"root": root, "metrics": metrics, "sections": sections}


def test_no_number_in_the_pdf_or_html_claims_more_than_3_significant_digits(study, tmp_path):
    import shutil
    sections, metrics = study["sections"], study["metrics"]
    html_text = re.sub(r"<img[^>]*>", "", report_html.render_html(sections, metrics))  # no base64 PNGs
    html_text = re.sub(r"<[^>]+>", " ", html_text)
    assert not over_precise(html_text), over_precise(html_text)[:5]
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(report_pdf.render_pdf(sections, metrics, datetime(2026, 1, 1, tzinfo=timezone.utc)))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Findings" in text and not over_precise(text), over_precise(text)[:5]


def words_of(text: str) -> list[str]:
    return text.split()


def test_no_table_of_the_pdf_cuts_a_word(study):
    doc = report_pdf.new_pdf(False, datetime(2026, 1, 1, tzinfo=timezone.utc))
    tables = [b for s in study["sections"] for b in s.blocks if isinstance(b, Table)]
    assert len(tables) >= 8
    for table in tables:
        parts = report_pdf.table_layout(doc, table, study["metrics"])
        assert sorted({i for p in parts for i in p.columns}) == list(range(len(table.columns)))
        for part in parts:
            room = report_pdf.LANDSCAPE_ROOM if part.landscape else report_pdf.PORTRAIT_ROOM
            assert sum(part.widths) <= room + 1e-6, table.columns
            doc.set_font("sans", "B", part.size)
            for i, width in zip(part.columns, part.widths):
                texts = [table.columns[i]] + [plain_text(r[i], study["metrics"]) for r in table.rows]
                longest = max(doc.get_string_width(w) for t in texts for w in words_of(t))
                assert width >= longest + 2 * report_pdf.CELL_PAD, (table.columns[i], width, longest)


def test_a_wide_table_turns_the_page_and_a_wider_one_splits_its_columns_repeating_the_first():
    doc = report_pdf.new_pdf(False, datetime(2026, 1, 1, tzinfo=timezone.utc))
    run_id, cell = "0123456789abcdef" * 2, "activation=leaky_relu,gamma_w=0.95,init=orthogonal,seed=2"
    narrow = Table(["run ID", "outcome"], [[run_id, "ok"]])
    wide = Table(["run ID", "spec", "cell", "learning", "config hash"],
                 [[run_id, "weight_norms", cell, "worse than chance", "f" * 16]])
    wider = Table(["run ID"] + [f"cell {i}" for i in range(6)], [[run_id] + [cell] * 6])
    (one,) = report_pdf.table_layout(doc, narrow, {})
    assert not one.landscape and one.size == report_pdf.TABLE_PT
    (turned,) = report_pdf.table_layout(doc, wide, {})
    assert turned.landscape
    split = report_pdf.table_layout(doc, wider, {})
    assert len(split) > 1 and all(p.columns[0] == 0 and p.landscape for p in split)
    assert [i for p in split for i in p.columns[1:]] == list(range(1, 7))
    doc = report_pdf.new_pdf(False, datetime(2026, 1, 1, tzinfo=timezone.utc))
    report_pdf.write_section(doc, Section("a", "A", [Paragraph(["before"]), wide, Paragraph(["after"]), wider]), {})
    sideways = [doc.pages[n].dimensions()[0] > doc.pages[n].dimensions()[1] for n in sorted(doc.pages)]
    # the text before on a portrait page, the wide table on a landscape one, the text after it on a portrait one
    # again, the split table's parts on landscape pages
    assert sideways[0] is False and sideways[1] is True and sideways[2] is False and sideways[3] is True


def test_pdf_text_wraps_between_words_even_across_inline_parts(monkeypatch):
    doc = report_pdf.new_pdf(False, datetime(2026, 1, 1, tzinfo=timezone.utc))
    doc.set_font("sans", "", report_pdf.BODY_PT)
    calls = []
    write = doc.write

    def recording(h, text, link=""):
        calls.append((text, doc.get_x(), doc.w - doc.r_margin - doc.get_x()))
        return write(h, text, link=link)

    monkeypatch.setattr(doc, "write", recording)
    parts = [("word " * 7, ""), ("(", ""), ("Lezcano-Casado & Martínez-Rubio 2019", ""), ("); ", ""), ("x " * 90, "")]
    for n in range(12):  # every offset of the words against the line's end
        doc.set_x(doc.l_margin + n * 2.5)
        report_pdf.write_words(doc, parts, 4.75)
    for text, x, room in calls:  # no write() that starts inside a line needs more than the room left on it
        assert x <= doc.l_margin + 0.01 or doc.get_string_width(text.rstrip()) <= room, (text, room)
    glued = ["".join(t for t, _ in w) for w in report_pdf.words(parts) if len(w) > 1]
    assert glued == ["(Lezcano-Casado ", "2019); "]  # a word spans the parts it is made of


def figure_file(tmp_path: Path, name: str, height_in: float, caption: str) -> "figures.FigureFile":
    """A blank PNG printed 6 inches wide and `height_in` tall, as a report figure with `caption`."""
    from PIL import Image
    path = tmp_path / f"{name}.png"
    Image.new("RGB", (int(6 * figures.DPI), int(height_in * figures.DPI)), "white").save(path)
    return figures.FigureFile(name, path, caption, ())


def pages_of_figures(monkeypatch, sections) -> tuple[list, list]:
    """Render `sections`; ([(figure, page of its image, page of its caption's end, y there)], [each page's fill]):
    a page's fill is the share of its body above where its content ends (where fpdf turned the page)."""
    placed, fills = [], []
    place, footer = report_pdf.place_figure, report_pdf.ReportPDF.footer

    def placing(pdf, fig, w, h):
        page = pdf.page
        place(pdf, fig, w, h)
        placed.append((fig.name, page, pdf.page, pdf.get_y()))

    def filling(pdf):
        fills.append((pdf.get_y() - pdf.t_margin) / (pdf.h - pdf.t_margin - pdf.b_margin))
        footer(pdf)

    monkeypatch.setattr(report_pdf, "place_figure", placing)
    monkeypatch.setattr(report_pdf.ReportPDF, "footer", filling)
    report_pdf.render_pdf(sections, {}, datetime(2026, 1, 1, tzinfo=timezone.utc), compress=False)
    return placed, fills


def test_a_figure_and_its_caption_are_on_one_page_wherever_the_figure_falls(tmp_path, monkeypatch):
    caption = "A caption of several lines, as the phase diagram's is: " + "words of the caption " * 40
    fig = figure_file(tmp_path, "phase", 4.0, caption)
    bottom = 297 - 16  # A4, less the bottom margin the page breaks at
    for lines in range(20, 60, 3):  # the figure starts at every height of the page
        placed, _ = pages_of_figures(monkeypatch, [Section("s", "Title", [Paragraph(["word " * 16 * lines]), fig,
                                                                          Paragraph(["after " * 400])])])
        (name, image_page, caption_page, caption_end), = [p for p in placed if p[0] == "phase"]
        assert image_page == caption_page and caption_end <= bottom + 0.01, (lines, placed)


def test_a_wide_figure_is_not_shrunk_to_stay_beside_its_text_below_60_percent_of_its_drawn_size(tmp_path):
    """The prediction and success-against-T figures, drawn 10.4 in wide, printed at 0.67 of that on the text width,
    then shrunk to 0.8 of it to stay on a page: labels at 0.53 of their size, unreadable."""
    fig = figure_file(tmp_path, "prediction", 3.2, "Three panels.")
    from PIL import Image
    Image.new("RGB", (int(10.4 * figures.DPI), int(3.2 * figures.DPI)), "white").save(fig.path)
    doc = report_pdf.new_pdf(False, datetime(2026, 1, 1, tzinfo=timezone.utc))
    w, h = report_pdf.figure_size(doc, fig)
    drawn = report_pdf.natural_width(fig)
    for share in (0.8, 0.85, 0.9, 0.95):  # room for the figure at this share of its printed size
        doc.set_y(doc.h - doc.b_margin - h * share - report_pdf.caption_height(doc, fig.caption) - 0.5)
        width, _, _ = report_pdf.figure_placement(doc, fig)
        assert width / drawn >= report_pdf.MIN_TEXT_SCALE - 1e-9, (share, width / drawn)


def test_no_page_is_left_near_empty_when_a_figure_does_not_fit_under_its_text(tmp_path, monkeypatch):
    """The referee's page 21: a tall figure that did not fit under the one before it went to the next page, and the
    next section, whose heading, text and first figure did not fit under it, to the page after: a page held one
    figure and its caption. Now the figure floats to the top of the next page while the text after it fills this
    one, and a section whose opening text fills the rest of a page starts there."""
    first = figure_file(tmp_path, "rates", 3.0, "The first figure.")
    tall = figure_file(tmp_path, "phase", 4.5, "The tall figure, " + "its caption " * 30)
    later = figure_file(tmp_path, "prediction", 2.5, "The next section's figure.")
    sections = [Section("a", "Decay", [Paragraph(["word " * 300]), first, tall]),
                Section("b", "Prediction", [Paragraph(["more " * 500]), later, Paragraph(["end " * 50])])]
    placed, fills = pages_of_figures(monkeypatch, sections)
    assert sorted((page, name) for name, page, _, _ in placed) == [(1, "rates"), (2, "phase"), (3, "prediction")]
    assert all(image == caption for _, image, caption, _ in placed)
    assert min(fills[:-1]) > 0.6, fills  # every page but the last is more than 60% full
    # the Bound check's start: a short opening, then a figure that does not fit under it where much of the page is
    # left: the section starts here, the figure floats to the next page and the text after it fills this one
    heatmaps = figure_file(tmp_path, "heatmaps", 6.5, "The heatmaps.")
    sections = [Section("a", "Tightness", [Paragraph(["word " * 350])]),
                Section("b", "Bound check", [Paragraph(["short " * 60]), heatmaps, Paragraph(["after " * 600])])]
    placed, fills = pages_of_figures(monkeypatch, sections)
    assert [(name, page) for name, page, _, _ in placed] == [("heatmaps", 2)]
    assert min(fills[:-1]) > 0.6, fills


def test_every_term_is_defined_before_the_findings_use_it(study):
    terms, findings = study["sections"][0], study["sections"][1]
    assert (terms.anchor, findings.anchor) == ("terms", "findings")
    defined = " ".join(plain_text(p, study["metrics"]) for p in inline_parts(terms.blocks))
    later = " ".join(plain_text(p, study["metrics"]) for s in study["sections"][1:] for p in inline_parts(s.blocks))
    for term in ("Probe:", "Slope:", "Decades:", "Driven Lyapunov exponent λ₁:", "Its spread", "Mean-field rate "
                 "λ_MF:", "Spread of a singular spectrum:", "Beat chance, learned, solved:", "Outcomes:", "Bound check and spot check:"):
        assert term in defined, term
    for used in ("probe", "decades", "Lyapunov", "spread", "λ_MF", "slope"):  # used later, so defined first
        assert used in later, used


def test_every_citation_points_to_an_entry_and_every_entry_is_cited(study):
    sections = study["sections"]
    refs = next(s for s in sections if s.anchor == "references")
    listed = next(b for b in refs.blocks if hasattr(b, "keys")).keys
    cited = cited_keys(sections)
    assert set(listed) == set(cited)
    for key in ("bengio1994", "hochreiter1997", "pascanu2013", "le2015", "poole2016", "chen2018", "engelken2020",
                "cho2014", "lezcano2019"):
        assert key in cited, key
    assert listed == [r.key for r in REFERENCES if r.key in set(cited)]  # alphabetical, as REFERENCES is
    html_text = report_html.render_html(sections, study["metrics"])
    for key in cited:
        assert f'href="#ref-{key}"' in html_text and f'<li id="ref-{key}">' in html_text
    assert [s.anchor for s in sections][-2:] == ["references", "appendix"]
    with pytest.raises(KeyError, match="no reference"):
        plain_text(Cite("nobody1999"), {})


def test_the_findings_put_the_evidence_before_the_consistency_checks(study):
    items = [" ".join(plain_text(p, study["metrics"]) for p in i) for i in study["sections"][1].blocks[0].items]
    first_check = next(i for i, t in enumerate(items) if "spot check" in t)
    theorem = next(i for i, t in enumerate(items) if t.startswith("Sanity check of the theorem"))
    assert items[0].startswith("Runs that learned") and 0 < first_check < theorem


def test_no_path_of_the_machine_is_in_the_report(study, monkeypatch):
    root = study["root"]
    forbidden = {str(root), str(Path.home()), str(Path.cwd()), str(Path(__file__).resolve().parents[1])}
    html_text = report_html.render_html(study["sections"], study["metrics"])
    assert "sqlite:///mlflow.db" in html_text  # the store, relative to the project folder
    shown = []
    printable = report_pdf.printable
    monkeypatch.setattr(report_pdf, "printable", lambda text: (shown.append(text), printable(text))[1])
    pdf = report_pdf.render_pdf(study["sections"], study["metrics"], datetime(2026, 1, 1, tzinfo=timezone.utc),
                                compress=False)
    pdf_text = "\n".join(shown)
    assert "sqlite:///mlflow.db" in pdf_text
    for path in forbidden:
        assert path not in html_text and path not in pdf_text and path.encode() not in pdf, path
    for text in (html_text, pdf_text):
        assert not re.search(r"(?<![\w.:/])/(home|tmp|work|root|Users|var)/", text)


def test_the_ui_command_names_the_store_relative_to_the_project_or_by_its_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _portable_ui_command(Store(f"sqlite:///{tmp_path}/mlflow.db", None)) == \
        "mlflow ui --backend-store-uri sqlite:///mlflow.db --artifacts-destination mlartifacts"
    assert _portable_ui_command(Store(f"sqlite:///{tmp_path}/runs/store.db", None)) == \
        "mlflow ui --backend-store-uri sqlite:///runs/store.db --artifacts-destination runs/mlartifacts"
    assert _portable_ui_command(Store("sqlite:////elsewhere/mlflow.db", None)) == \
        'mlflow ui --backend-store-uri "$MLFLOW_TRACKING_URI"'


def test_the_pdf_prints_the_appendix_grouped_by_cell_and_the_html_every_run():
    # 80 cells of 3 seeds: the table of every run took 6 landscape pages of the PDF; grouped it fits on 2
    cells = [f"init=orthogonal gamma_w={g / 10:g}" for g in range(80)]
    runs = pd.DataFrame([{"run_id": f"{i:08x}" + "f" * 24, "spec": "weight_norms", "label": c,
                          "cell": f"{c.replace(' ', ',')},seed={s}", "outcome": "diverged" if i == 1 else "ok",
                          "verdict": "diverged" if i == 1 else "at chance", "config_hash": "c" * 16}
                         for i, (c, s) in enumerate((c, s) for c in cells for s in range(3))])
    section = report_html.appendix_section(runs)
    grouped, full = [b for b in section.blocks if isinstance(b, Table)]
    assert (grouped.only_in, full.only_in) == ("pdf", "html")
    assert grouped.rows[0][2:5] == ["3", "2 ok, 1 diverged", "2 at chance, 1 diverged"]
    assert " ".join(r[5] for r in grouped.rows).split() == [i[:8] for i in runs["run_id"]]  # every run, once
    page = report_html.render_html([section], {})
    assert all(i in page for i in runs["run_id"]) and "run IDs (first 8)" not in page
    doc = report_pdf.new_pdf(False, datetime(2026, 1, 1, tzinfo=timezone.utc))
    report_pdf.write_section(doc, section, {})
    assert doc.page <= 2


def test_rounding_noise_of_a_slope_or_an_exact_gap_is_shown_as_0():
    # a linear RNN at gamma_W = 1: its slope, lambda_1 and |slope - lambda_1| are 0 up to float64 rounding
    for key in ("slope", "lyapunov", "slope_init", "specs.activations.headline.linear.median_abs_slope_minus_lyapunov",
                "rate.median_abs_slope_minus_lyapunov", "gap_decades.product_to_stepnorm"):
        assert formatting.format_styled(6.106e-16, formatting.style_of(key)) == "0", key
    assert formatting.format_styled(-0.2087, formatting.style_of("slope")) == "-0.209"


def test_the_depth_table_writes_a_count_with_its_interval_at_two_significant_digits():
    from pipeline.report.depthtext import by_depth_table
    runs = pd.DataFrame({"activation": "tanh", "layers": 8, "learned": [True, True, False], "gamma_x": 0.9,
                         "rate_time": -0.04, "rate_depth": -0.5, "val_over_chance": 0.1, "val_accuracy": 0.9})
    (row,) = by_depth_table(runs).rows
    assert row[6] == "2 of 3 (95% CI 0.2–0.94)"  # not "2 of 3 (0.2077–0.9385)"


def test_a_text_spec_is_not_said_to_have_solved_nothing():
    # a text is one stream: "0 solved" would read as a failure at the papers' bar, which does not apply to it
    runs = pd.DataFrame({"run_id": list("abc"), "task": ["text"] * 3, "outcome": "ok", "final_val_loss": 2.1,
                         "chance_loss": 3.3, "partial_loss": 2.6, "val_sequences_right": None})
    from pipeline.report import reductions
    counts = reductions.learning_counts(reductions.with_verdicts(runs))
    assert counts["n_learned"] == 3 and counts["n_sequence_runs"] == 0
    metrics = {"learning": {"text": counts, "adding": counts | {"n_sequence_runs": 3}}}
    found = "".join(plain_text(p, metrics) for p in report_html.learning_finding(metrics, ["text", "adding"]))
    assert "text: all 3 runs learned" in found and "solved not defined" in found
    assert found.count(" solved, ") == 1  # adding's "0 solved", not text's
    (text_row, adding_row) = [b for b in report_html.spec_overview(["text", "adding"], metrics)][1].rows
    assert text_row[4] == "n/a (text)" and plain_text(adding_row[4], metrics) == "0"
    parts = "".join(plain_text(p, metrics) for p in report_html.learning_parts("text", metrics))
    assert "solved not defined" in parts and "solved 0" not in parts


def test_an_arms_measured_end_norm_is_given_per_task_not_pooled_over_tasks():
    from pipeline.report.studies import measured_words
    runs = pd.DataFrame({"task": ["adding"] * 3 + ["temporal_order"] * 3, "w_norm_init": 2.0,
                         "w_norm_final": [2.4, 2.42, 2.5, 2.7, 2.77, 2.8], "rho_init": None})
    words = measured_words(runs)
    assert words == ("on adding: measured ‖W_hh‖₂ 2 → 2.42 at init → end, medians; "
                     "on temporal order: measured ‖W_hh‖₂ 2 → 2.77 at init → end, medians")  # not pooled: 2.6
    assert measured_words(runs[runs["task"] == "adding"]) == "measured ‖W_hh‖₂ 2 → 2.42 at init → end, medians"


def test_on_copy_the_long_range_sentences_say_that_learned_is_beat_chance():
    from pipeline.report import studies
    task = {"min_T": 5, "max_T": 20, "runs_per_T": 3, "longest_T_learned": 10, "n_at_longest_T_learned": 3,
            "learned_at_min_T": {"k": 3, "n": 3, "rate": 1.0, "low": 0.43, "high": 1.0},
            "learned_at_max_T": {"k": 0, "n": 3, "rate": 0.0, "low": 0.0, "high": 0.57},
            "solved_at_min_T": {"k": 0, "n": 3}, "solved_at_max_T": {"k": 0, "n": 3}}
    head = {"adding": task, "copy": task}
    metrics = {"h": head}
    for parts in (studies.long_range_finding("h", head), studies.long_range_headline("h", head)):
        text = "".join(plain_text(p, metrics) for p in parts)
        adding, copy = text.split("copy", 1)
        assert "learned is beat chance" in copy and "learned is beat chance" not in adding, text


def test_a_decay_of_one_order_of_magnitude_reads_in_the_singular():
    from pipeline.report.studies import decay_reading
    arm = {"_init": -4.9, "_final": -1.0}
    metrics = {"t": {"orders_init": 4.9, "orders_final": 1.0, "slope_init": -0.23, "slope_final": -0.047},
               "a": {"max_lag": 49}}
    text = "".join(plain_text(p, metrics) for p in decay_reading("t", "a", arm, ""))
    assert text.startswith("falls by 4.9 orders of magnitude over 49 steps")
    assert "falls by 1 order of magnitude after training" in text  # not "1 orders"


def test_a_control_step_equal_to_the_clipped_one_is_not_written_as_1_times_it():
    from pipeline.report import clipcontrol
    pair = {"threshold": 1, "effective_step": 0.2955, "lr": 0.2955, "n_seeds": 3,
            "clipped": {"learned": {"k": 2, "n": 3}, "blew_up": {"k": 0, "n": 3}},
            "control": {"learned": {"k": 0, "n": 3}, "blew_up": {"k": 3, "n": 3}}}
    head = {"control_a": pair | {"lr_over_step": 1.00001}, "control_b": pair | {"lr_over_step": 0.9992}}
    text = "".join(plain_text(p, {"h": head}) for p in clipcontrol.finding_parts("h", head))
    assert "(lr 0.2955, equal to it to 3 digits, same 3 seeds)" in text and "1 times it" not in text
    assert "0.999 times it" in text


def test_a_gated_arm_says_its_gamma_w_set_each_gate_block_not_the_stacked_matrix_it_measures():
    from pipeline.report.studies import arm_settings
    runs = pd.DataFrame({"cell_type": "lstm", "hidden": 15, "init": "orthogonal", "gamma_w": 1.0, "task": "adding",
                         "w_norm_init": 2.0, "w_norm_final": 2.4, "forget_bias": 1.0, "optimizer": "adam",
                         "lr": 0.001, "clip_mode": "global", "clip_threshold": 1.0, "omega": 0.0}, index=[0])
    words = arm_settings(runs)
    # "‖W_hh‖₂ set to 1 (measured ‖W_hh‖₂ 2 ...)" read as a configured value the measurement contradicts
    assert ("orthogonal W_hh with each of its 4 gates' n × n blocks with ‖·‖₂ set to 1 (the stacked 4n × n W_hh: "
            "measured ‖W_hh‖₂ 2 → 2.4 at init → end, medians)") in words


def test_a_long_activations_table_prints_in_full_in_the_html_and_pivoted_in_the_pdf():
    """The full profile's activations table is 8 activations x 10 gamma_W x 2 forms = 160 rows, three and a half
    landscape pages of the PDF: there it prints as one row per activation and form, one column per gamma_W (the
    slope), while the HTML keeps every row."""
    gammas = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0]
    rows = [{"activation": a, "form": f, "gamma_w": g, "w_norm": g, "log_rate": -1.0, "slope": -0.01 * i - 0.001 * j,
             "lyapunov": -0.1, "n_both": 1, "n_runs": 1}
            for i, a in enumerate(["tanh", "sigmoid", "relu", "leaky_relu", "elu", "selu", "softplus", "linear"])
            for f in ("elman", "pascanu") for j, g in enumerate(gammas)]
    table = pd.DataFrame(rows)
    metrics = {"specs": {"activations": {"n_runs": 160, "n_seeds": 1}}}
    report = {"specs": {"activations": {"run_ids": [], "description": "d"}}}
    section = report_html.spec_section("activations", metrics, report, {"activations": table}, {})
    tables = [b for b in section.blocks if isinstance(b, Table)]
    full, pivot = tables
    assert full.only_in == "html" and len(full.rows) == 160
    assert pivot.only_in == "pdf" and len(pivot.rows) == 16
    assert pivot.columns == ["activation", "form"] + ["0.5", "1", "1.5", "2", "2.5", "3", "3.5", "4", "5", "6"]
    relu_pascanu = next(r for r in pivot.rows if r[:2] == ["relu", "pascanu"])
    assert [plain_text(c, {}) for c in relu_pascanu[2:4]] == ["-0.02", "-0.021"]  # slope at gamma_W 0.5 and 1
    assert "table of 160 rows, which the HTML report prints in full" in pivot.caption
    short = report_html.spec_section("activations", metrics, report, {"activations": table.iloc[:32]}, {})
    assert [b.only_in for b in short.blocks if isinstance(b, Table)] == [""]  # a short table prints as it is
