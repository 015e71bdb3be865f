"""Check every logged Jacobian norm against its bounds, and summarise the sweeps for the report.

Input: `results/<spec>.parquet` (one row per run) and each run's folder (docs/internals.md). `analyze` walks the
runs and applies the pure reductions of reductions.py, each spec summarised by its study (studies.py: a study of
its own, or the generic one); `write_analysis` writes `metrics.json` (DVC metrics),
`analysis.json` (what the report needs), `tables/*.csv` (tidy, one row per run) and `plots/<plot>/<group>.csv`
(one file per line of dvc.yaml's plots).
No mlflow here: the run IDs come from the results tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..engine.cells import GATED_CELLS
from ..run.dynamics import DYNAMICS_COLUMNS, DYNAMICS_FILE
from ..run.environment import NOT_RECORDED, describe
from .artifacts import load_results, read_artifact, run_folder  # noqa: F401 (the stage and tests read them here)
from .outputs import ANALYSIS_FORMAT, check_analysis_outputs, read_analysis, write_set  # noqa: F401
from ..run.probe import GRADIENT_COLUMNS, JACOBIAN_REQUIRED, SIGNAL_COLUMNS, SPECTRA_COLUMNS, SPOT_COLUMNS
from . import depth, prediction, studies
from .dvc_plots import write_plots
from .reductions import (
    REGIME_PROBES, bound_violations, decay_by_lag, finite_median, heatmap_rows, label_regimes, learning_counts,
    nonfinite_summary, numeric, outcome_counts, rate_comparison, regime_confusion, regime_counts, rounded_tree,
    gap_rate_metrics, run_gaps, run_labels, spot_summary, stacked, tightness_by_lag, with_verdicts, zero_pairs,
)

HISTORY_COLUMNS = ("iter", "loss")
REPORT_VIOLATIONS = 1000  # violations carried into analysis.json (all of them go to tables/violations.csv)
TABLES = ("runs", "violations", "nonfinite", "missing", "decay", "tightness", "regimes", "heatmaps",
          "prediction", "gaps", "edge_of_chaos", "phase", "spectra", "gradient_spikes", "gradient_by_k",
          *sorted(studies.table_names()))
# The step-norm bound column is new: a probe table written before it is still read (its pairs then check two bounds)


# ---- reading the results and run folders --------------------------------------------------------------------


@dataclass
class RunFiles:
    """What could be read of one run's folder; `problems` lists (file, what is wrong)."""

    folder: Path
    summary: dict = field(default_factory=dict)
    history: pd.DataFrame | None = None
    samples: list | None = None
    val_curve: pd.DataFrame | None = None  # text runs: iter, val_loss (series.parquet's by_iter/val_loss)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def read(self, name: str, columns: Iterable[str] = (), nonempty: bool = False) -> Any:
        value, problem = read_artifact(self.folder / name, columns, nonempty)
        if problem:
            self.problems.append((name, problem))
        return value


def read_run_files(folder: Path, is_text: bool, failed: bool) -> RunFiles:
    """The small files of a run (config, summary, history, samples); the probe tables are read later.
    A failed run (an exception inside it) has only config.json and summary.json, with the error."""
    files = RunFiles(folder)
    if not folder.is_dir():
        files.problems.append(("", "run folder missing"))
        return files
    files.read("config.json")
    summary = files.read("summary.json")
    files.summary = summary if isinstance(summary, dict) else {}
    if not failed:
        files.history = files.read("history.csv", HISTORY_COLUMNS)
        files.samples = files.read("samples.json") if is_text else None
        files.val_curve = val_curve(files.read("series.parquet", SERIES_COLUMNS)) if is_text else None
    return files


SERIES_COLUMNS = ("key", "step", "value")  # series.parquet: one row per step metric and step (runner.py)


