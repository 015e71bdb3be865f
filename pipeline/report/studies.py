"""The studies the report knows by name, and the generic study every other sweep spec gets.

The only module in report/ that names sweep specs: analysis.py asks `study(spec)` how to summarise a spec's runs,
html.py what the spec's section shows, figures.py and analysis.py which specs' runs to prefer for the figures
that span gamma_W. A spec with no record here (a new experiments/<name>.yaml) gets the generic study: a table of
every run's grid values and outcome, and a figure of its decay by lag against both bounds. Every section, known
or not, opens with the spec's own `description` (the results table's `description` column).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import pandas as pd

from ..engine.tasks import ADDING_TOLERANCE, SOLVED_SQUARED_ERROR
from ..run.verdicts import LEARNED_MARGIN
from . import clipcontrol, depth, depthtext, dynamics, papers
from .rate_selection import chosen_rates, selection_blocks, selection_table
from .document import Bullets, Inline, Metric, Paragraph, RunRef, Table, cell, frame_table, joined
from .reductions import (
    ARM_SLOPES, MIN_RUNS_FOR_BOUNDARY, activation_table, arm_table, clip_table, curve_rows, depth_table,
    outcome_table, rate, slope_median, stacked, success_table, text_headline, weight_norm_table,
)
from .textruns import (READS_TABLE, TEXT_ARMS, is_text_spec, reads_block, reads_table, shown_samples, text_arm,
                       val_curve_rows)

Tables = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class SpecRuns:
    """What a study's analysis reads: one spec's runs and what could be read of their folders."""

    runs: pd.DataFrame  # the spec's rows of the runs table (results row + summary.json), in results order
    histories: dict[str, pd.DataFrame]  # run_id -> history.csv, for the runs with a readable one, in run order
    samples: dict[str, list | None]  # run_id -> samples.json for every run (None: not read, or unreadable)
    signal: pd.DataFrame  # SIGNAL_COLUMNS + run_id of the spec's runs (empty unless the study keeps_signal)
    val_curves: dict[str, pd.DataFrame] = field(default_factory=dict)  # run_id -> iter, val_loss (text runs with a
    # readable series.parquet)
    depth: dict = field(default_factory=dict)  # run_id -> depth.RunDepth (a study that keeps_depth)
    dynamics: pd.DataFrame = field(default_factory=pd.DataFrame)  # run/dynamics.DYNAMICS_COLUMNS + run_id (a study
    # that keeps_dynamics)


@dataclass(frozen=True)
class SpecSummary:
    """A study's analysis of one spec."""

    tables: Tables  # tables/<name>.csv (one table name may gather several specs' rows, with a spec column)
    headline: dict | None = None  # metrics.json specs.<spec>.headline; None: no headline numbers
    extra: dict = field(default_factory=dict)  # analysis.json specs.<spec>: what the section needs besides tables


@dataclass(frozen=True)
class Study:
    """How the analysis summarises one sweep spec and what its section of the report shows."""

    name: str  # the spec's name (experiments/<name>.yaml)
    text: str  # what the section shows, printed before the headline sentence
    analyse: Callable[[SpecRuns], SpecSummary]  # the spec's tables, headline numbers and report data
    writes: tuple[str, ...]  # the names of the tables `analyse` returns
    headline: Callable[[str, dict], list[Inline]] | None = None  # the headline sentence's tail, from the metrics
    # key of the headline ("specs.<name>.headline") and the headline dict itself (for its keys)
    table: tuple[str, dict[str, str]] | None = None  # the section's main table: name in tables/, column -> heading
    # the PDF's form of a main table longer than PDF_TABLE_ROWS: (across, value), one row per value of the table's
    # other label columns and one column per value of `across`, each cell its `value` (the HTML prints every row)
    pdf_pivot: tuple[str, str] | None = None
    more_tables: Callable[[str, dict, Tables], list[Table | Bullets | Paragraph]] | None = None  # (spec,
    # analysis.json specs.<spec> with metrics.json's specs.<spec>.headline under "headline", tables) -> further
    # tables (or bullets, paragraphs) of the section, after the main one; a number the text tests is read from the
    # headline, where it is stored, not copied into analysis.json
    finding: Callable[[str, dict], list[Inline] | None] | None = None  # the report's opening finding about the
    # spec (after its name), from the headline's key and dict; None: the headline's numbers do not allow one
    figures: tuple[str, ...] = ()  # names of figures.draw_figures' figures shown in the section
    reads_samples: bool = False  # read each run's samples.json (text models)
    keeps_signal: bool = False  # keep each run's BPTT signal (probe/signal.parquet) for the analysis
    keeps_depth: bool = False  # read each run's probe across layers and weight gradients (report/depth.py)
    keeps_dynamics: bool = False  # read each run's probe/dynamics.parquet (report/dynamics.py)
    spans_rate: bool = False  # its runs span gamma_W: the bound section's decay panels are drawn from them
    heatmap_first: bool = False  # its runs are the first choice for the bound section's heatmaps


# ---- the known studies ----------------------------------------------------------------------------------------


def curves(d: SpecRuns, *columns: str) -> pd.DataFrame:
    """Each run's loss curve (curve_rows) tagged with its run_id and the given runs-table columns."""
    info = d.runs.set_index("run_id")
    return stacked([curve_rows(h).assign(run_id=rid, **{c: info.at[rid, c] for c in columns})
                    for rid, h in d.histories.items()], ["iter", "loss", "run_id"])


def weight_norms_summary(d: SpecRuns) -> SpecSummary:
    table, head = weight_norm_table(d.runs)
    trajectories, training = dynamics.summary(d.runs, d.dynamics)
    return SpecSummary({"weight_norms": table, dynamics.TABLE: trajectories},
                       head | ({"training": training} if training else {}))


def rate_parts(key: str, what: str = "") -> list[Inline]:
    """A rate from metrics.json ({k, n, rate, low, high} at `key`) as "k of n<what> (rate, 95% CI low–high)"."""
    return [Metric(f"{key}.k"), " of ", Metric(f"{key}.n"), what] + interval_parts(key)


def count_parts(k_key: str, n_key: str, k: float | None, n: float | None, what: str) -> list[Inline]:
    """A count k of n (metrics.json keys and their values) in words that follow the numbers: "all n <what>" when
    k = n, "none of the n <what>" when k = 0, else "k of n <what>" (always so for n <= 2: "all 2" reads oddly; with
    <what> singular for n = 1)."""
    if n == 1 and what.endswith("s"):
        what = what[:-1]
    if n is not None and n > 2 and k == n:
        return ["all ", Metric(n_key), f" {what}"]
    if n is not None and n > 2 and k == 0:
        return ["none of the ", Metric(n_key), f" {what}"]
    return [Metric(k_key), " of ", Metric(n_key), f" {what}"]


