"""What a run's own figures (figures/jacobian_heatmap.png, decay.png, loss.png) cost a sweep worker, this
checkout's drawing code against the baseline commit's, timed in the same run.

One quick-study run (the weight-norm spec's adding cell at T = 30, 400 iterations) is computed in a fresh
interpreter, which reports its CPU seconds. Then fresh interpreters, the baseline's `pipeline/` (from `git archive`)
and this checkout's taking turns (ABBA), each draw that run's three figures from its folder: the first time in the
process (cold: the drawing pays font loading and, for the baseline, building every figure; matplotlib's import is
timed apart, as both codes pay it alike), then `WARM` more times (warm: a worker's every later run). The least CPU
time over the turns is kept: other load on the machine only ever adds to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import UserError
from .study import ROOT, baseline_code

BASELINE = "36382ad"  # main before the run's figures were built once per worker process
TURNS = 4  # ABBA BAAB: each code drawn in 4 fresh processes
WARM = 10  # warm draws per process
QUICK_RUN = {"task": "adding", "seq_len": 30, "val_size": 1000, "hidden": 32, "init": "gaussian", "gamma_w": 2.0,
             "optimizer": "adam", "lr": 0.003, "batch": 64, "iters": 400, "clip_mode": "global",
             "clip_threshold": 1.0, "eval_every": 200, "probe_len": 30, "seed": 2}

RUN = r"""
import json, sys, time
from pipeline.run.config import RunConfig
from pipeline.run.runner import execute_run
cfg = RunConfig(**json.loads(sys.argv[1]))
t = time.process_time(); execute_run(cfg, sys.argv[2], sys.argv[3]); cpu = time.process_time() - t
print(json.dumps({"cpu": cpu}))
"""

DRAW = r"""
import json, sys, time
from pathlib import Path
from types import SimpleNamespace
import numpy as np, pandas as pd
from pipeline.run import probe, runner
run, out, warm = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
jac = pd.read_parquet(run / "probe" / "jacobian.parquet")
history = pd.read_csv(run / "history.csv")
series = pd.read_parquet(run / "series.parquet")
val = series[series["key"] == "by_iter/val_loss"].rename(columns={"step": "iter", "value": "val_loss"})
summary = json.loads((run / "summary.json").read_text())

def probed(when):
    own = jac[jac["when"] == when]
    top = own[own["layer"] == own["layer"].max()]
    size = int(top["t"].max()) + 1
    logmat = np.full((size, size), np.nan)
    logmat[top["t"].to_numpy(), top["k"].to_numpy()] = top["log_norm"].to_numpy()
    return SimpleNamespace(when=when, logmats=[logmat], jacobian=own)

init, final = probed("init"), probed("final")
(out / "figures").mkdir(parents=True, exist_ok=True)

def draw():
    probe.draw_heatmap(init, final, out / "figures" / "jacobian_heatmap.png")
    runner.draw_run_figures(out, init, final, history, val[["iter", "val_loss"]], summary["chance_loss"],
                            trained=True, partial_loss=summary["partial_loss"])

t = time.process_time()
import matplotlib.figure, matplotlib.backends.backend_agg
imported = time.process_time() - t
t = time.process_time(); draw(); cold = time.process_time() - t
t = time.process_time()
for _ in range(warm):
    draw()
print(json.dumps({"import": imported, "cold": cold, "warm": (time.process_time() - t) / warm}))
"""


def _child(code: str, args: list[str], code_path: str, cwd: Path) -> dict:
    """Run `code` in a fresh interpreter whose `pipeline` is the one under `code_path`; its last line, as JSON."""
    env = {**os.environ, "PYTHONPATH": code_path}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "the child failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_run_figures(baseline: str = BASELINE, turns: int = TURNS, warm: int = WARM) -> dict:
    """figures_{warm,cold}_cpu_{before,after} (CPU seconds for a run's three figures, the baseline commit's code and
    this checkout's), their ratios before / after, matplotlib's import (apart: both pay it once per process), and
    the run's own CPU seconds with the share the figures take of it, before and after."""
    with tempfile.TemporaryDirectory(prefix="rnngrad-bench-figures-") as scratch:
        scratch = Path(scratch)
        try:
            codes = {"before": str(baseline_code(baseline, scratch / "baseline")), "after": str(ROOT)}
        except RuntimeError as e:
            raise UserError(f"bench figures: {e}; run it from a git clone of rnngrad") from None
        run = _child(RUN, [json.dumps(QUICK_RUN), str(scratch / "no-data"), str(scratch / "run")], codes["after"],
                     scratch)
        best = {version: {"import": float("inf"), "cold": float("inf"), "warm": float("inf")} for version in codes}
        for turn in range(turns):
            for version in ("before", "after") if turn % 2 == 0 else ("after", "before"):
                drawn = _child(DRAW, [str(scratch / "run"), str(scratch / f"{version}{turn}"), str(warm)],
                               codes[version], scratch)
                best[version] = {key: min(value, drawn[key]) for key, value in best[version].items()}
    before, after = best["before"], best["after"]
    return {"figures_warm_cpu_before": before["warm"], "figures_warm_cpu_after": after["warm"],
            "figures_warm_speedup": before["warm"] / after["warm"],
            "figures_cold_cpu_before": before["cold"], "figures_cold_cpu_after": after["cold"],
            "figures_cold_speedup": before["cold"] / after["cold"],
            "figures_matplotlib_import_cpu": min(before["import"], after["import"]),
            "figures_run_cpu": run["cpu"],
            "figures_share_of_run_before": before["warm"] / run["cpu"],
            "figures_share_of_run_after": after["warm"] / run["cpu"]}
