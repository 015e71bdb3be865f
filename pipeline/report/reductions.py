"""Pure reductions for the analysis: the bound check, one run's probe reduced, numbers across runs, and the
per-spec tables. DataFrames and dicts in, DataFrames and dicts out; no files (analysis.py reads and writes them).

Log space: the probe tables are in natural log; tables meant for reading (decay, tightness) are in log10, and a
gap of 1 means the bound is ten times the measured norm.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..engine.jacobian import bound_slack, exceeds
from ..engine import spotcheck
from ..run.config import FIELDS as CONFIG_FIELDS
from ..run.probe import REGIME_BAND, observed_regime, predicted_regime
from ..run.verdicts import LEVELS, OUTCOMES, levels, scored, verdict

SIG_DIGITS = 4  # significant digits of every number in metrics.json (the report shows fewer: formatting.py)
LN10 = math.log(10.0)
SEED_FIELDS = ("seed", "data_seed")
CURVE_POINTS = 200  # loss-curve points kept per run


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
    """A number as metrics.json stores it (round_metric), with thousands separators in a number of four or more
    integer digits ("186,420"), so parse_metric(format_metric(x)) == round_metric(x): counts and settings print
    so; a measured value prints at the report's precision (formatting.format_value)."""
    v = round_metric(x)
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return f"{v:,}"
    text = f"{v:.{SIG_DIGITS}g}"
    text = text if float(text) == v else repr(v)
    return with_separators(text)


def with_separators(text: str) -> str:
    """A number's text with commas between the thousands of its integer part; exponent notation ("1.5e+06") and
    short numbers are left as they are."""
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, dot, frac = digits.partition(".")
    if not whole.isdigit() or len(whole) < 4 or not (frac == "" or frac.isdigit()):
        return text
    return f"{sign}{int(whole):,}{dot}{frac}"


def parse_metric(text: str) -> float:
    """The number format_metric printed (thousands separators dropped); NaN for "n/a"."""
    return math.nan if text == "n/a" else float(text.replace(",", ""))


def rounded_tree(tree: Any) -> Any:
    """round_metric applied to every leaf of nested dicts (the metrics.json payload)."""
    if isinstance(tree, dict):
        return {str(k): rounded_tree(v) for k, v in tree.items()}
    return round_metric(tree)


# ---- the bound check: measured <= product <= global, within jacobian.BOUND_RTOL ---------------------------------


def nonfinite_mask(jac: pd.DataFrame, gated: bool = False) -> np.ndarray:
    """Rows with NaN or +inf in any log column (-inf is an exact zero norm, which is fine). A gated cell (`gated`: an
    LSTM or a GRU; an LSTM's rows are also told by their cell-state norm) has no global bound: its NaN there is not a
    failed measurement."""
    vals = jac[["log_norm", "log_bound_product"]].to_numpy(float)
    bad = (np.isnan(vals) | np.isposinf(vals)).any(axis=1)
    glob = jac["log_bound_global"].to_numpy(float)
    no_global = jac["log_norm_cell"].notna().to_numpy() if "log_norm_cell" in jac else np.zeros(len(jac), bool)
    return bad | (np.isnan(glob) & ~(no_global | gated)) | np.isposinf(glob)


def bound_violations(jac: pd.DataFrame) -> pd.DataFrame:
    """Every (when, layer, t, k) where measured > product or product > global beyond rounding (`jacobian.exceeds`,
    the check the runs themselves make), and measured > step-norm or step-norm > product where the table has the
    step-norm bound: kind, value, bound."""
    checks = [("measured>product", "log_norm", "log_bound_product"),
              ("product>global", "log_bound_product", "log_bound_global")]
    if "log_bound_stepnorm" in jac:
        checks += [("measured>stepnorm", "log_norm", "log_bound_stepnorm"),
                   ("stepnorm>product", "log_bound_stepnorm", "log_bound_product")]
    masks = [exceeds(jac[a].to_numpy(), jac[b].to_numpy()) for _, a, b in checks]
    if not any(mask.any() for mask in masks):  # the common case
        return on_no_rows("violations", jac, lambda empty: _violation_rows(empty, checks, [m[:0] for m in masks]))
    return _violation_rows(jac, checks, masks)


def _violation_rows(jac: pd.DataFrame, checks: list[tuple[str, str, str]], masks: list[np.ndarray]) -> pd.DataFrame:
    parts = []
    for (kind, a, b), mask in zip(checks, masks):
        bad = jac[mask]
        parts.append(bad[["when", "layer", "t", "k", "lag"]].assign(kind=kind, value=bad[a], bound=bad[b]))
    return pd.concat(parts, ignore_index=True)


_ON_NO_ROWS: dict[tuple, pd.DataFrame] = {}


