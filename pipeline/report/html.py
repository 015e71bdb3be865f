"""The report's content as sections (shared with the PDF), and their rendering as one self-contained HTML file.

`build_sections` turns `rnngrad analyze`'s outputs into a list of `Section`s (document.py): the findings (a few
sentences a reader can repeat, each linking to its section), the checks across all runs, then one section per sweep
spec, as its study (studies.py) says. `render_html` writes them with inline
CSS and figures as base64 data URIs: the file opens offline and prints.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from typing import Any

import pandas as pd

from ..engine.jacobian import BOUND_RTOL
from ..engine.spotcheck import SPOT_TOLERANCE
from ..run.environment import NOT_RECORDED
from ..run.probe import PREDICTED_REGIMES, RATE_ROUNDING, REGIME_BAND
from ..run.verdicts import LEARNED_MARGIN
from . import prediction, studies
from .document import (
    Bullets, Cite, Inline, Link, Metric, MlflowLinks, Paragraph, Preformatted, ReferenceList, RunRef, Section,
    SectionLink, Table, cell, frame_table, joined, metric_value,
)
from .appendix import grouped_runs_table
from .references import reference
from .terms import references_section, terms_section
from .figures import FigureFile
from .studies import count_parts, interval_parts, rate_count_parts, rate_parts
from .formatting import format_decades, format_styled, style_of
from .reductions import format_metric, short_value, violation_text

TITLE = "rnngrad: vanishing and exploding gradients in vanilla RNNs"
MAX_LISTED = 200  # violation / missing-artifact rows shown in the report (the CSV tables hold all)


# ---- the content --------------------------------------------------------------------------------------------


def build_sections(metrics: dict, report: dict, tables: dict[str, pd.DataFrame],
                   figures: dict[str, FigureFile], links: MlflowLinks | None = None) -> list[Section]:
    """Every section of the report, in order, as a paper has them: the terms, the findings, the summary, the
    evidence (each spec's study, then the decay rates and the bounds' tightness), the consistency checks (the
    bound check and the theorem's regimes, which hold by construction), then the references and the appendix;
    sections without data are left out. `links` (where the runs open in the MLflow UI) makes the appendix's run
    IDs links."""
    runs = tables["runs"]
    all_ids = runs["run_id"].tolist()
    checked = runs.loc[runs["n_probes"] > 0, "run_id"].tolist()
    specs = studies.report_order(report["specs"])
    sections = [summary_section(metrics, specs, all_ids)]
    sections += [spec_section(s, metrics, report, tables, figures) for s in specs]
    sections += [rate_section(figures, runs), prediction_section(metrics, figures),
                 tightness_section(figures, checked, metrics), bound_section(metrics, report, figures, checked),
                 regime_section(metrics, report, tables)]
    if report["failed"]:
        sections.append(failed_section(report))
    if report["missing"]:
        sections.append(missing_section(metrics, report))
    has_text = "task" in runs and bool((runs["task"].astype(str) == "text").any())
    front = [terms_section(has_text), findings_section(metrics, specs, {s.anchor for s in sections})]
    return front + sections + [references_section(front + sections), appendix_section(runs, links)]


# ---- the findings: what a reader can repeat, each sentence worded after its numbers --------------------------------


def number(metrics: dict, key: str) -> Any:
    """The number at a dotted key of metrics.json; None when it is absent, null or not a number."""
    found, value = metric_value(metrics, key)
    ok = found and isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if ok else None


def numbers(metrics: dict, *keys: str) -> bool:
    return all(number(metrics, k) is not None for k in keys)


def see(anchor: str, title: str) -> list[Inline]:
    return [" ", SectionLink(anchor, f"→ {title}")]


def findings_section(metrics: dict, specs: list[str], anchors: set[str]) -> Section:
    """The report's opening: a few sentences, each with its numbers (from metrics.json), interval and n, linking to
    the section that holds the detail (`anchors`: the sections there are; a link to any other is plain text). A
    sentence whose numbers are absent is left out."""
    found = [learning_finding(metrics, specs)] + [study_finding(metrics, s) for s in specs]
    found += [prediction_finding(metrics) or rate_finding(metrics), tightness_finding(metrics)]
    found += [spot_finding(metrics), regime_finding(metrics), outcome_finding(metrics)]  # the checks after the
    # evidence: the spot check tests the measurements, the regimes hold by construction
    items = [[p.text if isinstance(p, SectionLink) and p.anchor not in anchors else p for p in f] for f in found if f]
    return Section("findings", "Findings", [Bullets(items)], [])


def regime_finding(metrics: dict) -> list[Inline] | None:
    """The theorem at initialisation, as the sanity check it is (the bound holds by construction and falls below 1,
    so the norms must fall there: this checks the regime calls, not the theorem): below 1 vanishing is
    guaranteed, at exactly 1 growth is impossible."""
    r = "regimes.init"
    keys = [f"{r}.{k}" for k in ("n_sufficient", "n_sufficient_observed_vanishing", "n_bounded", "contradictions")]
    if not numbers(metrics, *keys):
        return None
    n, k, bounded, c = (number(metrics, key) for key in keys)
    clauses: list[list[Inline]] = []
    if n:
        clauses.append(["below γ_W γ_φ = 1, "] + count_parts(keys[1], keys[0], k, n, "runs")
                       + [" were observed vanishing at initialisation (top layer)"]
                       + [", as the theorem requires" if c == 0 and k == n else ""])
    if bounded and c == 0:  # a contradiction at exactly 1 would be growth
        clauses.append(["at exactly 1, ", "none of the " if bounded > 1 else "", Metric(f"{r}.n_bounded"),
                        " runs grew" if bounded > 1 else " run there did not grow"])
    parts: list[Inline] = ["Sanity check of the theorem (it holds by construction: the bound it rests on is "
                           "checked on every pair and falls below 1): "] + joined(clauses)
    parts += ["; " if clauses else "", "contradictions: ", Metric(f"{r}.contradictions"), " at initialisation"]
    if number(metrics, "regimes.final.contradictions") is not None and number(metrics, "regimes.final.n_probes"):
        parts += [", ", Metric("regimes.final.contradictions"), " after training (the final probes of the ",
                  Metric("regimes.final.n_probes"), " trained runs)"]
    parts += [" (expected 0)." if c == 0 else " (expected 0: the contradicting runs are listed under Regimes)."]
    return parts + see("regimes", "Regimes")


def spot_finding(metrics: dict) -> list[Inline] | None:
    """The independent check first; the bound check is a sanity check that holds by construction."""
    s = "spot_checks"
    if not numbers(metrics, f"{s}.n", f"{s}.mismatches") or not number(metrics, f"{s}.n"):
        return None
    parts: list[Inline] = ["The independent spot check recomputed ", Metric(f"{s}.n"), " sampled (t, k) pairs "
                           "from the forward equations alone"]
    if number(metrics, f"{s}.n_cross_layer"):
        parts += [" (", Metric(f"{s}.n_cross_layer"), " of them across layers)"]
    if number(metrics, f"{s}.skipped"):
        parts += [" and skipped ", Metric(f"{s}.skipped"), " it could not resolve"]
    parts += [": "]
    if number(metrics, f"{s}.max_abs_dlog") is not None:
        parts += ["largest difference ", Metric(f"{s}.max_abs_dlog"), " nats, "]
    parts += [Metric(f"{s}.mismatches"), " mismatches (expected 0)"]
    if numbers(metrics, "n_checks", "violations"):
        parts += ["; the ", Metric("n_checks"), "-pair bound check "]
        held = number(metrics, "violations") == 0
        parts += (["holds by construction (", Metric("violations"), " violations)"] if held
                  else ["found ", Metric("violations"), " violations, though it should hold by construction"])
    return parts + ["."] + see("bound", "Bound check")


def tightness_finding(metrics: dict) -> list[Inline] | None:
    t = "tightness"
    if not numbers(metrics, f"{t}.median_gap_product_decades", f"{t}.median_gap_global_decades"):
        return None
    return (["The product and global bounds sit a median ", Metric(f"{t}.median_gap_product_decades"), " and ",
             Metric(f"{t}.median_gap_global_decades"), " decades above the measured norm (initial models, top layer, "
             "pooled over lags; the same ", Metric(f"{t}.n_runs"), " runs, those with both bounds)."]
            + gap_rate_parts(metrics) + see("tightness", "Tightness"))


def gap_rate_parts(metrics: dict) -> list[Inline]:
    """The global bound's gap as the rate it grows at with lag, per spec (metrics.json gap_rate): median and
    interquartile range in nats per step with n, and the decades at the longest lag beside it."""
    specs = metrics.get("gap_rate") or {}
    if not specs:
        return []
    groups = [[f"{spec} ", Metric(f"gap_rate.{spec}.median"), " (IQR ", Metric(f"gap_rate.{spec}.q1"), "–",
               Metric(f"gap_rate.{spec}.q3"), ", n = ", Metric(f"gap_rate.{spec}.n"), "; ",
               Metric(f"gap_rate.{spec}.decades_at_longest_lag"), " decades at lag ",
               Metric(f"gap_rate.{spec}.longest_lag"), ", over the ", Metric(f"gap_rate.{spec}.n_at_longest_lag"),
               " runs probed that far)"] for spec in specs]
    return [" That gap grows with the lag, so its rate is the property: the global bound's gap per step in nats, "
            "median over each spec's runs: "] + joined(groups, "; ") + ["."]


def rate_finding(metrics: dict) -> list[Inline] | None:
    r = "rate"
    if not numbers(metrics, f"{r}.n_runs", f"{r}.median_abs_slope_minus_lyapunov",
                   f"{r}.median_abs_slope_minus_log_rate") or not number(metrics, f"{r}.n_runs"):
        return None
    return (["Over ", Metric(f"{r}.n_runs"), " runs, the fitted decay slope was within a median ",
             Metric(f"{r}.median_abs_slope_minus_lyapunov"), " nats per step of the top Lyapunov exponent estimated on "
             "the same short probe (no burn-in, so not the asymptotic exponent), against ",
             Metric(f"{r}.median_abs_slope_minus_log_rate"), " of the bound's rate log(γ_W γ_φ)."]
            + see("rates", "Decay rate"))


def learning_finding(metrics: dict, specs: list[str]) -> list[Inline] | None:
    """Per spec trained on a scored task: how many of its runs learned (the margin below the partial baseline), with
    the rate's interval where they are seeds of one setting, and how many solved the task and beat chance beside it."""
    scored, unscored = [], []
    for spec in specs:
        key = f"learning.{spec}.learned"
        found, rate = metric_value(metrics, key)
        if not found or not isinstance(rate, dict) or number(metrics, f"{key}.n") is None:
            continue
        link = SectionLink(f"spec-{spec}", spec)
        if not rate["n"]:
            unscored.append([link])
            continue
        group: list[Inline] = [link, ": "] + rate_count_parts(key, rate, "runs") + [" learned"]
        pooled = not one_setting(metrics, spec)
        group += interval_parts(key) if number(metrics, f"{key}.rate") is not None and not pooled else []
        group += [", "] + solved_parts(metrics, spec) + [", ", Metric(f"learning.{spec}.n_beat_chance"), " beat chance"]
        scored.append((group, pooled))
    if not scored:
        return None
    parts = [f"Runs that learned their task (final validation loss at least {LEARNED_MARGIN:.0%} below the partial "
             "baseline: the best model that "
             "carries only part of what the task needs), that solved it (≥ 99 % of the held-out sequences right) and "
             f"that beat chance (at least {LEARNED_MARGIN:.0%} below the chance loss): "]
    parts += joined([group for group, _ in scored])
    if unscored:
        parts += ["; not trained on a scored task: "] + joined(unscored, ", ")
    if any(pooled for _, pooled in scored):
        parts += [" (a spec's count pools settings that change the answer, such as γ_W, the threshold, T or the arm: "
                  "no interval is given for a pool, which samples no one population; each spec's section counts its "
                  "runs per setting, with intervals)"]
    return parts + ["."]


def one_setting(metrics: dict, spec: str) -> bool:
    """Whether the spec's runs are seeds of one setting (runs = seeds), so that their count is one rate's sample."""
    runs, seeds = number(metrics, f"specs.{spec}.n_runs"), number(metrics, f"specs.{spec}.n_seeds")
    return runs is not None and seeds is not None and runs <= seeds


def no_sequences(metrics: dict, spec: str) -> bool:
    """Whether the spec has scored runs but none on a task with sequences (text), so that solved does not apply."""
    p = f"learning.{spec}"
    return number(metrics, f"{p}.n_sequence_runs") == 0 and bool(number(metrics, f"{p}.learned.n"))


def solved_parts(metrics: dict, spec: str, first: bool = False) -> list[Inline]:
    """'k solved', or that solving is not defined when none of the spec's scored runs has sequences to get right
    (text: one stream); `first`: 'solved k'."""
    if no_sequences(metrics, spec):
        return ["solved not defined (a text is one stream, not sequences)"]
    count = Metric(f"learning.{spec}.n_solved")
    return ["solved ", count] if first else [count, " solved"]


def study_finding(metrics: dict, spec: str) -> list[Inline] | None:
    """The spec's own finding, where its study has one (e.g. long_range: the longest T that every run learned)."""
    h = f"specs.{spec}.headline"
    found, head = metric_value(metrics, h)
    finding = studies.study(spec).finding
    if not found or not isinstance(head, dict) or finding is None:
        return None
    parts = finding(h, head)
    return [f"In {spec}, "] + parts + ["."] + see(f"spec-{spec}", spec) if parts else None


def outcome_finding(metrics: dict) -> list[Inline] | None:
    """How the runs ended, stated only when some did not end ok (then every later number is about fewer runs)."""
    keys = ["n_runs"] + [f"outcomes.{o}" for o in ("ok", "unstable", "diverged", "failed")]
    if not numbers(metrics, *keys) or number(metrics, "outcomes.ok") == number(metrics, "n_runs"):
        return None
    parts = ["Of ", Metric("n_runs"), " runs, ", Metric("outcomes.ok"), " ended ok, ", Metric("outcomes.unstable"),
             " unstable, ", Metric("outcomes.diverged"), " diverged and ", Metric("outcomes.failed"), " failed."]
    return parts + (see("failed", "Failed runs") if number(metrics, "outcomes.failed") else see("appendix", "Appendix"))


def slope_bias(metrics: dict) -> list[Inline]:
    """The side the fitted slope errs on against λ₁, where the runs have both: the distance is a bias, not scatter."""
    key = "rate.slope_above_lyapunov"
    if number(metrics, f"{key}.n") is None:
        return []
    return [" and lay above it in "] + rate_parts(key, " runs") + [", a one-sided bias of the finite-T slope (why: ",
                                                                    SectionLink("prediction", "Prediction versus "
                                                                                "measurement"), ")"]


def summary_section(metrics: dict, specs: list[str], ids: list[str]) -> Section:
    """What ran and how it ended, the evidence (learning per spec, the decay rates), then the checks: the bound
    check and the theorem's regimes, sanity checks that hold by construction, after the independent spot check."""
    m = Metric
    blocks = [
        Paragraph(["The study: ", m("n_runs"), " runs and ", m("n_probes"), " probes. Outcomes: ", m("outcomes.ok"),
                   " ok, ", m("outcomes.unstable"), " unstable, ", m("outcomes.diverged"), " diverged, ",
                   m("outcomes.failed"), " failed (the Terms define them). A run beat chance when its final "
                   f"validation loss is below {1 - LEARNED_MARGIN:g}× its task's chance loss (within "
                   f"{LEARNED_MARGIN:.0%} either side of chance it is at chance); it learned when that loss is also "
                   f"below {1 - LEARNED_MARGIN:g}× the partial baseline, the loss of the best model that carries only "
                   "part of what the task needs (adding: one of the two values, 1/48; temporal order: one of the two "
                   "symbols, ln 2; copy: the memoryless model; text: the bigram model); it solved the task when at "
                   "least 99 % of the held-out sequences are right (the papers' bar)."]),
    ]
    blocks += spec_overview(specs, metrics)
    blocks.append(Paragraph(["Decay: the fitted decay slope was within a median ",
                             m("rate.median_abs_slope_minus_lyapunov"), " nats per step of the driven Lyapunov "
                             "exponent λ₁"] + slope_bias(metrics) + ["; the product and global bounds sat a median ",
                             m("tightness.median_gap_product_decades"), " and ", m("tightness.median_gap_global_decades"),
                             " decades above the measured norm"] + ([" (the same; why: ", SectionLink("tightness",
                                                                                              "Tightness of the bounds"),
                                                                     ")"] if gaps_coincide(metrics) else []) + ["."]))
    blocks += [
        Paragraph(["Checks. We checked ", m("n_checks"), " (t, k) pairs over all layers, at initialisation and after "
                   "training, against the bounds: ", m("violations"), " violations of ‖∂h_t/∂h_k‖ ≤ product bound ≤ "
                   "global bound were found (expected 0); ", m("nonfinite"), " pairs were not finite, ",
                   m("nonfinite_in_ok_runs"), " of them in runs whose outcome is ok."]),
        spot_paragraph(brief=True),
        *([Paragraph([m("zero_pairs.n"), " pairs, in ", m("zero_pairs.n_runs"), " runs, had a norm of exactly 0 (at "
                      "some step between k and t every unit's derivative was 0: a dead ReLU, or a unit saturated to "
                      "the last bit). They are measurements, but their log is −∞, so a lag holding one has no finite "
                      "mean log norm and drops out of the slope fit; the run table counts them per run "
                      "(zero_pairs_init, zero_pairs_final)."])] if number(metrics, "zero_pairs.n") else []),
        Paragraph(["Sanity check of the theorem: γ_W γ_φ < 1 is sufficient for vanishing (", Cite("pascanu2013"),
                   "), and it holds by construction here. At initialisation (the top layer of each run), ",
                   m("regimes.init.n_sufficient"), " runs met it and ", m("regimes.init.n_sufficient_observed_vanishing"),
                   " of them were observed vanishing; ", m("regimes.init.n_bounded"), " sat at γ_W γ_φ = 1, where no "
                   "growth is possible; contradictions: ", m("regimes.init.contradictions"),
                   " (after training, on the final probes of ", m("regimes.final.n_probes"), " trained runs: ",
                   m("regimes.final.contradictions"), "). Above 1 the condition is only necessary for exploding, so "
                   "the theorem predicts nothing there: of ", m("regimes.init.n_unconstrained"), " such runs, ",
                   m("regimes.init.observed_when_not_predicted.vanishing"), " were observed vanishing, ",
                   m("regimes.init.observed_when_not_predicted.neutral"), " neutral and ",
                   m("regimes.init.observed_when_not_predicted.exploding"), " exploding."]),
    ]
    if metrics.get("n_missing_artifacts"):
        blocks.append(Paragraph([m("n_missing_artifacts"), " artifacts were missing in ", m("n_runs_incomplete"),
                                 " runs; they are listed under Missing artifacts."]))
    blocks.append(reproducibility_paragraph(metrics))
    return Section("summary", "Summary", blocks, ids)


REPRODUCIBILITY = ("Runs reproduce bit for bit with the same code, data, seed and environment. Another CPU or BLAS "
                   "build changes the last bits of floating-point sums, which training amplifies: individual runs, "
                   "and so the counts of learned runs, can differ between machines.")


def reproducibility_paragraph(metrics: dict) -> Paragraph:
    """Where the runs were computed (metrics.json `environment`: each environment's one line and its runs, most
    first; the runs of folders written before runs recorded it apart), then what reproduces and what does not.
    The lines come from the machines: the renderers escape them, as every plain string."""
    given = [e for e in metrics.get("environment") or [] if isinstance(e, dict)]
    recorded = [e for e in given if e.get("environment") != NOT_RECORDED]
    unrecorded = sum(e.get("n_runs") or 0 for e in given if e.get("environment") == NOT_RECORDED)
    where = "; ".join(f"{e.get('environment')} ({runs_count(e.get('n_runs'))})" for e in recorded)
    sentences = []
    if recorded:
        count = f"{len(recorded)} environments" if len(recorded) > 1 else "one environment"
        sentences.append(f"{'Where recorded, the' if unrecorded else 'The'} runs were computed in {count}: {where}.")
    if unrecorded:
        sentences.append(f"For {runs_count(unrecorded)} the environment was not recorded (run folders written before "
                         "runs recorded it).")
    return Paragraph([" ".join(["Reproducibility.", *sentences, REPRODUCIBILITY])])


def runs_count(n: Any) -> str:
    return f"{format_metric(n)} run{'' if n == 1 else 's'}"


def spec_overview(specs: list[str], metrics: dict) -> list:
    """The summary's per-spec part: two tables of counts, one row per spec (a link to its section): how its runs
    ended with the bound check and the theorem, and how many learned; then a bullet per spec with a study of its
    own, its headline numbers (the sentence its section opens with)."""
    def row(spec: str, prefix: str, keys: tuple[str, ...]) -> list[Inline]:
        return [SectionLink(f"spec-{spec}", spec)] + [Metric(f"{prefix}.{k}") for k in keys]

    ended = ("n_runs", "outcomes.ok", "outcomes.unstable", "outcomes.diverged", "outcomes.failed", "violations",
             "contradictions.init", "contradictions.final")
    learning = ("learned.n", "n_beat_chance", "learned.k", "n_solved", "n_at_chance", "n_worse_than_chance")
    blocks: list = [
        Table(["spec", "runs", "ok", "unstable", "diverged", "failed", "bound violations",
               "contradictions at init", "contradictions after training"],
              [row(s, f"specs.{s}", ended) for s in specs],
              "Per sweep spec: how its runs ended, bound violations and contradictions of the theorem (expected 0)"),
        Table(["spec", "runs on a scored task", "beat chance", "learned", "solved", "at chance", "worse than chance"],
              [[c if i != 4 or not no_sequences(metrics, s) else "n/a (text)"
                for i, c in enumerate(row(s, f"learning.{s}", learning))] for s in specs],
              "Per sweep spec: the runs that beat chance, learned (at least "
              f"{LEARNED_MARGIN:.0%} below the partial baseline) and solved the task. "
              "A spec's counts pool settings that change the answer (γ_W, threshold, T, arm), so no interval is "
              "given here: a pool of a designed grid samples no one population. Each spec's section gives the "
              "counts per setting, with their Wilson 95% intervals"),
    ]
    items = []
    for spec in specs:
        h = f"specs.{spec}.headline"
        found, head = metric_value(metrics, h)
        tail = studies.study(spec).headline
        if found and isinstance(head, dict) and tail is not None and (parts := tail(h, head)):
            items.append([SectionLink(f"spec-{spec}", spec), ": "] + parts + ["."])
    return blocks + ([Bullets(items)] if items else [])


def spot_paragraph(brief: bool = False) -> Paragraph:
    """The independent spot check and why the bound check is only a sanity check (docs/math.md 4.5); `brief`: one
    sentence for the summary."""
    m = Metric
    numbers: list[Inline] = [m("spot_checks.n"), " pairs were checked and ", m("spot_checks.skipped"),
                             " skipped (finite differences could not resolve them, or the probe's value is not "
                             "finite); ", m("spot_checks.mismatches"), " differed by more than ",
                             format_metric(SPOT_TOLERANCE), " nats in log‖∂h_t/∂h_k‖ (expected 0), and the largest "
                             "difference was ", m("spot_checks.max_abs_dlog"), " nats."]
    if brief:
        return Paragraph(["That check holds by construction; the independent one recomputes sampled pairs of every "
                          "probe from the forward step equations alone (finite differences, no φ′): "] + numbers)
    return Paragraph([
        "The bound check holds by construction: the measured norm and both bounds are built from the same φ′ values "
        "and time indices (sub-multiplicativity, γ_φ = sup |φ′|, and Lanczos can only under-estimate σ₁), so a wrong "
        "φ′ or a shifted step would cancel out of it; it is a sanity check of the bookkeeping. The independent check "
        "is the spot check: in every probe and layer, sampled pairs were recomputed from the forward step equations "
        "alone (finite differences, no φ′). "] + numbers)


def spec_headline(spec: str, metrics: dict) -> list[Inline]:
    """One sentence with the spec's headline numbers (used in the summary and in the spec's section)."""
    p = f"specs.{spec}"
    h = f"{p}.headline"
    found, head = metric_value(metrics, h)
    seeds_found, seeds = metric_value(metrics, f"{p}.n_seeds")
    per_seed: list[Inline] = ([" over ", Metric(f"{p}.n_seeds"), " seed" + ("" if seeds == 1 else "s")]
                              if seeds_found else [])
    base: list[Inline] = [Metric(f"{p}.n_runs"), " runs"] + per_seed + [" (", Metric(f"{p}.outcomes.ok"), " ok, ",
                          Metric(f"{p}.outcomes.unstable"), " unstable, ", Metric(f"{p}.outcomes.diverged"),
                          " diverged, ", Metric(f"{p}.outcomes.failed"), " failed), ", Metric(f"{p}.violations"),
                          " bound violations, ", Metric(f"{p}.contradictions.init"), " regime contradictions at "
                          "initialisation and ", Metric(f"{p}.contradictions.final"), " after training; "]
    base += learning_parts(spec, metrics)
    tail = studies.study(spec).headline
    if not found or not isinstance(head, dict) or tail is None:
        return base + ["."]
    extra = tail(h, head)
    return base + ([": "] + extra if extra else []) + ["."]


def learning_parts(spec: str, metrics: dict) -> list[Inline]:
    """Whether the spec's runs learned, plainly: "learned: k of n ..., a at chance, w worse than chance", or that
    its task scores nothing."""
    p = f"learning.{spec}"
    found, scored = metric_value(metrics, f"{p}.learned.n")
    if not found:
        return ["no learning verdict"]
    if not scored:
        return ["not trained on a scored task (no chance baseline): no learning verdict"]
    return (["learned: "] + rate_parts(f"{p}.learned", " runs on a scored task") + [
        "; "] + solved_parts(metrics, spec, first=True) + [", beat chance ", Metric(f"{p}.n_beat_chance"), "; ",
        Metric(f"{p}.n_at_chance"), " at chance, ", Metric(f"{p}.n_worse_than_chance"), " worse than chance"])


def bound_section(metrics: dict, report: dict, figures: dict[str, FigureFile], ids: list[str]) -> Section:
    m = Metric
    blocks: list = [Paragraph([
        "For every run, probe (init, final), layer and pair k < t we check log‖∂h_t/∂h_k‖ ≤ Σ_s log‖J_s‖₂ (the "
        "step-norm bound) ≤ Σ_s log(‖W‖₂ max_j |φ'_j|) (the product bound) ≤ (t−k) log(γ_W γ_φ) (the global bound), "
        "allowing ", relative(BOUND_RTOL), " relative rounding. Violations: ",
        m("violations"), " (", m("violations_measured_gt_stepnorm"), " measured above the step-norm bound, ",
        m("violations_stepnorm_gt_product"), " step-norm above the product bound, ",
        m("violations_measured_gt_product"), " measured above the product bound, ",
        m("violations_product_gt_global"),
        " product above global); the runs themselves reported ", m("violations_reported_by_runs"), "."]),
        spot_paragraph()]
    if report["violations"]:
        shown = report["violations"][:MAX_LISTED]
        rows = [[RunRef(v["run_id"]), v["spec"], v["when"], cell(v["layer"]), cell(v["t"]), cell(v["k"]),
                 violation_text(v)] for v in shown]
        more = len(report["violations"]) < metrics["violations"] or len(shown) < len(report["violations"])
        blocks.append(Table(["run", "spec", "when", "layer", "t", "k", "what broke which bound (natural log)"], rows,
                            "Every violation, at full precision" +
                            (" (first rows; all in tables/violations.csv)" if more else "")))
    if report["nonfinite"]:
        rows = [[RunRef(r["run_id"]), r["spec"], r["outcome"], r["when"], cell(r["layer"]), cell(r["n"]),
                 f"({r['first_t']}, {r['first_k']})"] for r in report["nonfinite"][:MAX_LISTED]]
        blocks.append(Table(["run", "spec", "outcome", "when", "layer", "pairs", "first (t, k)"], rows,
                            "Probes with NaN or +inf entries (expected only where the run diverged)"))
    blocks += [figures[n] for n in ("heatmaps", "decay") if n in figures]
    return Section("bound", "Bound check", blocks, ids)


def tightness_section(figures: dict[str, FigureFile], ids: list[str], metrics: dict | None = None) -> Section:
    blocks: list = [Paragraph([
        "How far above the measured norm each bound sits, in decades (1 = ten times too large), median over the "
        "top-layer pairs of each run's initial model, then over runs: product bound ",
        Metric("tightness.median_gap_product_decades"), ", global bound ",
        Metric("tightness.median_gap_global_decades"), ", both over the same ", Metric("tightness.n_runs"),
        " runs (", Metric("tightness.n_product_only"), " more, of gated cells, have no global bound and only a "
        "product gap). Per-run gaps are in tables/runs.csv, per-lag gaps in tables/tightness.csv."] +
        gaps_coincide(metrics or {}))]
    blocks += [figures["tightness"]] if "tightness" in figures else []
    return Section("tightness", "Tightness of the bounds", blocks, ids)


def gaps_coincide(metrics: dict) -> list[Inline]:
    """A sentence saying why, when the two bounds' median gaps print the same: they differ only where no unit sits
    at its activation's steepest slope (docs/math.md section 4); empty when the gaps differ or are missing."""
    product = number(metrics, "tightness.median_gap_product_decades")
    global_ = number(metrics, "tightness.median_gap_global_decades")
    if product is None or global_ is None or format_decades(product) != format_decades(global_):  # as shown
        return []
    return [" The two medians coincide. Both bounds use the same ‖W_hh‖₂ at every step and differ only by each "
            "step's max_j |φ′_j| against its supremum γ_φ (docs/math.md, section 4), so equal medians say that in "
            "the typical probe some unit sits at its activation's steepest slope at every step (a ReLU-like or "
            "linear unit on its linear piece, a tanh unit near 0), where max_j |φ′_j| = γ_φ to the digits shown."]


def rate_section(figures: dict[str, FigureFile], runs: pd.DataFrame) -> Section:
    blocks: list = [Paragraph([
        "The fitted slope of log‖∂h_t/∂h_k‖ against the lag (initial model, top layer) is compared with the top "
        "Lyapunov exponent (QR along two driven trajectories, after a burn-in) and with log(γ_W γ_φ). Over ",
        Metric("rate.n_runs"),
        " runs with all three finite, the median |slope − Lyapunov| is ",
        Metric("rate.median_abs_slope_minus_lyapunov"),
        " and the median |slope − log(γ_W γ_φ)| is ", Metric("rate.median_abs_slope_minus_log_rate"),
        " nats per step."])]
    blocks += [figures[n] for n in ("rates", "phase") if n in figures]
    ids = list(dict.fromkeys(i for n in ("rates", "phase") if n in figures for i in figures[n].run_ids))
    return Section("rates", "Decay rate: slope, Lyapunov exponent and log(γ_W γ_φ)", blocks, ids)


# in the order stated: the i.i.d. cases first, then the inits that break the assumption
INIT_LABELS = {"orthogonal": "orthogonal init", "gaussian": "Gaussian init", "identity": "identity init (the IRNN)",
               "sparse": "sparse init"}
MEANFIELD_ASSUMPTION = (
    "The mean-field rate is derived for a W_hh with i.i.d. entries: Gaussian init is that case, and an orthogonal "
    "matrix of the same norm behaves alike as n grows. An identity W_hh breaks the assumption outright (every unit "
    "feeds only itself, so the state never mixes and each unit keeps its own gain), and a sparse W_hh with a few "
    "entries per row breaks it in part; their distances above measure how far the prediction carries there.",)


def meanfield_per_init(metrics: dict) -> list[Inline]:
    """'x for orthogonal init (n = k), y for Gaussian init (n = m), ...' over the inits whose runs have a mean-field
    rate (docs/math.md 7.5), in a fixed order: the i.i.d. cases first, then those that break the assumption."""
    parts: list[Inline] = []
    for name, label in INIT_LABELS.items():
        key, n = f"rate.median_abs_slope_minus_meanfield_{name}", f"rate.n_meanfield_{name}"
        if number(metrics, n):
            parts += [", " if parts else "", Metric(key), f" for {label} (n = ", Metric(n), ")"]
    act = prediction.MATCHED_ACTIVATION
    matched = [(name, label) for name, label in INIT_LABELS.items() if number(metrics, f"rate.n_meanfield_{act}_{name}")]
    if len(matched) > 1:  # the per-init medians pool each init's activations; on one activation they compare
        parts += [f" (these pool each init's activations; on {act} alone: "]
        for i, (name, label) in enumerate(matched):
            parts += [", " if i else "", Metric(f"rate.median_abs_slope_minus_meanfield_{act}_{name}"), f" for {label} "
                      "(n = ", Metric(f"rate.n_meanfield_{act}_{name}"), ")"]
        parts += [")"]
    return parts


def prediction_finding(metrics: dict) -> list[Inline] | None:
    """The prediction from the initialisation alone, per init, beside lambda_1 and the bound's rate (it stands in for
    `rate_finding` when the runs have a mean-field rate)."""
    r = "rate"
    if not numbers(metrics, f"{r}.median_abs_slope_minus_meanfield", f"{r}.n_meanfield") \
            or not number(metrics, f"{r}.n_meanfield"):
        return None
    parts: list[Inline] = ["The mean-field rate, predicted from the initial weights and input statistics alone, "
                           "lay a median "]
    per_init = meanfield_per_init(metrics)
    if per_init:
        parts += per_init + [" nats per step from the measured slope; ",
                             Metric(f"{r}.median_abs_slope_minus_meanfield"), " over all ",
                             Metric(f"{r}.n_meanfield"), " runs"]
    else:
        parts += [Metric(f"{r}.median_abs_slope_minus_meanfield"), " nats per step from the measured slope (n = ",
                  Metric(f"{r}.n_meanfield"), ")"]
    if numbers(metrics, f"{r}.median_abs_slope_minus_lyapunov", f"{r}.lyapunov_trajectory_spread"):
        parts += ["; the driven top Lyapunov exponent lay a median ", Metric(f"{r}.median_abs_slope_minus_lyapunov"),
                  " from it (its median spread between trajectories: ", Metric(f"{r}.lyapunov_trajectory_spread"),
                  ")"]
    if number(metrics, f"{r}.median_abs_slope_minus_log_rate") is not None:
        parts += ["; the bound's rate log(γ_W γ_φ) a median ", Metric(f"{r}.median_abs_slope_minus_log_rate")]
    return parts + ["."] + see("prediction", "Prediction versus measurement")


def prediction_section(metrics: dict, figures: dict[str, FigureFile]) -> Section:
    """The measured slope against lambda_MF, lambda_1 and log(gamma_W gamma_phi); the gap decomposition; the
    singular spectrum and the gradients over training."""
    m, r, g = Metric, "rate", "gap_decades"
    blocks: list = [Paragraph([
        "Three rates are set against the measured decay slope (initial model, top layer, nats per step). The "
        "mean-field rate λ_MF = ½ ln(σ_w² E[φ′(√q* z)²]) is a prediction from the initialisation alone: σ_w = "
        "‖W_hh‖_F/√n and the input drive's mean square fix the fixed point q* of the pre-activation variance "
        "(docs/math.md 7.5). It assumes a wide layer with i.i.d. weights and a stationary state; it ignores the "
        "non-normality of a Gaussian W_hh and the transient from h₀ = 0, which is where it misses (",
        Cite("poole2016"), " derived it for deep feed-forward networks, ", Cite("chen2018"), " for RNNs). The "
        "driven top Lyapunov exponent λ₁ (", Cite("engelken2020"), ") is measured on the model itself along two driven trajectories of task inputs (200 steps of "
        "burn-in, 1000 measured; docs/math.md 7.3): the slope's asymptotic value, which a probe of a few dozen "
        "steps from h₀ = 0 approaches only as it grows. log(γ_W γ_φ) bounds the slope from above."]),
        Paragraph(["Median |slope − λ_MF|: "] + meanfield_per_init(metrics) + [
                   "; ", m(f"{r}.median_abs_slope_minus_meanfield"), " over all ", m(f"{r}.n_meanfield"), " runs. ",
                   *MEANFIELD_ASSUMPTION, " Median |slope − λ₁|: ", m(f"{r}.median_abs_slope_minus_lyapunov"),
                   ", against a median spread of λ₁ between its trajectories of ", m(f"{r}.lyapunov_trajectory_spread"),
                   " (largest ", m(f"{r}.lyapunov_trajectory_spread_max"), "); the slope lay within that spread of λ₁ "
                   "in "] + rate_parts(f"{r}.slope_within_lyapunov_spread", " runs") + [
                   ". On the longest probes (", m(f"{r}.longest_probe_steps"), " steps, n = ", m(f"{r}.n_longest"),
                   "): |slope − λ₁| ", m(f"{r}.median_abs_slope_minus_lyapunov_longest"), " (spread ",
                   m(f"{r}.lyapunov_trajectory_spread_longest"), "), |slope − λ_MF| ",
                   m(f"{r}.median_abs_slope_minus_meanfield_longest"), ". Median |slope − log(γ_W γ_φ)|: ",
                   m(f"{r}.median_abs_slope_minus_log_rate"), ". The slope lay above λ₁ in "]
                  + rate_parts(f"{r}.slope_above_lyapunov", " runs") + [
                   ": the distance that remains is a one-sided bias of the finite-T slope, not scatter of λ₁ (whose "
                   "spread is far smaller). The long lags of a probe all contain its first steps, the transient from "
                   "h₀ = 0, where the units are less saturated and the steps gain more than on the stationary "
                   "trajectory; the bias shrinks as the probe grows."]),
        Paragraph(["Why the bound is loose, in decades (median over ", m(f"{g}.n_runs"), " runs of each run's mean "
                   "over its pairs, where the Tightness section takes each run's median over its pairs, so these parts "
                   "need not add up to its gaps): global → product bound ", m(f"{g}.global_to_product"), " (saturation: "
                   "sup|φ′| against the realised max|φ′|), product → step-norm bound ", m(f"{g}.product_to_stepnorm"),
                   " (‖W‖₂ max|φ′| against ‖diag(φ′) W‖₂; exactly 0 for an orthogonal W_hh, since ‖diag(d) Q‖₂ = "
                   "max|d|), step-norm bound → measured ",
                   m(f"{g}.stepnorm_to_measured"), " (the alignment of successive steps: the product of the step "
                   "norms against the norm of the product). The step-norm bound Σ log‖J_s‖₂ is as rigorous as the "
                   "product bound and is checked in the violation count: ", m("violations_measured_gt_stepnorm"),
                   " pairs above it, ", m("violations_stepnorm_gt_product"), " of it above the product bound."]),
    ]
    blocks.append(Paragraph([
        "Singular spectrum of ∂h_T/∂h_0 at the longest lag (initial model, top layer), over ", m("spectrum.n_runs"),
        " runs: in ", m("spectrum.n_fully_resolved"), " every singular value lies above 10⁻¹² σ₁, the resolution of "
        "a float64 product, and their spread from σ₁ to σ_n is a median ", m("spectrum.median_spread_resolved_decades"),
        " decades. In the other ", m("spectrum.n_censored"), " the smallest directions are lost below that floor, so "
        "only a lower bound of the spread is known (a median ", m("spectrum.median_spread_censored_decades"),
        " decades to the smallest resolved value). Either way far from dynamical isometry, where every direction "
        "would pass at the same gain."]))
    names = [n for n in ("prediction", "gaps", "spectrum", "gradients") if n in figures]
    blocks += [figures[n] for n in names]
    ids = list(dict.fromkeys(i for n in names for i in figures[n].run_ids))
    return Section("prediction", "Prediction versus measurement", blocks, ids)


def regime_section(metrics: dict, report: dict, tables: dict[str, pd.DataFrame]) -> Section:
    conf = tables["regimes"]
    blocks: list = [Paragraph([
        Cite("pascanu2013"), " bound ‖∂h_t/∂h_k‖ by (γ_W γ_φ)^(t−k). Predicted, from log(γ_W γ_φ) of the top layer "
        "(within ", relative(RATE_ROUNDING), " of 0 counts as 0): vanishing when γ_W γ_φ < 1 (sufficient), bounded "
        "at γ_W γ_φ = 1 (no growth possible), unconstrained above 1 (the condition is only necessary for "
        "exploding: the theorem predicts nothing). Observed: from the fitted slope of log‖∂h_t/∂h_k‖ per step of "
        f"lag, with a ±{REGIME_BAND:g} nats/step neutral band. A contradiction is an exploding observation where "
        "the prediction is vanishing or bounded, or a neutral one where the bound demands a decay steeper than "
        "the band. At initialisation: ", Metric("regimes.init.n_sufficient_observed_vanishing"), " of ",
        Metric("regimes.init.n_sufficient"), " runs predicted vanishing were observed vanishing, ",
        Metric("regimes.init.n_bounded"), " were bounded, contradictions ", Metric("regimes.init.contradictions"),
        ". After training: ", Metric("regimes.final.n_sufficient_observed_vanishing"), " of ",
        Metric("regimes.final.n_sufficient"), ", ", Metric("regimes.final.n_bounded"), " bounded, contradictions ",
        Metric("regimes.final.contradictions"), "."])]
    for when, title in (("init", "initial model"), ("final", "trained model")):
        blocks.append(confusion_table(conf[conf["when"].astype(str) == when],
                                      f"Runs by predicted and observed regime, {title} (top layer)"))
        ids = report["contradictions"][when]
        if ids:
            blocks.append(Paragraph([f"Contradicting runs ({title}): "] + joined([[RunRef(i)] for i in ids], ", ")
                                    + ["."]))
    runs = tables["runs"]
    ids = runs.dropna(subset=["predicted_regime", "observed_regime"])["run_id"].tolist()
    return Section("regimes", "Regimes: the theorem's predictions against the observations", blocks, ids)


def confusion_table(conf: pd.DataFrame, caption: str) -> Table:
    """Predicted regime (rows, in the theorem's order) by observed regime (columns)."""
    observed = ["vanishing", "neutral", "exploding"]
    observed += sorted(set(conf["observed_regime"].astype(str)) - set(observed))
    predicted = [p for p in PREDICTED_REGIMES if p in set(conf["predicted_regime"].astype(str))]
    predicted += sorted(set(conf["predicted_regime"].astype(str)) - set(predicted))
    rows = []
    for pred in predicted:
        c = conf[conf["predicted_regime"].astype(str) == pred].set_index("observed_regime")["n"]
        rows.append([pred] + [cell(int(c.get(o, 0))) for o in observed])
    return Table(["predicted \\ observed"] + observed, rows, caption)


def relative(rtol: float) -> str:
    """A tolerance as the report writes it: 1e-9, not 1e-09."""
    mantissa, exponent = f"{rtol:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def spec_section(spec: str, metrics: dict, report: dict, tables: dict[str, pd.DataFrame],
                 figures: dict[str, FigureFile]) -> Section:
    """The spec's description (from its experiments/<spec>.yaml), then what its study shows: the headline
    sentence, its tables, figures and text samples."""
    study, given = studies.study(spec), report["specs"][spec]
    blocks: list = [Paragraph([given["description"]])] if given.get("description") else []
    blocks.append(Paragraph([study.text + " "] + spec_headline(spec, metrics)))
    name, columns = study.table or (None, None)
    if name in tables and len(tables[name]):
        t = tables[name]  # columns with no value in any row (accuracy of untrained probes) are left out
        shown = {k: v for k, v in columns.items() if k in t and t[k].notna().any()}
        if study.pdf_pivot and len(t) > PDF_TABLE_ROWS and all(c in t for c in study.pdf_pivot):
            blocks += [dataclasses.replace(frame_table(t, shown), only_in="html"),
                       pivot_table(t, shown, *study.pdf_pivot, name)]
        else:
            blocks.append(frame_table(t, shown))
    headline = metric_value(metrics, f"specs.{spec}.headline")[1]
    blocks += study.more_tables(spec, given | {"headline": headline or {}}, tables) if study.more_tables else []
    blocks += [figures[n] for n in study.figures if n in figures]
    if "shown_samples" in given:  # the study chose which samples to show, each with its heading
        blocks += [Preformatted(str(s.get("heading", "")), str(s.get("text", ""))) for s in given["shown_samples"]]
    else:
        for run_id, samples in given.get("samples", {}).items():
            for s in samples:
                blocks.append(Preformatted(f"Sample from run {run_id[:8]} at iteration {s.get('iter')}",
                                           str(s.get("text", ""))))
    return Section(f"spec-{spec}", f"Sweep: {spec}", blocks, given["run_ids"])