def rate_count_parts(key: str, rate: dict, what: str) -> list[Inline]:
    """count_parts of a rate in metrics.json ({k, n, rate, low, high} at `key`, values in `rate`)."""
    return count_parts(f"{key}.k", f"{key}.n", rate.get("k"), rate.get("n"), what)


def interval_parts(key: str) -> list[Inline]:
    """A rate's Wilson interval from metrics.json: "(95% CI low–high)" (its count, beside it, is the estimate)."""
    return [" (95% CI ", Metric(f"{key}.low"), "–", Metric(f"{key}.high"), ")"]


def weight_norms_headline(h: str, head: dict) -> list[Inline]:
    return ["at initialisation, of ", Metric(f"{h}.n_sufficient"), " runs with γ_W γ_φ < 1 (vanishing guaranteed) ",
            Metric(f"{h}.n_sufficient_observed_vanishing"), " were observed vanishing, ", Metric(f"{h}.n_bounded"),
            " sat at γ_W γ_φ = 1 (no growth possible), contradictions ", Metric(f"{h}.contradictions"),
            "; correlation of slope with log(γ_W γ_φ) r = ", Metric(f"{h}.slope_log_rate_corr")]


def activations_summary(d: SpecRuns) -> SpecSummary:
    table, head = activation_table(d.runs)
    return SpecSummary({"activations": table}, head)


def activations_headline(h: str, head: dict) -> list[Inline]:
    return ["|slope − λ₁| (nats/step), median over the runs where both are finite: "] + joined(
        [[f"{a} ", Metric(f"{h}.{a}.median_abs_slope_minus_lyapunov"), " (n = ", Metric(f"{h}.{a}.n_both"), ")"]
         for a in head])


def long_range_summary(d: SpecRuns) -> SpecSummary:
    table, head = success_table(d.runs)
    return SpecSummary({"success_vs_T": table}, head)


def long_range_headline(h: str, head: dict) -> list[Inline]:
    return joined([[f"{t}: learned at T = ", Metric(f"{h}.{t}.min_T"), ": "] + rate_parts(f"{h}.{t}.learned_at_min_T")
                   + [" (solved ", Metric(f"{h}.{t}.solved_at_min_T.k"), "), at T = ", Metric(f"{h}.{t}.max_T"), ": "]
                   + rate_parts(f"{h}.{t}.learned_at_max_T") + [" (solved ", Metric(f"{h}.{t}.solved_at_max_T.k"), ")"]
                   + boundary_parts(f"{h}.{t}", head[t]) + partial_note(t)
                   for t in head])


def boundary_parts(key: str, task: dict) -> list[Inline]:
    """", longest T at which every run learned: 50" when every T has enough runs for a boundary; else that no
    boundary is drawn from so few runs."""
    if task.get("runs_per_T", 0) < MIN_RUNS_FOR_BOUNDARY:
        few = task.get("runs_per_T")
        return [f"; {'one run' if few == 1 else f'{few} runs'} at some T, too few to place a boundary"]
    return [", longest T at which every run learned ", Metric(f"{key}.longest_T_learned")]


def long_range_finding(h: str, head: dict) -> list[Inline] | None:
    """Per task, how many runs learned and solved it at the longest T tried and, with enough runs at every T, the
    longest T at which every run learned."""
    groups = []
    for task, t in head.items():
        if not isinstance(t, dict) or t.get("max_T") is None or not t.get("learned_at_max_T"):
            continue
        at_max = rate_count_parts(f"{h}.{task}.learned_at_max_T", t["learned_at_max_T"], "runs")
        at_max += [" learned it (", Metric(f"{h}.{task}.solved_at_max_T.k"), " solved it)"]
        longest = t.get("longest_T_learned")
        if t.get("runs_per_T", 0) < MIN_RUNS_FOR_BOUNDARY:
            groups.append([f"{task}: at T = ", Metric(f"{h}.{task}.max_T"), ", "] + at_max
                          + [" (too few runs per T for a boundary)"])
        elif longest is None:
            groups.append([f"{task}: at no T did every run learn; at T = ", Metric(f"{h}.{task}.max_T"), ", "]
                          + at_max)
        elif longest == t["max_T"]:
            groups.append([f"{task}: every run learned at T = ", Metric(f"{h}.{task}.max_T"), ", the longest tried ("]
                          + all_of(f"{h}.{task}", t) + [")"])
        else:
            groups.append([f"{task}: T = ", Metric(f"{h}.{task}.longest_T_learned"), " is the longest T at which "
                           "every run learned ("] + all_of(f"{h}.{task}", t)
                          + ["); at T = ", Metric(f"{h}.{task}.max_T"), ", "] + at_max)
        groups[-1] += partial_note(task)
    return joined(groups) if groups else None


NO_PARTIAL_MODEL = ("copy",)  # tasks whose partial baseline is the memoryless model (docs/math.md 11): learned there
# is beat chance


def partial_note(task: str) -> list[Inline]:
    """On a task without a partial model of its own, what 'learned' means there (empty on the others)."""
    return ([f" (on {task} learned is beat chance, as no model that carries part of the sequence has a natural "
             "baseline; solved is the bar to read)"] if task in NO_PARTIAL_MODEL else [])


def all_of(key: str, task: dict) -> list[Inline]:
    """ "n of n runs" at the longest T that every run learned."""
    n = Metric(f"{key}.n_at_longest_T_learned")
    return [n, " of ", n, " runs"]


def clipping_summary(d: SpecRuns) -> SpecSummary:
    """The clip table and curves of the spec's modes and thresholds; the control arm (unclipped at a clipped arm's
    mean effective step, report/clipcontrol.py) apart, beside the arm it matches, never pooled with the unclipped."""
    control, control_head = clipcontrol.summary(d.runs, d.histories)
    if "lr" in d.runs:
        kept = d.runs[~clipcontrol.is_control(d.runs)]
        d = replace(d, runs=kept, histories={i: h for i, h in d.histories.items() if i in set(kept["run_id"])})
    table, head = clip_table(d.runs)
    best_mode = head.pop("best_mode")
    return SpecSummary({"clip": table, "clip_curves": curves(d, "clip_mode", "clip_threshold"),
                        clipcontrol.TABLE: control}, head | control_head, {"best_mode": best_mode})


CLIP_WORDS = {"global": "with the global norm clipped at ", "elementwise": "with each entry clipped at "}


def clip_modes_with_best(head: dict) -> list[str]:
    """The clip modes whose best threshold the headline holds (reductions.clip_table: modes with runs)."""
    return [m for m in CLIP_WORDS if isinstance(head.get(f"best_{m}"), dict)]


