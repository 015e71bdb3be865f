"""The report's figures, drawn from `rnngrad analyze`'s tables (reports/tables/*.csv) into reports/figures/*.png.

Seaborn styles on matplotlib's object API with the Agg canvas: no pyplot, so no global figure state and no
display backend. Each `draw_*` function takes the tables and returns (figure, caption, run IDs drawn), or None
when its table is absent or empty, so any subset of sweep specs gives the figures it can.
"""

from __future__ import annotations

import math
import textwrap
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import offset_copy

from ..run.files import write_atomic
from .rate_figures import draw_activations, draw_phase
from .canvas import (  # noqa: F401  (FigureFile, Drawn: the figure API the report stage and tests use)
    DPI, Drawn, FigureFile, Tables, finite, label_clear_of_data, new_figure, panel_row, plain_log_ticks, png_bytes,
    run_info, table,
)
from ..run.plots import keep_min_span
from ..run.probe import draw_heatmap_panel
from ..run.verdicts import LEARNED_MARGIN, learned_below
from . import depthfigures, dynamics, studies
from .formatting import format_label, format_log_rate, format_value
from .reductions import short_value

LOSS_CEILING = 1e12  # loss curves are drawn up to here: beyond, a log axis's margins overflow float64
CEILING_DECADE = round(math.log10(LOSS_CEILING))  # named as the log axis ticks it: 10^12
MAX_PANELS, PANEL_COLUMNS = 16, 4  # decay curves: at most 16 panels (a spec's runs, an activation each), 4 to a row


# ---- the bound --------------------------------------------------------------------------------------------


def draw_heatmaps(tables: Tables) -> Drawn:
    """One row per picked run, from the lowest measured log(gamma_W gamma_phi) to the highest, its init and final
    probes side by side, each panel on its own colour range (a range shared with a panel tens of decades away
    leaves the flatter one a single colour: a trained run's final probe is often within a decade of 0)."""
    heat = table(tables, "heatmaps")
    if heat is None:
        return None
    info = run_info(tables)
    ids = sorted(dict.fromkeys(heat["run_id"]), key=lambda rid: heatmap_order(info, rid))
    whens = [w for w in ("init", "final") if w in set(heat["when"])]
    fig = new_figure(3.9 * len(whens) + 0.6, 3.1 * len(ids))
    axes = fig.subplots(len(ids), len(whens), squeeze=False)
    for i, rid in enumerate(ids):
        own = heat[heat["run_id"] == rid]
        for j, when in enumerate(whens):
            title = run_title(info, rid, when).replace(" ‖W_hh", "\n‖W_hh", 1)  # two lines: side by side they collide
            draw_heatmap_panel(axes[i, j], pair_matrix(own[own["when"] == when]), f"{title} · {when}")
            axes[i, j].title.set_fontsize(8)
    caption = ("log10 ‖∂h_t/∂h_k‖ of the top layer for every pair k < t, at initialisation and after training, "
               "for runs spanning log(γ_W γ_φ), one row per run from the lowest measured rate to the highest (each "
               "title: run, activation, init, and ‖W_hh‖₂ and rate as measured when the panel's probe ran); each "
               "panel has its own colour range, centred at 0 (read its colour bar: the ranges differ by tens of "
               "decades).")
    return fig, caption, ids


def heatmap_order(info: pd.DataFrame, run_id: str) -> float:
    """A run's measured log(gamma_W gamma_phi) at init, the heatmap rows' order (unknown last)."""
    if run_id not in info.index or "log_rate_init" not in info:
        return math.inf
    rate = pd.to_numeric(info.at[run_id, "log_rate_init"], errors="coerce")
    return float(rate) if np.isfinite(rate) else math.inf


def pair_matrix(rows: pd.DataFrame) -> np.ndarray:
    """Tidy (t, k, log10_norm) rows as the (T+1, T+1) matrix a probe measures, NaN where no row is (k >= t)."""
    t, k = rows["t"].to_numpy(int), rows["k"].to_numpy(int)
    size = int(t.max()) + 1 if t.size else 1
    out = np.full((size, size), np.nan)
    out[t, k] = rows["log10_norm"].to_numpy(float)
    return out


def run_title(info: pd.DataFrame, run_id: str, when: str) -> str:
    """A heatmap panel's title: the run, its activation and init, and ||W_hh||_2 and log(gamma_W gamma_phi) as
    measured when that panel's probe ran (`when`: init or final); a value not measured is not shown."""
    if run_id not in info.index:
        return run_id[:8]
    r = info.loc[run_id]
    init = f" {r.get('init')}" if isinstance(r.get("init"), str) else ""
    parts = [f"{run_id[:8]} {r.get('activation')}{init}"]
    norm = pd.to_numeric(r.get(f"w_norm_{when}"), errors="coerce")
    if norm is not None and np.isfinite(norm):
        parts.append(f"‖W_hh‖₂={format_label(float(norm))}")
    rate = pd.to_numeric(r.get(f"log_rate_{when}"), errors="coerce")
    if rate is not None and np.isfinite(rate):
        parts.append(f"log(γ_Wγ_φ)={format_log_rate(rate)}")
    return " ".join(parts)


def measured_norm(r: pd.Series) -> str:
    """A run's ||W_hh||_2 as measured at init and, where training changed it, at the end ("‖W_hh‖₂=1→1.38": a
    label shared by a run's initial and final panels names both), else its config's gamma_w named as the config's."""
    norm = pd.to_numeric(r.get("w_norm_init", r.get("gamma_w_init")), errors="coerce")
    end = pd.to_numeric(r.get("w_norm_final", r.get("gamma_w_final")), errors="coerce")
    if norm is not None and np.isfinite(norm):
        start = format_label(float(norm))  # measured: at the report's precision
        moved = end is not None and np.isfinite(end) and format_label(float(end)) != start
        return f"‖W_hh‖₂={start}→{format_label(float(end))}" if moved else f"‖W_hh‖₂={start}"
    return f"gamma_w={short_value(r.get('gamma_w'))} (config)"


def decay_runs(tables: Tables) -> pd.DataFrame:
    """Runs to draw decay curves for: those of the studies spanning gamma_W if present, else all runs."""
    info = finite(run_info(tables), ["gamma_w"]) if "gamma_w" in run_info(tables) else run_info(tables).iloc[:0]
    chosen = info[info["spec"].isin(studies.names("spans_rate"))]
    return chosen if len(chosen) else info