PDF_TABLE_ROWS = 40  # a section's main table longer than this prints in the PDF in its pivoted form (Study.pdf_pivot)


def pivot_table(t: pd.DataFrame, shown: dict[str, str], across: str, value: str, name: str) -> Table:
    """The PDF's form of a long table: one row per value of its label columns (those before `across` in `shown`), one
    column per value of `across`, each cell the row's `value` there (a dash where none is)."""
    labels = [c for c in list(shown)[:list(shown).index(across)] if c in t] if across in shown else []
    steps = sorted(pd.to_numeric(t[across], errors="coerce").dropna().unique())
    key = lambda r: tuple(str(r[c]) for c in labels)  # noqa: E731
    cells = {(key(r), float(r[across])): r[value] for _, r in t.iterrows() if pd.notna(r[across])}
    rows = [list(k) + [cell(cells.get((k, a)), style_of(value)) for a in steps]
            for k in dict.fromkeys(key(r) for _, r in t.iterrows())]
    heading = shown.get(value, value)
    return Table([shown[c] for c in labels] + [f"{short_value(a)}" for a in steps], rows,
                 f"The {heading}, one column per {shown.get(across, across)}: the PDF's form of this section's "
                 f"table of {len(t)} rows, which the HTML report prints in full and tables/{name}.csv holds",
                 only_in="pdf")


