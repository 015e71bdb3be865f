"""Check every logged Jacobian norm against its bounds, and summarise the sweeps for the report.

Input: `results/<spec>.parquet` (one row per run) and each run's folder (docs/internals.md). The reductions are
pure (DataFrames in, DataFrames and dicts out); `analyze` walks the runs, `write_analysis` writes
`metrics.json` (DVC metrics), `analysis.json` (what the report needs) and `tables/*.csv` (tidy, for DVC plots).
No mlflow here: the run IDs come from the results tables.

Log space: the probe tables are in natural log; tables meant for reading (decay, tightness) are in log10, and a
gap of 1 means the bound is ten times the measured norm.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .config import FIELDS as CONFIG_FIELDS
from .errors import UserError

RTOL = 1e-9  # rounding allowance of the bound check, relative to max(1, |bound|) (DESIGN.md)
SIG_DIGITS = 4  # significant digits of every number in metrics.json and the report
LN10 = math.log(10.0)
KNOWN_SPECS = ("weight_norms", "activations", "depth", "clipping", "long_range", "text")
JACOBIAN_COLUMNS = ("when", "layer", "t", "k", "lag", "log_norm", "log_bound_product", "log_bound_global")
SIGNAL_COLUMNS = ("when", "layer", "k", "log10_dE_dh")
HISTORY_COLUMNS = ("iter", "loss")
RESULT_COLUMNS = ("run_id", "config_hash", "outcome")
SEED_FIELDS = ("seed", "data_seed")
CURVE_POINTS = 200  # loss-curve points kept per run
REPORT_VIOLATIONS = 1000  # violations carried into analysis.json (all of them go to tables/violations.csv)
TABLES = ("runs", "violations", "nonfinite", "missing", "decay", "tightness", "regimes", "heatmaps",
          "weight_norms", "activations", "success_vs_T", "clip", "clip_curves", "depth", "text_curve")


# ---- numbers as metrics.json stores them and the report prints them -------------------------------------------


def round_metric(x: Any) -> int | float | None:
    """The value metrics.json stores: ints stay ints, floats keep 4 significant digits, NaN/inf/None become None."""
    if x is None or isinstance(x, str):
        return None
    if isinstance(x, (bool, np.bool_, int, np.integer)):
        return int(x)
    x = float(x)
    if not math.isfinite(x):
        return None
    rounded = float(f"{x:.{SIG_DIGITS}g}")
    return rounded if math.isfinite(rounded) else x  # rounding up near the float64 maximum overflows


def format_metric(x: Any) -> str:
    """How the report prints a number: float(format_metric(x)) == round_metric(x), so HTML and metrics.json agree."""
    v = round_metric(x)
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return str(v)
    text = f"{v:.{SIG_DIGITS}g}"
    return text if float(text) == v else repr(v)


def rounded_tree(tree: Any) -> Any:
    """round_metric applied to every leaf of nested dicts (the metrics.json payload)."""
    if isinstance(tree, dict):
        return {str(k): rounded_tree(v) for k, v in tree.items()}
    return round_metric(tree)


# ---- the bound check (DESIGN.md: measured <= product <= global, 1e-9 relative) -----------------------------


def exceeds(value: np.ndarray, bound: np.ndarray, rtol: float = RTOL) -> np.ndarray:
    """Where value > bound beyond rounding: value - bound > rtol * max(1, |bound|).

    -inf exceeds nothing; a finite or +inf value exceeds a bound of -inf. NaN compares False here: it is
    reported by `nonfinite_mask` instead."""
    value, bound = np.asarray(value, float), np.asarray(bound, float)
    slack = np.where(np.isfinite(bound), rtol * np.maximum(1.0, np.abs(bound)), 0.0)
    with np.errstate(invalid="ignore"):
        return (value - bound) > slack


def nonfinite_mask(jac: pd.DataFrame) -> np.ndarray:
    """Rows with NaN or +inf in any log column (-inf is an exact zero norm, which is fine)."""
    vals = jac[["log_norm", "log_bound_product", "log_bound_global"]].to_numpy(float)
    return (np.isnan(vals) | np.isposinf(vals)).any(axis=1)


def bound_violations(jac: pd.DataFrame) -> pd.DataFrame:
    """Every (when, layer, t, k) where measured > product or product > global: kind, value, bound."""
    parts = []
    for kind, a, b in (("measured>product", "log_norm", "log_bound_product"),
                       ("product>global", "log_bound_product", "log_bound_global")):
        bad = jac[exceeds(jac[a].to_numpy(), jac[b].to_numpy())]
        parts.append(bad[["when", "layer", "t", "k", "lag"]].assign(kind=kind, value=bad[a], bound=bad[b]))
    return pd.concat(parts, ignore_index=True)


def nonfinite_summary(jac: pd.DataFrame) -> pd.DataFrame:
    """Per (when, layer): how many pairs have NaN/+inf, and the first such (t, k)."""
    bad = jac[nonfinite_mask(jac)].sort_values(["when", "layer", "t", "k"])
    return (bad.groupby(["when", "layer"], as_index=False)
            .agg(n=("t", "size"), first_t=("t", "first"), first_k=("k", "first")))


# ---- one run's probe, reduced -------------------------------------------------------------------------------


def top_layer(jac: pd.DataFrame) -> pd.DataFrame:
    return jac[jac["layer"] == jac["layer"].max()]


def decay_by_lag(jac: pd.DataFrame) -> pd.DataFrame:
    """Top layer, per (when, lag): mean log10 norm and bounds over the finite pairs, and the gaps in decades."""
    top = top_layer(jac)
    logs = top[["log_norm", "log_bound_product", "log_bound_global"]]
    top = top[np.isfinite(logs.to_numpy(float)).all(axis=1)]
    out = top.groupby(["when", "lag"], as_index=False).agg(
        log10_norm=("log_norm", "mean"), log10_product=("log_bound_product", "mean"),
        log10_global=("log_bound_global", "mean"), n_pairs=("t", "size"))
    out[["log10_norm", "log10_product", "log10_global"]] /= LN10
    out["gap_product"] = out["log10_product"] - out["log10_norm"]
    out["gap_global"] = out["log10_global"] - out["log10_norm"]
    return out


def run_gaps(jac: pd.DataFrame, when: str = "init") -> dict[str, float]:
    """Median over the finite top-layer pairs of (bound - measured), in decades: how loose each bound is."""
    top = top_layer(jac[jac["when"] == when])
    out = {}
    for name, col in (("gap_product", "log_bound_product"), ("gap_global", "log_bound_global")):
        gap = (top[col] - top["log_norm"]).to_numpy(float)
        gap = gap[np.isfinite(gap)]
        out[name] = float(np.median(gap)) / LN10 if gap.size else math.nan
    return out


def heatmap_rows(jac: pd.DataFrame) -> pd.DataFrame:
    """Top layer log10 ||dh_t/dh_k|| for every pair and probe (the heatmap figure)."""
    top = top_layer(jac)
    return top[["when", "t", "k"]].assign(log10_norm=top["log_norm"] / LN10)


# ---- across runs --------------------------------------------------------------------------------------------


def regime_confusion(runs: pd.DataFrame) -> pd.DataFrame:
    """Counts of predicted (Pascanu: vanishing iff gamma_W gamma_phi < 1) x observed regime, tidy."""
    known = runs.dropna(subset=["predicted_regime", "observed_regime"])
    return known.groupby(["predicted_regime", "observed_regime"], as_index=False).agg(n=("run_id", "size"))


def regime_agreement(runs: pd.DataFrame) -> dict[str, Any]:
    """Agreement: predicted vanishing <=> observed vanishing. A contradiction is predicted vanishing but observed
    exploding, which the bound forbids; may_explode is only necessary for exploding, so anything goes there."""
    known = runs.dropna(subset=["predicted_regime", "observed_regime"])
    pred_v = known["predicted_regime"] == "vanishing"
    agree = pred_v == (known["observed_regime"] == "vanishing")
    contra = known[pred_v & (known["observed_regime"] == "exploding")]
    return {"n_classified": len(known), "agreement_rate": agree.mean() if len(known) else math.nan,
            "contradictions": len(contra), "contradiction_ids": contra["run_id"].tolist()}


def finite_median(values: Iterable[float]) -> float:
    a = np.asarray(list(values), float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else math.nan


def rate_comparison(runs: pd.DataFrame) -> dict[str, float]:
    """How far the fitted decay slope sits from the top Lyapunov exponent and from log(gamma_W gamma_phi)."""
    cols = [c for c in ("slope_init", "lyapunov_init", "log_rate_init") if c in runs]
    if len(cols) < 3:
        return {"n_runs": 0, "median_abs_slope_minus_lyapunov": math.nan,
                "median_abs_slope_minus_log_rate": math.nan}
    r = runs[cols].apply(pd.to_numeric, errors="coerce")
    r = r[np.isfinite(r.to_numpy(float)).all(axis=1)]
    return {"n_runs": len(r),
            "median_abs_slope_minus_lyapunov": finite_median((r["slope_init"] - r["lyapunov_init"]).abs()),
            "median_abs_slope_minus_log_rate": finite_median((r["slope_init"] - r["log_rate_init"]).abs())}


def tightness_by_lag(decay: pd.DataFrame) -> pd.DataFrame:
    """Median over runs of the per-lag gaps (decades), per probe."""
    if decay.empty:
        return pd.DataFrame(columns=["when", "lag", "gap_product", "gap_global", "n_runs"])
    return decay.groupby(["when", "lag"], as_index=False).agg(
        gap_product=("gap_product", "median"), gap_global=("gap_global", "median"), n_runs=("run_id", "nunique"))


def outcome_counts(runs: pd.DataFrame) -> dict[str, int]:
    counts = {"ok": 0, "diverged": 0, "failed": 0}
    for name, n in runs["outcome"].fillna("unknown").astype(str).value_counts().items():
        counts[name] = int(n)
    return counts


# ---- per-spec summaries (each takes that spec's runs) --------------------------------------------------------


def label_fields(runs: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """RunConfig fields that vary across these runs, seeds and `exclude` left out."""
    skip = set(exclude) | set(SEED_FIELDS)
    return [c for c in CONFIG_FIELDS if c in runs and c not in skip and runs[c].astype(str).nunique() > 1]


def short_value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return format_metric(v) if isinstance(v, float) else str(v)


def run_labels(runs: pd.DataFrame, exclude: Iterable[str] = ()) -> pd.Series:
    """'activation=tanh gamma_w=2' from the varying fields; 'all' when nothing varies."""
    fields = label_fields(runs, exclude)
    if not fields:
        return pd.Series("all", index=runs.index, dtype=object)
    return runs[fields].apply(lambda r: " ".join(f"{f}={short_value(r[f])}" for f in fields), axis=1).astype(object)


def grouped(runs: pd.DataFrame, keys: list[str], **aggs) -> pd.DataFrame:
    """groupby with NaN keys kept, plus n_runs and the ';'-joined run IDs behind each row."""
    g = runs.groupby(keys, as_index=False, dropna=False, sort=True)
    return g.agg(**aggs, n_runs=("run_id", "size"), run_ids=("run_id", ";".join))


def numeric(runs: pd.DataFrame, cols: Iterable[str]) -> pd.DataFrame:
    out = runs.copy()
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="coerce") if c in out else np.nan
    return out


def weight_norm_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per (activation, gamma_w): median slope, Lyapunov exponent and log(gamma_W gamma_phi)."""
    r = numeric(runs, ["gamma_w", "slope_init", "lyapunov_init", "log_rate_init"])
    table = grouped(r, ["activation", "gamma_w"], slope=("slope_init", "median"),
                    lyapunov=("lyapunov_init", "median"), log_rate=("log_rate_init", "median"))
    ok = r[np.isfinite(r[["slope_init", "log_rate_init"]].to_numpy(float)).all(axis=1)]
    corr = ok["slope_init"].corr(ok["log_rate_init"]) if len(ok) > 2 else math.nan
    return table, {"regime_agreement": regime_agreement(runs)["agreement_rate"], "slope_log_rate_corr": corr}


