"""A run's own figures, drawn into its folder's figures/ beside the heatmap (probe.draw_heatmap) so that the MLflow
run page shows the story of the run as images: the decay of ||dh_t/dh_k|| against lag with both bounds, at init and
after training (figures/decay.png), and the loss over the iterations against the task's chance loss
(figures/loss.png).

Drawn on bare matplotlib `Figure`s with an Agg canvas (no pyplot, no global backend, no layout engine: safe and
cheap in worker processes); matplotlib is imported only when a figure is drawn. A worker draws these figures for
every run it computes, and most of a figure's cost is building it (axes, their tick objects, colour bars): each
kind of figure is built once per process (`reused`) and cleared of the previous run's artists before the next run
is drawn on it (`clear`), so that a run's image is the same whichever runs the process drew before. A legend
is drawn once per process and set of labels, then pasted back as pixels (`legend`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .verdicts import LEARNED_MARGIN, learned_below, scored

LN10 = math.log(10.0)
# The least span, in decades, of a log10-norm axis. A curve that is exactly 0 up to rounding (a linear RNN with an
# orthogonal W at gamma_W = 1 measures 1e-14) would otherwise fill the axis and read as a trend; within this span
# it is drawn flat, as it is.
MIN_DECADES_SPAN = 1.0
DECAY_FIGURE, LOSS_FIGURE = "decay.png", "loss.png"  # under a run folder's figures/


def keep_min_span(ax, span: float = MIN_DECADES_SPAN) -> None:
    """Widen the y range of `ax` to at least `span` around its middle (a narrower range is drawn as it is)."""
    lo, hi = ax.get_ylim()
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo >= span:
        return
    mid = (lo + hi) / 2
    ax.set_ylim(mid - span / 2, mid + span / 2)


# zlib level 1 against PIL's default 6: about half the encoding time for about 1.2 x the bytes (35-55 kB a figure)
PNG_OPTIONS = {"compress_level": 1}
_BUILT: dict[tuple, tuple] = {}  # this process's figures: (kind, shape) -> (figure, its parts)
# A figure legend's pixels, by (figure, labels): the same labels are drawn the same on every run
_LEGENDS: dict[tuple, tuple[slice, slice, np.ndarray]] = {}
_PENDING: dict[int, tuple] = {}  # id(figure) -> its legend's key, until the figure is saved
LEGEND_MARGIN = 2  # pixels around a legend's extent that its antialiased edges may touch


def new_figure(width: float, height: float):
    """A bare `Figure` of `width` x `height` inches at 100 dpi on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def reused(key: tuple, build) -> tuple:
    """(figure, parts) for `key`, built by `build()` the first time this process asks for it, then cleared of
    what was drawn on it since (`clear`): the same axes, tick objects and colour bars serve every run."""
    if key not in _BUILT:
        _BUILT[key] = build()
        return _BUILT[key]
    fig, parts = _BUILT[key]
    clear(fig)
    return fig, parts


def clear(fig) -> None:
    """Remove every data artist and figure legend drawn on `fig`, and give each axes back its automatic limits and
    a linear y scale; axes, their tick objects and their styling (grid, locators, colour bars) stay. Colour bar
    axes keep their colour mesh: their `update_normal` redraws it."""
    for legend in list(fig.legends):
        legend.remove()
    for ax in fig.axes:
        if hasattr(ax, "_colorbar"):
            continue
        for artist in [*ax.lines, *ax.images, *ax.collections, *ax.patches, *ax.texts]:
            artist.remove()
        if ax.get_yscale() != "linear":
            ax.set_yscale("linear")  # (it resets the axis's locators: only when needed)
        ax.relim()
        ax.set_autoscale_on(True)