def draw_decay(tables: Tables) -> Drawn:
    """Decay by lag, one panel per activation and init at init (tanh first) and one per activation and init after
    training where its runs trained, one colour per γ_W: the median over runs (seeds, specs) of log10 ‖∂h_t/∂h_k‖
    and of the global bound of the same models. Inits are not pooled (a Gaussian and an orthogonal W_hh of one
    norm decay differently), nor probe lengths (a median over runs whose probes end at different lags kinks where
    the shorter ones stop): each panel keeps its runs of the longest probe. A run trained when its final probe
    differs from its initial one."""
    decay, runs = table(tables, "decay"), decay_runs(tables)
    if decay is None or runs.empty:
        return None
    runs = runs[runs["run_id"].isin(set(decay["run_id"]))].reset_index(drop=True).assign(
        gamma=lambda r: r["gamma_w"].astype(float), act=lambda r: r["activation"].astype(str),
        ini=lambda r: r["init"].astype(str) if "init" in r else "",
        steps=lambda r: pd.to_numeric(r["probe_steps"], errors="coerce") if "probe_steps" in r else 0.0)
    longest = runs.groupby(["act", "ini"])["steps"].transform("max")
    runs = runs[(runs["steps"] == longest) | longest.isna()].reset_index(drop=True)
    if runs.empty:
        return None
    trained = trained_runs(decay)
    d = decay.merge(runs[["run_id", "act", "ini", "gamma"]], on="run_id")
    d = d[(d["when"] == "init") | d["run_id"].isin(trained)]
    groups = sorted(set(zip(runs["act"], runs["ini"])), key=lambda g: (g[0] != "tanh", g))
    trained_groups = set(zip(*(runs.loc[runs["run_id"].isin(trained), c] for c in ("act", "ini"))))
    with_training = [g for g in groups if g in trained_groups]
    panels = [(g, "init") for g in groups] + [(g, "final") for g in with_training]
    gammas = sorted(set(runs["gamma"]))
    palette = sns.color_palette("tab10" if len(gammas) <= 10 else "husl", len(gammas))  # told apart by hue
    colours = dict(zip(gammas, palette))
    ncol = min(PANEL_COLUMNS, len(panels))  # not 5: five panels across a printed page set the legend at 4 pt
    nrow = math.ceil(len(panels) / ncol)
    fig = new_figure(2.4 * ncol + 0.3, 2.3 * nrow + 0.8)
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    flattened = set()
    for ax, ((act, ini), when) in zip(axes, panels):
        for g in gammas:
            sel = d[(d["act"] == act) & (d["ini"] == ini) & (d["gamma"] == g) & (d["when"] == when)]
            if sel.empty:
                continue
            med = sel.groupby("lag")[["log10_norm", "log10_global"]].median()
            measured, noise = flat_if_rounding(med["log10_norm"])
            flattened |= {(act, g)} if noise else set()
            ax.plot(med.index, measured, color=colours[g], lw=1.3)
            ax.plot(med.index, med["log10_global"], color=colours[g], ls=":", lw=1.0)
        ax.set_title(f"{act}, {ini}, {'at init' if when == 'init' else 'after training'}", fontsize=9)
        ax.set(xlabel="lag t − k", ylabel="log10 norm")
        keep_min_span(ax)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[g], lw=2) for g in gammas]
    measured = pd.to_numeric(runs.get("w_norm_init", pd.Series(np.nan, index=runs.index)), errors="coerce")
    span = measured.groupby(runs["gamma"]).agg(["min", "max"])  # what each config value gave, as measured
    # measured at init: a trained panel's runs have moved from it (their colour still names where they started)
    labels = [f"gamma_w {short_value(g)} (‖W_hh‖₂ {norm_span(span, g)} at init)" for g in gammas]
    handles += [Line2D([], [], color="0.3", lw=1.3), Line2D([], [], color="0.3", ls=":", lw=1.0)]
    labels += ["measured", "global bound (t−k) log(γ_W γ_φ)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=8.5)
    caption = ("Median log10 ‖∂h_t/∂h_k‖ at each lag (top layer; median over the runs of one activation, init and "
               "configured gamma_w, seeds and specs together, each panel at its runs' longest probe; the legend "
               "gives the ‖W_hh‖₂ measured on them at initialisation) and the global bound of the same models "
               "(dotted), for every activation and init at initialisation"
               + (", and after training for those whose runs trained ("
                  + ", ".join(f"{a} {i}" for a, i in with_training) + ")" if with_training
                  else "; no run drawn here trained") + ".")
    if flattened:
        cells = ", ".join(f"{a} at γ_W = {short_value(g)}" for a, g in sorted(flattened))
        caption += (f" Flat at 0: {cells}, whose norm is 1 to rounding (|log10| below {ROUNDING_DECADES:g} at "
                    "every lag); the rounding is not drawn as a trend.")
    return fig, caption, runs["run_id"].tolist()


def norm_span(span: pd.DataFrame, gamma: float) -> str:
    """The measured ||W_hh||_2 of the runs configured at `gamma`: one value, a range "1.7–2.1", or "n/a"."""
    if gamma not in span.index or not np.isfinite(span.loc[gamma, "min"]):
        return "n/a"
    lo, hi = (short_value(float(span.loc[gamma, c])) for c in ("min", "max"))
    return lo if lo == hi else f"{lo}–{hi}"


ROUNDING_DECADES = 1e-9  # a log10 norm this close to 0 at every lag is an exact 1 up to float64 rounding


def flat_if_rounding(curve: pd.Series) -> tuple[pd.Series, bool]:
    """(the curve, False), or (zeros, True) when every point is within ROUNDING_DECADES of 0: a norm of exactly 1
    (a linear RNN with an orthogonal W at γ_W = 1) whose last-bit rounding would otherwise be drawn as a trend."""
    values = curve.to_numpy(float)
    finite = values[np.isfinite(values)]
    if finite.size and np.all(np.abs(finite) < ROUNDING_DECADES):
        return curve * 0.0, True
    return curve, False


def trained_runs(decay: pd.DataFrame) -> set[str]:
    """Runs whose final probe differs from the initial one: they trained (an untrained run probes one model twice)."""
    wide = decay.pivot_table(index=["run_id", "lag"], columns="when", values="log10_norm", aggfunc="first")
    if not {"init", "final"} <= set(wide.columns):
        return set()
    moved = (wide["final"] - wide["init"]).abs() > 0
    return set(moved[moved].index.get_level_values("run_id"))


def draw_spec_decay(tables: Tables, spec: str) -> Drawn:
    """One spec's decay by lag against both bounds, a panel per run label (its grid values, seeds together)."""
    decay = table(tables, "decay")
    if decay is None:
        return None
    runs = run_info(tables)
    runs = runs[(runs["spec"].astype(str) == spec) & runs["run_id"].isin(set(decay["run_id"]))]
    labels = runs["label"].astype(str) if "label" in runs else pd.Series("all", index=runs.index)
    panels = [(label, runs.loc[labels == label, "run_id"]) for label in dict.fromkeys(labels)]
    drawn = decay_panels(decay, panels)
    if drawn is None:
        return None
    more = f" (the first {MAX_PANELS} of {len(panels)})" if len(panels) > MAX_PANELS else ""
    caption = (f"Spec {spec}: mean log10 ‖∂h_t/∂h_k‖ over the pairs at each lag (top layer) with the product bound "
               f"Σ log(‖W‖ max|φ'|) and the global bound (t−k) log(γ_W γ_φ), per run{more}; the faint line is the "
               "trained model.")
    return drawn[0], caption, drawn[1]


def decay_panels(decay: pd.DataFrame, panels: list[tuple[str, Iterable[str]]]) -> tuple[Figure, list[str]] | None:
    """A grid of decay plots, one panel per (title, run IDs) with those runs' curves (the first MAX_PANELS,
    PANEL_COLUMNS to a row) and one legend below; returns (figure, run IDs drawn), or None without panels."""
    panels = panels[:MAX_PANELS]
    if not panels:
        return None
    ncol = min(PANEL_COLUMNS, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig = new_figure(2.5 * ncol + 0.3, 2.1 * nrow + 0.5)
    axes, drawn = fig.subplots(nrow, ncol, squeeze=False).ravel(), []
    for ax, (title, ids) in zip(axes, panels):
        for rid in ids:
            drawn.append(rid)
            plot_decay_run(ax, decay[decay["run_id"] == rid])
        ax.set_title(textwrap.fill(title, 34), fontsize=8)
        ax.set(xlabel="lag t − k", ylabel="log10 norm")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles = dict(zip(*reversed(axes[0].get_legend_handles_labels())))
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=4, fontsize=8)
    return fig, drawn


def plot_decay_run(ax, d: pd.DataFrame) -> None:
    for when, alpha in (("init", 1.0), ("final", 0.45)):
        w = d[d["when"] == when]
        ax.plot(w["lag"], w["log10_norm"], color="C0", alpha=alpha, lw=1.3, label=f"measured ({when})")
    w = d[d["when"] == "init"]
    ax.plot(w["lag"], w["log10_product"], color="C1", ls="--", lw=1.1, label="product bound (init)")
    ax.plot(w["lag"], w["log10_global"], color="C3", ls=":", lw=1.4, label="global bound (init)")


def draw_tightness(tables: Tables) -> Drawn:
    """The global bound's gap by lag, one line per spec (solid at init, dashed after training): the median over
    the spec's runs of its longest probe that have a finite gap at every lag, so that no line steps where a run drops
    out (pooled over specs, the curve was a sawtooth of probe lengths, not of the gap; a run whose norm reaches 0 has
    no finite gap from there on). Its slope is the gap's rate, the property."""
    decay = table(tables, "decay")
    if decay is None or "gap_global" not in decay or decay["gap_global"].notna().sum() == 0:
        return None
    d = decay[decay["gap_global"].notna()]
    longest = d.groupby(["spec", "run_id"])["lag"].max().rename("steps").reset_index()
    longest = longest[longest["steps"] == longest.groupby("spec")["steps"].transform("max")]
    d = d[d["run_id"].isin(set(longest["run_id"]))]
    specs = sorted(d["spec"].astype(str).unique())
    colours = dict(zip(specs, sns.color_palette("tab10" if len(specs) <= 10 else "husl", len(specs))))
    fig = new_figure(6.4, 3.4)
    ax = fig.subplots()
    for spec in specs:
        lines = {}
        for when in ("init", "final"):
            w = d[(d["spec"].astype(str) == spec) & (d["when"] == when)]
            gaps = w.pivot_table(index="run_id", columns="lag", values="gap_global", aggfunc="first")
            whole = gaps[np.isfinite(gaps.to_numpy(float)).all(axis=1)]  # one set of runs at every lag of the line
            if len(whole):
                lines[when] = (whole.median(), f"{len(whole)}" + (f" of {len(gaps)}" if len(whole) < len(gaps) else ""))
        ns = list(dict.fromkeys(str(n) for _, n in lines.values()))  # the trained line's n too when it differs
        label = f"{spec} (n = {ns[0]})" if len(ns) == 1 else f"{spec} (n = {ns[0]}; after training {ns[1]})"
        for when, (med, _) in lines.items():
            ax.plot(med.index, med.to_numpy(), color=colours[spec], ls="-" if when == "init" else "--",
                    lw=1.4 if when == "init" else 1.0, label=label)
            label = None
    ax.set(xlabel="lag t − k", ylabel="global bound − measured (decades)")
    ax.legend(fontsize=7, ncol=2)
    caption = ("How loose the global bound is: (t − k) log10(γ_W γ_φ) − log10 ‖∂h_t/∂h_k‖ in decades by lag (top "
               "layer), one line per spec, the median over its runs of its longest probe that have a finite gap at "
               "every lag, the same runs all along the line (n in the legend, the trained line's too where it "
               "differs; \"n = 22 of 24\": two runs of that probe left out, e.g. a norm that reached 0); solid at "
               "initialisation, dashed after training. The gap grows about linearly with the lag, so its slope, the "
               "gap rate, is the property; its decades depend on how long the probe is. Every lag's median over all "
               "runs is in tables/tightness.csv.")
    return fig, caption, sorted(set(d["run_id"]))


def draw_rates(tables: Tables) -> Drawn:
    runs = table(tables, "runs")
    if runs is None:
        return None
    r = finite(runs, ["slope_init", "lyapunov_init", "log_rate_init"])
    if r.empty:
        return None
    fig = new_figure(7.2, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    for ax, x, xl in ((ax1, "log_rate_init", "log(γ_W γ_φ)"), (ax2, "lyapunov_init", "top Lyapunov exponent")):
        sns.scatterplot(data=r, x=x, y="slope_init", hue="activation", ax=ax, s=28, legend=ax is ax2)
        lo, hi = (float(min(r[x].min(), r["slope_init"].min())), float(max(r[x].max(), r["slope_init"].max())))
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", label="y = x")
        ax.set(xlabel=xl, ylabel="fitted slope of log‖∂h_t/∂h_k‖ (per step)")
    if ax2.get_legend():
        sns.move_legend(ax2, "center left", bbox_to_anchor=(1, 0.5), fontsize=7, title_fontsize=7)
    caption = ("Measured decay slope (initial model, nats per step) against the global rate log(γ_W γ_φ), which "
               "bounds it from above, and against the top Lyapunov exponent λ₁ of driven trajectories, the rate the "
               "slope tends to for long probes in a stationary regime (a finite probe from h₀ = 0 need not reach it).")
    return fig, caption, list(r["run_id"])


# ---- per spec -----------------------------------------------------------------------------------------------


def ids_of(t: pd.DataFrame) -> list[str]:
    return [i for cell in t["run_ids"].astype(str) for i in cell.split(";")]


def draw_clip_curves(tables: Tables) -> Drawn:
    curves = table(tables, "clip_curves")
    if curves is None:
        return None
    modes = list(dict.fromkeys(curves["clip_mode"].astype(str)))
    outcome = run_info(tables).get("outcome", pd.Series(dtype=object))
    fig, axes = panel_row(len(modes), 2.8, 2.8)
    ceilings = []
    for ax, mode in zip(axes, modes):
        c = curves[curves["clip_mode"].astype(str) == mode].copy()
        ceiling = (c["loss"] > LOSS_CEILING).any()  # an exploding run reaches 1e300: log axes overflow there
        if ceiling:
            c["loss"] = c["loss"].clip(upper=LOSS_CEILING)
            ceiling = ax.axhline(LOSS_CEILING, color="0.5", ls=":", lw=1)
        c["threshold"] = c["clip_threshold"].map(short_value) if mode != "none" else "none"
        sns.lineplot(data=c, x="iter", y="loss", hue="threshold", units="run_id", estimator=None, ax=ax, lw=1,
                     legend=mode != "none")
        if ax.get_legend():  # small, top right: the shared y axis leaves the top empty in the clipped panels
            sns.move_legend(ax, "upper right", fontsize=7, title_fontsize=7, ncol=2)
        ends = c.dropna(subset=["loss"]).groupby("run_id").tail(1)
        for name, marker in (("diverged", "x"), ("unstable", "^")):
            end = ends[ends["run_id"].map(outcome).eq(name)]
            ax.plot(end["iter"], end["loss"], marker, color="C3", ms=8 if marker == "x" else 6,
                    mew=2 if marker == "x" else 1, zorder=5, ls="none")
        ax.set(yscale="log", title=f"clip: {mode}", xlabel="iteration")
        ceilings.append((ax, ceiling))
    for ax, ceiling in ceilings:  # labelled once every panel is drawn (they share the y axis): where no curve is
        if ceiling:
            label_clear_of_data(ax, f"≥ $10^{{{CEILING_DECADE}}}$", LOSS_CEILING, exclude=(ceiling,), fontsize=7, color="0.4")
    caption = (f"Training loss curves per clipping mode and threshold. Losses above 10^{CEILING_DECADE} are drawn "
               f"on the dotted line at 10^{CEILING_DECADE}; a red x marks where a run diverged (inf or NaN), a red "
               "triangle the end of an unstable run (finite, but its loss or weights ran away).")
    return fig, caption, list(curves["run_id"].unique())


def draw_clip_final(tables: Tables) -> Drawn:
    clip = table(tables, "clip")
    if clip is None:
        return None
    fig = new_figure(5.6, 3.0)
    ax = fig.subplots()
    top = ax.get_xaxis_transform()  # x in data, y in axes fraction: cells with no ok run have no loss to plot
    for i, (mode, c) in enumerate(clip.groupby(clip["clip_mode"].astype(str))):
        loss = c["final_loss"].astype(float)
        lost_runs = (c["n_diverged"] + c["n_unstable"]) if "n_unstable" in c else c["n_diverged"]
        if mode == "none":
            if np.isfinite(loss).any():
                ax.axhline(float(loss.iloc[0]), color="0.3", ls="--", label="no clipping")
            if (lost_runs > 0).any():  # words alone in the legend: with no threshold there is no place to mark
                ax.plot([], [], ls="none", label=f"no clipping: {outcome_words(c.iloc[0])}"
                        + ("" if np.isfinite(loss).any() else " (no loss to draw)"))
            continue
        ax.plot(c["clip_threshold"].astype(float), loss, marker="o", label=mode, color=f"C{i}")
        lost = c[~np.isfinite(loss) & (lost_runs > 0)]
        ax.plot(lost["clip_threshold"].astype(float), np.full(len(lost), 0.97), "x", color=f"C{i}", mew=2,
                transform=top, clip_on=False)
    ax.set(xscale="log", yscale="log", xlabel="clip threshold", ylabel="median final training loss")
    plain_log_ticks(ax.xaxis, set(clip["clip_threshold"].dropna().astype(float)))
    ax.legend(fontsize=8)
    caption = ("Final training loss (median over the ok runs) against the clip threshold, per clipping mode; an x "
               "along the top marks a threshold at which no run was ok (every run diverged or went unstable).")
    return fig, caption, ids_of(clip)


def outcome_words(row: pd.Series) -> str:
    """"diverged 1 of 1, unstable 0 of 1" for a row of the clip table."""
    n = int(row["n_runs"])
    parts = [f"{name} {int(row[f'n_{name}'])} of {n}" for name in ("diverged", "unstable") if f"n_{name}" in row]
    return ", ".join(parts)


ONE_RUN_WORDS = "a T with one run is a point with no line to its neighbours (one run places no boundary);"
LEVEL_STYLES = (("learned", "o", "-", True), ("solved", "s", "--", False))  # level, marker, line, filled
# Learned and solved of one group sit this far left and right of their T: 8 pt apart, wider than a cap (CAP_POINTS
# either side), so equal rates keep two readable intervals. Points, not data units: the ticks stay at the true T.
LEVEL_DODGE_POINTS = 4.0
CAP_POINTS = 3.0  # draw_levels' capsize
TICK_LABEL_POINTS = 30.0  # what a panel's width loses to its y tick labels and the space between panels
DODGE_WORDS = ("each series drawn a few points sideways of its T, so that intervals at one T stay apart; the ticks at "
               "the T values run")


def dodge_at(i: int, groups: int) -> float:
    """Points sideways of T for group i of `groups`, so that its learned and solved sit clear of its neighbours'."""
    return (i - (groups - 1) / 2) * 2 * len(LEVEL_STYLES) * LEVEL_DODGE_POINTS


def cluster_points(groups: int) -> float:
    """From a T to the outer cap of the farthest of its `groups` groups' dodged intervals, in points."""
    return abs(dodge_at(0, groups)) + LEVEL_DODGE_POINTS * (len(LEVEL_STYLES) - 1) + CAP_POINTS


def dodged_panel_width(t_by_panel: Iterable, groups: int, least: float) -> float:
    """A panel width (inches, at least `least`) on which the dodged clusters of neighbouring T never touch."""
    half, needed = cluster_points(groups), 0.0
    for ts in t_by_panel:
        ts = np.unique(np.asarray(ts, float))
        if len(ts) > 1:
            needed = max(needed, (2 * half + CAP_POINTS) * (ts[-1] - ts[0]) / np.diff(ts).min() + 2 * half)
    return max(least, (needed + TICK_LABEL_POINTS) / 72)


def fit_dodged(ax, ts, groups: int, width: float) -> None:
    """A tick at each T (the dodged points sit beside theirs), and x limits that hold the outermost T's whole
    cluster on a panel `width` inches wide."""
    ts = np.unique(np.asarray(ts, float))
    half = cluster_points(groups)
    ax.set_xticks(ts, [f"{t:g}" for t in ts])
    if len(ts) > 1:
        pad = half * (ts[-1] - ts[0]) / (width * 72 - TICK_LABEL_POINTS - 2 * half)
        ax.set_xlim(ts[0] - pad, ts[-1] + pad)


def draw_levels(ax, g: pd.DataFrame, x: pd.Series, color, label: str, at: float = 0.0,
                dodge: float = LEVEL_DODGE_POINTS) -> None:
    """One group's learned and solved rates against T (x, g sorted by T), each with its Wilson interval, drawn `at`
    points sideways of x and the levels `dodge` points either side of that; a line joins two neighbouring points
    only when both rest on at least two runs, so a single run stands alone."""
    n = pd.to_numeric(g["n_scored"], errors="coerce").fillna(0).to_numpy(int) if "n_scored" in g else None
    for j, (level, marker, style, filled) in enumerate(LEVEL_STYLES):
        shifted = offset_copy(ax.transData, fig=ax.figure, units="points",
                              x=at + dodge * (2 * j - (len(LEVEL_STYLES) - 1)))
        cols = [f"{level}_rate", f"{level}_rate_low", f"{level}_rate_high"]
        if any(c not in g for c in cols):
            continue
        ok = np.isfinite(g[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)).all(axis=1)
        xs, y = x.to_numpy(float)[ok], g[cols[0]].astype(float).to_numpy()[ok]
        lo, hi = g[cols[1]].astype(float).to_numpy()[ok], g[cols[2]].astype(float).to_numpy()[ok]
        ax.errorbar(xs, y, yerr=[y - lo, hi - y], color=color, marker=marker, ms=4, ls="none", capsize=CAP_POINTS,
                    mfc=color if filled else "none", label=f"{label}: {level}" if label else level, transform=shifted)
        ax.update_datalim(np.column_stack([np.r_[xs, xs], np.r_[lo, hi]]))  # a shifted artist adds no limits
        ax.autoscale_view()
        several = (n[ok] >= 2) if n is not None else np.ones(len(xs), dtype=bool)
        for i in range(len(xs) - 1):
            if several[i] and several[i + 1]:
                ax.plot(xs[i : i + 2], y[i : i + 2], color=color, ls=style, lw=1.2, transform=shifted)


def draw_success(tables: Tables) -> Drawn:
    succ = table(tables, "success_vs_T")
    if succ is None:
        return None
    tasks = list(dict.fromkeys(succ["task"].astype(str)))
    if "label" not in succ:  # one group of runs per task and T: nothing to tell apart in a legend
        succ = succ.assign(label="")
    labels = list(dict.fromkeys(succ["label"].astype(str)))
    colors = dict(zip(labels, sns.color_palette(n_colors=len(labels))))
    # at least 2.4 in a panel, 3 tasks in 8.2 in: at 85% on a page, ticks legible
    width = dodged_panel_width([succ.loc[succ["task"].astype(str) == t, "T"] for t in tasks], len(labels), 2.4)
    fig, axes = panel_row(len(tasks), width, 3.0, margin=1.0)
    handles = {}
    for ax, task in zip(axes, tasks):
        s = succ[succ["task"].astype(str) == task]
        for label, g in s.groupby(s["label"].astype(str), sort=False):
            draw_levels(ax, g, g["T"].astype(float), colors[label], label, at=dodge_at(labels.index(label),
                                                                                       len(labels)))
        fit_dodged(ax, s["T"], len(labels), width)
        ax.set(title=task, xlabel="sequence length T", ylabel="fraction of runs", ylim=(-0.03, 1.04))
        handles |= dict(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), 6), fontsize=8)
    caption = ("Long-range tasks: against sequence length T, the fraction of runs that learned (filled, solid: "
               f"final validation loss at least {LEARNED_MARGIN:.0%} below the partial baseline, the best model that "
               "uses only part of what the "
               "task needs) and that solved the task (hollow, dashed: at least 99 % of held-out sequences right), "
               f"with Wilson 95% intervals ({DODGE_WORDS}); {ONE_RUN_WORDS} tables/success_vs_T.csv gives the "
               "counts.")
    return fig, caption, ids_of(succ)