def activation_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per activation: decay slope, Lyapunov exponent, task accuracy and final loss."""
    r = numeric(runs, ["slope_init", "lyapunov_init", "log_rate_init", "val_accuracy", "final_val_loss"])
    table = grouped(r, ["activation"], slope=("slope_init", "median"), lyapunov=("lyapunov_init", "median"),
                    log_rate=("log_rate_init", "median"), accuracy=("val_accuracy", "mean"),
                    final_val_loss=("final_val_loss", "median"), n_ok=("outcome", lambda s: int((s == "ok").sum())))
    head = {str(row.activation): {"slope": row.slope, "accuracy": row.accuracy} for row in table.itertuples()}
    return table, head


def success_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Task success (mean val_accuracy) against sequence length T (= seq_len), with the chance baseline, per task
    and label."""
    r = numeric(runs, ["seq_len", "val_accuracy", "chance_accuracy"]).assign(
        label=run_labels(runs, exclude=("task", "seq_len")))
    table = grouped(r.rename(columns={"seq_len": "T"}), ["task", "label", "T"],
                    success_rate=("val_accuracy", "mean"), chance=("chance_accuracy", "mean"))
    head = {}
    for task, t in table.groupby("task"):
        by_T = t.groupby("T")[["success_rate", "chance"]].mean()
        success = by_T["success_rate"]
        solved = by_T.index[success >= (1 + by_T["chance"]) / 2]  # halfway from chance to perfect
        head[str(task)] = {"min_T": by_T.index.min(), "max_T": by_T.index.max(), "chance": by_T["chance"].mean(),
                           "success_at_min_T": success.iloc[0], "success_at_max_T": success.iloc[-1],
                           "longest_T_solved": solved.max() if len(solved) else None}
    return table, head


