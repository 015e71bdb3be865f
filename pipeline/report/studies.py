"""The studies the report knows by name, and the generic study every other sweep spec gets.

The only module in report/ that names sweep specs: analysis.py asks `study(spec)` how to summarise a spec's runs,
html.py what the spec's section shows, figures.py and analysis.py which specs' runs to prefer for the figures
that span gamma_W. A spec with no record here (a new experiments/<name>.yaml) gets the generic study: a table of
every run's grid values and outcome, and a figure of its decay by lag against both bounds. Every section, known
or not, opens with the spec's own `description` (the results table's `description` column).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import pandas as pd

from ..run.verdicts import LEARNED_MARGIN
from .document import Bullets, Inline, Metric, RunRef, Table, cell, frame_table, joined
from .reductions import (
    activation_table, arm_table, clip_table, curve_rows, depth_table, finite_median, outcome_table, rate, stacked,
    success_table, text_headline, weight_norm_table,
)

Tables = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class SpecRuns:
    """What a study's analysis reads: one spec's runs and what could be read of their folders."""

    runs: pd.DataFrame  # the spec's rows of the runs table (results row + summary.json), in results order
    histories: dict[str, pd.DataFrame]  # run_id -> history.csv, for the runs with a readable one, in run order
    samples: dict[str, list | None]  # run_id -> samples.json for every run (None: not read, or unreadable)
    signal: pd.DataFrame  # SIGNAL_COLUMNS + run_id of the spec's runs (empty unless the study keeps_signal)


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
    more_tables: Callable[[str, dict, Tables], list[Table | Bullets]] | None = None  # (spec, analysis.json
    # specs.<spec>, tables) -> further tables (or bullets) of the section, after the main one
    finding: Callable[[str, dict], list[Inline] | None] | None = None  # the report's opening finding about the
    # spec (after its name), from the headline's key and dict; None: the headline's numbers do not allow one
    figures: tuple[str, ...] = ()  # names of figures.draw_figures' figures shown in the section
    reads_samples: bool = False  # read each run's samples.json (text models)
    keeps_signal: bool = False  # keep each run's BPTT signal (probe/signal.parquet) for the analysis
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
    return SpecSummary({"weight_norms": table}, head)


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
    """A rate's value and Wilson interval from metrics.json: "(rate, 95% CI low–high)"."""
    return [" (", Metric(f"{key}.rate"), ", 95% CI ", Metric(f"{key}.low"), "–", Metric(f"{key}.high"), ")"]


def weight_norms_headline(h: str, head: dict) -> list[Inline]:
    return ["at initialisation, of ", Metric(f"{h}.n_sufficient"), " runs with γ_W γ_φ < 1 (vanishing guaranteed) ",
            Metric(f"{h}.n_sufficient_observed_vanishing"), " were observed vanishing, ", Metric(f"{h}.n_bounded"),
            " sat at γ_W γ_φ = 1 (no growth possible), contradictions ", Metric(f"{h}.contradictions"),
            "; correlation of slope with log(γ_W γ_φ) r = ", Metric(f"{h}.slope_log_rate_corr")]


def activations_summary(d: SpecRuns) -> SpecSummary:
    table, head = activation_table(d.runs)
    return SpecSummary({"activations": table}, head)


def activations_headline(h: str, head: dict) -> list[Inline]:
    return ["median decay slope (nats/step) "] + joined([[f"{a} ", Metric(f"{h}.{a}.slope")] for a in head])


def long_range_summary(d: SpecRuns) -> SpecSummary:
    table, head = success_table(d.runs)
    return SpecSummary({"success_vs_T": table}, head)


def long_range_headline(h: str, head: dict) -> list[Inline]:
    return joined([[f"{t}: learned at T = ", Metric(f"{h}.{t}.min_T"), ": "] + rate_parts(f"{h}.{t}.learned_at_min_T")
                   + [", at T = ", Metric(f"{h}.{t}.max_T"), ": "] + rate_parts(f"{h}.{t}.learned_at_max_T")
                   + [", longest T at which every run learned ", Metric(f"{h}.{t}.longest_T_learned")]
                   for t in head])


def long_range_finding(h: str, head: dict) -> list[Inline] | None:
    """Per task, the longest T at which every run learned and how many learned at the longest T tried."""
    groups = []
    for task, t in head.items():
        if not isinstance(t, dict) or t.get("max_T") is None or not t.get("learned_at_max_T"):
            continue
        at_max = rate_count_parts(f"{h}.{task}.learned_at_max_T", t["learned_at_max_T"], "runs")
        longest = t.get("longest_T_learned")
        if longest is None:
            groups.append([f"{task}: at no T did every run learn; at T = ", Metric(f"{h}.{task}.max_T"), ", "]
                          + at_max + [" learned"])
        elif longest == t["max_T"]:
            groups.append([f"{task}: every run learned at T = ", Metric(f"{h}.{task}.max_T"), ", the longest tried"])
        else:
            groups.append([f"{task}: T = ", Metric(f"{h}.{task}.longest_T_learned"), " is the longest T at which "
                           "every run learned; at T = ", Metric(f"{h}.{task}.max_T"), ", "] + at_max + [" learned"])
    return joined(groups) if groups else None