def val_curve(series: pd.DataFrame | None) -> pd.DataFrame | None:
    """A run's validation loss over training (iter, val_loss) from its series.parquet; None when not read."""
    if series is None:
        return None
    rows = series[series["key"] == "by_iter/val_loss"]
    return pd.DataFrame({"iter": pd.to_numeric(rows["step"], errors="coerce").to_numpy(),
                         "val_loss": pd.to_numeric(rows["value"], errors="coerce").to_numpy()})


# ---- the whole analysis ------------------------------------------------------------------------------------


@dataclass
class Analysis:
    metrics: dict  # metrics.json: numbers, rounded by round_metric, and `environment` (text)
    report: dict  # analysis.json: everything the report needs besides the tables
    tables: dict[str, pd.DataFrame]  # tables/<name>.csv


def summary_scalars(summary: dict) -> dict:
    """summary.json's scalar fields (its per-layer `layers` list would clash with the config field `layers`)."""
    skip = ("layers", "traceback")
    return {k: v for k, v in summary.items() if k not in skip and (v is None or isinstance(v, (str, int, float)))}


# the top layer's W_hh as measured (summary.json), and the older names of the same numbers
MEASURED_NORMS = {"w_norm_init": "gamma_w_init", "w_norm_final": "gamma_w_final", "rho_init": "spectral_radius_init",
                  "rho_final": "spectral_radius_final"}


def run_records(results_dir: Path, results: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, RunFiles]]:
    """One record per run (results row updated with summary.json) and each run's readable files. A run's
    `environment` is read from its summary.json (a results table from before the column lacks it), "not recorded"
    for a folder written before runs recorded it."""
    records, files = [], {}
    for row in results.to_dict("records"):
        is_text = row.get("task") == "text" or studies.study(row["spec"]).reads_samples
        f = files[row["run_id"]] = read_run_files(run_folder(results_dir, row), is_text, row["outcome"] == "failed")
        records.append(row | summary_scalars(f.summary) | {"run_dir": str(f.folder),
                                                           "environment": describe(f.summary.get("environment"))})
    runs = pd.DataFrame(records)
    for col in ("activation", "task", "clip_mode", "error", "final_val_loss", "chance_loss"):
        if col not in runs:
            runs[col] = None
    for measured, older in MEASURED_NORMS.items():  # summaries written before the measured norms had these names
        if measured not in runs and older in runs:
            runs[measured] = runs[older]
    runs = with_verdicts(label_regimes(runs))
    runs["label"], runs["name"] = None, None
    for spec, idx in runs.groupby("spec").groups.items():
        runs.loc[idx, "label"] = run_labels(runs.loc[idx])  # a group: its seeds together
        runs.loc[idx, "name"] = run_labels(runs.loc[idx], seeds=True)  # one run: the seed too
    return runs, files


def pick_heatmap_runs(runs: pd.DataFrame, n: int = 3) -> list[str]:
    """Up to n finished runs spanning log(gamma_W gamma_phi): the lowest, the one nearest 0, the highest."""
    r = numeric(runs, ["log_rate_init"])
    r = r[(r["outcome"] == "ok") & np.isfinite(r["log_rate_init"])]
    first = r["spec"].isin(studies.names("heatmap_first"))
    if first.sum() >= n:
        r = r[first]
    if r.empty:
        return []
    r = r.sort_values("log_rate_init")
    picks = [r.iloc[0], r.loc[r["log_rate_init"].abs().idxmin()], r.iloc[-1]]
    return list(dict.fromkeys(p["run_id"] for p in picks))[:n]


