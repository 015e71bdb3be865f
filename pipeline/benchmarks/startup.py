"""What a sweep worker pays before its first cell computes, against a bare interpreter timed in the same run.

A sweep's workers are fresh interpreters (the spawn start method). Each imports the modules a cell runs and, in its
first cell, whatever those import lazily (the run's heatmap draws with matplotlib). This benchmark times, in fresh
subprocesses, a whole first cell of a tiny config and then a second, warm one in the same process: start-up =
wall time - warm cell. The baseline is `python -c pass` in the same run. It also names any plotting or report
module a worker ends up importing (there should be none but matplotlib, for the run's own figure).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

WORKER = r"""
import json, sys, tempfile, time
t0 = time.perf_counter()
import pipeline.sweep
from pipeline.run.config import RunConfig
from pipeline.run.runner import execute_run
imports = time.perf_counter() - t0
cfg = RunConfig(task="adding", seq_len=10, val_size=64, hidden=8, iters=5, batch=4, probe_len=10,
                optimizer="adam", lr=0.01, eval_every=0)
folder = tempfile.mkdtemp(prefix="rnngrad-bench-")
t1 = time.perf_counter(); execute_run(cfg, folder + "/no-data", folder + "/a"); cold = time.perf_counter() - t1
t2 = time.perf_counter(); execute_run(cfg, folder + "/no-data", folder + "/b"); warm = time.perf_counter() - t2
plotting = sorted({m.split(".")[0] if not m.startswith("pipeline") else m for m in sys.modules
                   if m.split(".")[0] in ("seaborn", "matplotlib", "fpdf") or m.startswith("pipeline.report")})
print(json.dumps({"imports": imports, "cold": cold, "warm": warm, "plotting": plotting}))
"""


def _wall(code: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - start, out


def bench_worker_startup(repeats: int = 5) -> dict:
    """worker_startup_seconds (median over `repeats` fresh workers: wall - warm cell), its imports and cold first
    cell, the bare interpreter's start, their ratio, and the plotting/report modules a worker imported."""
    bare, rows = [], []
    for _ in range(repeats):  # interleaved, so a busy moment hits both alike
        bare.append(_wall("pass")[0])
        wall, out = _wall(WORKER)
        rows.append({**json.loads(out), "wall": wall})
    startup = statistics.median(r["wall"] - r["warm"] for r in rows)
    python = statistics.median(bare)
    return {"worker_startup_seconds": startup,
            "worker_import_seconds": statistics.median(r["imports"] for r in rows),
            "worker_first_cell_seconds": statistics.median(r["cold"] for r in rows),
            "worker_warm_cell_seconds": statistics.median(r["warm"] for r in rows),
            "python_startup_seconds": python, "worker_startup_vs_python": startup / python,
            "worker_plotting_modules": ",".join(rows[0]["plotting"]) or "none"}
