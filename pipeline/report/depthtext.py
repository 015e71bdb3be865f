"""What the report says of the depth study: its headline, its finding, and its section's tables and sentences, each
number quoted from metrics.json (specs.depth.headline and the top-level `depth`) or from tables/depth_runs.csv, with
its n and Wilson interval (the reductions are in depth.py, the figures in depthfigures.py).
"""

from __future__ import annotations

import math

import pandas as pd

from .document import Bullets, Inline, Metric, Paragraph, Table, cell, joined
from .formatting import format_count_rate
from .reductions import finite_median, rate

FIGURES = ("depth_learned", "depth_rates", "depth_grid", "depth_chain", "depth_weights", "depth")


def interval(key: str) -> list[Inline]:
    return [" (95% CI ", Metric(f"{key}.low"), "–", Metric(f"{key}.high"), ")"]


def headline_parts(h: str, head: dict) -> list[Inline]:
    """The section's opening numbers: per activation, the two rates over its stacked runs."""
    groups = []
    for act in head:
        a = f"{h}.{act}"
        groups.append([f"{act}: through time ", Metric(f"{a}.rate_time"), " nats per step, through depth ",
                       Metric(f"{a}.rate_depth"), " nats per layer (medians over its ", Metric(f"{a}.n_stacked"),
                       " stacked runs, initial model; γ_X = ‖W_xh‖₂ a median ", Metric(f"{a}.gamma_x"), ")"])
    return joined(groups)


def finding(h: str, head: dict) -> list[Inline] | None:
    """Per activation: which direction vanishes faster, the input layer against the top, the learned fraction from the
    shallowest to the deepest stack."""
    groups = [activation_finding(f"{h}.{act}", act, a) for act, a in head.items() if isinstance(a, dict)]
    groups = [g for g in groups if g]
    return joined(groups) if groups else None


def activation_finding(a: str, act: str, head: dict) -> list[Inline]:
    faster = head.get("depth_faster") or {}
    if not faster.get("n"):
        return []
    parts: list[Inline] = [f"{act}" + (" (trained at T = " if head.get("T") is not None else ""),
                           *([Metric(f"{a}.T"), ")"] if head.get("T") is not None else []),
                           ": per layer of depth the log norm changed by ", Metric(f"{a}.rate_depth"),
                           " nats against ", Metric(f"{a}.rate_time"), " per step of time (medians; depth faster in ",
                           Metric(f"{a}.depth_faster.k"), " of ", Metric(f"{a}.depth_faster.n"), " stacked runs, 95% CI ",
                           Metric(f"{a}.depth_faster.low"), "–", Metric(f"{a}.depth_faster.high"),
                           "; a comparison of these initialisations, each W_xh Gaussian and W_hh as the spec sets it, "
                           "not of time and depth as such)"]
    if (head.get("input_larger") or {}).get("n"):
        parts += ["; at L = ", Metric(f"{a}.max_layers"), " the input layer's first state got 10^",
                  Metric(f"{a}.signal_input_minus_top"), " times the top layer's gradient (larger in ",
                  Metric(f"{a}.input_larger.k"), " of ", Metric(f"{a}.input_larger.n"), " runs)"]
    first, last = head.get("learned_shallowest") or {}, head.get("learned_deepest") or {}
    if first.get("n") and last.get("n"):
        parts += ["; learned at L = ", Metric(f"{a}.min_layers"), ": ", Metric(f"{a}.learned_shallowest.k"), " of ",
                  Metric(f"{a}.learned_shallowest.n"), ", at L = ", Metric(f"{a}.max_layers"), ": ",
                  Metric(f"{a}.learned_deepest.k"), " of ", Metric(f"{a}.learned_deepest.n"), " (95% CI ",
                  Metric(f"{a}.learned_deepest.low"), "–", Metric(f"{a}.learned_deepest.high"), ")"]
    return parts


# ---- the section -------------------------------------------------------------------------------------------------