def clipping_headline(h: str, head: dict) -> list[Inline]:
    parts: list[Inline] = ["unclipped: final loss (ok runs) ", Metric(f"{h}.unclipped_final_loss")]
    for name in ("unclipped", "clipped"):
        parts += ([", " if name == "unclipped" else "; all clipped runs: "] + ["diverged "]
                  + rate_parts(f"{h}.diverged_{name}") + [", unstable "] + rate_parts(f"{h}.unstable_{name}")
                  + [", learned "] + rate_parts(f"{h}.learned_{name}"))
        if name == "unclipped":
            for mode in clip_modes_with_best(head):
                parts += [f"; best {mode} threshold ", Metric(f"{h}.best_{mode}.threshold"), ": learned "]
                parts += rate_parts(f"{h}.best_{mode}.learned") + [
                    ", median validation loss ", Metric(f"{h}.best_{mode}.final_val_loss"), " (chance ",
                    Metric(f"{h}.chance_loss"), ")"]
    return parts + [", best final training loss (ok runs) ", Metric(f"{h}.best_final_loss"), " at threshold ",
                    Metric(f"{h}.best_threshold")]


def clipping_finding(h: str, head: dict) -> list[Inline] | None:
    """Clipping's effect in one sentence: how many unclipped runs blew up (diverged or went unstable) against how
    many learned at each clip mode's best threshold, with n and Wilson intervals."""
    blew, learned = head.get("blew_up_unclipped"), head.get("learned_unclipped")
    best = clip_modes_with_best(head)
    if not isinstance(blew, dict) or not blew.get("n") or not isinstance(learned, dict) or not best:
        return None
    b = f"{h}.blew_up_unclipped"
    parts: list[Inline] = count_parts(f"{b}.k", f"{b}.n", blew.get("k"), blew.get("n"), "unclipped runs")
    parts += [" blew up (", Metric(f"{h}.diverged_unclipped.k"), " diverged, ", Metric(f"{h}.unstable_unclipped.k"),
              " went unstable; 95% CI ", Metric(f"{b}.low"), "–", Metric(f"{b}.high"),
              ") and ", Metric(f"{h}.learned_unclipped.k"), " learned"]
    for mode in best:
        key, top = f"{h}.best_{mode}.learned", head[f"best_{mode}"]["learned"]
        parts += ["; ", CLIP_WORDS[mode], Metric(f"{h}.best_{mode}.threshold"), ", "]
        parts += rate_count_parts(key, top, "runs") + [" learned"] + interval_parts(key)
        if head[f"best_{mode}"].get("n_thresholds", 1) > 1:  # picked after the fact: its rate is optimistic
            parts += [" (the best of its ", Metric(f"{h}.best_{mode}.n_thresholds"), " thresholds, chosen on these "
                      "same runs)"]
    return parts + clipcontrol.finding_parts(h, head)


def depth_summary(d: SpecRuns) -> SpecSummary:
    """The BPTT signal per layer (tables/depth.csv) and the probe across layers (report/depth.py)."""
    signal = depth_table(d.signal, d.runs)
    tables, head = depth.summarise(d.runs, d.signal, d.depth)
    return SpecSummary({"depth": signal, **tables}, head)


# ---- text: a vanilla RNN and an LSTM of about its parameter count -------------------------------------------------


def text_summary(d: SpecRuns) -> SpecSummary:
    """The training-loss curves, each run's validation loss against characters seen and read both ways, the
    headline per arm, and per arm the last sample of its first run (the section shows those; analysis.json keeps
    every sample)."""
    arms = text_arm(d.runs)
    head = text_headline(d.runs, arms)
    return SpecSummary({"text_curve": curves(d), "text_val_curve": val_curve_rows(d.runs, d.val_curves),
                        READS_TABLE: reads_table(d.runs)},
                       head, {"samples": {rid: s or [] for rid, s in d.samples.items()},
                              "shown_samples": shown_samples(d.runs, d.samples)})


def text_headline_parts(h: str, head: dict) -> list[Inline]:
    return joined([[f"{name} (hidden ", Metric(f"{h}.{key}.hidden"), ", ", Metric(f"{h}.{key}.n_params"),
                    " parameters): final training loss ", Metric(f"{h}.{key}.final_train_loss"), ", validation loss ",
                    Metric(f"{h}.{key}.final_val_loss"), " nats/char (chance ", Metric(f"{h}.chance_loss"),
                    "), validation accuracy ", Metric(f"{h}.{key}.val_accuracy"), " (chance ",
                    Metric(f"{h}.chance_accuracy"), ")"]
                   for key, name in TEXT_ARMS.items() if isinstance(head.get(key), dict)])


def text_blocks(spec: str, report: dict, tables: Tables) -> list[Bullets]:
    """One sentence per arm: how many of its runs learned (final validation loss below (1 - LEARNED_MARGIN) x the
    bigram model's, which reads only the previous character) and how many beat chance (below (1 - LEARNED_MARGIN) x the unigram's), with
    n and the Wilson interval, and its median loss against both; said plainly when at chance."""
    h = f"specs.{spec}.headline"
    heads = report.get("headline") or {}  # metrics.json's, where the sentence's counts are stored once
    items = []
    for key, name in TEXT_ARMS.items():
        arm = heads.get(key)
        if not isinstance(arm, dict) or not isinstance(arm.get("learned"), dict):
            continue
        k, n, learned = arm["learned"].get("k"), arm["learned"].get("n"), f"{h}.{key}.learned"
        sentence: list[Inline] = [f"{name}: "] + count_parts(f"{learned}.k", f"{learned}.n", k, n, "seeds")
        sentence += [" learned"] + interval_parts(learned) + [" and ", Metric(f"{h}.{key}.beat_chance.k"),
                                                             " beat chance"]
        sentence += [": median final validation loss ", Metric(f"{h}.{key}.final_val_loss"), " nats/char, against ",
                     Metric(f"{h}.partial_loss"), " of the bigram model (the previous character only; learned below "
                     f"{1 - LEARNED_MARGIN:g}× it) and ",
                     Metric(f"{h}.chance_loss"), " of the unigram model (chance)"]
        sentence += ["; ", Metric(f"{h}.{key}.n_at_chance"), " ended at chance and ",
                     Metric(f"{h}.{key}.n_worse_than_chance"), " worse than chance"]
        items.append(sentence + ["."])
    return ([Bullets(items)] if items else []) + reads_block(spec, tables)


# ---- remedies: one arm per remedy ------------------------------------------------------------------------------

# key (metrics.json) -> what the report calls the arm, in report order
REMEDY_ARMS = {"tanh_unclipped": "tanh, unclipped", "tanh_clipped": "tanh, clipped",
               "tanh_clipped_omega": "tanh, clipped + Ω", "irnn": "IRNN", "orthogonal_tanh": "orthogonal tanh",
               "exprnn": "expRNN", "lstm": "LSTM", "gru": "GRU"}