def missing_section(metrics: dict, report: dict) -> Section:
    rows = [[RunRef(r["run_id"]), r["spec"], r["file"], r["problem"]] for r in report["missing"][:MAX_LISTED]]
    blocks = [Paragraph([Metric("n_missing_artifacts"), " artifacts missing or unreadable in ",
                         Metric("n_runs_incomplete"), " runs; those parts of the analysis skip them."]),
              Table(["run", "spec", "file", "problem"], rows)]
    return Section("missing", "Missing artifacts", blocks, list(dict.fromkeys(r["run_id"] for r in report["missing"])))


def failed_section(report: dict) -> Section:
    rows = [[RunRef(r["run_id"]), r["spec"], str(r["error"] or "")[:300]] for r in report["failed"][:MAX_LISTED]]
    blocks = [Paragraph([Metric("outcomes.failed"), " runs failed with an exception (their config.json and "
                         "summary.json hold the error and traceback); they have no probe to check."]),
              Table(["run", "spec", "error"], rows)]
    return Section("failed", "Failed runs", blocks, [r["run_id"] for r in report["failed"]])


def appendix_section(runs: pd.DataFrame, links: MlflowLinks | None = None) -> Section:
    """Every run once, its ID a link to its MLflow run page when the store was found, after one link per spec to
    its experiment's runs table."""
    links = links or MlflowLinks("")
    names = runs["cell"].where(runs["cell"].notna(), runs["label"]) if "cell" in runs else runs["label"]
    verdicts = runs["verdict"] if "verdict" in runs else pd.Series("–", index=runs.index)
    rows = [[Link(r.run_id, links.runs[r.run_id]) if r.run_id in links.runs else r.run_id, r.spec, str(name),
             str(r.outcome), str(v), str(r.config_hash)] for r, name, v in zip(runs.itertuples(), names, verdicts)]
    blocks = [Paragraph(["Every run in this report once, with its full MLflow run ID, its outcome and whether it "
                         "learned: in report.html the table below"
                         + (" (each ID a link to its run page in the MLflow UI)" if links.runs else "")
                         + ", in tables/runs.csv with every measured number. The PDF prints the runs grouped by spec "
                         "and cell instead (one row per cell, its seeds' outcomes and the first 8 characters of their "
                         "run IDs): the table of every run ran over many pages."])]
    if links.experiments:
        start = [f" (start it from the project folder with `{links.ui_command}`)"] if links.ui_command else []
        blocks.append(Paragraph(["The runs table of each spec's MLflow experiment"] + start + [":"]))
        blocks.append(Bullets([[f"rnngrad/{spec}: ", Link(url, url)] for spec, url in links.experiments.items()]))
    elif links.ui_command:
        blocks.append(Paragraph([f"Open them from the project folder with `{links.ui_command}`."]))
    blocks.append(grouped_runs_table(runs))
    blocks.append(Table(["run ID", "spec", "cell", "outcome", "learning", "config hash"], rows, only_in="html"))
    return Section("appendix", "Appendix: MLflow runs", blocks, [])