def clip_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Final training loss (ok runs) and divergence rate per clip mode and threshold (none: threshold unused)."""
    r = numeric(runs, ["clip_threshold", "final_train_loss"])
    r.loc[r["clip_mode"] == "none", "clip_threshold"] = np.nan
    r["diverged"] = (r["outcome"] == "diverged").astype(float)
    r.loc[r["outcome"] != "ok", "final_train_loss"] = np.nan
    table = grouped(r, ["clip_mode", "clip_threshold"], final_loss=("final_train_loss", "median"),
                    diverged_fraction=("diverged", "mean"))
    clipped, unclipped = r[r["clip_mode"] != "none"], r[r["clip_mode"] == "none"]
    best = table[(table["clip_mode"] != "none") & table["final_loss"].notna()]
    best = best.loc[best["final_loss"].idxmin()] if len(best) else None
    head = {"unclipped_final_loss": finite_median(unclipped["final_train_loss"]),
            "diverged_unclipped": unclipped["diverged"].mean() if len(unclipped) else None,
            "diverged_clipped": clipped["diverged"].mean() if len(clipped) else None,
            "best_final_loss": None if best is None else best["final_loss"],
            "best_threshold": None if best is None else best["clip_threshold"]}
    return table, head | {"best_mode": None if best is None else str(best["clip_mode"])}


DEPTH_COLUMNS = ("run_id", "layers", "when", "layer", "log10_signal_first", "log10_signal_mean")


def depth_table(signal: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per run, probe and layer: log10 ||dE/dh^l_k|| at the first state (k = 0) and its mean over k."""
    if signal.empty:
        return pd.DataFrame(columns=list(DEPTH_COLUMNS)), {}
    s = signal.sort_values("k").groupby(["run_id", "when", "layer"], as_index=False).agg(
        log10_signal_first=("log10_dE_dh", "first"), log10_signal_mean=("log10_dE_dh", "mean"))
    s = s.merge(runs[["run_id", "layers"]], on="run_id", how="left")
    init = s[s["when"] == "init"]
    deepest = init[init["layers"] == init["layers"].max()]
    by_layer = deepest.sort_values("layer").groupby("run_id")["log10_signal_first"]
    per_run = by_layer.last() - by_layer.first()  # top layer minus bottom layer, decades
    head = {"max_layers": init["layers"].max(), "top_minus_bottom_decades": finite_median(per_run)}
    return s[list(DEPTH_COLUMNS)], head