def blocks(spec: str, report: dict, tables: dict[str, pd.DataFrame]) -> list:
    """The section after its headline: how the rates are read, the table by activation and depth, the findings
    spelled out per activation, the input layer against the top, and the checks across layers."""
    runs = tables.get("depth_runs")
    if runs is None or not len(runs):
        return []
    h = "specs.depth.headline"
    out: list = [Paragraph(READING), by_depth_table(runs)]
    for act in sorted(set(runs["activation"].astype(str))):
        a = f"{h}.{act}"
        out.append(Paragraph([f"{act}."]))
        inits = sorted(set(runs.loc[runs["activation"].astype(str) == act, "init"].astype(str)))
        out.append(Bullets([direction_sentence(a), chain_sentence(a, " and ".join(inits)), input_sentence(a),
                            training_sentence(a)]))
    out.append(input_table(runs))
    out.append(Paragraph(checks_sentence()))
    return out


READING = ["How to read it. Every number is of the initial model on the run's probe sequence unless it says otherwise. "
           "The rate through time is the least-squares slope, through the origin, of the top layer's "
           "mean log ‖∂h^L_t/∂h^L_k‖ against the lag t − k (nats per step); the rate through depth is that of the depth "
           "chain's mean log ‖∂h^L_t/∂h^l_t‖ against the layers crossed L − l (nats per layer): each is the log of a "
           "product of that many factors, 0 at none. The per-factor bounds are log(γ_W γ_φ) for a step and "
           "log(γ_X γ_φ) for a layer (γ_X = ‖W_xh^l‖₂ as measured); a pair (t, k) from layer l sums over the paths "
           "through the (time, layer) grid, C(t − k + L − l, L − l) of them (C(t − 1 + L − l, L − l) from k = 0), "
           "so a Jacobian across layers may exceed every single path (docs/math.md, sections 3.7 and 4.7)."]


def by_depth_table(runs: pd.DataFrame) -> Table:
    """Per activation and depth: runs, measured γ_X, the two rates, learned k of n with its interval, loss and
    accuracy."""
    rows = []
    for (act, L), g in runs.groupby(["activation", "layers"], sort=True):
        scored = g[g["learned"].notna()]
        won = rate(int(scored["learned"].map(truthy).sum()), len(scored))
        gx = finite_median(g["gamma_x"])
        rows.append([str(act), cell(int(L)), cell(len(g)), cell(gx) if math.isfinite(gx) else "–",
                     cell(finite_median(g["rate_time"])), cell(finite_median(g["rate_depth"])),
                     format_count_rate(won["k"], won["n"], won["low"], won["high"]),
                     cell(finite_median(g["val_over_chance"])), cell(finite_median(g["val_accuracy"]))])
    return Table(["activation", "L", "runs", "γ_X (median)", "rate through time (nats/step)",
                  "rate through depth (nats/layer)", "learned", "val loss / chance", "accuracy"], rows,
                 "Initial model's rates (medians over the seeds), and learning after training, per activation and "
                 "number of layers L; learned counts the report's verdict over the scored runs")


def truthy(value) -> bool:
    """A `learned` cell of tables/depth_runs.csv as read back (True, "True") as a bool."""
    return value is True or str(value).lower() == "true"


def direction_sentence(a: str) -> list[Inline]:
    return ["Which direction vanishes faster: per layer of depth in ", Metric(f"{a}.depth_faster.k"), " of ",
            Metric(f"{a}.depth_faster.n"), " stacked runs"] + interval(f"{a}.depth_faster") + [
        ", by a median ", Metric(f"{a}.difference"), " nats per factor (rate through depth minus rate through time; "
        "range ", Metric(f"{a}.difference_min"), " to ", Metric(f"{a}.difference_max"), ")."]


def chain_sentence(a: str, init: str) -> list[Inline]:
    return ["Why: at L = ", Metric(f"{a}.max_layers"), " the depth chain from the input layer to the top measures "
            "10^", Metric(f"{a}.chain"), " against its global bound (γ_X γ_φ)^(L−1) = 10^", Metric(f"{a}.chain_bound"),
            " (means of the logs over ", Metric(f"{a}.n_chain"), " runs); of that gap ",
            Metric(f"{a}.chain_saturation"), " decades are saturation (φ′ below its supremum), ",
            Metric(f"{a}.chain_own_norms"), " the edges' own norms, and ", Metric(f"{a}.chain_alignment"),
            " the alignment of successive layers: the top direction one layer sends is not the one the next "
            f"amplifies. Each layer has its own W_xh, drawn Gaussian (its singular values spread below γ_X), while "
            f"time reuses one W_hh ({init} here): the comparison is of these initialisations, not of time and depth "
            "as such."]