def clipping_summary(d: SpecRuns) -> SpecSummary:
    table, head = clip_table(d.runs)
    best_mode = head.pop("best_mode")
    return SpecSummary({"clip": table, "clip_curves": curves(d, "clip_mode", "clip_threshold")},
                   head, {"best_mode": best_mode})


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
              " went unstable; ", Metric(f"{b}.rate"), ", 95% CI ", Metric(f"{b}.low"), "–", Metric(f"{b}.high"),
              ") and ", Metric(f"{h}.learned_unclipped.k"), " learned"]
    for mode in best:
        key, top = f"{h}.best_{mode}.learned", head[f"best_{mode}"]["learned"]
        parts += ["; ", CLIP_WORDS[mode], Metric(f"{h}.best_{mode}.threshold"), ", "]
        parts += rate_count_parts(key, top, "runs") + [" learned"] + interval_parts(key)
    return parts


def depth_summary(d: SpecRuns) -> SpecSummary:
    table, head = depth_table(d.signal, d.runs)
    return SpecSummary({"depth": table}, head)


def depth_headline(h: str, head: dict) -> list[Inline]:
    return ["with ", Metric(f"{h}.max_layers"), " layers, log10 ‖∂E/∂h_0‖ at the top layer minus that at the "
            "bottom (input) layer is ", Metric(f"{h}.top_minus_bottom_decades"),
            " decades (negative: the gradient reaching the top layer's first state is the smaller)"]


def depth_layers(spec: str, report: dict, tables: Tables) -> list[Table]:
    """The initial model's signal per depth and layer, median over seeds."""
    depth = tables.get("depth")
    if depth is None or not len(depth):
        return []
    init = depth[depth["when"] == "init"]
    groups = init.groupby(["layers", "layer"], as_index=False)
    med = groups[["log10_signal_first", "log10_signal_mean"]].median()
    seeds = int(groups.size()["size"].max()) if len(med) else 0
    over = "one seed" if seeds == 1 else f"median over {seeds} seeds"
    return [frame_table(med, {"layers": "depth", "layer": "layer", "log10_signal_first": "log10 ‖∂E/∂h_0‖",
                              "log10_signal_mean": "mean over k"},
                        f"Initial model, {over} (layer 0 reads the input)")]


def text_summary(d: SpecRuns) -> SpecSummary:
    return SpecSummary({"text_curve": curves(d)}, text_headline(d.runs),
                   {"samples": {rid: s or [] for rid, s in d.samples.items()}})


def text_headline_parts(h: str, head: dict) -> list[Inline]:
    return ["final training loss ", Metric(f"{h}.final_train_loss"), ", validation loss ",
            Metric(f"{h}.final_val_loss"), " nats/char (chance ", Metric(f"{h}.chance_loss"),
            "), validation accuracy ", Metric(f"{h}.val_accuracy")]


# ---- remedies: one arm per remedy ------------------------------------------------------------------------------

# key (metrics.json) -> what the report calls the arm, in report order
REMEDY_ARMS = {"tanh_unclipped": "tanh, unclipped", "tanh_clipped": "tanh, clipped",
               "tanh_clipped_omega": "tanh, clipped + Ω", "irnn": "IRNN", "orthogonal_tanh": "orthogonal tanh",
               "lstm": "LSTM"}


def remedy_arm(run: dict) -> str:
    """The remedies spec's arm of a run (a REMEDY_ARMS key), from its config: the cell, then the activation and
    init, then Omega and clipping."""
    if str(run.get("cell_type", "rnn")) == "lstm":
        return "lstm"
    if run.get("activation") == "relu" and run.get("init") == "identity":
        return "irnn"
    if float(run.get("omega", 0.0) or 0.0) > 0:
        return "tanh_clipped_omega"
    if run.get("init") == "orthogonal":
        return "orthogonal_tanh"
    return "tanh_unclipped" if run.get("clip_mode") == "none" else "tanh_clipped"


