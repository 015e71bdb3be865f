"""Figures of the decay rate as measured: the phase diagram at each run's measured log(gamma_W gamma_phi), and how
training moves the recurrent matrix and the rates (docs/math.md 7 and 8.3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import TwoSlopeNorm

from .canvas import Drawn, Tables, finite, new_figure, table

INIT_MARKERS = {"orthogonal": "o", "gaussian": "s", "identity": "^", "sparse": "D"}  # unknown inits: "P"
JITTER = 0.15  # rows of the phase diagram: points spread this far above and below their activation's row


def draw_phase(tables: Tables) -> Drawn:
    """Each run at its measured log(gamma_W gamma_phi) (tables/phase.csv: ||W_hh||_2 of the initial matrix, not the
    config's gamma_w), one row per activation, a marker per init, coloured by the measured slope; the boundary of
    Pascanu et al.'s sufficient condition is x = 0 for every activation."""
    phase = table(tables, "phase")
    if phase is None:
        return None
    r = finite(phase, ["log_rate_init", "slope_init"])
    if r.empty:
        return None
    acts = sorted(set(r["activation"].astype(str)))
    row = {a: i for i, a in enumerate(acts)}
    fig = new_figure(6.6, 0.5 * len(acts) + 2.3)
    ax = fig.subplots()
    s = r["slope_init"].astype(float)
    span = max(float(s.abs().max()), 1e-3)
    colour = TwoSlopeNorm(0, -span, span)
    y = r["activation"].astype(str).map(row) + np.random.default_rng(0).uniform(-JITTER, JITTER, len(r))
    points = None
    inits = r["init"].astype(str) if "init" in r else pd.Series("", index=r.index)
    for init in sorted(set(inits)):
        part = inits == init
        points = ax.scatter(r.loc[part, "log_rate_init"].astype(float), y[part], c=s[part], cmap="coolwarm",
                            norm=colour, s=34, marker=INIT_MARKERS.get(init, "P"), edgecolors="0.3", linewidths=0.4,
                            label=f"{init} init")
    ax.axvline(0.0, color="k", lw=1.6, label="γ_W γ_φ = 1: left of it vanishing is guaranteed")
    edge = table(tables, "edge_of_chaos")
    if edge is not None and "log_rate" in edge:  # the median mean-field rate changes sign (docs/math.md 7.5)
        e = edge[edge["activation"].astype(str).isin(row)]
        ax.scatter(e["log_rate"].astype(float), e["activation"].astype(str).map(row), marker="|", s=420, color="C2",
                   linewidths=2.5, label="λ_MF = 0 (mean-field edge of chaos, per init)", zorder=3)
    ax.set_yticks(range(len(acts)), acts)
    ax.set(xlabel="log(γ_W γ_φ) at init, γ_W = ‖W_hh‖₂ measured (nats per step)", ylim=(-0.6, len(acts) - 0.4))
    fig.colorbar(points, ax=ax, label="measured slope (nats/step)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=7)
    caption = ("Phase diagram: each run at its measured log(γ_W γ_φ), with γ_W = ‖W_hh‖₂ of the initial matrix "
               "(not the configured gamma_w: a sparse init fixes the spectral radius, and its norm comes out larger), "
               "one row per activation, a marker per init, coloured by the measured decay slope (blue: vanishing, "
               "red: exploding). Left of the black line γ_W γ_φ < 1 and vanishing is guaranteed (Pascanu et al. "
               "2013); a green tick, where the median mean-field rate of an activation and init changes sign (the "
               "mean-field edge of chaos). tables/phase.csv holds every point.")
    return fig, caption, list(r["run_id"])


def draw_activations(tables: Tables) -> Drawn:
    """Per activation, one line through its gamma_W grid: the measured slope (solid, filled) and the top Lyapunov
    exponent (dashed, hollow, where finite) against the measured log(gamma_W gamma_phi), with the bound y = x; one
    panel per form when the table has more than one (their rates are not pooled)."""
    act = table(tables, "activations")
    if act is None:
        return None
    a = finite(act, ["log_rate", "slope"])
    if a.empty:
        return None
    forms = sorted(a["form"].astype(str).unique()) if "form" in a else [None]
    a = a.sort_values(["activation", "log_rate"])
    names = list(dict.fromkeys(a["activation"].astype(str)))
    colors = dict(zip(names, sns.color_palette("tab10", n_colors=len(names))))
    fig = new_figure(6.4 if len(forms) == 1 else 4.2 * len(forms), 4.2)
    axes = fig.subplots(1, len(forms), squeeze=False, sharey=True)[0]
    lo, hi = float(a["log_rate"].min()), float(a["log_rate"].max())
    for ax, form in zip(axes, forms):
        part = a if form is None else a[a["form"].astype(str) == form]
        for name, g in part.groupby(part["activation"].astype(str), sort=False):
            x = g["log_rate"].astype(float)
            ax.plot(x, g["slope"].astype(float), "-o", ms=4, lw=1.2, color=colors[name], label=name)
            lyap = pd.to_numeric(g["lyapunov"], errors="coerce")
            ax.plot(x[lyap.notna()], lyap[lyap.notna()], "--o", ms=5, lw=0.9, color=colors[name], mfc="none")
        ax.plot([lo, hi], [lo, hi], color="0.2", lw=0.9, ls=":", label="log(γ_W γ_φ) itself (the bound)")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvline(0, color="0.6", lw=0.6)
        ax.set(xlabel="log(γ_W γ_φ) at init, γ_W measured (nats per step)",
               title=f"{form} form" if form is not None else "")
    axes[0].set_ylabel("rate (nats per step)")
    handles = dict(zip(*reversed(axes[0].get_legend_handles_labels())))  # label -> handle, each once
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=5, fontsize=7)
    caption = ("Activations at initialisation: for each activation (colour), the measured decay slope (solid, "
               "filled) and the top Lyapunov exponent λ₁ (dashed, hollow; missing where the trajectory overflowed) at "
               "each γ_W of the grid, against the measured log(γ_W γ_φ); every point of a slope lies on or below the "
               "dotted line y = x, the bound's rate. " + ("One panel per form (Elman: h = φ(W h + U x); Pascanu: "
               "h = W φ(h) + U x): their rates are not pooled. " if len(forms) > 1 else "")
               + "One run per point unless tables/activations.csv says more.")
    return fig, caption, [i for cell in a["run_ids"].astype(str) for i in cell.split(";")]
