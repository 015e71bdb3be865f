"""A worker draws every run's figures on the same matplotlib figures (pipeline/run/plots.py `reused`): a run's
images must not depend on the runs the process drew before. Run B drawn after a very different run A, and A drawn
again after B, are compared pixel for pixel with the same runs drawn by a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pipeline.run import plots, probe, runner

FIGURES = ("jacobian_heatmap.png", plots.DECAY_FIGURE, plots.LOSS_FIGURE)


def probed(when: str, T: int, rate: float, finite: bool = True) -> SimpleNamespace:
    """A one-layer probe whose ||dh_t/dh_k|| is exp(rate (t - k)) with a wobble, bounds above it."""
    t, k = np.tril_indices(T + 1, -1)
    lag = t - k
    log_norm = rate * lag + 0.3 * np.sin(t) if finite else np.full(len(t), np.nan)
    jac = pd.DataFrame({"when": when, "layer": 0, "t": t, "k": k, "lag": lag, "log_norm": log_norm,
                        "log_bound_product": (abs(rate) + 0.2) * lag, "log_bound_global": (abs(rate) + 0.5) * lag})
    logmat = np.full((T + 1, T + 1), np.nan)
    logmat[t, k] = log_norm
    return SimpleNamespace(when=when, logmats=[logmat], jacobian=jac)


# A: an exploding run with a long probe, a loss over five decades (log axis), a partial baseline and an init probe
# without one finite value; B: a short vanishing run whose loss stays within a decade (linear axis)
RUNS = {
    "A": {"T": 40, "rates": (0.4, 0.05), "finite": False, "loss": lambda i: 1e-4 + 3.0 * np.exp(-i / 40.0),
          "chance": 0.7, "partial": 0.2},
    "B": {"T": 12, "rates": (-0.6, -0.2), "finite": True, "loss": lambda i: 0.5 + 0.1 * np.cos(i / 7.0),
          "chance": 0.69, "partial": None},
}


def draw_run(name: str, out: Path, trained: bool = True) -> None:
    """Run `name`'s three figures (the heatmap, the decay and, when trained, the loss) into out/figures/."""
    run = RUNS[name]
    init = probed("init", run["T"], run["rates"][0], run["finite"])
    final = probed("final", run["T"], run["rates"][1])
    iters = np.arange(1, 301)
    history = pd.DataFrame({"iter": iters, "loss": run["loss"](iters)})
    val = pd.DataFrame({"iter": [0, 100, 200, 300], "val_loss": run["loss"](np.array([0, 100, 200, 300])) * 1.1})
    (out / "figures").mkdir(parents=True, exist_ok=True)
    probe.draw_heatmap(init, final, out / "figures" / "jacobian_heatmap.png")
    runner.draw_run_figures(out, init, final, history, val, run["chance"], trained=trained,
                            partial_loss=run["partial"])


def pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


def draw_fresh(name: str, out: Path, trained: bool) -> None:
    """Run `name`'s figures drawn by a fresh interpreter (no figure built before)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from pathlib import Path; "
            f"import test_run_figures as t; t.draw_run({name!r}, Path({str(out)!r}), {trained!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


@pytest.mark.parametrize("trained", [True, False])
def test_a_run_drawn_after_another_reads_as_if_drawn_first(tmp_path, trained):
    """B after A, then A again (its legends now pasted from its first drawing), each against a fresh interpreter's."""
    for name in ("A", "B"):
        draw_fresh(name, tmp_path / f"fresh{name}", trained)
    for name, folder in (("A", "a"), ("B", "b"), ("A", "a2")):
        draw_run(name, tmp_path / folder, trained)
    drawn = FIGURES if trained else FIGURES[:2]
    for name, folder in (("B", "b"), ("A", "a2")):
        for figure in drawn:
            fresh = pixels(tmp_path / f"fresh{name}" / "figures" / figure)
            after = pixels(tmp_path / folder / "figures" / figure)
            assert fresh.shape == after.shape and np.array_equal(fresh, after), (folder, figure)
    # and A's image is not B's: the figures were redrawn, not left as they were
    assert not np.array_equal(pixels(tmp_path / "a" / "figures" / plots.DECAY_FIGURE),
                              pixels(tmp_path / "b" / "figures" / plots.DECAY_FIGURE))


def legend_texts(fig) -> list[str]:
    """The labels of the figure's legends (none when the legend's pixels are pasted from an earlier run)."""
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def ax_labels(ax) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def test_the_reused_figures_hold_only_the_last_runs_artists(tmp_path):
    flat = pd.concat([probed(when, 20, 0.0).jacobian for when in ("init", "final")], ignore_index=True)
    flat[["log_norm", "log_bound_product", "log_bound_global"]] = 1e-15  # drawn in a fixed 1-decade y range
    plots.draw_decay(flat, True, tmp_path / "flat.png")
    draw_run("A", tmp_path / "a")
    draw_run("B", tmp_path / "b")
    fig, ax = plots._BUILT[("loss",)]
    # B: training, validation, chance and its threshold; A's partial baseline line and log scale are gone
    assert len(ax.lines) == 4 and ax.get_yscale() == "linear" and legend_texts(fig) in ([], ax_labels(ax))
    fig, axes = plots._BUILT[("decay", 2)]
    assert [len(ax.lines) for ax in axes] == [3, 3] and legend_texts(fig) in ([], ax_labels(axes[0]))
    assert axes[0].get_xlim()[1] < 14  # B's 12 lags, not A's 40
    assert axes[0].get_ylim()[1] - axes[0].get_ylim()[0] > 3  # B's decades, not the flat run's fixed range
    fig, (panels, bars) = plots._BUILT[("heatmap",)]
    assert [len(ax.images) for ax in panels] == [1, 1]
    assert panels[0].get_title() == "init: layer 0"  # A's "(no finite values)" is gone
    for ax, bar in zip(panels, bars):
        assert bar.mappable is ax.images[0] and bar.norm.vmin == ax.images[0].get_clim()[0]