def on_no_rows(name: str, jac: pd.DataFrame, reduce) -> pd.DataFrame:
    """`reduce(jac.iloc[:0])`, computed once per reduction and kind of table (its columns and their types): what a
    reduction returns when none of a run's rows qualify is the same for every such run, and pandas takes as long to
    build it as to reduce the rows of a run that has some."""
    key = (name, tuple(jac.columns), tuple(jac.dtypes))
    if key not in _ON_NO_ROWS:
        _ON_NO_ROWS[key] = reduce(jac.iloc[:0])
    return _ON_NO_ROWS[key].copy()


# what each kind of violation compares: (the quantity above, the bound it broke)
VIOLATION_SIDES = {"measured>product": ("measured log-norm", "product bound"),
                   "product>global": ("product bound", "global bound"),
                   "measured>stepnorm": ("measured log-norm", "step-norm bound"),
                   "stepnorm>product": ("step-norm bound", "product bound")}


def violation_text(v: dict) -> str:
    """One violation at full precision (the shortest digits that read back as the same float, natural log) with the
    bound it broke, by how much, and the rounding the check allowed: rounded to 4 digits both sides often read the
    same."""
    above, bound = VIOLATION_SIDES.get(v["kind"], (v["kind"], "bound"))
    value, limit = float(v["value"]), float(v["bound"])
    slack = float(bound_slack(np.array(value), np.array(limit)))
    return (f"{above} {value!r} > {bound} {limit!r} by {value - limit:.3g} nats "
            f"(rounding allowed {slack:.3g})")


def nonfinite_summary(jac: pd.DataFrame, gated: bool = False) -> pd.DataFrame:
    """Per (when, layer): how many pairs have NaN/+inf, and the first such (t, k) (`gated`: see `nonfinite_mask`)."""
    mask = nonfinite_mask(jac, gated)
    if not mask.any():  # the common case
        return on_no_rows("nonfinite", jac, _first_nonfinite)
    return _first_nonfinite(jac[mask])


def _first_nonfinite(bad: pd.DataFrame) -> pd.DataFrame:
    bad = bad.sort_values(["when", "layer", "t", "k"])
    return (bad.groupby(["when", "layer"], as_index=False)
            .agg(n=("t", "size"), first_t=("t", "first"), first_k=("k", "first")))


def spot_summary(spot: pd.DataFrame) -> dict[str, float]:
    """The independent spot check of one run's probes (probe/spot_checks.parquet, docs/math.md 4.5 and 4.8), reduced
    by `spotcheck.summarize`, and how many of the pairs checked lie across layers (`spot_cross_layer`)."""
    cross = spot["source_layer"].notna() & (spot["source_layer"] != spot["layer"]) if "source_layer" in spot else False
    return spotcheck.summarize(spot["abs_dlog"].to_numpy(float)) | {
        "spot_cross_layer": int((spot["abs_dlog"].notna() & cross).sum())}


# ---- one run's probe, reduced -------------------------------------------------------------------------------


def top_layer(jac: pd.DataFrame) -> pd.DataFrame:
    return jac[jac["layer"] == jac["layer"].max()]


def decay_by_lag(jac: pd.DataFrame) -> pd.DataFrame:
    """Top layer, per (when, lag): mean log10 norm and bounds over the pairs whose norm and product bound are
    finite, and the gaps in decades. A gated cell has no global bound (its log10_global and gap_global are NaN); an
    LSTM has a cell state: log10_norm_cell, the mean of its finite ||dc_t/dc_k||, NaN for the other cells."""
    top = top_layer(jac)
    top = top[np.isfinite(top[["log_norm", "log_bound_product"]].to_numpy(float)).all(axis=1)]
    cell = pd.to_numeric(top["log_norm_cell"], errors="coerce") if "log_norm_cell" in top else np.nan
    top = top.assign(log_norm_cell=cell).replace({"log_norm_cell": {np.inf: np.nan, -np.inf: np.nan}})
    out = top.groupby(["when", "lag"], as_index=False).agg(
        log10_norm=("log_norm", "mean"), log10_product=("log_bound_product", "mean"),
        log10_global=("log_bound_global", "mean"), n_pairs=("t", "size"), log10_norm_cell=("log_norm_cell", "mean"))
    out[["log10_norm", "log10_product", "log10_global", "log10_norm_cell"]] /= LN10
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
    return out | gap_rates(top)


def zero_pairs(jac: pd.DataFrame) -> dict[str, int]:
    """Per probe (init, final), how many top-layer pairs have a norm of exactly 0 (log -inf: at some step between k
    and t every unit's derivative is 0, a dead ReLU or a tanh saturated to the last bit). They are measurements, but
    no slope can be fitted through them, so the slopes leave them out and the report says how many there were."""
    top = top_layer(jac)
    zero = np.isneginf(pd.to_numeric(top["log_norm"], errors="coerce").to_numpy(float))
    return {f"zero_pairs_{when}": int(zero[(top["when"] == when).to_numpy()].sum()) for when in ("init", "final")}


