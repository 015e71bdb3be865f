"""What every report figure is drawn on and with: the Agg canvas (no pyplot, so no global figure state and no
display backend), the figure file record, and the small helpers the figure modules share."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

DPI = 110
Tables = dict[str, pd.DataFrame]
Drawn = tuple[Figure, str, list[str]] | None


@dataclass(frozen=True)
class FigureFile:
    name: str  # file stem in reports/figures/
    path: Path
    caption: str
    run_ids: tuple[str, ...]  # the runs drawn


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def panel_row(panels: int, panel_width: float, height: float, margin: float = 0.8) -> tuple[Figure, list]:
    """A figure of `panels` side-by-side axes sharing their y axis (one panel per mode, depth or task)."""
    fig = new_figure(panel_width * panels + margin, height)
    return fig, list(fig.subplots(1, panels, squeeze=False, sharey=True)[0])


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def plain_log_ticks(axis, values: Iterable[float], min_ratio: float = 1.12) -> None:
    """Ticks at the given values, printed plainly (0.5, 2) rather than as powers of ten; of values closer than
    `min_ratio` to the last one kept (e.g. 1.1 and 1.17), only the first gets a tick, so labels never overlap."""
    kept: list[float] = []
    for v in sorted(values):
        if not kept or v >= kept[-1] * min_ratio:
            kept.append(v)
    axis.set_major_locator(FixedLocator(kept))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_locator(NullLocator())


def table(tables: Tables, name: str) -> pd.DataFrame | None:
    t = tables.get(name)
    return t if t is not None and len(t) else None


def run_info(tables: Tables) -> pd.DataFrame:
    runs = tables.get("runs", pd.DataFrame(columns=["run_id"]))
    return runs.set_index("run_id", drop=False)


def finite(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Rows where every column in `cols` is a finite number (none when a column is absent)."""
    if any(c not in df for c in cols):
        return df.iloc[:0]
    vals = df[cols].apply(pd.to_numeric, errors="coerce")
    return df[np.isfinite(vals.to_numpy(float)).all(axis=1)]