def draw_remedies_success(tables: Tables) -> Drawn:
    """The remedies spec: per task, the fraction of each arm's runs that learned against T, with Wilson intervals."""
    arms = table(tables, "remedies")
    if arms is None:
        return None
    order = {name: i for i, name in enumerate(studies.REMEDY_ARMS.values())}
    succ = arms.assign(label=arms["arm_name"].astype(str)).sort_values("label", key=lambda s: s.map(order))
    tasks = list(dict.fromkeys(succ["task"].astype(str)))
    labels = list(dict.fromkeys(succ["label"]))
    colors = {studies.REMEDY_ARMS[arm]: colour for arm, colour in REMEDY_COLOURS.items()}
    if succ["T"].nunique() == 1:  # one length: the arms side by side, not spread along a T axis they share
        return remedies_at_one_T(succ, tasks, labels, colors), (
            f"Remedies at T = {int(succ['T'].iloc[0])}: per arm, the fraction of its runs that learned (filled: at "
            f"least {LEARNED_MARGIN:.0%} below the partial baseline) and that solved the task (hollow: at least 99 % "
            "of held-out sequences right), with Wilson 95% intervals (one T: no lines join the points); "
            "tables/remedies.csv gives the counts."), \
            ids_of(arms)
    width = dodged_panel_width([succ.loc[succ["task"].astype(str) == t, "T"] for t in tasks], len(labels), 3.2)
    fig, axes = panel_row(len(tasks), width, 3.0, margin=1.0)
    handles = {}
    for ax, task in zip(axes, tasks):
        s = succ[succ["task"].astype(str) == task]
        for label, g in s.groupby("label", sort=False):
            g = g.sort_values("T")
            draw_levels(ax, g, g["T"].astype(float), colors[label], label, at=dodge_at(labels.index(label),
                                                                                       len(labels)))
        fit_dodged(ax, s["T"], len(labels), width)
        ax.set(title=task, xlabel="sequence length T", ylabel="fraction of runs", ylim=(-0.03, 1.04))
        handles |= dict(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), 4), fontsize=8)
    caption = ("Remedies: against sequence length T, the fraction of each arm's runs that learned (filled, solid: "
               f"at least {LEARNED_MARGIN:.0%} below the partial baseline) and that solved the task (hollow, dashed: "
               f"at least 99 % of held-out sequences right), with Wilson 95% intervals ({DODGE_WORDS}; the arms in "
               f"legend order, learned left of solved); {ONE_RUN_WORDS} tables/remedies.csv gives the counts.")
    return fig, caption, ids_of(arms)


