"""The depth study's figures, from tables/depth_*.csv (report/depth.py): the learned fraction by depth, the rates
through time and depth side by side, the decay over the (lag, layers crossed) grid, the depth chain against its
bounds, the per-layer weight gradients through training, and the BPTT signal per layer. Split by activation
throughout; medians over seeds, with the seed count in every caption.

`drawers(new_figure)` returns them for figures.py's DRAWERS, drawn on figures.py's figure factory.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from ..run.probe import HEATMAP_COLOURS, centred_range
from .depthtext import truthy
from .formatting import format_label
from .reductions import rate

Tables = dict[str, pd.DataFrame]
LN10 = math.log(10.0)


def drawers(new_figure: Callable) -> dict[str, Callable[[Tables], tuple | None]]:
    """name -> draw(tables): each returns (figure, caption, run IDs) or None when its tables are absent."""
    return {name: (lambda tables, f=f: f(tables, new_figure)) for name, f in (
        ("depth_learned", draw_learned), ("depth_rates", draw_rates), ("depth_grid", draw_grid),
        ("depth_chain", draw_chain), ("depth_weights", draw_weights), ("depth", draw_signal))}


def runs_of(tables: Tables) -> pd.DataFrame | None:
    runs = tables.get("depth_runs")
    return runs if runs is not None and len(runs) else None


def activations(runs: pd.DataFrame) -> list[str]:
    return sorted(set(runs["activation"].astype(str)))


def depth_axis(ax, depths) -> None:
    """x on log2 with a tick at each depth drawn."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(int(d) for d in depths))))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_minor_locator(NullLocator())


def seeds_words(runs: pd.DataFrame) -> str:
    n = runs.groupby(["activation", "layers"]).size()
    return f"{n.min()} seeds per cell" if n.min() == n.max() else f"{n.min()}–{n.max()} seeds per cell"


def draw_learned(tables: Tables, new_figure) -> tuple | None:
    runs = runs_of(tables)
    if runs is None:
        return None
    fig = new_figure(5.2, 3.0)
    ax = fig.subplots()
    for i, act in enumerate(activations(runs)):
        g = runs[(runs["activation"].astype(str) == act) & runs["learned"].notna()]
        rows = [(L, rate(int(s["learned"].map(truthy).sum()), len(s))) for L, s in g.groupby("layers")]
        L = np.array([r[0] for r in rows], float)
        y = np.array([r[1]["rate"] for r in rows])
        err = [y - np.array([r[1]["low"] for r in rows]), np.array([r[1]["high"] for r in rows]) - y]
        ax.errorbar(L * (1 + 0.04 * i), y, yerr=err, marker="o", ms=4, capsize=3, lw=1.2, color=f"C{i}",
                    label=f"{act} ({setting_words(g)})")
    depth_axis(ax, runs["layers"])
    ax.set(xlabel="layers L", ylabel="fraction of runs that learned", ylim=(-0.03, 1.04))
    ax.legend(fontsize=8)
    caption = (f"The learned fraction against the number of layers, per activation ({seeds_words(runs)}; bars: "
               "Wilson 95% intervals; points shifted sideways apart). Each activation trains at its own T and W_hh "
               "scale (the legend: T and the median ‖W_hh‖₂ measured at initialisation), so the figure compares "
               "depths within an activation, not the activations with each other.")
    return fig, caption, list(runs["run_id"])


def setting_words(runs: pd.DataFrame) -> str:
    """'T = 30, ‖W_hh‖₂ 1': what an activation's runs trained at (T values joined when several), measured norm."""
    T = sorted({int(t) for t in pd.to_numeric(runs["T"], errors="coerce").dropna()})
    norm = pd.to_numeric(runs["gamma_w"], errors="coerce").dropna()
    words = [f"T = {', '.join(map(str, T))}"] if T else []
    words += [f"‖W_hh‖₂ {format_label(float(norm.median()))}"] if len(norm) else []
    return ", ".join(words) or "settings not recorded"


def draw_rates(tables: Tables, new_figure) -> tuple | None:
    runs = runs_of(tables)
    if runs is None:
        return None
    acts = activations(runs)
    fig = new_figure(3.3 * len(acts) + 0.6, 3.2)
    axes = fig.subplots(1, len(acts), squeeze=False, sharey=True)[0]
    for ax, act in zip(axes, acts):
        g = runs[runs["activation"].astype(str) == act]
        for column, shift, colour, label in (("rate_time", 0.94, "C0", "through time (per step)"),
                                             ("rate_depth", 1.06, "C3", "through depth (per layer)")):
            ok = g[np.isfinite(g[column].astype(float))]
            ax.scatter(ok["layers"] * shift, ok[column], s=14, color=colour, alpha=0.6, label=label)
            med = ok.groupby("layers")[column].median()
            ax.plot(med.index * shift, med.to_numpy(), color=colour, lw=1.2)
        phi = float(g["gamma_phi"].median())
        ax.axhline(math.log(float(g["gamma_w"].median()) * phi), color="C0", ls="--", lw=0.9,
                   label="log(γ_W γ_φ), the step's bound")
        if np.isfinite(g["gamma_x"].astype(float)).any():
            ax.axhline(math.log(float(g["gamma_x"].median()) * phi), color="C3", ls="--", lw=0.9,
                       label="log(γ_X γ_φ), the layer's bound")
        depth_axis(ax, g["layers"])
        ax.set(title=act, xlabel="layers L", ylabel="rate (nats per factor)")
    axes[-1].legend(fontsize=7, loc="lower left")
    caption = ("The rates through time (top layer's own pairs, nats per step) and through depth (the depth chain at "
               "one step, nats per layer) side by side, initial model, one point per run (lines: medians over "
               f"seeds; {seeds_words(runs)}); dashed: the per-factor bounds with the measured γ_W, γ_X (medians).")
    return fig, caption, list(runs["run_id"])