def text_headline(runs: pd.DataFrame) -> dict:
    r = numeric(runs, ["final_train_loss", "final_val_loss", "chance_loss", "val_accuracy"])
    return {k: finite_median(r[k]) for k in ("final_train_loss", "final_val_loss", "chance_loss", "val_accuracy")}


def curve_rows(history: pd.DataFrame, points: int = CURVE_POINTS) -> pd.DataFrame:
    """At most `points` evenly spaced rows of iter, loss (non-finite loss as NaN: a diverged run's tail)."""
    h = history[["iter", "loss"]].copy()
    h["loss"] = pd.to_numeric(h["loss"], errors="coerce").replace([np.inf, -np.inf], np.nan)
    keep = np.unique(np.linspace(0, len(h) - 1, min(points, len(h))).round().astype(int)) if len(h) else []
    return h.iloc[keep]


# ---- reading the results and run folders --------------------------------------------------------------------


def load_results(results_dir: Path) -> pd.DataFrame:
    """Every results/<spec>.parquet stacked (a missing `spec` column is the file stem); UserError when no runs."""
    files = sorted(results_dir.glob("*.parquet")) if results_dir.is_dir() else []
    frames = []
    for f in files:
        try:
            df = pd.read_parquet(f)
        except (OSError, ValueError) as e:
            raise UserError(f"{f}: cannot be read ({e}); re-run `rnngrad sweep experiments/{f.stem}.yaml`") from None
        lacking = [c for c in RESULT_COLUMNS if c not in df.columns]
        if lacking and len(df):
            raise UserError(f"{f}: lacks columns {', '.join(lacking)}; a results table has {', '.join(RESULT_COLUMNS)}")
        frames.append(df.assign(spec=df["spec"].astype(str)) if "spec" in df else df.assign(spec=f.stem))
    frames = [f for f in frames if len(f)]
    if not frames:
        raise UserError(f"{results_dir}/: no runs found; run `rnngrad sweep experiments/<spec>.yaml` first")
    return pd.concat(frames, ignore_index=True).drop_duplicates("run_id", keep="last")