def remedies_at_one_T(succ: pd.DataFrame, tasks: list[str], labels: list[str], colors: dict):
    """Each task's panel with one column per arm (named on the axis), learned left of solved."""
    from matplotlib.lines import Line2D

    fig, axes = panel_row(len(tasks), 3.2, 3.4, margin=1.0)
    for ax, task in zip(axes, tasks):
        s = succ[succ["task"].astype(str) == task]
        for i, label in enumerate(labels):
            g = s[s["label"] == label]
            for level, shift in (("learned", -0.15), ("solved", 0.15)):
                other = "solved" if level == "learned" else "learned"
                only = g.drop(columns=[c for c in g if c.startswith(f"{other}_rate")])
                draw_levels(ax, only, pd.Series(i + shift, index=only.index, dtype=float), colors[label], "",
                            dodge=0.0)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set(title=task, ylabel="fraction of runs", ylim=(-0.03, 1.04), xlim=(-0.6, len(labels) - 0.4))
    fig.legend([Line2D([], [], color="black", marker=m, ls="none", mfc="black" if filled else "none")
                for _, m, _, filled in LEVEL_STYLES], [level for level, *_ in LEVEL_STYLES],
               loc="outside lower center", ncol=len(LEVEL_STYLES), fontsize=8)
    return fig