def remedies_summary(d: SpecRuns) -> SpecSummary:
    """The arm table (success per task, arm and T, parameter counts, median slopes) and, per arm, the headline
    numbers its sentence quotes: the learned rate at the longest T (the tasks together), its largest parameter
    count, and the median slopes before and after training."""
    arms = pd.Series([remedy_arm(r) for r in d.runs.to_dict("records")], index=d.runs.index, dtype=object)
    table = arm_table(d.runs, arms)
    table["arm_name"] = table["arm"].map(REMEDY_ARMS)
    longest = pd.to_numeric(d.runs["seq_len"], errors="coerce").max()
    head = {}
    for key in REMEDY_ARMS:
        rows = d.runs[arms == key]
        if rows.empty:
            continue
        at_longest = rows[pd.to_numeric(rows["seq_len"], errors="coerce") == longest]
        scored = at_longest["outcome"] != "failed"
        head[key] = {"T": int(longest), "learned": rate(int(at_longest["learned"].sum()), int(scored.sum())),
                     "n_params": int(pd.to_numeric(rows.get("n_params"), errors="coerce").max())
                     if "n_params" in rows else None,
                     **{s: finite_median(pd.to_numeric(rows[s], errors="coerce")) if s in rows else None
                        for s in ("slope_init", "slope_final", "slope_cell_init", "slope_cell_final")}}
    return SpecSummary({"remedies": table}, head)


def remedies_headline(h: str, head: dict) -> list[Inline]:
    return ["runs that learned at the longest T, per arm: "] + joined(
        [[f"{REMEDY_ARMS[a]} "] + rate_parts(f"{h}.{a}.learned") for a in head])


def remedies_blocks(spec: str, report: dict, tables: Tables) -> list[Table | Bullets]:
    """One sentence per arm on what its Jacobians show, then the papers' protocols beside this study's."""
    h = f"specs.{spec}.headline"
    items = []
    for key, name in REMEDY_ARMS.items():
        rows = tables.get("remedies")
        if rows is None or not (rows["arm"] == key).any():
            continue
        sentence: list[Inline] = [f"{name} (up to ", Metric(f"{h}.{key}.n_params"), " parameters): ‖∂h_t/∂h_k‖ "
                                  "changes by ",
                                  Metric(f"{h}.{key}.slope_init"), " nats per step of lag at initialisation and by ",
                                  Metric(f"{h}.{key}.slope_final"), " after training (medians over its runs)"]
        if key == "lstm":
            sentence += ["; its cell state's ‖∂c_t/∂c_k‖ by ", Metric(f"{h}.{key}.slope_cell_init"), " and ",
                         Metric(f"{h}.{key}.slope_cell_final")]
        items.append(sentence + ["; at T = ", Metric(f"{h}.{key}.T"), " it learned in "]
                     + rate_parts(f"{h}.{key}.learned", " runs (the tasks together)") + ["."])
    return [Bullets(items), PAPERS] if items else [PAPERS]


# What the papers did, as read from the sources named; the numbers of their result tables are not quoted here
# (not read for this report), so the comparison is of protocols.
PAPERS = Table(
    ["source", "arms", "protocol", "how this study differs"],
    [["Pascanu, Mikolov & Bengio (2013), code github.com/pascanur/trainingRNNs (RNN.py)",
      "tanh RNN, with gradient clipping and with the regulariser Ω",
      "50 hidden units, sparse W_hh at spectral radius 0.95, SGD lr 0.01, batches of 20, clipping at norm 1, "
      "Ω weight 2, lengths drawn from 50–200 per batch",
      "Adam for every arm, fixed T per run, fewer iterations; the same init, clipping cutoff and Ω weight"],
     ["Le, Jaitly & Hinton (2015), arXiv:1504.00941 (abstract)",
      "IRNN: ReLU with W_hh initialised to the identity",
      "reported comparable to a standard LSTM on two long-range toy problems (the adding problem among them)",
      "learning rate ten times below the other arms' (their advice of a small one), Adam instead of SGD"],
     ["Hochreiter & Schmidhuber (1997); the adding problem as on people.idsia.ch/~juergen/nipslstm",
      "LSTM",
      "target 0.5 + (X_1 + X_2)/4, a sequence correct when |error| < 0.04, lengths T to T + T/10",
      "the same target and criterion at fixed T; a modern LSTM with a forget gate (bias 1), PyTorch's layout"]],
    "The papers' protocols beside this study's (docs/math.md section 13 and experiments/remedies.yaml)")