@dataclass
class ProbeResults:
    violations: list[pd.DataFrame] = field(default_factory=list)
    nonfinite: list[pd.DataFrame] = field(default_factory=list)
    decay: list[pd.DataFrame] = field(default_factory=list)
    heatmaps: list[pd.DataFrame] = field(default_factory=list)
    signal: list[pd.DataFrame] = field(default_factory=list)
    spectra: list[pd.DataFrame] = field(default_factory=list)  # singular spectra of the heatmap runs
    gradients: list[pd.DataFrame] = field(default_factory=list)  # ||dE/dh_k|| over training of the spike runs
    per_run: dict[str, dict] = field(default_factory=dict)  # run_id -> n_probes, n_checks, probe_steps, violations, gaps,
    # and the spot check's spot_checks, spot_skipped, spot_mismatches, spot_max_abs_dlog, spot_cross_layer
    depth: dict[str, depth.RunDepth] = field(default_factory=dict)  # run_id -> the probe across layers, reduced
    dynamics: list[pd.DataFrame] = field(default_factory=list)  # probe/dynamics.parquet + run_id (keeps_dynamics)


def check_probes(runs: pd.DataFrame, files: dict[str, RunFiles], heat_ids: list[str],
                 spike_ids: list[str] = ()) -> ProbeResults:
    """Read each run's probe tables once and reduce them: bound check, decay, gaps, heatmaps, depth signal; the
    singular spectra of the heatmap runs and the gradients over training of the spike runs."""
    out = ProbeResults()
    for run in runs.itertuples():
        f = files[run.run_id]
        if not f.folder.is_dir() or run.outcome == "failed":  # a failed run has no probe
            continue
        tag = {"run_id": run.run_id, "spec": run.spec}
        jac = f.read("probe/jacobian.parquet", JACOBIAN_REQUIRED, nonempty=True)
        if run.run_id in heat_ids:
            spectra = f.read("probe/spectra.parquet", SPECTRA_COLUMNS)
            if spectra is not None:
                out.spectra.append(prediction.spectrum_rows(spectra).assign(**tag))
        if run.run_id in spike_ids:
            gradients = f.read("probe/gradients.parquet", GRADIENT_COLUMNS)
            if gradients is not None:
                out.gradients.append(prediction.gradient_rows(gradients).assign(**tag))
        signal = f.read("probe/signal.parquet", SIGNAL_COLUMNS)
        if signal is not None and studies.study(run.spec).keeps_signal:
            out.signal.append(signal.assign(run_id=run.run_id))
        spot = f.read("probe/spot_checks.parquet", SPOT_COLUMNS)
        if spot is not None:
            out.per_run[run.run_id] = spot_summary(spot)
        if studies.study(run.spec).keeps_dynamics:
            trajectory = f.read(DYNAMICS_FILE, DYNAMICS_COLUMNS)
            if trajectory is not None:
                out.dynamics.append(trajectory.assign(run_id=run.run_id))
        if studies.study(run.spec).keeps_depth:
            layers = int(run.layers) if pd.notna(run.layers) else 1
            out.depth[run.run_id] = depth.read_run(f.read, layers, f.summary, jac)
        if jac is None:
            continue
        viol = bound_violations(jac)
        out.violations.append(viol.assign(**tag))
        gated = getattr(run, "cell_type", None) in GATED_CELLS
        out.nonfinite.append(nonfinite_summary(jac, gated).assign(outcome=run.outcome, **tag))
        out.decay.append(decay_by_lag(jac).assign(**tag))
        if run.run_id in heat_ids:
            out.heatmaps.append(heatmap_rows(jac).assign(**tag))
        out.per_run[run.run_id] = out.per_run.get(run.run_id, {}) | {
            "n_probes": jac["when"].nunique(), "n_checks": len(jac), "probe_steps": int(jac["t"].max()),
            "violations": len(viol), **run_gaps(jac), **zero_pairs(jac)}
    return out


def missing_table(runs: pd.DataFrame, files: dict[str, RunFiles]) -> pd.DataFrame:
    rows = [{"run_id": r.run_id, "spec": r.spec, "file": str(files[r.run_id].folder / name) + ("/" if not name else ""),
             "problem": problem} for r in runs.itertuples() for name, problem in files[r.run_id].problems]
    return pd.DataFrame(rows, columns=["run_id", "spec", "file", "problem"])


