"""A run folder's contents as MLflow values: its config flattened into params, texts cut to MLflow's limits, its
summary numbers rounded as the runs table shows them, its step metrics read from series.parquet, and the regimes
its probes observed as tags. No mlflow here: plain values in, plain values out.
"""

from __future__ import annotations

import json
from pathlib import Path


MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_TAG_CHARS = 8000  # and on a tag value
SUMMARY_PREFIX = "summary/"  # single numbers (step 0): one chart-view section of bar charts, apart from the curves
SUMMARY_DIGITS = 4  # significant digits of a metric as logged (summary.json and series.parquet keep them all)
# The run id a results row gets when its sweep ran with --no-track: no MLflow run holds it, so nothing links to it.
# A suffix, so that the report's short form of a run id (its first 8 characters) is the start of the run's folder.
UNTRACKED_SUFFIX = "-untracked"


def untracked_run_id(config_hash: str) -> str:
    """The run id of a cell a sweep ran without MLflow (`<config_hash>-untracked`): unique in its results table, as
    a run id is, and never taken for an MLflow run's (`is_tracked`)."""
    return f"{config_hash}{UNTRACKED_SUFFIX}"


def is_tracked(run_id) -> bool:
    """Whether a results row's run id names an MLflow run (not one a sweep with --no-track wrote)."""
    return isinstance(run_id, str) and bool(run_id) and not run_id.endswith(UNTRACKED_SUFFIX)


def flatten_json(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars stay values."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten_json(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _summary_metrics(summary: dict):
    """(key, step, value): top-level numbers as `summary/<name>` at step 0, rounded to SUMMARY_DIGITS significant
    digits, and per-layer numbers as `by_layer/<name>` at step = layer index (one chart per quantity rather than
    one key per layer) for stacks of 2 or more layers (a single layer's numbers are the top-level ones).

    The prefix puts the single numbers, which the UI's chart view draws as one bar chart each, in one section of
    their own below the curves (`by_lag/`, `by_k/`, `by_iter/`), and names them apart from the step metrics in
    the runs table; rounding keeps that table's columns legible (summary.json keeps every digit)."""
    for k, v in summary.items():
        if _is_number(v):
            yield f"{SUMMARY_PREFIX}{k}", 0, round_significant(float(v))
    ratio = val_over_chance(summary)
    if ratio is not None:
        yield f"{SUMMARY_PREFIX}val_over_chance", 0, round_significant(ratio)
    layers = summary.get("layers") or []
    for layer, row in enumerate(layers if len(layers) > 1 else []):
        for k, v in (row.items() if isinstance(row, dict) else ()):
            if _is_number(v) and k != "layer":
                yield f"by_layer/{k}", layer, float(v)


def _series_metrics(path: Path):
    if not path.exists():
        return
    import pyarrow.parquet as pq  # a third of pandas' time for a table this small

    table = pq.ParquetFile(path).read(columns=["key", "step", "value"]).to_pydict()
    # rounded as the summaries are: the runs table shows each curve's last value (series.parquet keeps them all)
    yield from zip(map(str, table["key"]), map(int, table["step"]),
                   (round_significant(float(v)) for v in table["value"]))


def _samples_text(path: Path) -> str:
    samples = json.loads(path.read_text())
    return "\n\n".join(f"--- iter {s.get('iter')} ---\n{s.get('text', '')}" for s in samples)


def _is_number(v) -> bool:
    return isinstance(v, (int, float))  # NaN and inf included: MLflow stores them, and overflow is data


def _text(v, limit: int) -> str:
    """MLflow stores strings: keep strings as they are, write everything else as JSON (null, true, 0.5)."""
    s = v if isinstance(v, str) else json.dumps(v)
    return s[:limit]


def round_significant(x: float, digits: int = SUMMARY_DIGITS) -> float:
    """x to `digits` significant digits; NaN, inf and 0 as they are."""
    import math

    if not math.isfinite(x) or x == 0:
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def val_over_chance(summary: dict) -> float | None:
    """Final validation loss over the task's chance loss (below 0.9: learned), None when either is missing."""
    loss, chance = summary.get("final_val_loss"), summary.get("chance_loss")
    if not (_is_number(loss) and _is_number(chance)) or not chance > 0:
        return None
    return float(loss) / float(chance)


def regime_tags(summary: dict) -> dict:
    """The observed regime of both probes, named for their probe: the regime after training is the final
    model's (from slope_final), so a trained run that no longer explodes does not show only its initial label."""
    from ..run.probe import observed_regime

    tags = {}
    for when in ("init", "final"):
        slope = summary.get(f"slope_{when}")
        label = summary.get("observed_regime") if when == "init" else None  # the runner's label of the init probe
        if label is None and _is_number(slope):
            label = observed_regime(float(slope))
        if label is not None:
            tags[f"observed_regime_{when}"] = label
    return tags