def remedy_arm(run: dict) -> str:
    """The remedies spec's arm of a run (a REMEDY_ARMS key), from its config: the cell, then the activation and
    init, then Omega and clipping."""
    if str(run.get("cell_type", "rnn")) in ("lstm", "gru", "exprnn"):
        return str(run["cell_type"])
    if run.get("activation") == "relu" and run.get("init") == "identity":
        return "irnn"
    if float(run.get("omega", 0.0) or 0.0) > 0:
        return "tanh_clipped_omega"
    if run.get("init") == "orthogonal":
        return "orthogonal_tanh"
    return "tanh_unclipped" if run.get("clip_mode") == "none" else "tanh_clipped"


def remedies_summary(d: SpecRuns) -> SpecSummary:
    """The arm table (success per task, arm and T, parameter counts, median slopes) and, per arm, the headline
    numbers its sentences quote, per task at the longest T (never pooled over tasks or T: a slope depends on both):
    the runs that beat chance, learned and solved it, the median slopes before and after training and the orders of
    magnitude they change a norm by over the longest lag measured (analysis.json keeps their signs under
    "decades"), and the arm's largest parameter count."""
    arms = pd.Series([remedy_arm(r) for r in d.runs.to_dict("records")], index=d.runs.index, dtype=object)
    table = arm_table(d.runs, arms)
    table["arm_name"] = table["arm"].map(REMEDY_ARMS)
    longest = pd.to_numeric(d.runs["seq_len"], errors="coerce").max()
    head, signed, settings = {}, {}, {}  # signed: per arm and task, the orders of magnitude each slope changes a norm by
    for key in REMEDY_ARMS:
        rows = d.runs[arms == key]
        if rows.empty:
            continue
        at_longest = rows[pd.to_numeric(rows["seq_len"], errors="coerce") == longest]
        lag = max_probe_lag(at_longest)
        tasks, signed[key] = {}, {}
        for task, t in at_longest.groupby("task", sort=True):
            scored = t["outcome"] != "failed"
            slopes = {s: slope_median(t[s]) if s in t else None for s in ARM_SLOPES}
            signed[key][str(task)] = {s.removeprefix("slope"): decades(v, lag) for s, v in slopes.items()}
            zeros = sum(pd.to_numeric(t.get(f"zero_pairs_{w}", pd.Series(0, index=t.index)), errors="coerce")
                        .fillna(0) for w in ("init", "final"))
            tasks[str(task)] = {**{level: rate(int(t.loc[scored, level].sum()), int(scored.sum()))
                                   for level in ("beat_chance", "learned", "solved")}, **slopes,
                                "zero_pairs": int(zeros.sum()), "zero_pair_runs": int((zeros > 0).sum()),
                                **{f"orders{k}": None if v is None else abs(v)
                                   for k, v in signed[key][str(task)].items()}}
        settings[key] = arm_settings(rows)
        head[key] = {"T": int(longest), "tasks": tasks, "max_lag": lag,
                     "n_params": int(pd.to_numeric(rows.get("n_params"), errors="coerce").max())
                     if "n_params" in rows else None}
        if key == "exprnn":  # its bound is gamma_phi^(t-k): how far ||W_hh||_2 is from 1, as measured
            norms = pd.to_numeric(pd.concat([rows.get("gamma_w_init"), rows.get("gamma_w_final")]), errors="coerce")
            head[key]["w_norm_off"] = float((norms - 1).abs().max()) if norms.notna().any() else None
    return SpecSummary({"remedies": table}, head,
                       {"protocol": remedies_protocol(d.runs, arms, table), "decades": signed,
                        "settings": settings, "tasks": {k: list(v["tasks"]) for k, v in head.items()},
                        "ranking": separated_arms(table)})


def separated_arms(table: pd.DataFrame) -> dict[str, dict]:
    """Per task, at its longest T: the pairs of arms whose learned rates' 95% intervals do not overlap ([above,
    below], by REMEDY_ARMS key), and that T. No pair: this budget cannot rank the arms on that task."""
    out = {}
    for task, rows in table.groupby(table["task"].astype(str), sort=True):
        top = rows[rows["T"] == rows["T"].max()]
        low, high = top.set_index("arm")["learned_rate_low"], top.set_index("arm")["learned_rate_high"]
        pairs = [[a, b] for a in low.index for b in high.index if a != b and low[a] > high[b]]
        out[task] = {"T": int(rows["T"].max()), "pairs": pairs}
    return out


def remedies_rates_summary(d: SpecRuns) -> SpecSummary:
    """The remedies spec's rate selection (run/rates.py): every arm's runs at every candidate rate, the chosen one
    marked (rate_selection.selection_table)."""
    arms = pd.Series([remedy_arm(r) for r in d.runs.to_dict("records")], index=d.runs.index, dtype=object)
    return SpecSummary({"rate_selection": selection_table(d.runs, arms, REMEDY_ARMS)}, None, {})


def arm_settings(runs: pd.DataFrame) -> str:
    """What sets an arm apart besides its name, from its runs' configs: the recurrent init, what its gamma_w fixed
    and the norms measured, the activation of a vanilla cell, the optimiser and learning rate, the clipping and Ω
    ("sparse W_hh with ρ(W_hh) set to 0.95 (measured ‖W_hh‖₂ 1.73 → 2.1, ρ 0.95 → 1.02 at init → end, medians),
    tanh, adam lr 0.01, clipped at 1"); a field whose runs disagree lists its values."""
    def values(column: str) -> str:
        if column not in runs:
            return "–"
        v = sorted({str(cell(x.item() if hasattr(x, "item") else x)) for x in runs[column].dropna()})
        return "/".join(v) or "–"

    cell_type = str(runs["cell_type"].iloc[0]) if "cell_type" in runs else "rnn"
    gates = GATE_BLOCKS.get(cell_type)
    fixed = (f"each of its {gates} gates' n × n blocks with ‖·‖₂ set to {values('gamma_w')} (the stacked "
             f"{gates}n × n W_hh: {measured_words(runs)})" if gates else
             f"{fixed_by_init(values('init'))} set to {values('gamma_w')} ({measured_words(runs)})")
    parts = [f"{values('hidden')} units", f"{values('init')} W_hh with {fixed}"]
    if cell_type == "lstm":
        parts += [f"forget bias {values('forget_bias')}"] if "forget_bias" in runs else []
    elif cell_type == "exprnn":
        parts += [f"{values('activation')}, W_hh = exp(A) with A skew-symmetric, trained through A"]
    elif cell_type != "gru":
        parts += [values("activation")]
    parts += [f"{values('optimizer')} lr {values('lr')}"]
    clip = values("clip_mode")
    parts += ["unclipped" if clip == "none" else f"clipped at {values('clip_threshold')} ({clip})"]
    omega = pd.to_numeric(runs.get("omega", pd.Series(dtype=float)), errors="coerce").fillna(0)
    parts += [f"Ω weight {values('omega')}"] if (omega > 0).any() else []
    return ", ".join(parts)