# One colour per remedies arm, far apart in hue and lightness (the default cycle puts two reds side by side): the
# vanilla tanh arms in blues and grey, the constrained RNNs in greens, the IRNN red, the gated cells purple and orange.
REMEDY_COLOURS = {"tanh_unclipped": "#7f7f7f", "tanh_clipped": "#1f77b4", "tanh_clipped_omega": "#17becf",
                  "irnn": "#d62728", "orthogonal_tanh": "#2ca02c", "exprnn": "#98df8a", "lstm": "#9467bd",
                  "gru": "#ff7f0e"}


def draw_remedies_decay(tables: Tables) -> Drawn:
    """The remedies spec: per task, at its longest T, each arm's median over runs of log10 ||dh_t/dh_k|| by lag,
    at init (dashed) and after training (solid); for the LSTM also its cell state's ||dc_t/dc_k|| (dotted)."""
    arms, decay = table(tables, "remedies"), table(tables, "decay")
    if arms is None or decay is None:
        return None
    tasks = list(dict.fromkeys(arms["task"].astype(str)))
    colors = {studies.REMEDY_ARMS[arm]: colour for arm, colour in REMEDY_COLOURS.items()}
    fig, axes = panel_row(len(tasks), 3.6, 3.2, margin=1.1)
    handles, ids = {}, []
    for ax, task in zip(axes, tasks):
        a = arms[arms["task"].astype(str) == task]
        a = a[a["T"] == a["T"].max()]
        for row in a.itertuples():
            runs = str(row.run_ids).split(";")
            ids += runs
            d = decay[decay["run_id"].isin(runs)]
            for when, style in (("init", "--"), ("final", "-")):
                m = d[d["when"] == when].groupby("lag")["log10_norm"].median()
                line, = ax.plot(m.index, m.to_numpy(), ls=style, lw=1.1, color=colors[row.arm_name],
                                label=f"{row.arm_name}" if when == "final" else None)
                if when == "final":
                    handles[row.arm_name] = line
            if "log10_norm_cell" in d and d["log10_norm_cell"].notna().any():
                m = d[d["when"] == "final"].groupby("lag")["log10_norm_cell"].median()
                line, = ax.plot(m.index, m.to_numpy(), ls=":", lw=1.4, color=colors[row.arm_name])
                handles[f"{row.arm_name}: cell state ‖∂c_t/∂c_k‖"] = line
        if (a["arm"] == "exprnn").any():  # its ||W_hh||_2 is 1: its bound is gamma_phi^(t-k) = 1 for tanh
            exp_name = studies.REMEDY_ARMS["exprnn"]
            handles[f"{exp_name}'s bound γ_φ^(t−k) = 1"] = ax.axhline(0.0, color=colors[exp_name], ls="-.", lw=0.9)
        ax.set(title=f"{task}, T = {int(a['T'].max())}" if len(a) else task, xlabel="lag t − k",
               ylabel="log10 ‖∂h_t/∂h_k‖")
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=3, fontsize=8)
    caption = ("Remedies: each line is, at each lag t − k, the median over an arm's runs at the longest T of the "
               "run's mean log10 ‖∂h_t/∂h_k‖ over the pairs at that lag (its probe: the first min(probe_len, T) steps "
               "of a validation sequence, top layer); dashed at initialisation, solid after "
               "training, dotted the LSTM's cell state ‖∂c_t/∂c_k‖ after training (the LSTM's solid line is the norm "
               "of its whole state (h, c)); dash-dotted at 0, the expRNN's bound γ_φ^(t−k) = 1 (its ‖W_hh‖₂ is 1 and "
               "tanh's γ_φ is 1).")
    return fig, caption, ids