def tightness_metrics(runs: pd.DataFrame) -> dict[str, Any]:
    """The two bounds' median gaps over the same runs: those with both gaps finite (a gated cell has no global
    bound, so it has a product gap alone); n says how many."""
    gaps = runs[["gap_product", "gap_global"]].apply(pd.to_numeric, errors="coerce")
    both = gaps[np.isfinite(gaps.to_numpy(float)).all(axis=1)]
    return {"median_gap_product_decades": finite_median(both["gap_product"]),
            "median_gap_global_decades": finite_median(both["gap_global"]), "n_runs": len(both),
            "n_product_only": int((np.isfinite(gaps["gap_product"]) & ~np.isfinite(gaps["gap_global"])).sum())}


def spec_sections(runs: pd.DataFrame, files: dict[str, RunFiles], probes: ProbeResults
                  ) -> tuple[dict[str, pd.DataFrame], dict[str, dict], dict[str, dict]]:
    """Per-spec tables, numeric headlines (metrics.json) and extra report data (analysis.json), each spec
    summarised by its study (studies.py); a table several specs write holds all their rows."""
    tables, heads, extra = {}, {}, {}
    signal = stacked(probes.signal, SIGNAL_COLUMNS + ("run_id",))
    trajectories = stacked(probes.dynamics, DYNAMICS_COLUMNS + ("run_id",))
    for spec, sr in runs.groupby("spec", sort=True):
        heads[spec] = {"n_runs": len(sr), "n_seeds": int(sr["seed"].nunique()) if "seed" in sr else 1,
                       "violations": int(sr["violations"].sum()), "outcomes": outcome_counts(sr),
                       "contradictions": {w: c["contradictions"] if c["n_probes"] else None  # none: no probe
                                          for w, c in ((w, regime_counts(sr, w)) for w in REGIME_PROBES)}}
        ids = sr["run_id"].tolist()
        extra[spec] = {"run_ids": ids} | spec_description(sr)
        given = studies.SpecRuns(sr, {i: files[i].history for i in ids if files[i].history is not None},
                         {i: files[i].samples for i in ids}, signal[signal["run_id"].isin(ids)],
                         {i: files[i].val_curve for i in ids if files[i].val_curve is not None},
                         {i: probes.depth[i] for i in ids if i in probes.depth},
                         trajectories[trajectories["run_id"].isin(ids)])
        summary = studies.study(spec).analyse(given)
        for name, table in summary.tables.items():
            tables[name] = stacked([tables[name], table], table.columns) if name in tables else table
        heads[spec] |= {"headline": summary.headline} if summary.headline else {}
        extra[spec] |= summary.extra
    return tables, heads, extra


def spec_description(runs: pd.DataFrame) -> dict[str, str]:
    """{"description": the spec's own sentence} from the results table's `description` column (written by the
    sweep from experiments/<spec>.yaml); {} when no row has one (a table from before the column existed)."""
    if "description" not in runs:
        return {}
    given = [d for d in runs["description"] if isinstance(d, str) and d.strip()]
    return {"description": given[-1].strip()} if given else {}


RUN_COLUMNS = ("run_id", "spec", "cell", "label", "name", "config_hash", "outcome", "task", "activation", "form", "layers",
               "gamma_w", "w_norm_init", "w_norm_final", "rho_init", "rho_final", "gamma_phi", "clip_mode",
               "clip_threshold", "lr", "seq_len", "seed", "log_rate_init",
               "slope_init", "lyapunov_init", "log_rate_final", "slope_final", "lyapunov_final", "predicted_regime",
               "observed_regime", "predicted_regime_final", "observed_regime_final", "verdict", "partial_loss",
               "beat_chance", "learned", "solved", "val_sequences_right",
               "val_accuracy", "chance_accuracy", "final_train_loss", "final_val_loss", "chance_loss", "loss_growth",
               "norm_growth", "n_probes", "n_checks", "violations", "spot_checks", "spot_skipped", "spot_mismatches",
               "spot_max_abs_dlog", "gap_product", "gap_global", "gap_rate", "gap_longest_decades", "gap_longest_lag",
               "init", "probe_steps", "zero_pairs_init", "zero_pairs_final", "meanfield_rate_init",
               "meanfield_rate_final", "lyapunov_spread_init", "lyapunov_probe_init", "gap_global_to_product_init",
               "gap_product_to_stepnorm_init", "gap_stepnorm_to_measured_init", "spectrum_spread_init",
               "spectrum_resolved_init", "environment")