GATE_BLOCKS = {"lstm": 4, "gru": 3}  # a gated cell's W_hh stacks one n x n block per gate, each initialised at
# gamma_w: the stack's norm is sqrt(gates) times it for orthogonal blocks (2 for the LSTM, 1.73 for the GRU)


def fixed_by_init(init: str) -> str:
    """What the config's gamma_w fixed for an init (docs/math.md 9): the spectral radius for sparse, else the norm."""
    return "ρ(W_hh)" if init == "sparse" else "‖W_hh‖₂"


def measured_words(runs: pd.DataFrame) -> str:
    """The measured ||W_hh||_2 and spectral radius at init and at the end, medians over the runs ("measured
    ‖W_hh‖₂ 1.73 → 2.1, ρ 0.95 → 1.02"), per task when the runs span several; an LSTM's W_hh is its 4n x n gate
    block: its norm only."""
    def median(column: str) -> str:
        v = pd.to_numeric(runs.get(column, pd.Series(dtype=float)), errors="coerce").dropna()
        return cell(float(v.median())) if len(v) else "–"

    tasks = runs["task"].astype(str) if "task" in runs else pd.Series("", index=runs.index)
    if tasks.nunique() > 1:  # the end differs by task (training on it moved the weights): one median per task
        return "; ".join(f"on {task.replace('_', ' ')}: {measured_words(runs[tasks == task])}"
                         for task in sorted(tasks.unique()))
    words = f"measured ‖W_hh‖₂ {median('w_norm_init')} → {median('w_norm_final')}"
    rho = pd.to_numeric(runs.get("rho_init", pd.Series(dtype=float)), errors="coerce")
    return words + (f", ρ {median('rho_init')} → {median('rho_final')}" if rho.notna().any() else "") + \
        " at init → end, medians"


def max_probe_lag(runs: pd.DataFrame) -> int | None:
    """The longest lag t - k measured on the runs' probe sequences: min(probe_len, seq_len) - 1, the largest over
    the runs; None when the runs table lacks either column."""
    if not {"probe_len", "seq_len"} <= set(runs.columns):
        return None
    steps = pd.concat([pd.to_numeric(runs["probe_len"], errors="coerce"),
                       pd.to_numeric(runs["seq_len"], errors="coerce")], axis=1).min(axis=1).dropna()
    return int(steps.max()) - 1 if len(steps) else None


def decades(slope: float | None, lag: int | None) -> float | None:
    """Orders of magnitude a norm changes by over `lag` steps at a fitted slope (nats per step), to one decimal."""
    if slope is None or lag is None or not math.isfinite(slope):
        return None
    return round(slope * lag / math.log(10), 1)


PROTOCOL_FIELDS = ("iters", "batch", "hidden", "optimizer", "lr", "clip_threshold", "omega", "val_size", "seq_len")


def remedies_protocol(runs: pd.DataFrame, arms: pd.Series, table: pd.DataFrame) -> dict:
    """This study's side of the protocol comparison, from its runs: each PROTOCOL_FIELDS field's distinct values
    (omega: the non-zero ones; clip_threshold: of the clipped runs), the learning rates per arm (lr_by_arm, in
    REMEDY_ARMS order), the sequences each run trained on (iters x batch), and the fewest and most scored runs per
    task, arm and T."""
    def values(column: str, rows: pd.DataFrame = runs) -> list:
        if column not in rows:
            return []
        v = rows[column].dropna()
        v = pd.to_numeric(v, errors="coerce").dropna() if column != "optimizer" else v.astype(str)
        return sorted({x.item() if hasattr(x, "item") else x for x in v})

    out = {f: values(f) for f in PROTOCOL_FIELDS}
    out["omega"] = [w for w in out["omega"] if w > 0]
    out["lr_by_arm"] = {a: values("lr", runs[arms == a]) for a in REMEDY_ARMS if (arms == a).any()}
    out["hidden_by_arm"] = {a: values("hidden", runs[arms == a]) for a in REMEDY_ARMS if (arms == a).any()}
    if "clip_mode" in runs:
        out["clip_threshold"] = values("clip_threshold", runs[runs["clip_mode"].astype(str) != "none"])
    if {"iters", "batch"} <= set(runs.columns):
        seen = pd.to_numeric(runs["iters"], errors="coerce") * pd.to_numeric(runs["batch"], errors="coerce")
        out["sequences"] = sorted({int(x) for x in seen.dropna()})
    n = pd.to_numeric(table["n_scored"], errors="coerce") if len(table) else pd.Series(dtype=float)
    out["seeds"] = sorted({int(n.min()), int(n.max())}) if n.notna().any() else []  # the fewest and the most
    return out


def remedies_headline(h: str, head: dict) -> list[Inline]:
    return ["runs that learned (and solved) each task at the longest T, per arm: "] + joined(
        [[f"{REMEDY_ARMS[a]}: "] + joined([[f"{task.replace('_', ' ')} "] + rate_parts(f"{h}.{a}.tasks.{task}.learned")
                                           + [" (", Metric(f"{h}.{a}.tasks.{task}.solved.k"), ")"]
                                           for task in head[a].get("tasks", {})], ", ") for a in head])


def remedies_blocks(spec: str, report: dict, tables: Tables) -> list[Table | Bullets | Paragraph]:
    """One sentence per arm on each task at the longest T: how many runs learned and solved it and what its
    Jacobians show there; then the published results beside this study's and the protocol differences."""
    h = f"specs.{spec}.headline"
    signed = report.get("decades", {})
    rows = tables.get("remedies")
    items = []
    for key, name in REMEDY_ARMS.items():
        if rows is None or not (rows["arm"] == key).any():
            continue
        at = f"{h}.{key}"
        setting = report.get("settings", {}).get(key)
        sentence: list[Inline] = [f"{name} ({setting + '; ' if setting else ''}up to ", Metric(f"{at}.n_params"),
                                  " parameters), at T = ", Metric(f"{at}.T"), ": "]
        groups = []
        for task in report.get("tasks", {}).get(key, []):
            tk, arm = f"{at}.tasks.{task}", signed.get(key, {}).get(task, {})
            group: list[Inline] = [f"{task.replace('_', ' ')}: learned in "] + rate_parts(f"{tk}.learned", " runs")
            group += [", solved in ", Metric(f"{tk}.solved.k"), ", beat chance in ", Metric(f"{tk}.beat_chance.k"),
                      "; ‖∂h_t/∂h_k‖ "] + decay_reading(tk, at, arm, "")
            if report.get("headline", {}).get(key, {}).get("tasks", {}).get(task, {}).get("zero_pairs"):
                group += [" (but in ", Metric(f"{tk}.zero_pair_runs"), " of its runs ", Metric(f"{tk}.zero_pairs"),
                          " pairs, init and final, have a norm of exactly 0: the lags holding them drop out of "
                          "these slopes, so the reading above covers the other lags only)"]
            if key == "lstm":
                group += ["; its cell state's ‖∂c_t/∂c_k‖ "] + decay_reading(tk, at, arm, "_cell")
            groups.append(group)
        if key == "exprnn":
            groups.append(["its ‖W_hh‖₂, measured before and after training, is 1 within ", Metric(f"{at}.w_norm_off"),
                           " in every run, so its bound (γ_W γ_φ)^(t−k) is γ_φ^(t−k) = 1 with no slack from γ_W, and "
                           "the orders of magnitude above are its whole distance below that bound"])
        items.append(sentence + joined(groups, "; ") + ["."])
    table = [remedies_table(rows)] if rows is not None and len(rows) else []
    budget = report.get("protocol", {}).get("sequences", [])
    caveat = [Paragraph([f"Every run trained on {spans(budget)} sequences: an arm at chance here did not learn "
                         "within that budget, which says how fast it learns, not whether it can (the protocol list "
                         "below compares the budgets with the papers')."])] if budget else []
    return (table + ([Bullets(items)] if items else []) + caveat + ranking_blocks(report, tables)
            + published_blocks(report, tables))


