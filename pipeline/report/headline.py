"""The study's numbers as DVC shows them: a short headline (reports/headline.json, the stage's metrics file, so that
`dvc exp show` has a column per number and `dvc metrics diff` compares two experiments) and one file per spec
(reports/metrics/<spec>.json: that spec's learning counts and its own summary, whatever the spec). metrics.json
keeps every number; these are cut from it, never computed apart.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..run.files import write_atomic

HEADLINE = "headline.json"
SPEC_METRICS = "metrics"  # reports/metrics/<spec>.json


def headline(metrics: dict) -> dict:
    """About a dozen study-wide numbers and three per spec: runs checked, bound violations (expected 0), the spot
    checks, the regime theorem's contradictions at init, how far the two predictions of the rate fall from the
    measured one (median |slope - lambda_1| and |slope - mean-field|, nats per step); per spec its runs and its learned
    and solved counts (none where no run is scored against a baseline: an untrained spec learns nothing by design)."""
    spot = metrics.get("spot_checks", {})
    regimes = metrics.get("regimes", {}).get("init", {})
    rate = metrics.get("rate", {})
    head = {"runs": metrics["n_runs"], "pairs": metrics["n_checks"],
            "violations": metrics["violations"], "spot_checks": spot.get("n"), "spot_mismatches": spot.get("mismatches"),
            "regime_sufficient": regimes.get("n_sufficient"),
            "regime_sufficient_vanishing": regimes.get("n_sufficient_observed_vanishing"),
            "regime_contradictions": regimes.get("contradictions"), "failed": metrics["outcomes"].get("failed", 0),
            "rate_error_lyapunov": rate.get("median_abs_slope_minus_lyapunov"),
            "rate_error_meanfield": rate.get("median_abs_slope_minus_meanfield")}
    for spec, counts in sorted(metrics.get("learning", {}).items()):
        scored = counts.get("learned", {}).get("n")
        head[spec] = {"runs": counts["n_runs"], "learned": counts["n_learned"] if scored else None,
                      "solved": counts.get("n_solved") if scored else None}
    return head


def spec_metrics(metrics: dict) -> dict[str, dict]:
    """{spec: its learning counts and its own summary (metrics.json's learning.<spec> and specs.<spec>)}."""
    names = set(metrics.get("learning", {})) | set(metrics.get("specs", {}))
    return {name: {"learning": metrics.get("learning", {}).get(name, {}), **metrics.get("specs", {}).get(name, {})}
            for name in sorted(names)}


def write_headline(metrics: dict, out_dir: Path) -> None:
    """reports/headline.json and reports/metrics/<spec>.json (a spec's file no longer analysed removed)."""
    folder = out_dir / SPEC_METRICS
    per_spec = spec_metrics(metrics)
    for name, numbers in per_spec.items():
        write_atomic(folder / f"{name}.json", json.dumps(numbers, indent=2, allow_nan=False))
    for stale in folder.glob("*.json") if folder.is_dir() else []:
        if stale.stem not in per_spec and not stale.is_symlink() and stale.is_file():
            stale.unlink()
    write_atomic(out_dir / HEADLINE, json.dumps(headline(metrics), indent=2, allow_nan=False))