TEXT_READS = {"carried": "state carried through the held-out text", "windows": "windows from h = 0"}  # legend
TEXT_READ_DASHES = {TEXT_READS["carried"]: "", TEXT_READS["windows"]: (4, 1, 1, 1)}  # solid, dash-dot


def draw_text(tables: Tables, spec: str = "text") -> Drawn:
    """Each of a text spec's runs' validation loss against characters seen, coloured by arm (vanilla RNN, LSTM),
    solid where it was read with the state carried (a consecutive-window run), dash-dot on windows from h = 0 (a
    random-window run), with the chance loss and the learned bar below it."""
    curve = table(tables, "text_val_curve")
    if curve is not None and "spec" in curve:  # tables from before the column hold the text spec's rows only
        curve = curve[curve["spec"].astype(str) == spec]
    if curve is None or not len(curve):
        return None
    info = run_info(tables)
    c = curve.assign(arm=curve["arm"].astype(str).map(studies.TEXT_ARMS).fillna(curve["arm"].astype(str)),
                     chars=pd.to_numeric(curve["chars"], errors="coerce") / 1e6)
    fig = new_figure(5.6, 3.0)
    ax = fig.subplots()
    order = [a for a in studies.TEXT_ARMS.values() if a in set(c["arm"])]
    order += sorted(set(c["arm"]) - set(order))
    reads = c["read"].astype(str) if "read" in c else pd.Series("windows", index=c.index)
    style = reads.map(TEXT_READS).fillna(TEXT_READS["windows"])
    sns.lineplot(data=c.assign(read=style), x="chars", y="val_loss", hue="arm", hue_order=order, units="run_id",
                 estimator=None, ax=ax, lw=1.2, style="read", dashes=TEXT_READ_DASHES,
                 style_order=[r for r in TEXT_READS.values() if r in set(style)])
    chance = pd.to_numeric(info.reindex(curve["run_id"].unique()).get("chance_loss"), errors="coerce") \
        if "chance_loss" in info else pd.Series(dtype=float)
    if chance.notna().any():
        level = float(chance.median())
        ax.axhline(level, color="0.3", ls="--", lw=1, label="chance (unigram model)")
        ax.axhline((1 - LEARNED_MARGIN) * level, color="0.5", ls=":", lw=1,
                   label=f"beat chance below {1 - LEARNED_MARGIN:g}× chance")
    partial = pd.to_numeric(info.reindex(curve["run_id"].unique()).get("partial_loss"), errors="coerce") \
        if "partial_loss" in info else pd.Series(dtype=float)
    if partial.notna().any():
        ax.axhline(learned_below(float(partial.median())), color="C3", ls="-.", lw=1,
                   label=f"learned below {1 - LEARNED_MARGIN:g}× the bigram model")
    ax.legend(fontsize=8)
    ax.set(xlabel="characters seen (millions)", ylabel="validation loss (nats/char)")
    drawn = set(style)  # name only the line styles that are drawn
    carried = ("solid, a run on consecutive windows, which reads the whole held-out text once with its state "
               "carried, going on from its training walk's state")
    windows = "dash-dot, a run on random windows, read on 128 held-out windows from h = 0"
    reads_words = "; ".join(w for w, r in ((carried, TEXT_READS["carried"]), (windows, TEXT_READS["windows"]))
                            if r in drawn)
    caption = (f"Text models ({spec}): validation loss per character on the held-out end of the corpus against "
               "characters seen in training (iteration × batch × window), one line per run, coloured by arm, each "
               f"read as it was trained: {reads_words}; dashed grey: chance, the "
               "loss of the unigram model (the training characters' frequencies, no context); dotted: "
               f"{1 - LEARNED_MARGIN:g}× chance, below which a run beat chance; red dash-dot: {1 - LEARNED_MARGIN:g}× "
               "the loss of the bigram model (the previous character only, the partial baseline), below which a run "
               "learned.")
    return fig, caption, list(curve["run_id"].unique())