def run_folder(results_dir: Path, row: dict) -> Path:
    """results/<spec>/runs/<config_hash>; else the row's run_dir (relative to results/, or absolute)."""
    canonical = results_dir / str(row["spec"]) / "runs" / str(row["config_hash"])
    given = row.get("run_dir")
    if canonical.is_dir() or not isinstance(given, str) or not given:
        return canonical
    return next((p for p in (results_dir / given, Path(given)) if p.is_dir()), canonical)


def read_artifact(path: Path, columns: Iterable[str] = ()) -> tuple[Any, str | None]:
    """(content, None) or (None, what is wrong): missing, unreadable, or lacking columns."""
    if not path.is_file():
        return None, "missing"
    try:
        if path.suffix == ".json":
            value = json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".csv":
            value = pd.read_csv(path)
        else:
            value = pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return None, f"unreadable ({type(e).__name__}: {str(e)[:120]})"
    lacking = [c for c in columns if c not in getattr(value, "columns", ())]
    return (None, f"lacks columns {', '.join(lacking)}") if lacking else (value, None)


@dataclass
class RunFiles:
    """What could be read of one run's folder; `problems` lists (file, what is wrong)."""

    folder: Path
    summary: dict = field(default_factory=dict)
    history: pd.DataFrame | None = None
    samples: list | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)

    def read(self, name: str, columns: Iterable[str] = ()) -> Any:
        value, problem = read_artifact(self.folder / name, columns)
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
    return files


# ---- the whole analysis ------------------------------------------------------------------------------------


