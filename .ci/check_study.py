"""After `dvc repro` in a fresh clone: the report, the metrics and the MLflow store are all there and agree."""

import json
import sqlite3
import sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
for rel in ["reports/report.html", "reports/report.pdf", "reports/metrics.json", "mlflow.db"]:
    assert (root / rel).is_file(), f"missing {rel}"
assert any((root / "reports/figures").glob("*.png")), "no figures"
metrics = json.loads((root / "reports/metrics.json").read_text())
assert metrics["violations"] == 0, f"bound violations: {metrics['violations']}"
assert (root / "reports/report.pdf").read_bytes()[:5] == b"%PDF-"
spot = metrics["spot_checks"]  # the independent check: a mismatch is a bug in the Jacobian code
assert spot["n"] >= 1000 and spot["mismatches"] == 0, f"spot checks: {spot}"
for when in ("init", "final"):
    assert metrics["regimes"][when]["contradictions"] == 0, f"theorem contradicted ({when}): {metrics['regimes'][when]}"
# The effect the clipping spec is for (experiments/clipping.yaml): unclipped SGD blows up (diverges or goes
# unstable) in a majority of its runs, and some clipped configuration learns in a majority of its runs.
clip = metrics["specs"]["clipping"]["headline"]
blew = clip["blew_up_unclipped"]
best = {m: clip[f"best_{m}"]["learned"] for m in ("global", "elementwise") if f"best_{m}" in clip}
assert 2 * blew["k"] > blew["n"], f"clipping: unclipped runs blew up in only {blew['k']} of {blew['n']}"
assert any(2 * r["k"] > r["n"] for r in best.values()), f"clipping: no clipped config learned in most runs: {best}"

db = sqlite3.connect(root / "mlflow.db")
status = dict(db.execute("select status, count(*) from runs group by status").fetchall())
assert "RUNNING" not in status, f"runs left RUNNING: {status}"
n_runs = sum(status.values())
assert n_runs >= metrics["n_runs"], f"store has {n_runs} runs, metrics.json counts {metrics['n_runs']}"
print(f"study ok: {metrics['n_runs']} runs, {metrics['violations']} violations, spot checks {spot}, "
      f"clipping: unclipped blew up {blew['k']} of {blew['n']}, best clipped learned "
      f"{ {m: (r['k'], r['n']) for m, r in best.items()} }, store statuses {status}")