def analyze(results_dir: Path, results: pd.DataFrame) -> Analysis:
    """Check and summarise every run in `results` (from load_results); never raises for a missing artifact."""
    runs, files = run_records(results_dir, results)
    histories = {i: f.history for i, f in files.items() if f.history is not None}
    spike_ids = prediction.spike_runs(runs, histories)
    probes = check_probes(runs, files, pick_heatmap_runs(runs), spike_ids)
    per_run = pd.DataFrame.from_dict(probes.per_run, orient="index")
    counts = ["n_probes", "n_checks", "violations", "spot_checks", "spot_skipped", "spot_mismatches",
              "spot_cross_layer", "zero_pairs_init", "zero_pairs_final"]
    gaps = ["gap_product", "gap_global", "gap_rate", "gap_longest_decades", "gap_longest_lag"]
    for col in counts + gaps + ["spot_max_abs_dlog", "probe_steps"]:
        runs[col] = runs["run_id"].map(per_run[col]) if col in per_run else np.nan
    runs[counts] = runs[counts].fillna(0).astype(int)
    tables = {
        "runs": runs[[c for c in RUN_COLUMNS if c in runs]],
        "violations": stacked(probes.violations, ["run_id", "spec", "when", "layer", "t", "k", "lag", "kind",
                                                  "value", "bound"]),
        "nonfinite": stacked(probes.nonfinite, ["run_id", "spec", "outcome", "when", "layer", "n", "first_t",
                                                "first_k"]),
        "missing": missing_table(runs, files),
        "decay": stacked(probes.decay, ["run_id", "spec", "when", "lag", "log10_norm", "log10_product",
                                        "log10_global", "n_pairs", "log10_norm_cell", "gap_product", "gap_global"]),
        "regimes": regime_confusion(runs),
        "heatmaps": stacked(probes.heatmaps, ["run_id", "spec", "when", "t", "k", "log10_norm"]),
    }
    tables["tightness"] = tightness_by_lag(tables["decay"])
    tables |= {"prediction": prediction.prediction_table(runs), "gaps": prediction.gap_table(runs),
               "edge_of_chaos": prediction.edge_of_chaos(runs), "phase": prediction.phase_table(runs),
               "spectra": stacked(probes.spectra, ["run_id", "spec", "when", "i", "log10_sigma"]),
               "gradient_spikes": prediction.spike_rows(runs, histories, spike_ids),
               "gradient_by_k": stacked(probes.gradients, ["run_id", "spec", "iter", "k", "log10_dE_dh"])}
    spec_tables, spec_heads, spec_extra = spec_sections(runs, files, probes)
    tables |= spec_tables
    metrics, report = assemble(runs, tables, spec_heads, spec_extra)
    return Analysis(metrics, report, tables)