@dataclass
class Analysis:
    metrics: dict  # metrics.json: numbers only, rounded by round_metric
    report: dict  # analysis.json: everything the report needs besides the tables
    tables: dict[str, pd.DataFrame]  # tables/<name>.csv


def summary_scalars(summary: dict) -> dict:
    """summary.json's scalar fields (its per-layer `layers` list would clash with the config field `layers`)."""
    skip = ("layers", "traceback")
    return {k: v for k, v in summary.items() if k not in skip and (v is None or isinstance(v, (str, int, float)))}


def run_records(results_dir: Path, results: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, RunFiles]]:
    """One record per run (results row updated with summary.json) and each run's readable files."""
    records, files = [], {}
    for row in results.to_dict("records"):
        is_text = row.get("task") == "text" or row["spec"] == "text"
        f = files[row["run_id"]] = read_run_files(run_folder(results_dir, row), is_text, row["outcome"] == "failed")
        records.append(row | summary_scalars(f.summary) | {"run_dir": str(f.folder)})
    runs = pd.DataFrame(records)
    for col in ("predicted_regime", "observed_regime", "activation", "task", "clip_mode", "error"):
        if col not in runs:
            runs[col] = None
    runs["label"] = None
    for spec, idx in runs.groupby("spec").groups.items():
        runs.loc[idx, "label"] = run_labels(runs.loc[idx])
    return runs, files


def pick_heatmap_runs(runs: pd.DataFrame, n: int = 3) -> list[str]:
    """Up to n finished runs spanning log(gamma_W gamma_phi): the lowest, the one nearest 0, the highest."""
    r = numeric(runs, ["log_rate_init"])
    r = r[(r["outcome"] == "ok") & np.isfinite(r["log_rate_init"])]
    if (r["spec"] == "weight_norms").sum() >= n:
        r = r[r["spec"] == "weight_norms"]
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
    per_run: dict[str, dict] = field(default_factory=dict)  # run_id -> n_probes, n_checks, violations, gaps


def check_probes(runs: pd.DataFrame, files: dict[str, RunFiles], heat_ids: list[str]) -> ProbeResults:
    """Read each run's probe tables once and reduce them: bound check, decay, gaps, heatmaps, depth signal."""
    out = ProbeResults()
    for run in runs.itertuples():
        f = files[run.run_id]
        if not f.folder.is_dir() or run.outcome == "failed":  # a failed run has no probe
            continue
        tag = {"run_id": run.run_id, "spec": run.spec}
        jac = f.read("probe/jacobian.parquet", JACOBIAN_COLUMNS)
        signal = f.read("probe/signal.parquet", SIGNAL_COLUMNS)
        if signal is not None and run.spec == "depth":
            out.signal.append(signal.assign(run_id=run.run_id))
        if jac is None:
            continue
        viol = bound_violations(jac)
        out.violations.append(viol.assign(**tag))
        out.nonfinite.append(nonfinite_summary(jac).assign(outcome=run.outcome, **tag))
        out.decay.append(decay_by_lag(jac).assign(**tag))
        if run.run_id in heat_ids:
            out.heatmaps.append(heatmap_rows(jac).assign(**tag))
        out.per_run[run.run_id] = {"n_probes": jac["when"].nunique(), "n_checks": len(jac),
                                   "violations": len(viol), **run_gaps(jac)}
    return out


def stacked(frames: list[pd.DataFrame], columns: Iterable[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))


def missing_table(runs: pd.DataFrame, files: dict[str, RunFiles]) -> pd.DataFrame:
    rows = [{"run_id": r.run_id, "spec": r.spec, "file": str(files[r.run_id].folder / name) + ("/" if not name else ""),
             "problem": problem} for r in runs.itertuples() for name, problem in files[r.run_id].problems]
    return pd.DataFrame(rows, columns=["run_id", "spec", "file", "problem"])


