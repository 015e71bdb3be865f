"""The report as a PDF: the same sections and figures as the HTML (html.build_sections), with fpdf2.

Text is set in DejaVu Sans, the TTF that ships inside matplotlib, so ‖, ≤, γ and φ print as they do in the HTML
(fpdf2's core fonts are latin-1 only). Each section is a PDF bookmark (the outline a viewer shows).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
from fpdf import FPDF, FontFace
from PIL import Image

from .figures import DPI, FigureFile
from .document import Bullets, Inline, Link, Paragraph, Preformatted, Section, Table, plain_text
from .html import TITLE, runs_note

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = {("sans", ""): "DejaVuSans.ttf", ("sans", "B"): "DejaVuSans-Bold.ttf", ("sans", "I"): "DejaVuSans-Oblique.ttf",
         ("mono", ""): "DejaVuSansMono.ttf"}
BODY_PT, SMALL_PT, TABLE_PT = 9.5, 7, 7
BULLET_INDENT, BULLET_HANG = 3.0, 3.5  # mm: from the margin to a bullet, and from the bullet to its text (every
# line of an item starts there: a hanging indent)
MM_PER_INCH = 25.4


class ReportPDF(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("sans", "", SMALL_PT)
        self.set_text_color(110)
        self.cell(0, 5, f"{TITLE} · page {self.page_no()}", align="C")
        self.set_text_color(0)


def printable(text: str) -> str:
    """Text the PDF can set: tabs as spaces, other control characters (but newlines) as a middle dot."""
    text = text.replace("\t", "    ")
    return "".join(c if c == "\n" or unicodedata.category(c)[0] != "C" else "·" for c in text)


def line(parts: list[Inline], metrics: dict) -> str:
    return printable("".join(plain_text(p, metrics) for p in parts))


def new_pdf(compress: bool, created: datetime) -> ReportPDF:
    pdf = ReportPDF(format="A4")
    pdf.set_compression(compress)
    pdf.set_creation_date(created)
    pdf.set_title(TITLE)
    pdf.set_creator("rnngrad report")
    for (family, style), name in FONTS.items():
        pdf.add_font(family, style, str(FONT_DIR / name))
    pdf.set_auto_page_break(True, margin=16)
    pdf.set_margins(16, 14, 16)
    pdf.add_page()
    return pdf


def write_paragraph(pdf: FPDF, text: str, size: float = BODY_PT, family: str = "sans", style: str = "") -> None:
    pdf.set_font(family, style, size)
    pdf.multi_cell(0, size * 0.5, text, new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.ln(1.5)


def col_widths(pdf: FPDF, table: Table, metrics: dict) -> list[float]:
    """Column widths as fractions of the page, as a browser lays out a table: every column gets at least its
    longest word (so no number is cut in two while the page has room), and the room left goes to the columns whose
    texts would wrap, in proportion to what they lack. A heading may wrap at its spaces; a cell's whole text is what
    its column would like."""
    pdf.set_font("sans", "B", TABLE_PT)
    pad = 2.5  # the cell's padding on both sides, with a little air

    def width(text: str) -> float:
        return pdf.get_string_width(text) + pad

    cells = [[printable(plain_text(r[i], metrics)) for r in table.rows] for i in range(len(table.columns))]
    words = [[w for t in [printable(c)] + col for w in t.split()] or [""] for c, col in zip(table.columns, cells)]
    least = [max(width(w) for w in ws) for ws in words]
    natural = [max([width(t) for t in col] + [m]) for col, m in zip(cells, least)]
    room = pdf.epw
    if sum(natural) <= room:
        return [w / sum(natural) for w in natural]
    if sum(least) >= room:  # even the longest words do not fit: they are cut, in proportion
        return [w / sum(least) for w in least]
    share = (room - sum(least)) / sum(n - m for n, m in zip(natural, least))
    widths = [m + (n - m) * share for n, m in zip(natural, least)]
    return [w / sum(widths) for w in widths]


KEEP_ROWS = 3  # a table starts on a new page unless its caption, heading and this many rows fit on the current one


def write_table(pdf: FPDF, table: Table, metrics: dict) -> None:
    row_mm = TABLE_PT * 0.5 + 2 * 0.8  # a one-line row: line height plus padding (as pdf.table below sets them)
    if pdf.will_page_break((8 if table.caption else 0) + (2 + min(KEEP_ROWS, len(table.rows))) * row_mm):
        pdf.add_page()  # no caption or heading stranded at the foot of a page
    if table.caption:
        write_paragraph(pdf, printable(table.caption), SMALL_PT + 1, style="I")
    widths = col_widths(pdf, table, metrics)
    pdf.set_font("sans", "", TABLE_PT)
    head = FontFace(emphasis="BOLD", fill_color=(240, 242, 245))
    with pdf.table(col_widths=widths, text_align="LEFT", headings_style=head,
                   line_height=TABLE_PT * 0.5, borders_layout="HORIZONTAL_LINES", padding=0.8) as t:
        t.row([printable(c) for c in table.columns])
        for r in table.rows:
            row = t.row()
            for c in r:  # a Link cell stays a link in the PDF
                row.cell(printable(plain_text(c, metrics)), link=c.url if isinstance(c, Link) else None)
    pdf.ln(3)


MIN_FIGURE_SCALE = 0.8  # a figure shrinks to this share of its size to stay on the page its text is on


def figure_size(pdf: FPDF, fig: FigureFile) -> tuple[float, float]:
    """(width, height) in mm of a figure at its printed size: its pixels at DPI, at most the text width."""
    with Image.open(fig.path) as im:
        w_px, h_px = im.size
    w = min(pdf.epw, w_px / DPI * MM_PER_INCH)
    return w, w * h_px / w_px


def write_figure(pdf: FPDF, fig: FigureFile) -> None:
    w, h = figure_size(pdf, fig)
    room = pdf.h - pdf.b_margin - pdf.get_y()
    if h + 10 > room:
        if h * MIN_FIGURE_SCALE + 10 <= room:  # a little smaller keeps it beside its text, with no page left blank
            w, h = w * (room - 10) / h, room - 10
        elif h + 10 > pdf.h - pdf.t_margin - pdf.b_margin:  # taller than a page: shrink to fit one
            ratio = w / h
            h = pdf.h - pdf.t_margin - pdf.b_margin - 14
            w = h * ratio
            pdf.add_page()
        else:
            pdf.add_page()
    pdf.image(str(fig.path), x=pdf.l_margin + (pdf.epw - w) / 2, w=w, h=h)
    pdf.ln(1)
    write_paragraph(pdf, printable(fig.caption), SMALL_PT + 1, style="I")
    pdf.ln(2)


def write_linked(pdf: FPDF, parts: list[Inline], metrics: dict, indent: float = 0.0) -> None:
    """Text with links (`Link` parts clickable, as in the HTML), wrapped at `indent` from the left margin."""
    margin = pdf.l_margin
    pdf.set_left_margin(margin + indent)  # write() wraps to the left margin: a hanging indent for bullets
    try:
        for part in parts:
            pdf.write(BODY_PT * 0.5, printable(plain_text(part, metrics)),
                      link=part.url if isinstance(part, Link) else "")
    finally:
        pdf.set_left_margin(margin)
    pdf.ln(BODY_PT * 0.5)


def has_links(parts: list[Inline]) -> bool:
    return any(isinstance(p, Link) for p in parts)


def write_block(pdf: FPDF, block: Any, metrics: dict) -> None:
    if isinstance(block, Paragraph) and has_links(block.parts):
        pdf.set_font("sans", "", BODY_PT)
        write_linked(pdf, block.parts, metrics)
        pdf.ln(1.5)
    elif isinstance(block, Paragraph):
        write_paragraph(pdf, line(block.parts, metrics))
    elif isinstance(block, Bullets):
        pdf.set_font("sans", "", BODY_PT)
        for i, item in enumerate(block.items):
            if i:
                pdf.ln(1)  # a little air between items
            pdf.set_x(pdf.l_margin + BULLET_INDENT)
            pdf.cell(BULLET_HANG, BODY_PT * 0.5, "•", new_x="RIGHT", new_y="TOP")
            if has_links(item):
                write_linked(pdf, item, metrics, BULLET_INDENT + BULLET_HANG)
            else:
                pdf.multi_cell(pdf.epw - BULLET_INDENT - BULLET_HANG, BODY_PT * 0.5, line(item, metrics),
                               new_x="LMARGIN", new_y="NEXT", align="L")
        pdf.ln(1.5)
    elif isinstance(block, Table):
        write_table(pdf, block, metrics)
    elif isinstance(block, FigureFile):
        write_figure(pdf, block)
    elif isinstance(block, Preformatted):
        write_paragraph(pdf, printable(block.heading), SMALL_PT + 1, style="I")
        write_paragraph(pdf, printable(block.text), SMALL_PT + 0.5, family="mono")
    else:
        raise TypeError(f"unknown report block {type(block).__name__}")


def lead_height(pdf: FPDF, section: Section, metrics: dict) -> float:
    """The height (mm) a section's start needs on one page: its heading, the text up to its first figure and that
    figure at the smallest size write_figure gives it; the heading and first block when a table comes first."""
    heading, texts = 16.0, []  # the heading and the space around it; the text blocks before the first figure
    for block in section.blocks:
        if isinstance(block, Paragraph):
            pdf.set_font("sans", "", BODY_PT)
            texts.append(pdf.multi_cell(0, BODY_PT * 0.5, line(block.parts, metrics), dry_run=True,
                                        output="HEIGHT") + 1.5)
        elif isinstance(block, Bullets):
            pdf.set_font("sans", "", BODY_PT)
            texts.append(sum(pdf.multi_cell(pdf.epw - 3, BODY_PT * 0.5, "• " + line(i, metrics), dry_run=True,
                                            output="HEIGHT") for i in block.items) + 1.5)
        elif isinstance(block, FigureFile):
            return heading + sum(texts) + figure_size(pdf, block)[1] * MIN_FIGURE_SCALE + 12
        else:
            break  # a table or listing before any figure: the text may run on over the page
    return heading + min(texts[:1] or [20.0], default=20.0)  # no figure to keep: the heading with its first block


def write_section(pdf: FPDF, section: Section, metrics: dict) -> None:
    """A section; it starts on a new page when its heading, opening text and first figure would not fit on
    this one but fit on a page (no heading at the foot of a page with its figure on the next)."""
    needed, page = lead_height(pdf, section, metrics), pdf.h - pdf.t_margin - pdf.b_margin
    if pdf.get_y() + needed > pdf.h - pdf.b_margin and needed <= page:
        pdf.add_page()
    pdf.start_section(section.title)
    pdf.ln(2)
    write_paragraph(pdf, printable(section.title), 13, style="B")
    for block in section.blocks:
        write_block(pdf, block, metrics)
    if section.run_ids:
        pdf.set_text_color(90)
        write_paragraph(pdf, line(runs_note(section), metrics), SMALL_PT + 0.5)
        pdf.set_text_color(0)
    pdf.ln(3)


def render_pdf(sections: list[Section], metrics: dict, created: datetime, compress: bool = True) -> bytes:
    """The whole report as PDF bytes, dated `created` (timezone-aware): the same inputs and date give the same
    bytes. compress=False leaves the page streams readable, for tests."""
    pdf = new_pdf(compress, created)
    write_paragraph(pdf, TITLE, 16, style="B")
    for section in sections:
        write_section(pdf, section, metrics)
    return bytes(pdf.output())