def gap_rates(top: pd.DataFrame) -> dict[str, float]:
    """The global bound's gap as a rate: the median over the finite pairs at lag >= 1 of (bound - measured) / lag in
    nats per step (the gap grows with lag, so the rate, not a median of decades over lags, is the run's property),
    and beside it the gap in decades at the longest lag measured (the median over the pairs at that lag)."""
    lag = (top["t"] - top["k"]).to_numpy(float) if {"t", "k"} <= set(top) else np.zeros(len(top))
    gap = (top["log_bound_global"] - top["log_norm"]).to_numpy(float) if len(top) else np.zeros(0)
    ok = np.isfinite(gap) & (lag >= 1)
    if not ok.any():
        return {"gap_rate": math.nan, "gap_longest_decades": math.nan, "gap_longest_lag": math.nan}
    longest = lag[ok].max()
    return {"gap_rate": float(np.median(gap[ok] / lag[ok])),
            "gap_longest_decades": float(np.median(gap[ok & (lag == longest)])) / LN10, "gap_longest_lag": longest}


def gap_rate_metrics(runs: pd.DataFrame) -> dict[str, dict]:
    """Per spec: the median and interquartile range over its runs of the global bound's gap rate (nats/step), n,
    and the median gap in decades at the spec's longest lag over the runs probed that far, with that lag and their
    number (metrics.json gap_rate). Runs probed to different lengths are not pooled into one "longest lag"."""
    r = numeric(runs, ["gap_rate", "gap_longest_decades", "gap_longest_lag"])
    out = {}
    for spec, g in r[np.isfinite(r["gap_rate"].to_numpy(float))].groupby("spec", sort=True):
        q1, med, q3 = np.percentile(g["gap_rate"].to_numpy(float), [25, 50, 75])
        longest = g["gap_longest_lag"].max()
        far = g[g["gap_longest_lag"] == longest]
        out[str(spec)] = {"median": float(med), "q1": float(q1), "q3": float(q3), "n": len(g),
                          "decades_at_longest_lag": finite_median(far["gap_longest_decades"]),
                          "longest_lag": float(longest) if np.isfinite(longest) else math.nan,
                          "n_at_longest_lag": len(far)}
    return out


def heatmap_rows(jac: pd.DataFrame) -> pd.DataFrame:
    """Top layer log10 ||dh_t/dh_k|| for every pair and probe (the heatmap figure)."""
    top = top_layer(jac)
    return top[["when", "t", "k"]].assign(log10_norm=top["log_norm"] / LN10)


# ---- across runs --------------------------------------------------------------------------------------------


REGIME_PROBES = ("init", "final")  # the labelled probes: the top layer of the initial and of the final model


def label_regimes(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with each probe's predicted and observed regime (`predicted_regime`, `observed_regime` at init,
    `predicted_regime_final`, `observed_regime_final` after training), labelled here from the numbers with
    run/probe.py's functions, the ones that wrote summary.json: results from older code get today's labels."""
    out = runs.copy()
    for when in REGIME_PROBES:
        rate, slope = (pd.to_numeric(out.get(f"{c}_{when}", pd.Series(np.nan, index=out.index)), errors="coerce")
                       for c in ("log_rate", "slope"))
        if when != "init":  # an untrained run's final probe is its initial model again: no evidence after training
            rate, slope = rate.where(trained(out)), slope.where(trained(out))
        predicted, observed = regime_columns(when)
        out[predicted] = pd.Series([predicted_regime(float(x)) for x in rate], index=out.index, dtype=object)
        out[observed] = pd.Series([observed_regime(float(x)) for x in slope], index=out.index, dtype=object)
    return out


def trained(runs: pd.DataFrame) -> pd.Series:
    """Whether each run took at least one training step (iters_done, or iters for tables without it)."""
    column = "iters_done" if "iters_done" in runs else "iters"
    done = pd.to_numeric(runs.get(column, pd.Series(np.nan, index=runs.index)), errors="coerce")
    return done.isna() | (done > 0)  # a table that does not say is taken as trained, as before


def regime_columns(when: str) -> tuple[str, str]:
    """The runs-table columns holding a probe's (predicted, observed) regime."""
    suffix = "" if when == "init" else f"_{when}"
    return f"predicted_regime{suffix}", f"observed_regime{suffix}"


def contradicts(predicted: str | None, observed: str | None, log_rate: float) -> bool:
    """Whether an observation contradicts Pascanu et al.'s bound (docs/math.md 6): `exploding` where growth is
    impossible (predicted `vanishing` or `bounded`), or `neutral` where the bound demands a decay steeper than the
    neutral band (predicted `vanishing` with log(gamma_W gamma_phi) < -REGIME_BAND; a gentler bound permits a
    slope inside the band). An `unconstrained` prediction contradicts nothing: it predicts nothing."""
    if predicted not in ("vanishing", "bounded"):
        return False
    if observed == "exploding":
        return True
    return predicted == "vanishing" and observed == "neutral" and log_rate < -REGIME_BAND