def spec_sections(runs: pd.DataFrame, files: dict[str, RunFiles], probes: ProbeResults
                  ) -> tuple[dict[str, pd.DataFrame], dict[str, dict], dict[str, dict]]:
    """Per-spec tables, numeric headlines (metrics.json) and extra report data (analysis.json), by spec name."""
    tables, heads, extra = {}, {}, {}
    for spec, sr in runs.groupby("spec", sort=True):
        heads[spec] = {"n_runs": len(sr), "violations": int(sr["violations"].sum()), "outcomes": outcome_counts(sr),
                       "regime_agreement": regime_agreement(sr)["agreement_rate"]}
        extra[spec] = {"run_ids": sr["run_id"].tolist()}
        head = None
        if spec == "weight_norms":
            tables["weight_norms"], head = weight_norm_table(sr)
        elif spec == "activations":
            tables["activations"], head = activation_table(sr)
        elif spec == "long_range":
            tables["success_vs_T"], head = success_table(sr)
        elif spec == "clipping":
            tables["clip"], head = clip_table(sr)
            extra[spec]["best_mode"] = head.pop("best_mode")
            tables["clip_curves"] = stacked([curve_rows(files[r.run_id].history).assign(
                run_id=r.run_id, clip_mode=r.clip_mode, clip_threshold=r.clip_threshold)
                for r in sr.itertuples() if files[r.run_id].history is not None], ["iter", "loss", "run_id"])
        elif spec == "depth":
            tables["depth"], head = depth_table(stacked(probes.signal, SIGNAL_COLUMNS + ("run_id",)), sr)
        elif spec == "text":
            head = text_headline(sr)
            tables["text_curve"] = stacked([curve_rows(files[r.run_id].history).assign(run_id=r.run_id)
                                            for r in sr.itertuples() if files[r.run_id].history is not None],
                                           ["iter", "loss", "run_id"])
            extra[spec]["samples"] = {r.run_id: files[r.run_id].samples or [] for r in sr.itertuples()}
        heads[spec] |= {"headline": head} if head else {}
    return tables, heads, extra


RUN_COLUMNS = ("run_id", "spec", "cell", "label", "config_hash", "outcome", "task", "activation", "form", "layers",
               "gamma_w", "gamma_phi", "clip_mode", "clip_threshold", "seq_len", "seed", "log_rate_init",
               "slope_init", "lyapunov_init", "log_rate_final", "slope_final", "lyapunov_final", "predicted_regime",
               "observed_regime", "val_accuracy", "chance_accuracy", "final_train_loss", "final_val_loss", "chance_loss",
               "n_probes", "n_checks", "violations",
               "gap_product", "gap_global")


def analyze(results_dir: Path, results: pd.DataFrame) -> Analysis:
    """Check and summarise every run in `results` (from load_results); never raises for a missing artifact."""
    runs, files = run_records(results_dir, results)
    probes = check_probes(runs, files, pick_heatmap_runs(runs))
    per_run = pd.DataFrame.from_dict(probes.per_run, orient="index")
    for col in ("n_probes", "n_checks", "violations", "gap_product", "gap_global"):
        runs[col] = runs["run_id"].map(per_run[col]) if col in per_run else np.nan
    runs[["n_probes", "n_checks", "violations"]] = runs[["n_probes", "n_checks", "violations"]].fillna(0).astype(int)
    tables = {
        "runs": runs[[c for c in RUN_COLUMNS if c in runs]],
        "violations": stacked(probes.violations, ["run_id", "spec", "when", "layer", "t", "k", "lag", "kind",
                                                  "value", "bound"]),
        "nonfinite": stacked(probes.nonfinite, ["run_id", "spec", "outcome", "when", "layer", "n", "first_t",
                                                "first_k"]),
        "missing": missing_table(runs, files),
        "decay": stacked(probes.decay, ["run_id", "spec", "when", "lag", "log10_norm", "log10_product",
                                        "log10_global", "n_pairs", "gap_product", "gap_global"]),
        "regimes": regime_confusion(runs),
        "heatmaps": stacked(probes.heatmaps, ["run_id", "spec", "when", "t", "k", "log10_norm"]),
    }
    tables["tightness"] = tightness_by_lag(tables["decay"])
    spec_tables, spec_heads, spec_extra = spec_sections(runs, files, probes)
    tables |= spec_tables
    metrics, report = assemble(runs, tables, spec_heads, spec_extra)
    return Analysis(metrics, report, tables)