def ranking_blocks(report: dict, tables: Tables) -> list[Paragraph]:
    """Whether the rates were chosen per arm (the rate-selection table) or fixed, and, per task at its longest T,
    which arms' learned intervals separate: none means this budget cannot rank the arms."""
    selected = chosen_rates(tables.get("rate_selection"))
    if selected:
        how = [f"Each arm trained at its own learning rate, chosen per task among {spans(selected['rates'])} on seeds "
               f"{spans(selected['seeds'])} at T = {spans(selected['T'])} (the rate-selection section); those seeds "
               "are not among the seeds of the runs reported here. "]
    else:
        how = ["The learning rates here were fixed, not chosen per arm (the quick profile; the full profile chooses "
               "each arm's rate on separate seeds), so a difference between arms may be a difference of rates. "]
    parts: list[Inline] = []
    for task, r in report.get("ranking", {}).items():
        name = task.replace("_", " ")
        if not r["pairs"]:
            parts.append(f"On {name} at T = {r['T']} every two arms' 95% intervals overlap: this budget cannot "
                         "rank the arms there. ")
        else:
            shown = "; ".join(f"{REMEDY_ARMS.get(a, a)} above {REMEDY_ARMS.get(b, b)}" for a, b in r["pairs"])
            parts.append(f"On {name} at T = {r['T']} only these pairs of arms have learned rates whose 95% "
                         f"intervals do not overlap: {shown}; every other pair is not ranked. ")
    return [Paragraph(how + parts)]


def decay_reading(tk: str, at: str, arm: dict, state: str) -> list[Inline]:
    """How a norm's median decay on one task reads in words: "falls by 5.6 orders of magnitude over 49 steps of
    lag at initialisation (slope -0.2578 nats per step) and by 5.5 after training (-0.2537)"; "stays within one
    order of magnitude" when it changes by less; "grows" for a positive slope. Medians over the runs of that task
    and T."""
    def change(phase: str) -> list[Inline]:
        d = arm.get(f"{state}_{phase}")
        if d is None:
            return ["n/a"]
        if abs(d) < 1:
            return ["stays within one order of magnitude"]
        return [("falls" if d < 0 else "grows") + " by ", Metric(f"{tk}.orders{state}_{phase}"),
                " order of magnitude" if round(abs(d), 1) == 1 else " orders of magnitude"]
    return (change("init") + [" over ", Metric(f"{at}.max_lag"), " steps of lag at initialisation (slope ",
                              Metric(f"{tk}.slope{state}_init"), " nats per step) and "]
            + change("final") + [" after training (", Metric(f"{tk}.slope{state}_final"), ")"])


REMEDIES_COLUMNS = ["task", "arm", "T", "parameters", "beat chance", "learned", "learned, 95% CI", "solved",
                    "mean accuracy (chance, partial)", "diverged", "slope init → final", "cell slope init → final"]


def remedies_table(rows: pd.DataFrame) -> Table:
    """tables/remedies.csv as the section shows it: counts as "k of n", the learned rate with its interval,
    accuracy beside its chance and partial baselines and each slope pair in one cell, so the table fits a page
    (the CSV keeps a column per number)."""
    def pair(a, b, sep: str) -> str:
        return "–" if pd.isna(a) and pd.isna(b) else f"{cell(a)}{sep}{cell(b)}"

    lines = []
    for r in rows.to_dict("records"):
        n = cell(int(r["n_scored"]))
        lines.append([str(r["task"]).replace("_", " "), r.get("arm_name") or str(r["arm"]), cell(int(r["T"])),
                      cell(r.get("n_params")), f"{cell(int(r['n_beat_chance']))} of {n}",
                      f"{cell(int(r['n_learned']))} of {n}",
                      f"{cell(r['learned_rate_low'], 'share_low')}–{cell(r['learned_rate_high'], 'share_high')}",
                      f"{cell(int(r['n_solved']))} of {n}",
                      f"{cell(r['accuracy'])} ({cell(r['chance'])}, {cell(r['partial'])})",
                      cell(int(r["n_diverged"])),
                      pair(r.get("slope_init"), r.get("slope_final"), " → "),
                      pair(r.get("slope_cell_init"), r.get("slope_cell_final"), " → ")])
    return Table(REMEDIES_COLUMNS, lines, "Per task, arm and T: runs that beat chance, learned (at least "
                 f"{LEARNED_MARGIN:.0%} below the partial baseline) and solved the task (≥ 99 % of the held-out "
                 "sequences right), of the runs scored")


def spans(values: list) -> str:
    """A field's values as the protocol list prints them: one value, "a–b" for a range of numbers, or a list."""
    shown = [cell(v) for v in values]
    if not shown:
        return "–"
    if len(shown) == 1:
        return str(shown[0])
    numeric_values = all(isinstance(v, (int, float)) for v in values)
    if numeric_values and len(values) > 2:
        return f"{shown[0]}–{shown[-1]}"
    return ", ".join(map(str, shown[:-1])) + " and " + str(shown[-1])


def study_result(rows: pd.DataFrame, arm: str, T_range: tuple[int, int]) -> str:
    """This study's counterpart of a published result: the arm's runs at its longest T within T_range (how many
    solved the task, the papers' bar, and how many learned it, each with its Wilson interval, and the mean
    accuracy beside chance); or that no such T was run."""
    name = REMEDY_ARMS.get(arm, arm)
    a = rows[(rows["arm"].astype(str) == arm)]
    T = pd.to_numeric(a["T"], errors="coerce")
    a = a[(T >= T_range[0]) & (T <= T_range[1])]
    if a.empty:
        ran = pd.to_numeric(rows["T"], errors="coerce").dropna()
        return f"{name}: not run at this length (T here: {spans(sorted(set(ran.astype(int))))})" if len(ran) \
            else f"{name}: this task not run"
    r = a.loc[pd.to_numeric(a["T"], errors="coerce").idxmax()]
    parts = [f"{name} (T = ", cell(int(r["T"])), "): solved ", cell(int(r["n_solved"])), " of ",
             cell(int(r["n_scored"])), " (95% CI ", cell(r["solved_rate_low"], "share_low"), "–",
             cell(r["solved_rate_high"], "share_high"), "); learned ", cell(int(r["n_learned"])), " of ",
             cell(int(r["n_scored"])), " (95% CI ", cell(r["learned_rate_low"], "share_low"), "–",
             cell(r["learned_rate_high"], "share_high"), ")"]
    return "".join(map(str, parts + ["; mean accuracy ", cell(r["accuracy"]), " (chance ", cell(r["chance"]), ")"]))