def regime_confusion(runs: pd.DataFrame) -> pd.DataFrame:
    """Counts of predicted x observed regime per probe (init, final), tidy; runs as `label_regimes` gives them."""
    parts = []
    for when in REGIME_PROBES:
        predicted, observed = regime_columns(when)
        known = runs.dropna(subset=[predicted, observed])
        parts.append(known.groupby([predicted, observed], as_index=False).agg(n=("run_id", "size"))
                     .rename(columns={predicted: "predicted_regime", observed: "observed_regime"})
                     .assign(when=when))
    return stacked(parts, ["predicted_regime", "observed_regime", "n", "when"])[
        ["when", "predicted_regime", "observed_regime", "n"]]


def regime_counts(runs: pd.DataFrame, when: str = "init") -> dict[str, Any]:
    """The theorem scored as stated, over the runs' `when` probes that have both labels: how many were predicted
    vanishing (sufficient condition met) and how many of those were observed vanishing; how many sat at the
    boundary (bounded); the contradictions; and what was observed where the theorem predicts nothing
    (unconstrained). No agreement rate: above the boundary the condition is only necessary, so no observation there
    agrees or disagrees with it."""
    predicted, observed = regime_columns(when)
    known = runs.dropna(subset=[predicted, observed])
    rate = pd.to_numeric(known.get(f"log_rate_{when}", pd.Series(np.nan, index=known.index)), errors="coerce")
    bad = [contradicts(p, o, r) for p, o, r in zip(known[predicted], known[observed], rate)]
    sufficient = known[predicted] == "vanishing"
    free = known.loc[known[predicted] == "unconstrained", observed]
    return {"n_probes": len(known), "n_sufficient": int(sufficient.sum()),
            "n_sufficient_observed_vanishing": int((sufficient & (known[observed] == "vanishing")).sum()),
            "n_bounded": int((known[predicted] == "bounded").sum()), "contradictions": int(sum(bad)),
            "n_unconstrained": len(free),
            "observed_when_not_predicted": {o: int((free == o).sum()) for o in ("vanishing", "neutral", "exploding")},
            "contradiction_ids": known.loc[bad, "run_id"].tolist() if len(known) else []}


# ---- rates: a count out of n, with its Wilson interval ---------------------------------------------------------

WILSON_Z = 1.96  # two-sided 95 %