def input_sentence(a: str) -> list[Inline]:
    return ["The input layer against the top: its first state's signal ‖∂E/∂h^0_0‖ is 10^",
            Metric(f"{a}.signal_input_minus_top"), " times the top layer's ‖∂E/∂h^L_0‖ (larger in ",
            Metric(f"{a}.input_larger.k"), " of ", Metric(f"{a}.input_larger.n"), " runs, 95% CI ",
            Metric(f"{a}.input_larger.low"), "–", Metric(f"{a}.input_larger.high"), "). The Jacobian to the last "
            "step, ‖∂h^L_T/∂h^0_0‖, is 10^", Metric(f"{a}.jacobian_input_minus_top"), " times ‖∂h^L_T/∂h^L_0‖ and "
            "sums over 10^", Metric(f"{a}.log10_paths"), " paths against one: per path it is 10^",
            Metric(f"{a}.per_path_input_minus_top"), " times the top layer's. Where the input layer's signal is the "
            "larger, the number of paths makes it so, not a stronger path."]


def training_sentence(a: str) -> list[Inline]:
    return ["What it means for training: at the first step ‖∂E/∂W_hh^0‖ is 10^", Metric(f"{a}.wgrad_input_minus_top"),
            " times ‖∂E/∂W_hh^L‖ (L = ", Metric(f"{a}.max_layers"), "); learned at L = ", Metric(f"{a}.min_layers"),
            ": ", Metric(f"{a}.learned_shallowest.k"), " of ", Metric(f"{a}.learned_shallowest.n"), ", at L = ",
            Metric(f"{a}.max_layers"), ": ", Metric(f"{a}.learned_deepest.k"), " of ",
            Metric(f"{a}.learned_deepest.n")] + interval(f"{a}.learned_deepest") + [" (every L in the table above)."]


def input_table(runs: pd.DataFrame) -> Table:
    """Per activation at its deepest L: the input layer against the top, in decades, medians over the seeds."""
    rows = []
    for act, g in runs.groupby("activation", sort=True):
        deep = g[g["layers"] == g["layers"].max()]
        jac, paths = finite_median(deep["jacobian_input_minus_top"]), finite_median(deep["log10_paths"])
        rows.append([str(act), cell(int(deep["layers"].max())), cell(len(deep)),
                     *(cell(v, "decades") for v in (finite_median(deep["signal_input_minus_top"]), jac, paths)),
                     cell(jac - paths, "decades") if math.isfinite(jac - paths) else "–",
                     cell(finite_median(deep["wgrad_input_minus_top"]), "decades")])
    return Table(["activation", "L", "runs", "signal ‖∂E/∂h_0‖, input − top", "‖∂h^L_T/∂h_0‖, input − top",
                  "log10 paths from h^0_0", "per path, input − top", "‖∂E/∂W_hh‖ at iteration 0, input − top"], rows,
                 "The input layer's gradient against the top layer's at the deepest stack (decades, initial model, "
                 "medians): the signal at the first state, the Jacobian from the first state to the last step, the "
                 "number of paths that Jacobian sums over, the Jacobian per path, and the weight gradients")


def checks_sentence() -> list[Inline]:
    return ["Checks across layers: ", Metric("depth.n_checks"), " pairs (every source layer below the top, every "
            "k ≤ t, both probes) against their step-norm, product and global bounds summed over paths: ",
            Metric("depth.violations"), " violations (a sanity check: it holds by construction). The independent "
            "spot check recomputed ", Metric("spot_checks.n_cross_layer"), " of its pairs across layers from the "
            "forward equations alone (docs/math.md, section 4.8; all its mismatches are counted with the others)."]