# This study's tasks as the protocol list states them (docs/math.md, sections 11.1 and 11.2; engine/tasks.py)
OWN_TASKS = ("adding's values from U[−1, 1] and Hochreiter & Schmidhuber's target, the first marker in the first half "
             "and the second in the second half; temporal order's symbols where Pascanu et al.'s code puts them")


def learning_rates(protocol: dict, key: str = "lr_by_arm") -> str:
    """The arms' learning rates (or another `key` of the protocol by arm): the one most arms used, then the others
    with their arms ("0.01 (IRNN and LSTM: 0.001)"); arm names hold commas, so only the exceptions are named."""
    groups: dict[str, list[str]] = {}
    for arm, lrs in protocol.get(key, {}).items():
        groups.setdefault(spans(lrs), []).append(REMEDY_ARMS.get(arm, arm))
    if not groups:
        return "–"
    common = max(groups, key=lambda lr: len(groups[lr]))
    others = [f"{' and '.join(names)}: {lr}" for lr, names in groups.items() if lr != common]
    return common + (f" ({'; '.join(others)})" if others else "")


def published_blocks(report: dict, tables: Tables) -> list[Table | Bullets | Paragraph]:
    """The published results (papers.PUBLISHED) each beside this study's counterpart from the results being
    reported, then the protocol differences: the papers' settings (papers.PROTOCOLS) and this study's."""
    rows = tables.get("remedies")
    if rows is None or not len(rows):
        return []
    table_rows = []
    for p in papers.PUBLISHED:
        ours = "; ".join(study_result(rows[rows["task"].astype(str) == p.task], arm, p.T_range) for arm in p.arms)
        table_rows.append([f"{p.task}, {p.lengths}", f"{p.model}: {p.result}", p.citation, ours])
    table = Table(["task, lengths", "published model and result", "source", "this study (same task)"], table_rows,
                  "Published results as the cited text states them, beside this study's runs of the "
                  "matching arm at its longest T within the published lengths. Solved: under "
                  f"{1 - papers.PAPER_ACCURACY:.0%} of the held-out sequences wrong, the papers' bar; learned: "
                  f"final validation loss at least {LEARNED_MARGIN:.0%} below the partial baseline (a model that "
                  "carries one of the two values "
                  "or symbols)")
    ours = report.get("protocol", {})
    mine = {
        "success": [f"a run solved the task when under {1 - papers.PAPER_ACCURACY:.0%} of its ",
                    spans(ours.get("val_size", [])), " held-out sequences are wrong (adding: wrong when the squared "
                    f"error is {SOLVED_SQUARED_ERROR:g} or more, as Pascanu et al.'s; Hochreiter & Schmidhuber's "
                    f"|error| < {ADDING_TOLERANCE:g} is the accuracy the tables show); it learned when its final "
                    f"validation loss is below {1 - LEARNED_MARGIN:g}× the partial baseline, and beat chance below "
                    f"{1 - LEARNED_MARGIN:g}× chance"],
        "budget": [spans(ours.get("iters", [])), " updates of ", spans(ours.get("batch", [])), " sequences, ",
                   spans(ours.get("sequences", [])), " sequences per run"],
        "size": ["hidden units per arm: ", learning_rates(ours, "hidden_by_arm"), ", chosen so that the arms' "
                 "parameter counts match (the arm table above gives them)"],
        "optimiser": [spans(ours.get("optimizer", [])), " for every arm, learning rate ", learning_rates(ours)]
        + [", clipping at norm ", spans(ours.get("clip_threshold", [])), " (none in the unclipped arm), Ω weight ",
           spans(ours.get("omega", []))],
        "seeds": [" to ".join(map(str, ours.get("seeds", []))) or "–", " runs per arm and T"],
        "lengths": ["one fixed T per run: ", spans(ours.get("seq_len", []))],
        "tasks": [OWN_TASKS],
        "GRU and expRNN": ["both arms run adding and temporal order only, so neither has a row above (the copying "
                           "task runs in the long_range spec, with the vanilla tanh RNN alone)"],
    }
    items = [[f"{aspect}: {theirs}. This study: "] + mine.get(aspect, ["–"]) + ["."]
             for aspect, theirs in papers.PROTOCOLS]
    return [table, Paragraph(["Where the protocols differ (read before comparing the rows above):"]), Bullets(items)]


