"""The report's document model, shared by the HTML and the PDF: sections made of paragraphs, bullets, tables,
figures and preformatted text. Numbers quoted from metrics.json are `Metric(key)` parts, printed by the rules of
formatting.py (what metrics.json holds, a share at 2 significant digits, rounding noise as 0); run IDs are `RunRef` parts and
links to a section are `SectionLink` parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

import pandas as pd

from .formatting import format_styled, style_of
from .references import reference


@dataclass(frozen=True)
class Metric:
    key: str  # dotted path into metrics.json, e.g. "tightness.median_gap_global_decades"
    style: str = ""  # how it prints (formatting.STYLES); "" takes the style its key's name implies (style_of)

    @property
    def shown_style(self) -> str:
        return self.style or style_of(self.key)


@dataclass(frozen=True)
class RunRef:
    run_id: str  # full MLflow run ID; shown as its first 8 characters


@dataclass(frozen=True)
class SectionLink:
    anchor: str  # the id of a section of the report
    text: str  # the link's text (the PDF prints the text alone)


@dataclass(frozen=True)
class Link:
    text: str  # what is printed
    url: str  # where it leads (an MLflow UI page); the HTML and the PDF both link it


@dataclass(frozen=True)
class MlflowLinks:
    """Where the report's runs open in the MLflow UI (the report stage finds them in the tracking store)."""

    ui_command: str  # how to start the UI the links open in ("" for a tracking server, which serves its own)
    experiments: dict = field(default_factory=dict)  # spec -> link to its experiment's runs table
    runs: dict = field(default_factory=dict)  # run ID -> link to its run page


@dataclass(frozen=True)
class Cite:
    key: str  # a references.REFERENCES key; printed as its short form, a link to its entry in the References


Inline = Union[str, Metric, RunRef, SectionLink, Link, Cite]


@dataclass
class Paragraph:
    parts: list[Inline]


@dataclass
class Bullets:
    items: list[list[Inline]]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Inline]]
    caption: str = ""
    only_in: str = ""  # "html" or "pdf": a table one of the two leaves out (a long table the PDF prints in
    # another form; the text beside it says so); "" for both


@dataclass
class Preformatted:
    heading: str
    text: str


@dataclass
class ReferenceList:
    keys: list[str]  # the references.REFERENCES entries listed, in order


@dataclass
class Section:
    anchor: str
    title: str
    blocks: list = field(default_factory=list)  # Paragraph | Bullets | Table | FigureFile | Preformatted |
    # ReferenceList
    run_ids: list[str] = field(default_factory=list)  # the MLflow runs behind the section


def metric_value(metrics: dict, key: str) -> tuple[bool, Any]:
    """(found, value) of a dotted key in metrics.json."""
    node: Any = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def plain_text(part: Inline, metrics: dict) -> str:
    if isinstance(part, Metric):
        return format_styled(metric_value(metrics, part.key)[1], part.shown_style)
    if isinstance(part, RunRef):
        return part.run_id[:8]
    if isinstance(part, (SectionLink, Link)):
        return part.text
    if isinstance(part, Cite):
        return reference(part.key).short
    return part


def cell(value: Any, style: str = "value") -> Inline:
    """A table cell: numbers in `style` (formatting.format_styled), missing values as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_styled(value, style)
    return str(value)


def frame_table(df: pd.DataFrame, columns: dict[str, str], caption: str = "") -> Table:
    """A DataFrame as a Table: `columns` maps column name -> heading (absent columns are skipped)."""
    cols = [c for c in columns if c in df]
    styles = [style_of(c) for c in cols]  # a column's name says how its numbers print (a share, a log rate, ...)
    rows = [[cell(v.item() if hasattr(v, "item") else v, s) for v, s in zip(row, styles)]
            for row in df[cols].itertuples(index=False)]
    return Table([columns[c] for c in cols], rows, caption)


def joined(groups: list[list[Inline]], sep: str = "; ") -> list[Inline]:
    out: list[Inline] = []
    for i, g in enumerate(groups):
        out += ([sep] if i else []) + g
    return out
