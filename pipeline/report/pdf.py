"""The report as a PDF: the same sections and figures as the HTML (html.build_sections), with fpdf2.

Text is set in DejaVu Sans, the TTF that ships inside matplotlib, so ‖, ≤, γ and φ print as they do in the HTML
(fpdf2's core fonts are latin-1 only). Each section is a PDF bookmark (the outline a viewer shows).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib
from fpdf import FPDF, FontFace
from PIL import Image

from .figures import DPI, FigureFile
from .document import (
    Bullets, Cite, Inline, Link, Paragraph, Preformatted, ReferenceList, Section, Table, plain_text,
)
from .references import reference
from .html import TITLE, runs_note

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = {("sans", ""): "DejaVuSans.ttf", ("sans", "B"): "DejaVuSans-Bold.ttf", ("sans", "I"): "DejaVuSans-Oblique.ttf",
         ("mono", ""): "DejaVuSansMono.ttf"}
BODY_PT, SMALL_PT, TABLE_PT = 9.5, 7, 7
BULLET_INDENT, BULLET_HANG = 3.0, 3.5  # mm: from the margin to a bullet, and from the bullet to its text (every
# line of an item starts there: a hanging indent)
MM_PER_INCH = 25.4
MARGIN = 16.0  # mm, left and right
PORTRAIT_ROOM, LANDSCAPE_ROOM = 210.0 - 2 * MARGIN, 297.0 - 2 * MARGIN  # A4's text width, mm
REFERENCE_HANG = 5.0  # mm: a reference's second and later lines start this far right of its first


class ReportPDF(FPDF):
    landscape_table = False  # the last block was a table on a landscape page: text goes on a portrait one
    ref_links: dict  # reference key -> the PDF link its citations jump to (set where its entry is written)
    sections_begun = 0  # the sections begun so far: a figure floats into the next section at most
    floating: list  # (figure, width, height, caption height, section) of figures that did not fit where they came: each
    # goes at the top of the next portrait page while the text after it fills the rest of this one (as a paper's
    # figures float)
    floated: list  # (page, y, figure, width, height): where the floating figures went, drawn at the end
    kept: dict  # page -> the y below the room kept there for floated figures

    def header(self) -> None:
        """A new portrait page starts with the figures floated to it, in order: their room is kept here and they
        are drawn when the text is done (place_floated), as fpdf may be in the middle of a paragraph or table. fpdf
        may start a page more than once (a dry run of a table or paragraph, then the real one): the room a page
        kept is kept again."""
        if self.page in self.kept:
            self.set_y(self.kept[self.page])
            return
        while self.floating and self.w < self.h:
            fig, w, h, below, _ = self.floating[0]
            room = self.h - self.b_margin - self.get_y()
            if h + below > room:
                if self.get_y() > self.t_margin + 0.01:  # the next one does not fit under the last: next page
                    break
                page = self.h - self.t_margin - self.b_margin  # taller than a page: shrink to fit one
                w, h = w * (page - below) / h, page - below
            self.floating.pop(0)
            self.floated.append((self.page, self.get_y(), fig, w, h))
            self.set_y(self.get_y() + h + below)
            self.kept[self.page] = self.get_y()

    def ref_link(self, key: str) -> int:
        if key not in self.ref_links:
            self.ref_links[key] = self.add_link()
        return self.ref_links[key]

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
    pdf.ref_links = {}
    pdf.floating, pdf.floated, pdf.kept = [], [], {}
    pdf.set_compression(compress)
    pdf.set_creation_date(created)
    pdf.set_title(TITLE)
    pdf.set_creator("rnngrad report")
    for (family, style), name in FONTS.items():
        pdf.add_font(family, style, str(FONT_DIR / name))
    pdf.set_auto_page_break(True, margin=16)
    pdf.set_margins(MARGIN, 14, MARGIN)
    pdf.add_page()
    return pdf


def write_paragraph(pdf: FPDF, text: str, size: float = BODY_PT, family: str = "sans", style: str = "") -> None:
    pdf.set_font(family, style, size)
    pdf.multi_cell(0, size * 0.5, text, new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.ln(1.5)


CELL_PAD = 0.8  # mm of padding inside a table cell on each side (pdf.table's padding below)
TABLE_SIZES = (TABLE_PT, 6.5, 6.0)  # font sizes a table may shrink to before it turns the page or splits


@dataclass(frozen=True)
class TablePart:
    """How one table (or a part of its columns) is set: no token of any cell or heading is ever cut."""

    columns: tuple[int, ...]  # indices into the table's columns (a split table repeats its first in every part)
    widths: tuple[float, ...]  # mm, one per column
    size: float  # font size, pt
    landscape: bool


def token_width(pdf: FPDF, text: str, size: float) -> float:
    """The widest whitespace-separated token of `text` at `size` in bold (the headings' face, the wider one), with
    the cell's padding and a little air: a column this wide never cuts a word."""
    pdf.set_font("sans", "B", size)
    return max([pdf.get_string_width(w) for w in text.split()] + [0.0]) + 2 * CELL_PAD + 0.6


def cell_texts(table: Table, metrics: dict) -> list[list[str]]:
    """Each column's texts as the PDF prints them, its heading first."""
    return [[printable(c)] + [printable(plain_text(r[i], metrics)) for r in table.rows]
            for i, c in enumerate(table.columns)]


def fit_widths(pdf: FPDF, texts: list[list[str]], size: float, room: float) -> tuple[float, ...] | None:
    """Column widths (mm) as a browser lays a table out: every column gets at least its longest token, and the
    room left goes to the columns whose texts would wrap, in proportion to what they lack; None when the tokens
    alone do not fit in `room`."""
    least = [max(token_width(pdf, t, size) for t in col) for col in texts]
    if sum(least) > room:
        return None
    pdf.set_font("sans", "B", size)
    natural = [max([pdf.get_string_width(t) + 2 * CELL_PAD + 0.6 for t in col] + [m]) for col, m in zip(texts, least)]
    if sum(natural) <= room:
        return tuple(natural)
    share = (room - sum(least)) / sum(n - m for n, m in zip(natural, least))
    return tuple(m + (n - m) * share for n, m in zip(natural, least))


def table_layout(pdf: FPDF, table: Table, metrics: dict) -> list[TablePart]:
    """The first that fits, from the largest of TABLE_SIZES down: a portrait page, else a landscape one (a smaller
    font before a page turned sideways only when the larger does not fit either way); else the columns split over
    several tables on landscape pages, each repeating the first column (the row's name)."""
    texts = cell_texts(table, metrics)
    rooms = ((False, PORTRAIT_ROOM), (True, LANDSCAPE_ROOM))
    for size in TABLE_SIZES:
        for landscape, room in rooms:
            if (widths := fit_widths(pdf, texts, size, room)) is not None:
                return [TablePart(tuple(range(len(texts))), widths, size, landscape)]
    size, parts, rest = TABLE_SIZES[-1], [], list(range(1, len(texts)))
    while rest:
        group = [0, rest.pop(0)]
        while rest and fit_widths(pdf, [texts[i] for i in group + rest[:1]], size, LANDSCAPE_ROOM) is not None:
            group.append(rest.pop(0))
        widths = fit_widths(pdf, [texts[i] for i in group], size, LANDSCAPE_ROOM)
        if widths is None:  # one column wider than a landscape page: its tokens are cut, in proportion
            least = [token_width(pdf, t, size) for t in (max(texts[i], key=len) for i in group)]
            widths = tuple(w * LANDSCAPE_ROOM / sum(least) for w in least)
        parts.append(TablePart(tuple(group), widths, size, True))
    return parts


KEEP_ROWS = 3  # a table starts on a new page unless its caption, heading and this many rows fit on the current one


def turn_page(pdf: "ReportPDF", landscape: bool) -> None:
    """Start a new page in the orientation a table needs, unless the current page has it."""
    if landscape != (pdf.w > pdf.h):
        pdf.add_page(orientation="L" if landscape else "P")
    pdf.landscape_table = landscape  # the next text block goes back to portrait


def write_table(pdf: "ReportPDF", table: Table, metrics: dict) -> None:
    parts = table_layout(pdf, table, metrics)
    for n, part in enumerate(parts):
        turn_page(pdf, part.landscape)
        row_mm = part.size * 0.5 + 2 * CELL_PAD  # a one-line row: line height plus padding
        if pdf.will_page_break((8 if table.caption else 0) + (2 + min(KEEP_ROWS, len(table.rows))) * row_mm):
            pdf.add_page(same=True)  # no caption or heading stranded at the foot of a page
        caption = table.caption + (f" (part {n + 1} of {len(parts)} of its columns)" if len(parts) > 1 else "")
        if caption:
            write_paragraph(pdf, printable(caption), SMALL_PT + 1, style="I")
        pdf.set_font("sans", "", part.size)
        head = FontFace(emphasis="BOLD", fill_color=(240, 242, 245))
        with pdf.table(col_widths=part.widths, width=sum(part.widths), align="LEFT", text_align="LEFT",
                       headings_style=head, line_height=part.size * 0.5, borders_layout="HORIZONTAL_LINES",
                       padding=CELL_PAD) as t:
            t.row([printable(table.columns[i]) for i in part.columns])
            for r in table.rows:
                row = t.row()
                for i in part.columns:  # a Link cell stays a link in the PDF
                    c = r[i]
                    row.cell(printable(plain_text(c, metrics)), link=c.url if isinstance(c, Link) else None)
        pdf.ln(3)


MIN_FIGURE_SCALE = 0.8  # a figure shrinks to this share of its size to stay on the page its text is on
MIN_TEXT_SCALE = 0.6  # ... but never below this share of the size it was drawn at, its fonts' (a figure wider than
# the text width is printed smaller already: 8 pt labels at 0.6 are 4.8 pt)
CAPTION_PT = SMALL_PT + 1  # a figure's caption, in italics
SHORT_GAP = 0.1  # share of a page's body: a gap this small at a page's foot is not a near-empty page
FLOAT_ACROSS = 0.3  # share of a page's body: a figure floats past its section's end only when more is left blank
FIGURE_GAP = 1.0  # mm between a figure and its caption (and 1.5 + 2 below the caption: write_paragraph, then ln)


def figure_size(pdf: FPDF, fig: FigureFile) -> tuple[float, float]:
    """(width, height) in mm of a figure at its printed size: its pixels at DPI, at most the text width."""
    with Image.open(fig.path) as im:
        w_px, h_px = im.size
    w = min(pdf.epw, w_px / DPI * MM_PER_INCH)
    return w, w * h_px / w_px


def natural_width(fig: FigureFile) -> float:
    """The width (mm) a figure was drawn at: its pixels at DPI."""
    with Image.open(fig.path) as im:
        return im.size[0] / DPI * MM_PER_INCH


def caption_height(pdf: FPDF, caption: str) -> float:
    """The height (mm) a figure's caption takes below it, with the gaps above and below: a figure is placed only
    where its caption fits under it on the same page."""
    pdf.set_font("sans", "I", CAPTION_PT)
    text = pdf.multi_cell(0, CAPTION_PT * 0.5, printable(caption), dry_run=True, output="HEIGHT")
    return FIGURE_GAP + text + 1.5 + 2


def figure_placement(pdf: FPDF, fig: FigureFile) -> tuple[float, float, bool]:
    """(width, height, new page) of a figure kept on one page with its caption: at its size where it fits here;
    shrunk to no less than MIN_FIGURE_SCALE (nor below MIN_TEXT_SCALE of the size it was drawn at) where that keeps
    it beside its text; else on the next page (shrunk to fit a page when taller than one)."""
    w, h = figure_size(pdf, fig)
    below = caption_height(pdf, fig.caption)
    room = pdf.h - pdf.b_margin - pdf.get_y()
    page = pdf.h - pdf.t_margin - pdf.b_margin
    if h + below <= room:
        return w, h, False
    least = max(MIN_FIGURE_SCALE, MIN_TEXT_SCALE * natural_width(fig) / w)  # a wide figure, already printed
    if h * least + below <= room:  # smaller, shrinks less: a little smaller keeps it beside its text
        return w * (room - below) / h, room - below, False
    if h + below > page:  # taller than a page, caption and all: shrink to fit one
        return w * (page - below) / h, page - below, True
    return w, h, True


def place_figure(pdf: FPDF, fig: FigureFile, w: float, h: float) -> None:
    pdf.image(str(fig.path), x=pdf.l_margin + (pdf.epw - w) / 2, w=w, h=h)
    pdf.ln(FIGURE_GAP)
    write_paragraph(pdf, printable(fig.caption), CAPTION_PT, style="I")
    pdf.ln(2)


def write_figure(pdf: "ReportPDF", fig: FigureFile) -> None:
    """A figure with its caption, on one page: here if it fits (figure_placement); else it floats to the top of the
    next page and the text after it fills this one, unless little of this page is left (then it turns now)."""
    w, h, turn = figure_placement(pdf, fig)
    room, page = pdf.h - pdf.b_margin - pdf.get_y(), pdf.h - pdf.t_margin - pdf.b_margin
    if pdf.floating or (turn and room > SHORT_GAP * page):  # after any figure floating already: figures keep order
        pdf.floating.append((fig, *figure_size(pdf, fig), caption_height(pdf, fig.caption),
                             pdf.sections_begun))
        return
    if turn:
        pdf.add_page()
    place_figure(pdf, fig, w, h)


def place_floated(pdf: "ReportPDF") -> None:
    """The figures still floating each on the next page with room, then every floated figure drawn where its room
    was kept (at the end of the report)."""
    while pdf.floating:
        back_to_portrait(pdf)
        pdf.add_page(orientation="P")
    last, y = pdf.page, pdf.get_y()
    pdf.set_auto_page_break(False)  # each caption fits its kept room
    for page, top, fig, w, h in pdf.floated:
        pdf.page = page
        pdf.font_family = ""  # fpdf sets a font only when it changes: set it again on the page drawn on
        pdf.set_xy(pdf.l_margin, top)
        place_figure(pdf, fig, w, h)
    pdf.page = last
    pdf.set_xy(pdf.l_margin, y)
    pdf.set_auto_page_break(True, margin=16)


def write_linked(pdf: FPDF, parts: list[Inline], metrics: dict, indent: float = 0.0) -> None:
    """Text with links (`Link` parts clickable, as in the HTML), wrapped at `indent` from the left margin."""
    margin = pdf.l_margin
    pdf.set_left_margin(margin + indent)  # write() wraps to the left margin: a hanging indent for bullets
    try:
        write_words(pdf, [(printable(plain_text(p, metrics)), p.url if isinstance(p, Link) else
                           pdf.ref_link(p.key) if isinstance(p, Cite) else "") for p in parts], BODY_PT * 0.5)
    finally:
        pdf.set_left_margin(margin)
    pdf.ln(BODY_PT * 0.5)


def words(runs: list[tuple[str, str | int]]) -> list[list[tuple[str, str | int]]]:
    """Text runs (text, link) as words, each a list of pieces (text, link) with its trailing spaces: a word may
    span runs, as "(" + a citation + ")" does."""
    out: list[list[tuple[str, str | int]]] = [[]]
    for text, link in runs:
        for chunk in re.findall(r"\S+\s*|\s+", text):
            if out[-1] and out[-1][-1][0][-1:].isspace():  # the last word ended: this chunk starts the next
                out.append([])
            out[-1].append((chunk, link))
    return [w for w in out if w]


def write_words(pdf: FPDF, runs: list[tuple[str, str | int]], height: float) -> None:
    """Text runs written on from where the last write ended, wrapped at spaces only: a word that does not fit on
    the line starts the next one (fpdf's write() would cut the first word of a call in two to fill the line)."""
    for word in words(runs):
        width = pdf.get_string_width("".join(t for t, _ in word).rstrip())
        at_start = pdf.get_x() <= pdf.l_margin + 0.01
        if not at_start and width > pdf.w - pdf.r_margin - pdf.get_x() - 2 * pdf.c_margin:
            pdf.ln(height)
            at_start = True
        for i, (text, link) in enumerate(word):
            text = text.lstrip() if at_start and i == 0 else text
            if text:
                pdf.write(height, text, link=link)


def has_links(parts: list[Inline]) -> bool:
    return any(isinstance(p, (Link, Cite)) for p in parts)


def write_references(pdf: "ReportPDF", keys: list[str]) -> None:
    """Each entry with a hanging indent, where its citations link to."""
    pdf.set_font("sans", "", BODY_PT - 0.5)
    margin = pdf.l_margin
    for key in keys:
        pdf.set_link(pdf.ref_link(key), y=pdf.get_y(), page=pdf.page)
        pdf.set_left_margin(margin + REFERENCE_HANG)
        try:
            pdf.set_x(margin)
            write_words(pdf, [(printable(reference(key).entry), "")], (BODY_PT - 0.5) * 0.5)
        finally:
            pdf.set_left_margin(margin)
        pdf.ln((BODY_PT - 0.5) * 0.5 + 1.5)


def back_to_portrait(pdf: "ReportPDF") -> None:
    """After a table set on a landscape page, the text goes on on a portrait one."""
    if pdf.landscape_table:
        pdf.landscape_table = False
        if pdf.w > pdf.h:
            pdf.add_page(orientation="P")


def write_block(pdf: "ReportPDF", block: Any, metrics: dict) -> None:
    if not isinstance(block, Table):
        back_to_portrait(pdf)
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
        if block.only_in != "html":
            write_table(pdf, block, metrics)
    elif isinstance(block, FigureFile):
        write_figure(pdf, block)
    elif isinstance(block, ReferenceList):
        write_references(pdf, block.keys)
    elif isinstance(block, Preformatted):
        write_paragraph(pdf, printable(block.heading), SMALL_PT + 1, style="I")
        write_paragraph(pdf, printable(block.text), SMALL_PT + 0.5, family="mono")
    else:
        raise TypeError(f"unknown report block {type(block).__name__}")


def lead_heights(pdf: FPDF, section: Section, metrics: dict) -> tuple[float, float]:
    """(text, figure): the height (mm) of a section's heading with the text up to its first figure, and of that
    figure with its caption at the smallest size write_figure gives it (0 when a table, a listing or nothing comes
    first: then the heading is kept with its first block alone)."""
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
            return (heading + sum(texts),
                    figure_size(pdf, block)[1] * MIN_FIGURE_SCALE + caption_height(pdf, block.caption))
        else:
            break  # a table or listing before any figure: the text may run on over the page
    return heading + min(texts[:1] or [20.0], default=20.0), 0.0  # the heading with its first block


def starts_new_page(pdf: FPDF, section: Section, metrics: dict) -> bool:
    """Whether a section starts on a new page: when its heading, opening text and first figure do not fit on this
    one but fit on a page, and little of this one is left (no heading at the foot of a page with its figure on the
    next). Where its opening text alone fills what is left, or much is left, it starts here: the text runs on and
    the figure follows it or floats to the next page (turning the page would leave the rest of this one blank)."""
    text, figure = lead_heights(pdf, section, metrics)
    room, page = pdf.h - pdf.b_margin - pdf.get_y(), pdf.h - pdf.t_margin - pdf.b_margin
    if text + figure <= room or text + figure > page:
        return False
    if figure and text >= room - SHORT_GAP * page:
        return False
    return room < FLOAT_ACROSS * page


def write_section(pdf: "ReportPDF", section: Section, metrics: dict) -> None:
    """A section, on a new page when starts_new_page says so."""
    back_to_portrait(pdf)
    pdf.sections_begun += 1
    room, page = pdf.h - pdf.b_margin - pdf.get_y(), pdf.h - pdf.t_margin - pdf.b_margin
    if room < FLOAT_ACROSS * page or any(f[-1] < pdf.sections_begun - 1 for f in pdf.floating):
        while pdf.floating:  # the last section's figures go before this one begins, unless that would leave much
            pdf.add_page(orientation="P")  # of this page blank: then this section's text fills it first
    if starts_new_page(pdf, section, metrics):
        pdf.add_page()
    pdf.start_section(section.title)
    pdf.ln(2)
    write_paragraph(pdf, printable(section.title), 13, style="B")
    for block in section.blocks:
        write_block(pdf, block, metrics)
    if section.run_ids:
        back_to_portrait(pdf)
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
    place_floated(pdf)
    return bytes(pdf.output())