def draw_grid(tables: Tables, new_figure) -> tuple | None:
    grid, runs = tables.get("depth_grid"), runs_of(tables)
    if grid is None or not len(grid) or runs is None:
        return None
    grid = grid[(grid["when"] == "init") & (grid["layers"] > 1)]
    cells = sorted({(str(a), int(L)) for a, L in zip(grid["activation"], grid["layers"])})
    if not cells:
        return None
    acts, depths = sorted({a for a, _ in cells}), sorted({L for _, L in cells})
    med = grid.groupby(["activation", "layers", "depth", "lag"], as_index=False)["log10_norm"].median()
    lo, hi = centred_range(float(med["log10_norm"].min()), float(med["log10_norm"].max()))
    fig = new_figure(2.6 * len(depths) + 1.0, 2.3 * len(acts) + 0.3)
    axes = fig.subplots(len(acts), len(depths), squeeze=False)
    for i, act in enumerate(acts):
        for j, L in enumerate(depths):
            ax = axes[i, j]
            m = med[(med["activation"].astype(str) == act) & (med["layers"] == L)]
            if not len(m):
                ax.set_axis_off()
                continue
            p = m.pivot(index="depth", columns="lag", values="log10_norm").sort_index()
            image = ax.pcolormesh(p.columns.to_numpy(), p.index.to_numpy(), np.ma.masked_invalid(p.to_numpy()),
                                  cmap=HEATMAP_COLOURS, norm=TwoSlopeNorm(0.0, lo, hi), shading="nearest")
            ax.grid(False)  # the style's grid showed through an empty cell as a grey cross
            hatch_empty(ax, p)
            ax.set_title(f"{act}, L = {L}", fontsize=8)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set(xlabel="lag t − k" if i == len(acts) - 1 else "", ylabel="layers crossed L − l" if j == 0 else "")
    fig.colorbar(image, ax=axes, label="log10 ‖∂h^L_t/∂h^l_k‖", shrink=0.8)
    caption = ("How ‖∂h^L_t/∂h^l_k‖ decays over the (lag, layers crossed) grid at initialisation: mean log10 norm "
               "over the pairs of each cell, median over the seeds; row 0 is the top layer's own pairs, column 0 the "
               "depth chain at one step. Red grows, blue decays, on one colour scale centred at 0. "
               f"{empty_words(med)}")
    return fig, caption, sorted(set(grid["run_id"]))