def runs_note(section: Section) -> list[Inline]:
    """The line under a section that names how many runs it rests on; their IDs are listed once, in the
    appendix (with links), not under every section."""
    n = len(section.run_ids)
    return [f"MLflow runs behind this section: {n} ({'listed' if n > 1 else 'its ID is'} in the ",
            SectionLink("appendix", "appendix"), ")."]


# ---- HTML -----------------------------------------------------------------------------------------------------

CSS = """
:root { --ink: #1d232b; --muted: #5b6573; --rule: #d8dde3; --accent: #1f5f99; }
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       max-width: 62rem; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; } h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem;
     border-bottom: 1px solid var(--rule); padding-bottom: .2rem; }
nav ol { columns: 2; font-size: .9rem; } a { color: var(--accent); text-decoration: none; }
.m { font-weight: 600; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; margin: .6rem 0 1rem; }
table { border-collapse: collapse; font-size: .82rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--rule); padding: .22rem .55rem; text-align: left; vertical-align: top; }
td { max-width: 26rem; overflow-wrap: break-word; }  /* anywhere would let the layout cut "100" into "1 0 0" */
th { background: #f3f5f7; } caption { caption-side: top; text-align: left; color: var(--muted); padding: .2rem 0; }
figure { margin: 1rem 0 1.4rem; } figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: .86rem; margin-top: .3rem; }
pre { background: #f6f7f9; border: 1px solid var(--rule); padding: .5rem .7rem; white-space: pre-wrap;
      font: .8rem/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.pre-heading { color: var(--muted); font-size: .84rem; margin: .8rem 0 .1rem; }
.runs { color: var(--muted); font: .74rem/1.5 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
        word-spacing: .25rem; } abbr { text-decoration: none; }
@media print {
  body { max-width: none; font-size: 10pt; padding: 0; } nav { display: none; }
  h2 { break-after: avoid; } figure, table, pre { break-inside: avoid; } a { color: inherit; }
  .table-wrap { overflow: visible; }
}
"""