def assemble(runs: pd.DataFrame, tables: dict[str, pd.DataFrame], spec_heads: dict, spec_extra: dict
             ) -> tuple[dict, dict]:
    """metrics.json (rounded numbers) and analysis.json (metrics plus lists and labels for the report)."""
    viol, nonfinite = tables["violations"], tables["nonfinite"]
    regimes = {when: regime_counts(runs, when) for when in REGIME_PROBES}
    metrics = rounded_tree({
        "n_runs": len(runs), "n_probes": runs["n_probes"].sum(), "n_checks": runs["n_checks"].sum(),
        "violations": len(viol), "violations_measured_gt_product": (viol["kind"] == "measured>product").sum(),
        "violations_product_gt_global": (viol["kind"] == "product>global").sum(),
        "violations_measured_gt_stepnorm": (viol["kind"] == "measured>stepnorm").sum(),
        "violations_stepnorm_gt_product": (viol["kind"] == "stepnorm>product").sum(),
        "violations_reported_by_runs": int(numeric(runs, ["violations_init", "violations_final"])[
            ["violations_init", "violations_final"]].sum().sum()),
        "spot_checks": {"n": runs["spot_checks"].sum(), "skipped": runs["spot_skipped"].sum(),
                        "mismatches": runs["spot_mismatches"].sum(),
                        "max_abs_dlog": runs["spot_max_abs_dlog"].max(),
                        "n_cross_layer": runs["spot_cross_layer"].sum()},
        "nonfinite": nonfinite["n"].sum() if len(nonfinite) else 0,
        "nonfinite_in_ok_runs": nonfinite.loc[nonfinite["outcome"] == "ok", "n"].sum() if len(nonfinite) else 0,
        "zero_pairs": {"n": int((runs["zero_pairs_init"] + runs["zero_pairs_final"]).sum()),
                       "n_runs": int(((runs["zero_pairs_init"] + runs["zero_pairs_final"]) > 0).sum())},
        "n_missing_artifacts": len(tables["missing"]), "n_runs_incomplete": tables["missing"]["run_id"].nunique(),
        "outcomes": outcome_counts(runs),
        "regimes": {when: {k: v for k, v in r.items() if k != "contradiction_ids"} for when, r in regimes.items()},
        "learning": {spec: learning_counts(sr) for spec, sr in runs.groupby("spec", sort=True)},
        "tightness": tightness_metrics(runs),
        "rate": rate_comparison(runs) | prediction.rate_metrics(runs),
        "gap_decades": prediction.gap_metrics(runs),
        "gap_rate": gap_rate_metrics(runs),
        "spectrum": prediction.spectrum_metrics(runs),
        "depth": depth.lift_metrics(spec_heads),
        "specs": spec_heads,
    }) | {"environment": environment_counts(runs)}  # text, which rounded_tree would turn into null
    report = {"format": ANALYSIS_FORMAT, "metrics": metrics, "specs": spec_extra,
              "contradictions": {when: r["contradiction_ids"] for when, r in regimes.items()},
              "violations": records(viol.head(REPORT_VIOLATIONS)), "nonfinite": records(nonfinite),
              "missing": records(tables["missing"]), "tables": sorted(tables),
              "failed": records(runs.loc[runs["outcome"] == "failed", ["run_id", "spec", "error"]])}
    return metrics, report


def environment_counts(runs: pd.DataFrame) -> list[dict]:
    """[{environment, n_runs}] of the environments the runs were computed in (run/environment.describe), most
    runs first, then by name: two studies whose counts differ may differ by machine, not by code."""
    counts = runs["environment"].fillna(NOT_RECORDED).astype(str).value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"environment": name, "n_runs": int(n)} for name, n in ranked]


def records(df: pd.DataFrame) -> list[dict]:
    """JSON-safe rows at full precision: NaN/inf become None, numpy scalars plain Python (pandas' to_json would
    keep 10 digits, and a violation's two sides can agree to more)."""
    return [{str(k): _plain(v) for k, v in row.items()} for row in df.to_dict("records")]


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


# ---- writing -----------------------------------------------------------------------------------------------


def write_analysis(result: Analysis, out_dir: Path) -> None:
    """The analysis's files as one set (outputs.write_set); stale tables of known names removed. The DVC plots'
    lines (dvc_plots.py) first, once nothing in the way of any output: analysis.json, written last, makes the set
    whole."""
    check_analysis_outputs(out_dir)
    write_plots(result.tables, out_dir)
    write_set(out_dir, result.tables, result.metrics, result.report, TABLES)