def cell_edges(centres: np.ndarray) -> np.ndarray:
    """The cell boundaries pcolormesh's shading="nearest" draws around these centres."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[:-1] + centres[1:]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def hatch_empty(ax, p: pd.DataFrame) -> None:
    """Hatch the cells with no value, so an unmeasured cell is not read as the colour of log10 = 0."""
    xs, ys = cell_edges(p.columns.to_numpy(float)), cell_edges(p.index.to_numpy(float))
    for i, j in zip(*np.nonzero(~np.isfinite(p.to_numpy(float)))):
        ax.add_patch(Rectangle((xs[j], ys[i]), xs[j + 1] - xs[j], ys[i + 1] - ys[i], fill=False, hatch="////",
                               edgecolor="0.55", lw=0))


def empty_words(med: pd.DataFrame) -> str:
    """The caption's account of the hatched cells: lag 0 at 0 layers crossed is ∂h^L_t/∂h^L_t = I, never probed;
    any other empty cell had no finite pair."""
    empty = set()
    for key, m in med.groupby(["activation", "layers"]):
        empty |= {(key, d, l) for d in set(m["depth"]) for l in set(m["lag"])} - {
            (key, d, l) for d, l in zip(m["depth"], m["lag"])}
    identity = any(d == 0 and l == 0 for _, d, l in empty)
    others = len(empty) - sum(d == 0 and l == 0 for _, d, l in empty)
    words = ["The hatched cell (lag 0, 0 layers crossed) is ∂h^L_t/∂h^L_t = I, not measured."] if identity else []
    if others:
        words.append(f"Hatched: {others} other cell{'s' if others != 1 else ''} with no finite pair.")
    return " ".join(words)


def draw_chain(tables: Tables, new_figure) -> tuple | None:
    chain, runs = tables.get("depth_chain"), runs_of(tables)
    if chain is None or not len(chain) or runs is None:
        return None
    chain = chain[chain["when"] == "init"]
    acts = sorted(set(chain["activation"].astype(str)))
    fig = new_figure(3.4 * len(acts) + 0.6, 3.2)
    axes = fig.subplots(1, len(acts), squeeze=False)[0]
    ids = []
    for ax, act in zip(axes, acts):
        c = chain[chain["activation"].astype(str) == act]
        c = c[c["layers"] == c["layers"].max()]
        ids += list(c["run_id"].unique())
        med = c.groupby("depth")[["log10_norm", "log10_stepnorm", "log10_product", "log10_global"]].median()
        ax.plot(med.index, med["log10_norm"], "o-", color="C0", ms=4, label="measured ‖∂h^L_t/∂h^l_t‖")
        ax.plot(med.index, med["log10_stepnorm"], ls="-.", color="C2", label="Π ‖V‖₂ (step-norm bound)")
        ax.plot(med.index, med["log10_product"], ls="--", color="C1", label="Π ‖W_xh‖₂ max|φ′| (product)")
        ax.plot(med.index, med["log10_global"], ls=":", color="C3", lw=1.5, label="(γ_X γ_φ)^(L−l) (global)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"{act}, L = {int(c['layers'].max())}", xlabel="layers crossed L − l",
               ylabel="log10 norm (mean over t)")
    axes[-1].legend(fontsize=7)
    caption = ("The depth chain at one time step, ∂h^L_t/∂h^l_t = V(L, t) ⋯ V(l+1, t), against its bounds, for the "
               "deepest stack of each activation at initialisation: means over t of log10, medians over the seeds. "
               "The global bound is the depth chain's (γ_X γ_φ)^(L−l) (docs/math.md, section 3.7) with each layer's "
               "measured γ_X; sigmoid's φ′ ≤ 1/4 puts it 0.6 decades per layer below tanh's.")
    return fig, caption, ids


def draw_weights(tables: Tables, new_figure) -> tuple | None:
    w, runs = tables.get("depth_weights"), runs_of(tables)
    if w is None or not len(w) or runs is None:
        return None
    w = w[w["param"] == "W_hh"]
    acts = sorted(set(w["activation"].astype(str)))
    fig = new_figure(3.4 * len(acts) + 0.9, 3.2)
    axes = fig.subplots(1, len(acts), squeeze=False)[0]
    ids = []
    for ax, act in zip(axes, acts):
        g = w[w["activation"].astype(str) == act]
        g = g[g["layers"] == g["layers"].max()]
        ids += list(g["run_id"].unique())
        med = g.groupby(["layer", "iter"], as_index=False)["log10_norm"].median()
        top = int(med["layer"].max())
        for layer, m in med.groupby("layer"):
            colour = (0.15 + 0.7 * layer / max(top, 1),) * 3
            ax.plot(m["iter"], m["log10_norm"], marker=".", color=colour, lw=1,
                    label=f"layer {layer}" + (" (input)" if layer == 0 else " (top)" if layer == top else ""))
        ax.set(title=f"{act}, L = {top + 1}", xlabel="iteration", ylabel="log10 ‖∂E/∂W_hh^l‖_F")
    axes[-1].legend(fontsize=6, ncol=2)
    caption = ("Per-layer weight gradients ‖∂E/∂W_hh^l‖ through training (the mean loss on the first 64 validation "
               "sequences at five checkpoints), the deepest stack of each activation, medians over the seeds; dark: "
               "the input layer, light: the top.")
    return fig, caption, ids


def draw_signal(tables: Tables, new_figure) -> tuple | None:
    signal, runs = tables.get("depth"), runs_of(tables)
    if signal is None or not len(signal) or runs is None:
        return None
    s = signal[signal["when"] == "init"].merge(runs[["run_id", "activation"]], on="run_id")
    acts = sorted(set(s["activation"].astype(str)))
    fig = new_figure(3.3 * len(acts) + 0.8, 3.0)
    axes = fig.subplots(1, len(acts), squeeze=False, sharey=True)[0]
    for ax, act in zip(axes, acts):
        g = s[s["activation"].astype(str) == act]
        med = g.groupby(["layers", "layer"], as_index=False)["log10_signal_first"].median()
        for i, (L, m) in enumerate(med.groupby("layers")):
            ax.plot(m["layer"], m["log10_signal_first"], marker="o", ms=3, color=f"C{i}", label=f"L = {L}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=act, xlabel="layer l (0 reads the input)", ylabel="log10 ‖∂E/∂h^l_0‖")
    axes[-1].legend(fontsize=7)
    caption = (f"The BPTT signal reaching the first state of each layer at initialisation ({seeds_words(runs)}, "
               "medians); the loss enters at the top layer.")
    return fig, caption, list(s["run_id"].unique())