DRAWERS: dict[str, Callable[[Tables], Drawn]] = {
    "heatmaps": draw_heatmaps, "decay": draw_decay, "tightness": draw_tightness, "rates": draw_rates,
    "phase": draw_phase, "activations": draw_activations, "clip_curves": draw_clip_curves,
    "clip_final": draw_clip_final, "success_vs_T": draw_success, "text_curve": draw_text,
    "remedies_success": draw_remedies_success, "remedies_decay": draw_remedies_decay,
}


def draw_figures(tables: Tables, out_dir: Path) -> dict[str, FigureFile]:
    """Draw every figure the tables allow into out_dir/<name>.png, and each generic spec's decay figure
    (studies.decay_figure); stale figures of these names are removed."""
    drawers = dict(DRAWERS)
    specs = run_info(tables)["spec"].astype(str) if "spec" in run_info(tables) else pd.Series(dtype=str)
    for spec in dict.fromkeys(specs):
        if not studies.is_known(spec):
            drawers[studies.decay_figure(spec)] = partial(draw_spec_decay, spec=spec)
            drawers[studies.text_figure(spec)] = partial(draw_text, spec=spec)  # none unless its runs are text
    drawn = {}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=0.95):
        for name, draw in drawers.items():
            result = draw(tables)
            path = out_dir / f"{name}.png"
            if result is None:
                path.unlink(missing_ok=True)
                continue
            fig, caption, ids = result
            write_atomic(path, png_bytes(fig))
            drawn[name] = FigureFile(name, path, caption, tuple(dict.fromkeys(ids)))
    for path in [*out_dir.glob(studies.decay_figure("*") + ".png"), *out_dir.glob(studies.text_figure("*") + ".png")]:
        if path.stem not in drawn:  # a spec no longer in the results
            path.unlink()
    return drawn


# ---- prediction versus measurement (docs/math.md 7.5, 4.6) ------------------------------------------------------


def draw_prediction(tables: Tables) -> Drawn:
    """The measured slope against the three rates that predict or bound it, one panel each."""
    pred = table(tables, "prediction")
    if pred is None:
        return None
    panels = [("meanfield_rate_init", "mean-field rate λ_MF (from init)"),
              ("lyapunov_init", "top Lyapunov exponent λ₁ (driven)"),
              ("log_rate_init", "log(γ_W γ_φ) (bound)")]
    panels = [(c, label) for c, label in panels if len(finite(pred, [c, "slope_init"]))]
    if not panels:
        return None
    fig = new_figure(2.3 * len(panels) + 1.4, 3.2)  # 3 panels in 8.3 in: at 84% on a page, ticks legible
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, (column, label) in zip(axes, panels):
        r = finite(pred, [column, "slope_init"])
        x, y = r[column].astype(float), r["slope_init"].astype(float)
        if column == "lyapunov_init" and "lyapunov_spread_init" in r:
            ax.errorbar(x, y, xerr=r["lyapunov_spread_init"].astype(float).fillna(0) / 2, fmt="none", ecolor="0.6",
                        lw=0.8, zorder=1)
        sns.scatterplot(data=r, x=column, y="slope_init", hue="activation", style="init", ax=ax, s=26,
                        legend=ax is axes[-1], zorder=2)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--")
        ax.set(xlabel=label, ylabel="measured slope (nats/step)")
    if axes[-1].get_legend():
        sns.move_legend(axes[-1], "center left", bbox_to_anchor=(1, 0.5), fontsize=7, title_fontsize=7)
    caption = ("Prediction versus measurement (initial model, top layer, nats per step; dashed: y = x). The "
               "mean-field rate is computed from the initial weights and the input statistics alone; λ₁ is measured "
               "along two driven trajectories (200 steps of burn-in, 1000 measured; bars: their spread); "
               "log(γ_W γ_φ) only bounds the slope from above.")
    return fig, caption, list(pred["run_id"])