def few_ticks(axis, nbins: int, integer: bool = False) -> None:
    """At most `nbins` + 1 major ticks on `axis`, at multiples of 1, 2 or 5 times a power of 10: each tick is a
    line and a label drawn for every run, and the axes' ticks are about half of a figure's drawing."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=nbins, steps=[1, 2, 5, 10], integer=integer))


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def plain_powers(axis) -> None:
    """A log axis's labels (10⁻², 2×10⁻¹, where its own would label) in plain text, and minor ticks at 2 and 5
    times each power of 10. Its default labels are mathtext, whose parser a worker would build for its first log
    axis (an eighth of a fresh process's first figures, profiled)."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator

    class PlainPowers(LogFormatterSciNotation):
        def __call__(self, x, pos=None):
            label = super().__call__(x, pos)
            math_text = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
            if not math_text:
                return label
            text = math_text.group(1).replace(r"\times", "×")
            return re.sub(r"\^\{(-?\d+)\}", lambda power: power.group(1).translate(SUPERSCRIPT), text)

    axis.set_major_formatter(PlainPowers())
    axis.set_minor_formatter(PlainPowers(labelOnlyBase=False))
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # 2 and 5 times each power: 8 would be 40 tick objects


def fixed_titles(axes) -> None:
    """Titles at the top of their axes, not placed at each draw clear of ticks drawn above the axes (there are
    none here; finding that out cost about 6 % of a figure's drawing, profiled)."""
    for ax in axes:
        ax.set_title("", y=1.0)


def legend(fig, handles, labels, ncol: int) -> None:
    """The figure's legend below its axes. Drawn the first time this figure shows these labels; on later runs its
    pixels are pasted back by `save` instead (the legend's glyphs are a sixth of a figure's drawing)."""
    key = (id(fig), tuple(labels))
    _PENDING[id(fig)] = key
    if key not in _LEGENDS:
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)


def _legend_pixels(fig, rgb: np.ndarray) -> np.ndarray:
    """`rgb` with the pending legend pasted in, or, for a legend drawn this time, its pixels kept."""
    key = _PENDING.pop(id(fig), None)
    if key is None:
        return rgb
    if key in _LEGENDS:
        rows, cols, pixels = _LEGENDS[key]
        rgb = rgb.copy()
        rgb[rows, cols] = pixels
        return rgb
    box = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    height, width = rgb.shape[:2]
    top, bottom = height - math.ceil(box.y1) - LEGEND_MARGIN, height - math.floor(box.y0) + LEGEND_MARGIN
    rows = slice(max(0, top), min(height, bottom))  # the buffer's rows run down from the top
    cols = slice(max(0, math.floor(box.x0) - LEGEND_MARGIN), min(width, math.ceil(box.x1) + LEGEND_MARGIN))
    _LEGENDS[key] = (rows, cols, rgb[rows, cols].copy())
    return rgb


def save(fig, path: Path) -> None:
    """`fig` as an RGB PNG at `path`, its text unhinted (glyph layout and rendering are most of the drawing left;
    the images read the same). RGB, not savefig's RGBA: the figures are opaque, and a fourth channel of 255s costs
    a quarter of the encoding."""
    import matplotlib
    from PIL import Image

    with matplotlib.rc_context({"text.hinting": "no_hinting"}):
        fig.canvas.draw()
    rgb = _legend_pixels(fig, np.asarray(fig.canvas.buffer_rgba())[..., :3])
    Image.fromarray(rgb).save(path, format="png", **PNG_OPTIONS)


def decay_by_lag(jacobian: pd.DataFrame, when: str) -> pd.DataFrame:
    """Top layer, one probe: the mean over pairs at each lag of log10 ||dh_t/dh_k|| and of both bounds
    (columns lag, measured, product, global), non-finite pairs left out of each mean; a lag appears when any of
    the three has a finite pair there."""
    top = jacobian[(jacobian["when"] == when) & (jacobian["layer"] == jacobian["layer"].max())]
    lags = top["lag"].to_numpy(np.int64)
    size = int(lags.max()) + 1 if len(lags) else 0
    cols = {"measured": "log_norm", "product": "log_bound_product", "global": "log_bound_global"}
    sums, counts = {}, {}
    for name, col in cols.items():
        values = top[col].to_numpy(np.float64) / LN10
        ok = np.isfinite(values)
        counts[name] = np.bincount(lags[ok], minlength=size)
        sums[name] = np.bincount(lags[ok], weights=values[ok], minlength=size)
    seen = np.flatnonzero(np.sum(list(counts.values()), axis=0)) if size else np.empty(0, np.int64)
    with np.errstate(invalid="ignore"):  # a lag with no finite pair of one column: its mean is NaN
        means = {name: sums[name][seen] / counts[name][seen] for name in cols}
    return pd.DataFrame({"lag": seen, **means})