def inline_html(part: Inline, metrics: dict) -> str:
    if isinstance(part, Metric):
        found, value = metric_value(metrics, part.key)
        text = html.escape(format_styled(value, part.shown_style))
        style = html.escape(part.shown_style)
        return (f'<span class="m" data-metric="{html.escape(part.key)}" data-style="{style}">{text}</span>'
                if found else text)
    if isinstance(part, RunRef):
        rid = html.escape(part.run_id)
        return f'<abbr class="run" title="{rid}">{rid[:8]}</abbr>'
    if isinstance(part, SectionLink):
        return f'<a href="#{html.escape(part.anchor)}">{html.escape(part.text)}</a>'
    if isinstance(part, Link):
        return f'<a href="{html.escape(part.url)}">{html.escape(part.text)}</a>'
    if isinstance(part, Cite):
        return f'<a class="cite" href="#ref-{html.escape(part.key)}">{html.escape(reference(part.key).short)}</a>'
    return html.escape(part)


def parts_html(parts: list[Inline], metrics: dict) -> str:
    return "".join(inline_html(p, metrics) for p in parts)


def block_html(block: Any, metrics: dict) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{parts_html(block.parts, metrics)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{parts_html(i, metrics)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table) and block.only_in == "pdf":
        return ""
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
        body = "".join("<tr>" + "".join(f"<td>{inline_html(c, metrics)}</td>" for c in row) + "</tr>"
                       for row in block.rows)
        cap = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
        return f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    if isinstance(block, FigureFile):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    if isinstance(block, ReferenceList):
        return '<ol class="refs">' + "".join(f'<li id="ref-{html.escape(k)}">{html.escape(reference(k).entry)}</li>'
                                             for k in block.keys) + "</ol>"
    if isinstance(block, Preformatted):
        return f'<p class="pre-heading">{html.escape(block.heading)}</p><pre>{html.escape(block.text)}</pre>'
    raise TypeError(f"unknown report block {type(block).__name__}")


def section_html(section: Section, metrics: dict) -> str:
    body = "\n".join(block_html(b, metrics) for b in section.blocks)
    runs = ""
    if section.run_ids:
        runs = f'<p class="runs">{parts_html(runs_note(section), metrics)}</p>'
    return f'<section id="{html.escape(section.anchor)}">\n<h2>{html.escape(section.title)}</h2>\n{body}\n{runs}\n</section>'


def render_html(sections: list[Section], metrics: dict) -> str:
    """The whole report as one HTML document with no external references."""
    toc = "".join(f'<li><a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(section_html(s, metrics) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(TITLE)}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n<header><h1>{html.escape(TITLE)}</h1></header>\n"
            f'<nav aria-label="Contents"><ol>{toc}</ol></nav>\n<main>\n{body}\n</main>\n</body>\n</html>\n')