def wilson_interval(k: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval for k successes out of n (Wilson 1927): unlike k/n +- z sqrt(p(1-p)/n) it stays
    inside [0, 1] and does not collapse to a point at k = 0 or k = n, which small sweeps hit. (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> dict[str, Any]:
    """{k, n, rate, low, high}: a rate as metrics.json stores it (rate and interval None when n = 0)."""
    low, high = wilson_interval(k, n)
    return {"k": int(k), "n": int(n), "rate": k / n if n else math.nan, "low": low, "high": high}


# ---- outcomes and learning ---------------------------------------------------------------------------------------


def with_verdicts(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with `verdict` (run/verdicts.VERDICTS: solved, learned, beat chance, at chance, ...) and the three
    levels `beat_chance`, `learned`, `solved` (the same as summary.json's), from each run's outcome, final validation
    loss, chance and partial baselines and share of held-out sequences right."""
    r = numeric(runs, ["final_val_loss", "chance_loss", "partial_loss", "val_sequences_right"])
    args = [(str(o), _number(v), _number(c), _number(p), _number(q)) for o, v, c, p, q in zip(
        runs["outcome"], r["final_val_loss"], r["chance_loss"], r["partial_loss"], r["val_sequences_right"])]
    reached = pd.DataFrame([levels(*a) for a in args], index=runs.index, columns=list(LEVELS), dtype=bool)
    return runs.assign(verdict=pd.Series([verdict(*a) for a in args], index=runs.index, dtype=object),
                       **{level: reached[level] for level in LEVELS})


def _number(x: Any) -> float | None:
    return float(x) if x is not None and not pd.isna(x) else None


def scored_runs(runs: pd.DataFrame) -> pd.Series:
    """Runs whose learning is judged: a task with a chance loss (not the probe), and the run did not fail."""
    chance = numeric(runs, ["chance_loss"])["chance_loss"]
    return (runs["outcome"] != "failed") & pd.Series([scored(_number(c)) for c in chance], index=runs.index)


def learning_counts(runs: pd.DataFrame) -> dict[str, Any]:
    """metrics.json learning.<spec>: runs by verdict and outcome, and each level of success (beat chance, learned,
    solved: each implies the one before) as a count and a rate over the scored runs (a diverged or unstable run of a
    scored task counts as not reaching it), and n_sequence_runs, the scored runs that solved can apply to."""
    v = runs["verdict"]
    n_scored = int(scored_runs(runs).sum())
    counts = {"n_runs": len(runs)} | {f"n_{level}": int(runs[level].sum()) for level in LEVELS}
    counts |= {"n_at_chance": int((v == "at chance").sum()), "n_worse_than_chance": int((v == "worse than chance").sum()),
               "n_not_scored": int((v == "not scored").sum()),
               "n_unstable": int((runs["outcome"] == "unstable").sum()),
               "n_diverged": int((runs["outcome"] == "diverged").sum()),
               "n_failed": int((runs["outcome"] == "failed").sum())}
    sequences = scored_runs(runs) & (runs["task"].astype(str) != "text" if "task" in runs else True)
    counts["n_sequence_runs"] = int(sequences.sum())  # scored runs whose task has sequences to get right: solved
    # is defined for them only (a text is one stream)
    return counts | {level: rate(counts[f"n_{level}"], n_scored) for level in LEVELS}


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
    counts = dict.fromkeys(OUTCOMES, 0)
    for name, n in runs["outcome"].fillna("unknown").astype(str).value_counts().items():
        counts[name] = int(n)
    return counts


# ---- per-spec summaries (each takes that spec's runs) --------------------------------------------------------


def varied_fields(runs: pd.DataFrame) -> list[str]:
    """RunConfig fields that vary across these runs (a sweep's grid axes), in RunConfig order."""
    return [c for c in CONFIG_FIELDS if c in runs and runs[c].astype(str).nunique() > 1]


def label_fields(runs: pd.DataFrame, exclude: Iterable[str] = (), seeds: bool = False) -> list[str]:
    """RunConfig fields that vary across these runs, `exclude` (and seeds, unless `seeds`) left out."""
    skip = set(exclude) | (set() if seeds else set(SEED_FIELDS))
    return [c for c in varied_fields(runs) if c not in skip]


def short_value(v: Any) -> str:
    """A config or measured value as a label shows it: whole numbers without a decimal point, others (a huge
    measured norm included, 6.9e+154 rather than its 155 digits) as the report prints its numbers."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    return format_metric(v) if isinstance(v, float) else str(v)


def run_labels(runs: pd.DataFrame, exclude: Iterable[str] = (), seeds: bool = False) -> pd.Series:
    """'activation=tanh gamma_w=2' from the varying fields, seeds left out (runs that differ only by seed share a
    label: a group) unless `seeds` (a label per run: 'cell_type=lstm hidden=44 seed=1'). When nothing varies, the
    runs' arm, their cell type ('cell_type=rnn'); 'all' only for a table without one."""
    fields = label_fields(runs, exclude, seeds) or [c for c in ("cell_type",) if c in runs]
    if not fields:
        return pd.Series("all", index=runs.index, dtype=object)
    unclipped = runs["clip_mode"].astype(str).eq("none") if "clip_mode" in runs else pd.Series(False, index=runs.index)

    def label(r: pd.Series) -> str:  # an unclipped run's threshold is a setting with no effect: not named
        return " ".join(f"{f}={short_value(r[f])}" for f in fields if not (f == "clip_threshold" and unclipped[r.name]))

    return runs[fields].apply(label, axis=1).astype(object)


def grouped(runs: pd.DataFrame, keys: list[str], **aggs) -> pd.DataFrame:
    """groupby with NaN keys kept, plus n_runs and the ';'-joined run IDs behind each row."""
    g = runs.groupby(keys, as_index=False, dropna=False, sort=True)
    return g.agg(**aggs, n_runs=("run_id", "size"), run_ids=("run_id", ";".join))


def stacked(frames: list[pd.DataFrame], columns: Iterable[str]) -> pd.DataFrame:
    """The non-empty frames one under the other; an empty table with `columns` when there are none."""
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))


def numeric(runs: pd.DataFrame, cols: Iterable[str]) -> pd.DataFrame:
    out = runs.copy()
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="coerce") if c in out else np.nan
    return out


MEASURED = ("w_norm_init", "w_norm_final", "rho_init", "rho_final")  # the top layer's W_hh as measured (summary.json)


def weight_norm_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per (activation, init, gamma_w): the measured ||W_hh||_2 and spectral radius at init and at the end (medians:
    the config's gamma_w fixed one of them, training moves both), the median slope, Lyapunov exponent and
    log(gamma_W gamma_phi), and the runs that learned."""
    r = numeric(runs, ["gamma_w", "slope_init", "lyapunov_init", "log_rate_init", *MEASURED])
    keys = ["activation", "init", "gamma_w"] if "init" in r else ["activation", "gamma_w"]
    table = grouped(r, keys, **{m: (m, "median") for m in MEASURED}, slope=("slope_init", "median"),
                    lyapunov=("lyapunov_init", "median"), log_rate=("log_rate_init", "median"),
                    radius=("rho_init", "median"), n_learned=("learned", "sum"))
    ok = r[np.isfinite(r[["slope_init", "log_rate_init"]].to_numpy(float)).all(axis=1)]
    corr = ok["slope_init"].corr(ok["log_rate_init"]) if len(ok) > 2 else math.nan
    regimes = regime_counts(runs, "init")
    keys = ("n_sufficient", "n_sufficient_observed_vanishing", "n_bounded", "contradictions")
    return table, {k: regimes[k] for k in keys} | {"slope_log_rate_corr": corr}


def activation_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per activation, form (when the runs have more than one: the Elman and Pascanu forms place the
    nonlinearity differently, so their rates are not pooled) and gamma_w (the slope depends on gamma_W, so no median
    runs across it): the measured ||W_hh||_2 and log(gamma_W gamma_phi), the decay slope and the Lyapunov exponent
    (medians), with n_both, the runs where both are finite; task accuracy and final loss where trained. The
    headline, per activation: the median |slope - lambda_1| over the runs where both exist, and that n."""
    r = numeric(runs, ["gamma_w", "w_norm_init", "slope_init", "lyapunov_init", "log_rate_init", "val_accuracy",
                       "final_val_loss"])
    r["both"] = np.isfinite(r[["slope_init", "lyapunov_init"]].to_numpy(float)).all(axis=1)
    forms = ["form"] if "form" in r and r["form"].nunique(dropna=False) > 1 else []
    table = grouped(r, ["activation", *forms, "gamma_w"], w_norm=("w_norm_init", "median"),
                    log_rate=("log_rate_init", "median"), slope=("slope_init", "median"),
                    lyapunov=("lyapunov_init", "median"), n_both=("both", "sum"), accuracy=("val_accuracy", "mean"),
                    final_val_loss=("final_val_loss", "median"), n_ok=("outcome", lambda s: int((s == "ok").sum())))
    head = {}
    for act, a in r.groupby(r["activation"].astype(str)):
        both = a[a["both"]]
        head[act] = {"n_runs": len(a), "n_both": len(both),
                     "median_abs_slope_minus_lyapunov": finite_median((both["slope_init"] - both["lyapunov_init"]).abs())}
    return table, head


def with_rate(table: pd.DataFrame, name: str, k: str, n: str) -> pd.DataFrame:
    """`table` with columns <name> (k / n), <name>_low and <name>_high (its Wilson 95 % interval)."""
    rates = [rate(int(a), int(b)) for a, b in zip(table[k], table[n])]
    return table.assign(**{name: [x["rate"] for x in rates], f"{name}_low": [x["low"] for x in rates],
                           f"{name}_high": [x["high"] for x in rates]})


LEVEL_COUNTS = {f"n_{level}": (level, "sum") for level in LEVELS}  # grouped() columns: runs at each level


def with_levels(table: pd.DataFrame, n: str = "n_scored") -> pd.DataFrame:
    """`table` (with n_beat_chance, n_learned, n_solved and `n`) with each level's rate and Wilson interval:
    learned_rate, learned_rate_low, ... (beat_chance_rate, solved_rate likewise)."""
    for level in LEVELS:
        table = with_rate(table, f"{level}_rate", f"n_{level}", n)
    return table


MIN_RUNS_FOR_BOUNDARY = 3  # a boundary ("longest T learned") needs at least this many runs in each cell it rests on


def success_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Task success against sequence length T (= seq_len), per task and label: how many runs beat chance, learned
    (the margin below the partial baseline) and solved the task (the papers' bar), each with its Wilson interval,
    beside the mean accuracy, its chance and partial baselines. The headline gives, per task, the learned and solved
    rates at the shortest and longest T and the longest T at which every run learned; that boundary only when every T
    up to it has at least MIN_RUNS_FOR_BOUNDARY runs (with fewer, `longest_T_learned` is None and `runs_per_T` says why).
    The label column is left out when every run has the same one."""
    r = numeric(runs, ["seq_len", "val_accuracy", "chance_accuracy", "partial_accuracy"]).assign(
        label=run_labels(runs, exclude=("task", "seq_len")), scored=scored_runs(runs))
    table = grouped(r.rename(columns={"seq_len": "T"}), ["task", "label", "T"], **LEVEL_COUNTS,
                    n_scored=("scored", "sum"), accuracy=("val_accuracy", "mean"),
                    chance=("chance_accuracy", "mean"), partial=("partial_accuracy", "mean"))
    table = with_levels(table)
    if table["label"].nunique(dropna=False) <= 1:  # nothing varies beside task and T: no column of one value
        table = table.drop(columns="label")
    head = {}
    for task, t in table.groupby("task"):
        by_T = t.groupby("T")[[*LEVEL_COUNTS, "n_scored"]].sum()
        few = int(by_T["n_scored"].min())
        every = by_T.index[(by_T["n_learned"] == by_T["n_scored"]) & (by_T["n_scored"] > 0)]
        longest = every.max() if len(every) and few >= MIN_RUNS_FOR_BOUNDARY else None
        head[str(task)] = {"min_T": by_T.index.min(), "max_T": by_T.index.max(), "runs_per_T": few}
        for level in ("learned", "solved"):
            head[str(task)] |= {f"{level}_at_min_T": rate(by_T[f"n_{level}"].iloc[0], by_T["n_scored"].iloc[0]),
                                f"{level}_at_max_T": rate(by_T[f"n_{level}"].iloc[-1], by_T["n_scored"].iloc[-1])}
        head[str(task)] |= {"longest_T_learned": longest,
                            "n_at_longest_T_learned": None if longest is None else int(by_T.at[longest, "n_scored"])}
    return table, head


CLIP_MODES_COMPARED = ("global", "elementwise")  # the clip modes whose best threshold the clipping headline names


def clip_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per clip mode and threshold (none: threshold unused): the final training loss (median over the ok runs), the
    final validation loss (median over the runs that have one) and how many runs diverged, went unstable, blew up
    (either) and learned, each a rate with its Wilson interval.

    The headline compares the unclipped runs with the clipped ones and, per clip mode, names its best threshold:
    the one with the largest share of runs that learned (ties: the lower median validation loss, then the lower
    threshold), so the effect clipping is for reads as "unclipped: k of n blew up; clipped at c: k of n learned"."""
    r = numeric(runs, ["clip_threshold", "final_train_loss", "final_val_loss", "chance_loss"])
    r.loc[r["clip_mode"] == "none", "clip_threshold"] = np.nan
    r["is_diverged"], r["is_unstable"] = r["outcome"] == "diverged", r["outcome"] == "unstable"
    r["blew_up"] = r["is_diverged"] | r["is_unstable"]
    r.loc[r["outcome"] != "ok", "final_train_loss"] = np.nan
    r.loc[~np.isfinite(r["final_val_loss"]), "final_val_loss"] = np.nan
    table = grouped(r, ["clip_mode", "clip_threshold"], final_loss=("final_train_loss", "median"),
                    final_val_loss=("final_val_loss", "median"), n_diverged=("is_diverged", "sum"),
                    n_unstable=("is_unstable", "sum"), n_blew_up=("blew_up", "sum"), **LEVEL_COUNTS)
    for name in ("diverged", "unstable", "blew_up", *LEVELS):
        table = with_rate(table, f"{name}_fraction", f"n_{name}", "n_runs")
    clipped, unclipped = r[r["clip_mode"] != "none"], r[r["clip_mode"] == "none"]
    best = table[(table["clip_mode"] != "none") & table["final_loss"].notna()]
    best = best.loc[best["final_loss"].idxmin()] if len(best) else None
    head = {"unclipped_final_loss": finite_median(unclipped["final_train_loss"]),
            "chance_loss": finite_median(r["chance_loss"])}
    for name, part in (("unclipped", unclipped), ("clipped", clipped)):
        head |= {f"{what}_{name}": rate(int(part[column].sum()), len(part))
                 for what, column in (("diverged", "is_diverged"), ("unstable", "is_unstable"),
                                      ("blew_up", "blew_up"), *((level, level) for level in LEVELS))}
    head |= {"best_final_loss": None if best is None else best["final_loss"],
             "best_threshold": None if best is None else best["clip_threshold"]}
    for mode in CLIP_MODES_COMPARED:
        top = best_threshold(table[table["clip_mode"] == mode])
        if top is not None:
            head[f"best_{mode}"] = {"threshold": top["clip_threshold"], "final_val_loss": top["final_val_loss"],
                                    **{level: rate(int(top[f"n_{level}"]), int(top["n_runs"])) for level in LEVELS},
                                    "blew_up": rate(int(top["n_blew_up"]), int(top["n_runs"])),
                                    "n_thresholds": int((table["clip_mode"] == mode).sum())}
    return table, head | {"best_mode": None if best is None else str(best["clip_mode"])}


def best_threshold(rows: pd.DataFrame) -> pd.Series | None:
    """The row of clip_table with the largest share of runs that learned; ties: the lower median validation loss
    (a missing one last), then the lower threshold. None when there are no rows."""
    if not len(rows):
        return None
    order = rows.assign(_share=rows["n_learned"] / rows["n_runs"], _val=rows["final_val_loss"].fillna(np.inf))
    order = order.sort_values(["_share", "_val", "clip_threshold"], ascending=[False, True, True], kind="stable")
    return rows.loc[order.index[0]]


DEPTH_COLUMNS = ("run_id", "layers", "when", "layer", "log10_signal_first", "log10_signal_mean")


def depth_table(signal: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per run, probe and layer: log10 ||dE/dh^l_k|| at the first state (k = 0) and its mean over k."""
    if signal.empty:
        return pd.DataFrame(columns=list(DEPTH_COLUMNS))
    s = signal.sort_values("k").groupby(["run_id", "when", "layer"], as_index=False).agg(
        log10_signal_first=("log10_dE_dh", "first"), log10_signal_mean=("log10_dE_dh", "mean"))
    s = s.merge(runs[["run_id", "layers"]], on="run_id", how="left")
    return s[list(DEPTH_COLUMNS)]


def text_headline(runs: pd.DataFrame, arm: pd.Series) -> dict:
    """The chance loss and accuracy (medians over the runs: one corpus gives one value), and per arm (a label per
    run, given): its hidden size and parameter count (largest), median final losses and accuracy, the learned rate
    over its scored runs, and how many ended at chance or worse."""
    cols = ["final_train_loss", "final_val_loss", "chance_loss", "chance_accuracy", "val_accuracy", "hidden",
            "n_params", "partial_loss", "partial_accuracy"]
    r = numeric(runs, cols)
    head: dict[str, Any] = {k: finite_median(r[k]) for k in ("chance_loss", "chance_accuracy", "partial_loss",
                                                             "partial_accuracy")}
    for key in dict.fromkeys(arm.astype(str)):
        a = r[arm.astype(str) == key]
        scored, v = scored_runs(a), a["verdict"]
        head[key] = {"n_runs": len(a), "hidden": a["hidden"].max(), "n_params": a["n_params"].max(),
                     **{k: finite_median(a[k]) for k in ("final_train_loss", "final_val_loss", "val_accuracy")},
                     **{level: rate(int(a.loc[scored, level].sum()), int(scored.sum())) for level in LEVELS},
                     "n_at_chance": int((v == "at chance").sum()),
                     "n_worse_than_chance": int((v == "worse than chance").sum())}
    return head


OUTCOME_COLUMNS = ("outcome", "verdict", "final_val_loss", "val_accuracy", "chance_loss", "chance_accuracy")


def outcome_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per run, in the given order: run_id, spec, the config fields that vary across these runs (seeds included:
    the grid), outcome, learning verdict, final validation loss and accuracy, and chance loss and accuracy. Also
    returns the varying fields' names."""
    fields = varied_fields(runs)
    r = numeric(runs, OUTCOME_COLUMNS[2:])
    return r[["run_id", "spec", *fields, *OUTCOME_COLUMNS]].reset_index(drop=True), fields


def curve_rows(history: pd.DataFrame, points: int = CURVE_POINTS) -> pd.DataFrame:
    """At most `points` evenly spaced rows of iter, loss (non-finite loss as NaN: a diverged run's tail)."""
    h = history[["iter", "loss"]].copy()
    h["loss"] = pd.to_numeric(h["loss"], errors="coerce").replace([np.inf, -np.inf], np.nan)
    keep = np.unique(np.linspace(0, len(h) - 1, min(points, len(h))).round().astype(int)) if len(h) else []
    return h.iloc[keep]


ARM_SLOPES = ("slope_init", "slope_final", "slope_cell_init", "slope_cell_final")  # medians an arm table shows
# Decimals of a fitted decay slope (nats per step) as arm tables and sentences give it: finer digits are rounding;
# an identity-initialised IRNN, whose norms are 1 at every lag, fits a slope of about 1e-17
SLOPE_DECIMALS = 4


def slope_median(values: pd.Series) -> float:
    """The median of the finite fitted slopes, to SLOPE_DECIMALS (NaN when there is none)."""
    return round(finite_median(pd.to_numeric(values, errors="coerce")), SLOPE_DECIMALS)


def arm_table(runs: pd.DataFrame, arm: pd.Series) -> pd.DataFrame:
    """Per task, arm (a label per run, given) and T: how many runs beat chance, learned and solved the task, each
    with the Wilson interval of its rate, the mean accuracy beside its chance and partial baselines, the parameter
    count (the arm's largest, with its smallest as a check that the arm is one size), and the median fitted decay
    slopes (nats per step; the cell-state ones NaN but for an LSTM)."""
    r = numeric(runs, ["seq_len", "val_accuracy", "chance_accuracy", "partial_accuracy", "n_params",
                       *ARM_SLOPES]).assign(arm=arm.astype(str), scored=scored_runs(runs),
                                            diverged=runs["outcome"] == "diverged")
    table = grouped(r.rename(columns={"seq_len": "T"}), ["task", "arm", "T"], **LEVEL_COUNTS,
                    n_scored=("scored", "sum"), n_diverged=("diverged", "sum"),
                    accuracy=("val_accuracy", "mean"), chance=("chance_accuracy", "mean"),
                    partial=("partial_accuracy", "mean"), n_params=("n_params", "max"),
                    n_params_min=("n_params", "min"), **{s: (s, slope_median) for s in ARM_SLOPES})
    return with_levels(table)