def draw_decay(jacobian: pd.DataFrame, trained: bool, path: Path) -> None:
    """figures/decay.png: mean log10 ||dh_t/dh_k|| against lag t - k with the product and global bounds, at init
    and (when the run trained) after training, side by side on one y scale."""
    whens = ("init", "final") if trained else ("init",)
    fig, axes = reused(("decay", len(whens)), lambda: _decay_figure(len(whens)))
    for ax, when in zip(axes, whens):
        d = decay_by_lag(jacobian, when)
        ax.plot(d["lag"], d["measured"], color="C0", lw=1.6, label="measured (mean over pairs)")
        ax.plot(d["lag"], d["product"], color="C1", ls="--", lw=1.2, label="product bound Σ log(‖W‖ max|φ'|)")
        ax.plot(d["lag"], d["global"], color="C3", ls=":", lw=1.5, label="global bound (t−k) log(γ_W γ_φ)")
        ax.set_title("at init" if when == "init" else "after training", fontsize=10)
    keep_min_span(axes[0])
    handles, labels = axes[0].get_legend_handles_labels()
    legend(fig, handles, labels, ncol=3)
    save(fig, path)


def _decay_figure(panels: int) -> tuple:
    fig = new_figure(4.6 * panels + 0.4, 3.6)
    fig.subplots_adjust(left=0.1 if panels > 1 else 0.16, right=0.98, bottom=0.27, top=0.9, wspace=0.22)
    axes = fig.subplots(1, panels, sharey=True, squeeze=False)[0]
    for ax in axes:
        ax.set_xlabel("lag t − k")
        ax.grid(alpha=0.3)
        few_ticks(ax.xaxis, 4, integer=True)
    few_ticks(axes[0].yaxis, 7)
    axes[0].set_ylabel("log10 ‖∂h_t/∂h_k‖")
    fixed_titles(axes)
    return fig, axes


def draw_loss(history: pd.DataFrame, val: pd.DataFrame, chance_loss: float | None, path: Path,
              partial_loss: float | None = None) -> bool:
    """figures/loss.png: the minibatch loss at every iteration and the held-out validation loss at each validation
    pass, against the chance loss, the `beat chance` threshold below it and the `learned` threshold (the same margin
    below the partial baseline). Returns False (nothing drawn) for a task that scores nothing or a run with no finite
    loss."""
    loss = history[["iter", "loss"]].astype(float)
    loss = loss[np.isfinite(loss["loss"])]
    val = val[["iter", "val_loss"]].astype(float)
    val = val[np.isfinite(val["val_loss"])]
    if (loss.empty and val.empty) or not scored(chance_loss):
        return False
    fig, ax = reused(("loss",), _loss_figure)
    ax.plot(loss["iter"], loss["loss"], color="C0", lw=0.8, alpha=0.7, label="training minibatch loss")
    ax.plot(val["iter"], val["val_loss"], color="C2", marker="o", ms=4, lw=1.4, label="validation loss (held out)")
    ax.axhline(chance_loss, color="k", ls="--", lw=1.1, label="chance loss")
    ax.axhline((1 - LEARNED_MARGIN) * chance_loss, color="0.5", ls=":", lw=1.1,
               label=f"beat chance below {1 - LEARNED_MARGIN:g} × chance")
    if partial_loss is not None and np.isfinite(partial_loss) and partial_loss < (1 - LEARNED_MARGIN) * chance_loss:
        ax.axhline(learned_below(partial_loss), color="C3", ls="-.", lw=1.1,
                   label=f"learned below {1 - LEARNED_MARGIN:g} × the partial baseline")
    values = np.concatenate([loss["loss"].to_numpy(), val["val_loss"].to_numpy(), [chance_loss]])
    if values.min() > 0 and values.max() / values.min() > 30:  # a run that learns or blows up spans decades
        ax.set_yscale("log")
        plain_powers(ax.yaxis)
    else:
        few_ticks(ax.yaxis, 6)
    legend(fig, *ax.get_legend_handles_labels(), ncol=2)
    save(fig, path)
    return True


def _loss_figure() -> tuple:
    fig = new_figure(6.4, 3.6)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.3, top=0.93)
    ax = fig.subplots()
    ax.set(xlabel="iteration", ylabel="loss")
    ax.grid(alpha=0.3)
    few_ticks(ax.xaxis, 5, integer=True)
    return fig, ax