def draw_gaps(tables: Tables) -> Drawn:
    """The bound's gap split into its causes, stacked per spec."""
    gaps = table(tables, "gaps")
    if gaps is None:
        return None
    parts = [("global_to_product", "global → product: sup|φ′| against the realised max|φ′|", "C3"),
             ("product_to_stepnorm", "product → step norm: ‖W‖₂ max|φ′| against ‖diag(φ′) W‖₂", "C1"),
             ("stepnorm_to_measured", "step norm → measured: alignment of the steps", "C0")]
    fig = new_figure(6.4, 0.4 * len(gaps) + 2.0)
    ax = fig.subplots()
    left = np.zeros(len(gaps))
    y = np.arange(len(gaps))
    for column, label, color in parts:
        width = gaps[column].astype(float).to_numpy()
        ax.barh(y, width, left=left, color=color, label=label, height=0.6)
        left += width
    ax.set_yticks(y, [f"{s} (n = {n})" for s, n in zip(gaps["spec"], gaps["n_runs"])])
    ax.invert_yaxis()
    ax.set(xlabel="global bound − measured norm (decades)")
    fig.legend(fontsize=7, loc="outside lower center", ncol=1)
    caption = ("Why the bound is loose: the mean gap (global bound − measured, initial model, top layer) split into "
               "saturation (global → product), the step's own norm (product → step norm) and the alignment of "
               "successive steps (step norm → measured). The three parts add up to the whole bar.")
    return fig, caption, ids_of(gaps)


def draw_spectrum(tables: Tables) -> Drawn:
    """Every resolved singular value of dh_T/dh_0 for a few runs; a probe with fewer than two resolved values has no
    curve to draw and is named in the caption instead of the legend."""
    spec = table(tables, "spectra")
    if spec is None:
        return None
    info = run_info(tables)
    fig = new_figure(5.8, 3.1)
    ax = fig.subplots()
    left_out = []
    for i, (rid, g) in enumerate(spec.groupby("run_id", sort=False)):
        for when, w in g.groupby("when"):
            label = f"{run_label(info, rid)} ({when})"
            if len(w) < 2:
                left_out.append(f"{label}: {len(w)} resolved")
                continue
            ax.plot(w["i"] + 1, w["log10_sigma"], color=f"C{i}", ls="-" if when == "init" else "--", marker=".",
                    ms=3, lw=1, label=label)
    ax.set(xlabel="index i of the singular value (descending)", ylabel="log10 σ_i(∂h_T/∂h_0)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    caption = ("Singular-value spectrum of ∂h_T/∂h_0 at the probe's longest lag (top layer; solid: init, dashed: "
               "after training). A flat spectrum is dynamical isometry; values below 10⁻¹² σ₁ are not resolved by "
               "float64 products and are left out, so a curve that stops early spans at least 12 decades.")
    if left_out:
        caption += (" Not drawn, as fewer than two values were resolved (all but σ₁ more than 12 decades below "
                    "it): " + "; ".join(left_out) + ".")
    return fig, caption, list(spec["run_id"].unique())


GRADIENT_CEILING = 1e4  # the left panel is drawn up to this many times the smallest median pre-clip norm shown


def draw_gradients(tables: Tables) -> Drawn:
    """Pre-clip gradient norm per iteration (the spikes clipping cuts), and ||dE/dh_k|| over training of the run
    with the most gradient checkpoints."""
    spikes = table(tables, "gradient_spikes")
    if spikes is None:
        return None
    info, by_k = run_info(tables), table(tables, "gradient_by_k")
    fig = new_figure(7.6 if by_k is not None else 5.2, 3.1)
    axes = fig.subplots(1, 2 if by_k is not None else 1, squeeze=False)[0]
    norms = pd.to_numeric(spikes["grad_norm"], errors="coerce")
    medians = norms[np.isfinite(norms) & (norms > 0)].groupby(spikes["run_id"]).median()
    ceiling = GRADIENT_CEILING * float(medians.min()) if len(medians) else math.inf
    for i, (rid, g) in enumerate(spikes.groupby("run_id", sort=False)):
        mode = str(g["clip_mode"].iloc[0])
        lr = info.at[rid, "lr"] if rid in info.index and "lr" in info else None  # a clipping control differs in it
        axes[0].plot(g["iter"], norms[g.index].clip(upper=ceiling), color=f"C{i}", lw=0.8,
                     label=f"{run_label(info, rid)}, clip {mode}" + (f", lr {short_value(lr)}" if pd.notna(lr) else ""))
        threshold = float(pd.to_numeric(g["clip_threshold"], errors="coerce").iloc[0])
        if mode == "global" and math.isfinite(threshold):
            axes[0].axhline(threshold, color=f"C{i}", ls="--", lw=0.8)
    capped = bool((norms > ceiling).any())
    if capped:
        axes[0].axhline(ceiling, color="0.5", ls=":", lw=1)
    axes[0].set_yscale("log")
    axes[0].set(xlabel="iteration", ylabel="gradient norm before clipping")
    # below the axes: inside, it covered the exploding run, which runs along the top at the cap
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=1, fontsize=7)
    ids = list(spikes["run_id"].unique())
    caption = ("Gradients over training. Left: the global gradient norm before clipping at every iteration, for the "
               "spikiest run of each clip mode of the study that varies clipping (dashed: a global clip threshold; "
               "the part above it is what clipping cuts, the \"cliff\" of Pascanu et al. 2013)")
    if capped:
        caption += (f"; norms above {format_value(GRADIENT_CEILING)} × the smallest run's median norm "
                    f"({format_value(ceiling)}) are drawn on the dotted line, so that the clipped runs keep their scale")
    caption += "."
    if by_k is not None:
        checkpoints = by_k.groupby("run_id")["iter"].nunique()
        rid = checkpoints.idxmax()
        first = by_k[by_k["run_id"] == rid]
        iters = sorted(first["iter"].unique())
        colours = sns.color_palette("viridis", len(iters))
        for j, it in enumerate(iters):
            g = first[first["iter"] == it]
            axes[1].plot(g["k"], g["log10_dE_dh"], color=colours[j], lw=1, label=f"iteration {it}")
        axes[1].set(xlabel="timestep k", ylabel="log10 ‖∂E/∂h_k‖")  # the caption says it is on the probe sequence
        axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))  # timesteps are whole
        axes[1].legend(fontsize=6)
        ids += [rid]
        caption += (f" Right: the BPTT signal ‖∂E/∂h_k‖ on the probe sequence at the {len(iters)} gradient "
                    f"checkpoint{'s' if len(iters) != 1 else ''} of {run_label(info, rid)} (iteration "
                    f"{', '.join(str(int(i)) for i in iters)}), the run shown with the most checkpoints.")
    return fig, caption, ids


def run_label(info: pd.DataFrame, run_id: str) -> str:
    """A short legend label: run ID prefix, activation, init, gamma_w."""
    if run_id not in info.index:
        return run_id[:8]
    r = info.loc[run_id]
    return f"{run_id[:8]} {r.get('activation')} {r.get('init', '')} {measured_norm(r)}"


DRAWERS.update({"prediction": draw_prediction, "gaps": draw_gaps, "spectrum": draw_spectrum,
                "gradients": draw_gradients})
DRAWERS.update(depthfigures.drawers(new_figure))  # the depth study's (report/depthfigures.py)
DRAWERS.update(dynamics.drawers(new_figure))  # training dynamics (report/dynamics.py)
