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


LABEL_SPOTS = tuple((x, "right" if x > 0.9 else "left" if x < 0.1 else "center", va, dy)
                    for va, dy in (("top", -3), ("bottom", 3))
                    for x in (0.98, 0.8, 0.65, 0.5, 0.35, 0.2, 0.02))  # where label_clear_of_data tries a label on
# a horizontal line: under it from the right to the left, then over it


def data_points(ax, exclude=()) -> np.ndarray:
    """Display coordinates (pixels) of what the axes' lines draw, each segment sampled every pixel and each
    marker's points widened by its size: what a label must not cover."""
    out = []
    for line in ax.lines:
        if line in exclude or not line.get_visible():
            continue
        xy = ax.transData.transform(np.asarray(line.get_xydata(), float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        if not len(xy):
            continue
        if line.get_linestyle() not in ("None", "none", "", " ") and len(xy) > 1:
            steps = np.maximum(np.ceil(np.hypot(*np.diff(xy, axis=0).T)).astype(int), 1)
            xy = np.concatenate([np.linspace(a, b, n, endpoint=False) for a, b, n in zip(xy[:-1], xy[1:], steps)]
                                + [xy[-1:]])
        if line.get_marker() not in (None, "None", "none", "", " "):
            r = line.get_markersize() * ax.figure.dpi / 72 / 2
            xy = np.concatenate([xy + (dx, dy) for dx in (-r, 0, r) for dy in (-r, 0, r)])
        out.append(xy)
    return np.concatenate(out) if out else np.empty((0, 2))


def label_clear_of_data(ax, text: str, y: float, exclude=(), **style):
    """A label on the horizontal line at data height `y` (a ceiling the data are cut at), at the first of
    LABEL_SPOTS where it covers no line, marker or legend of the axes (the last spot when every one does). Call it
    once the axes are drawn in full (their limits and scales set)."""
    fig = ax.figure
    fig.canvas.draw()  # the final layout: where the axes, their data and the label will be
    renderer = fig.canvas.get_renderer()
    points = data_points(ax, exclude)
    legend = ax.get_legend()
    for i, (x, ha, va, dy) in enumerate(LABEL_SPOTS):
        label = ax.annotate(text, (x, y), xycoords=("axes fraction", "data"), xytext=(0, dy),
                            textcoords="offset points", ha=ha, va=va, **style)
        box = label.get_window_extent(renderer).padded(2)
        covers = bool(len(points)) and bool(((points[:, 0] >= box.x0) & (points[:, 0] <= box.x1)
                                             & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)).any())
        covers |= legend is not None and legend.get_window_extent(renderer).overlaps(box)
        if not covers or i == len(LABEL_SPOTS) - 1:
            return label
        label.remove()


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