def assemble(runs: pd.DataFrame, tables: dict[str, pd.DataFrame], spec_heads: dict, spec_extra: dict
             ) -> tuple[dict, dict]:
    """metrics.json (rounded numbers) and analysis.json (metrics plus lists and labels for the report)."""
    viol, nonfinite = tables["violations"], tables["nonfinite"]
    regimes = regime_agreement(runs)
    metrics = rounded_tree({
        "n_runs": len(runs), "n_probes": runs["n_probes"].sum(), "n_checks": runs["n_checks"].sum(),
        "violations": len(viol), "violations_measured_gt_product": (viol["kind"] == "measured>product").sum(),
        "violations_product_gt_global": (viol["kind"] == "product>global").sum(),
        "violations_reported_by_runs": int(numeric(runs, ["violations_init", "violations_final"])[
            ["violations_init", "violations_final"]].sum().sum()),
        "nonfinite": nonfinite["n"].sum() if len(nonfinite) else 0,
        "nonfinite_in_ok_runs": nonfinite.loc[nonfinite["outcome"] == "ok", "n"].sum() if len(nonfinite) else 0,
        "n_missing_artifacts": len(tables["missing"]), "n_runs_incomplete": tables["missing"]["run_id"].nunique(),
        "outcomes": outcome_counts(runs),
        "regimes": {k: v for k, v in regimes.items() if k != "contradiction_ids"},
        "tightness": {"median_gap_product_decades": finite_median(runs["gap_product"]),
                      "median_gap_global_decades": finite_median(runs["gap_global"])},
        "rate": rate_comparison(runs),
        "specs": spec_heads,
    })
    report = {"format": 1, "metrics": metrics, "specs": spec_extra,
              "contradictions": regimes["contradiction_ids"],
              "violations": records(viol.head(REPORT_VIOLATIONS)), "nonfinite": records(nonfinite),
              "missing": records(tables["missing"]), "tables": sorted(tables),
              "failed": records(runs.loc[runs["outcome"] == "failed", ["run_id", "spec", "error"]])}
    return metrics, report


def records(df: pd.DataFrame) -> list[dict]:
    """JSON-safe rows: NaN/inf become None, numpy scalars plain Python."""
    return json.loads(df.to_json(orient="records"))


# ---- writing -----------------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temp file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_analysis(result: Analysis, out_dir: Path) -> None:
    """reports/metrics.json, reports/analysis.json, reports/tables/<name>.csv (stale known tables removed)."""
    for name, table in result.tables.items():
        write_atomic(out_dir / "tables" / f"{name}.csv", table.to_csv(index=False))
    for name in set(TABLES) - set(result.tables):
        (out_dir / "tables" / f"{name}.csv").unlink(missing_ok=True)
    write_atomic(out_dir / "analysis.json", json.dumps(result.report, indent=1, allow_nan=False))
    write_atomic(out_dir / "metrics.json", json.dumps(result.metrics, indent=2, allow_nan=False))


def read_analysis(analysis_dir: Path) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
    """(metrics, analysis.json, tables) as `rnngrad analyze` wrote them; UserError naming what is missing."""
    hint = "run `rnngrad analyze` first"
    out = []
    for name in ("metrics.json", "analysis.json"):
        value, problem = read_artifact(analysis_dir / name)
        if problem:
            raise UserError(f"{analysis_dir / name}: {problem}; {hint}")
        out.append(value)
    metrics, report = out
    if not isinstance(report, dict) or report.get("format") != 1:
        raise UserError(f"{analysis_dir / 'analysis.json'}: not written by this version of `rnngrad analyze`; {hint}")
    tables = {}
    for name in report.get("tables", []):
        value, problem = read_artifact(analysis_dir / "tables" / f"{name}.csv")
        if problem:
            raise UserError(f"{analysis_dir / 'tables' / name}.csv: {problem}; {hint}")
        tables[name] = value
    return metrics, report, tables