STUDIES = (  # in report order
    Study("weight_norms", "How the recurrent weight norm γ_W sets the decay rate.",
          weight_norms_summary, ("weight_norms", dynamics.TABLE), weight_norms_headline, finding=dynamics.finding,
          table=("weight_norms", {"activation": "activation", "init": "init",
                                  "gamma_w": "gamma_w (config: fixes ‖W_hh‖₂; ρ for sparse)",
                                  "w_norm_init": "‖W_hh‖₂ init", "w_norm_final": "‖W_hh‖₂ end", "rho_init": "ρ init",
                                  "rho_final": "ρ end", "slope": "slope", "lyapunov": "λ₁",
                                  "log_rate": "log(γ_W γ_φ)", "n_learned": "learned", "n_runs": "runs"}),
          figures=(dynamics.FIGURE,), spans_rate=True, heatmap_first=True, keeps_dynamics=True),
    Study("activations", "Every activation (their γ_φ differ) across the γ_W grid.",
          activations_summary, ("activations",), activations_headline,
          table=("activations", {"activation": "activation", "form": "form", "gamma_w": "gamma_w (config)",
                                 "w_norm": "‖W_hh‖₂ (measured)", "log_rate": "log(γ_W γ_φ)", "slope": "slope",
                                 "lyapunov": "λ₁", "n_both": "runs with both", "accuracy": "accuracy",
                                 "final_val_loss": "val loss", "n_runs": "runs"}),
          figures=("activations",), spans_rate=True, pdf_pivot=("gamma_w", "slope")),
    Study("depth", "Stacked layers: the gradient across layers and time, and whether depth changes learning.",
          depth_summary, ("depth", *depth.TABLES), depthtext.headline_parts, finding=depthtext.finding,
          more_tables=depthtext.blocks, figures=depthtext.FIGURES, keeps_signal=True, keeps_depth=True),
    Study("clipping", "Gradient clipping by global norm or elementwise, against none.",
          clipping_summary, ("clip", "clip_curves", clipcontrol.TABLE), clipping_headline, finding=clipping_finding,
          more_tables=lambda spec, report, tables: clipcontrol.blocks(tables.get(clipcontrol.TABLE)),
          table=("clip", {"clip_mode": "mode", "clip_threshold": "threshold", "final_loss": "final loss (ok runs)",
                          "final_val_loss": "val loss (median)", "n_runs": "runs", "n_diverged": "diverged",
                          "n_unstable": "unstable", "n_beat_chance": "beat chance",
                          "n_learned": "learned", "learned_fraction_low": "learned 95% CI low",
                          "learned_fraction_high": "learned 95% CI high", "n_solved": "solved"}),
          figures=("clip_curves", "clip_final")),
    Study("long_range", "Long-range tasks: how many runs beat chance, learned (final validation loss below the "
          "partial baseline) and solved the task (≥ 99 % of the held-out sequences right) as the sequence length T "
          "grows.",
          long_range_summary, ("success_vs_T",), long_range_headline, finding=long_range_finding,
          table=("success_vs_T", {"task": "task", "label": "runs of", "T": "T", "n_scored": "runs",
                                  "n_beat_chance": "beat chance", "n_learned": "learned",
                                  "learned_rate_low": "learned 95% CI low",
                                  "learned_rate_high": "learned 95% CI high", "n_solved": "solved",
                                  "accuracy": "mean accuracy", "chance": "chance accuracy",
                                  "partial": "partial-model accuracy"}),
          figures=("success_vs_T",)),
    Study("remedies", "The remedies side by side: how many runs of each arm learned at each T (Wilson 95% "
          "intervals), the parameter counts (matched across arms), and the decay of the Jacobian norms per arm.",
          remedies_summary, ("remedies",), remedies_headline, more_tables=remedies_blocks,
          figures=("remedies_success", "remedies_decay")),
    Study("remedies_rates", "The remedies' learning-rate selection: every arm at every candidate rate, on seeds "
          "that the remedies runs do not use; the rate each arm then trained at is marked.",
          remedies_rates_summary, ("rate_selection",),
          more_tables=lambda spec, report, tables: selection_blocks(tables.get("rate_selection"))),
    Study("text", "Character-level text models (min-char-rnn style), a vanilla RNN and an LSTM of about its "
          "parameter count: validation loss against characters seen, and the last sample of each. A model is "
          "validated as it was trained: on consecutive windows, by reading the whole held-out text once with the "
          "state carried, going on from its training walk's state (its samples continue that text); on random windows, on 128 held-out windows from h = 0.",
          text_summary, ("text_curve", "text_val_curve", READS_TABLE), text_headline_parts, more_tables=text_blocks,
          figures=("text_curve",), reads_samples=True),
)
KNOWN = {s.name: s for s in STUDIES}


# ---- the generic study ----------------------------------------------------------------------------------------

OUTCOMES_TABLE = "outcomes"  # tables/outcomes.csv: one row per run of every spec without a study of its own


def generic_summary(d: SpecRuns) -> SpecSummary:
    """Every run's grid values and outcome; for a spec of text runs also, as the text study has them, the validation
    loss against characters seen, both readings of it and a sample per arm."""
    table, varied = outcome_table(d.runs)
    if not is_text_spec(d.runs):
        return SpecSummary({OUTCOMES_TABLE: table}, None, {"varied": varied})
    return SpecSummary({OUTCOMES_TABLE: table, "text_val_curve": val_curve_rows(d.runs, d.val_curves),
                        READS_TABLE: reads_table(d.runs)},
                       None, {"varied": varied, "shown_samples": shown_samples(d.runs, d.samples)})


def generic_tables(spec: str, report: dict, tables: Tables) -> list[Table]:
    """Every run's grid values and outcome; then its bound numbers and regimes."""
    out = []
    outcomes = tables.get(OUTCOMES_TABLE)
    if outcomes is not None and len(outcomes):
        t = outcomes[outcomes["spec"].astype(str) == spec]
        shown = {"verdict": "learning", "final_val_loss": "val loss", "val_accuracy": "accuracy",
                 "chance_loss": "chance loss", "chance_accuracy": "chance accuracy"}
        shown = {k: v for k, v in shown.items() if k in t and t[k].notna().any()}  # e.g. no accuracy untrained
        varied = [c for c in report.get("varied", []) if c in t]
        rows = [[RunRef(str(r["run_id"]))] + [cell(r[c]) for c in varied] + [str(r["outcome"])]
                + [cell(r[c]) for c in shown] for r in t.to_dict("records")]
        out.append(Table(["run"] + varied + ["outcome"] + list(shown.values()), rows,
                         "Every run: the grid values that vary, its outcome, whether it learned, and validation "
                         "loss and accuracy against chance"))
    out += reads_block(spec, tables)
    runs = tables["runs"][tables["runs"]["spec"] == spec]
    out.append(frame_table(runs, {"name": "run", "outcome": "outcome", "log_rate_init": "log(γ_W γ_φ)",
                                  "slope_init": "slope", "predicted_regime": "predicted",
                                  "observed_regime": "observed", "violations": "violations"},
                           "Every run's initial model: the bound's rate, the fitted decay slope, the regimes and the "
                           "bound violations"))
    return out


GENERIC = Study("", "", generic_summary, (OUTCOMES_TABLE, "text_val_curve", READS_TABLE), more_tables=generic_tables)


def decay_figure(spec: str) -> str:
    """The name of a generic spec's decay figure (figures/decay-<spec>.png); known figure names have no hyphen."""
    return f"decay-{spec}"


def text_figure(spec: str) -> str:
    """The name of a generic text spec's validation-loss figure (figures/text-<spec>.png)."""
    return f"text-{spec}"


# ---- what the rest of report/ asks -----------------------------------------------------------------------------


def study(spec: str) -> Study:
    """The spec's study: its own, else the generic one (named after it, with its decay figure)."""
    if spec in KNOWN:
        return KNOWN[spec]
    return replace(GENERIC, name=spec, text=f"Sweep spec {spec!r}.", figures=(text_figure(spec), decay_figure(spec)))


def is_known(spec: str) -> bool:
    return spec in KNOWN


def report_order(specs) -> list[str]:
    """The known studies in their order, then any other spec by name."""
    specs = set(specs)
    return [s.name for s in STUDIES if s.name in specs] + sorted(specs - set(KNOWN))


def names(flag: str) -> list[str]:
    """The known studies with a flag set, e.g. names("spans_rate")."""
    return [s.name for s in STUDIES if getattr(s, flag)]


def table_names() -> set[str]:
    """Every per-spec table the analysis may write (stale ones are removed when a spec is gone)."""
    return {name for s in (*STUDIES, GENERIC) for name in s.writes}