STUDIES = (  # in report order
    Study("weight_norms", "How the recurrent weight norm γ_W sets the decay rate, per activation.",
          weight_norms_summary, ("weight_norms",), weight_norms_headline,
          table=("weight_norms", {"activation": "activation", "init": "init", "gamma_w": "γ_W (config)",
                                  "radius": "ρ(W_hh)", "slope": "slope", "lyapunov": "Lyapunov",
                                  "log_rate": "log(γ_W γ_φ)", "n_learned": "learned", "n_runs": "runs"}),
          spans_rate=True, heatmap_first=True),
    Study("activations", "Every activation (their γ_φ differ) across the γ_W grid.",
          activations_summary, ("activations",), activations_headline,
          table=("activations", {"activation": "activation", "slope": "slope", "lyapunov": "Lyapunov",
                                 "log_rate": "log(γ_W γ_φ)", "accuracy": "accuracy",
                                 "final_val_loss": "val loss", "n_ok": "ok", "n_runs": "runs"}),
          figures=("activations",), spans_rate=True),
    Study("depth", "Stacked layers: the gradient signal reaching each layer.",
          depth_summary, ("depth",), depth_headline, more_tables=depth_layers, figures=("depth",), keeps_signal=True),
    Study("clipping", "Gradient clipping by global norm or elementwise, against none.",
          clipping_summary, ("clip", "clip_curves"), clipping_headline, finding=clipping_finding,
          table=("clip", {"clip_mode": "mode", "clip_threshold": "threshold", "final_loss": "final loss (ok runs)",
                          "final_val_loss": "val loss (median)", "n_runs": "runs", "n_diverged": "diverged",
                          "n_unstable": "unstable",
                          "n_learned": "learned", "learned_fraction_low": "learned 95% CI low",
                          "learned_fraction_high": "high"}),
          figures=("clip_curves", "clip_final")),
    Study("long_range", "Long-range tasks: how many runs learned (final validation loss at least "
          f"{LEARNED_MARGIN:.0%} below chance) as the sequence length T grows.",
          long_range_summary, ("success_vs_T",), long_range_headline, finding=long_range_finding,
          table=("success_vs_T", {"task": "task", "label": "runs of", "T": "T", "n_learned": "learned",
                                  "n_scored": "runs", "success_rate": "learned rate",
                                  "success_rate_low": "95% CI low", "success_rate_high": "high",
                                  "accuracy": "mean accuracy", "chance": "chance accuracy"}),
          figures=("success_vs_T",)),
    Study("remedies", "The remedies side by side: how many runs of each arm learned as T grows (Wilson 95% "
          "intervals), the parameter counts at one hidden size, and the decay of the Jacobian norms per arm.",
          remedies_summary, ("remedies",), remedies_headline, more_tables=remedies_blocks,
          table=("remedies", {"task": "task", "arm_name": "arm", "T": "T", "n_params": "parameters",
                              "n_learned": "learned", "n_scored": "runs", "success_rate": "learned rate",
                              "success_rate_low": "95% CI low", "success_rate_high": "high",
                              "accuracy": "mean accuracy", "chance": "chance accuracy", "n_diverged": "diverged",
                              "slope_init": "slope init", "slope_final": "slope final",
                              "slope_cell_final": "cell slope final"}),
          figures=("remedies_success", "remedies_decay")),
    Study("text", "A character-level text model (min-char-rnn style): loss and samples over training.",
          text_summary, ("text_curve",), text_headline_parts, figures=("text_curve",), reads_samples=True),
)
KNOWN = {s.name: s for s in STUDIES}


# ---- the generic study ----------------------------------------------------------------------------------------

OUTCOMES_TABLE = "outcomes"  # tables/outcomes.csv: one row per run of every spec without a study of its own


def generic_summary(d: SpecRuns) -> SpecSummary:
    table, varied = outcome_table(d.runs)
    return SpecSummary({OUTCOMES_TABLE: table}, None, {"varied": varied})


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
    runs = tables["runs"][tables["runs"]["spec"] == spec]
    out.append(frame_table(runs, {"label": "run", "outcome": "outcome", "log_rate_init": "log(γ_W γ_φ)",
                                  "slope_init": "slope", "predicted_regime": "predicted",
                                  "observed_regime": "observed", "violations": "violations"},
                           "Every run's initial model: the bound's rate, the fitted decay slope, the regimes and the "
                           "bound violations"))
    return out


GENERIC = Study("", "", generic_summary, (OUTCOMES_TABLE,), more_tables=generic_tables)


def decay_figure(spec: str) -> str:
    """The name of a generic spec's decay figure (figures/decay-<spec>.png); known figure names have no hyphen."""
    return f"decay-{spec}"


# ---- what the rest of report/ asks -----------------------------------------------------------------------------


def study(spec: str) -> Study:
    """The spec's study: its own, else the generic one (named after it, with its decay figure)."""
    if spec in KNOWN:
        return KNOWN[spec]
    return replace(GENERIC, name=spec, text=f"Sweep spec {spec!r}.", figures=(decay_figure(spec),))


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
