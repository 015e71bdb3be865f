"""What MLflow logging costs a sweep, and what a second worker process buys.

`bench_logging_overhead`: one quick-profile run (the first cell of the weight-norm spec), timed alone, then its
folder logged to a throwaway sqlite store (run create + log_run_folder + end), both in this same process.
`bench_sweep_scaling`: the quick weight-norm sweep end to end at 1 and at 2 worker processes, each into a fresh
temp store and results dir. `bench_profile_logging`: every spec's quick profile swept at 2 worker processes with
and without its run folders logged: what logging adds to the quick profile's wall time. Store creation (schema
migrations, ~1-2 s, once per sweep) is timed apart. Each figure is the best of a few repeats (interleaved for the
sweeps), the usual guard against a busy machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from .. import tracking
from ..tracking import runs as tracking_runs
from ..run.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = ROOT / "experiments" / "weight_norms.yaml"
SPEC_DIR = ROOT / "experiments"


def bench_logging_overhead(spec_path: str | Path = DEFAULT_SPEC, profile: str = "quick",
                           data_dir: str | Path = ROOT / "data", repeats: int = 3) -> dict:
    """run_seconds (execute_run alone, warm: a worker pays its imports once, not per run), logging_seconds
    (run create + log_run_folder + end), logging_overhead = logging / run (target <= 0.10), and
    logging_points (metric points logged per run)."""
    import pandas as pd

    from ..run.runner import execute_run

    cfg = load_spec(spec_path, profile).cells[0]
    with tempfile.TemporaryDirectory(prefix="rnngrad-bench-") as tmp:
        runs = Path(tmp) / "runs"
        execute_run(dataclasses.replace(cfg, iters=1), Path(data_dir), runs / "warmup")  # imports, caches
        run_seconds = min(_timed(execute_run, cfg, Path(data_dir), runs / f"run{i}") for i in range(repeats))

        start = time.perf_counter()
        store = tracking.open_store(tmp, tracking_uri="")
        experiment = tracking.ensure_experiment(store, "rnngrad/bench")
        store_seconds = time.perf_counter() - start
        logging_seconds = min(_timed(_log_folder, store, experiment, runs / "run0") for _ in range(repeats))
        points = len(pd.read_parquet(runs / "run0" / "series.parquet"))
    return {"run_seconds": run_seconds, "logging_seconds": logging_seconds,
            "logging_overhead": logging_seconds / run_seconds, "logging_step_points": points,
            "store_open_seconds": store_seconds}


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _log_folder(store: tracking.Store, experiment: str, run_dir: Path) -> str:
    run_id = tracking.start_run(store, experiment, "bench", tags={"config_hash": run_dir.name})
    tracking.log_folder_and_end(store, run_id, run_dir)
    return run_id


def bench_sweep_scaling(spec_path: str | Path = DEFAULT_SPEC, profile: str = "quick",
                        data_dir: str | Path = ROOT / "data", repeats: int = 2) -> dict:
    """sweep_seconds_1_job, sweep_seconds_2_jobs (wall time of run_sweep: worker start-up, runs, logging),
    sweep_speedup = 1 job / 2 jobs, the cell count, the parent's MLflow logging time at 2 jobs, and what that
    logging adds to the sweep's wall time: the same 2-job sweep with each run's folder logging left out (runs
    still created and ended), sweep_logging_wall_overhead = logged / unlogged - 1. In a sweep the parent logs
    while the workers compute, so this is below the serial `logging_overhead`. Per run of the logged 2-job
    sweeps, its MLflow seconds over its own seconds as the sweep ran it: sweep_run_logging_overhead_median, _max."""
    spec = load_spec(spec_path, profile)
    variants = ((1, True), (2, True), (2, False))  # (jobs, log folders)
    seconds, logging, ratios = ({v: [] for v in variants} for _ in range(3))
    for repeat in range(repeats):
        for jobs, logged in variants[::-1] if repeat % 2 else variants:  # no variant always runs warmest
            wall, log, run_ratios = _sweep_once(spec, Path(data_dir), jobs, logged)
            seconds[jobs, logged].append(wall)
            logging[jobs, logged].append(log)
            ratios[jobs, logged].append(run_ratios)
    best = {v: min(s) for v, s in seconds.items()}
    per_run = [r for rs in ratios[2, True] for r in rs]  # every logged run of the 2-job repeats
    return {"sweep_cells": len(spec.cells), "sweep_seconds_1_job": best[1, True], "sweep_seconds_2_jobs": best[2, True],
            "sweep_speedup": best[1, True] / best[2, True], "sweep_logging_seconds_2_jobs": min(logging[2, True]),
            "sweep_seconds_2_jobs_unlogged": best[2, False],
            "sweep_logging_wall_overhead": best[2, True] / best[2, False] - 1.0,
            "sweep_run_logging_overhead_median": statistics.median(per_run),
            "sweep_run_logging_overhead_max": max(per_run)}


def _sweep_once(spec, data_dir: Path, jobs: int, log_folders: bool = True) -> tuple[float, float, list[float]]:
    """(wall seconds, the parent's folder-logging seconds, and per run: its MLflow seconds in the parent (create,
    log, end) over its own seconds in the worker, as the results table records them)."""
    import pandas as pd
    from unittest import mock

    from ..sweep import run_sweep

    with tempfile.TemporaryDirectory(prefix="rnngrad-bench-") as tmp:
        store = tracking.open_store(tmp, tracking_uri="")  # created before the clock starts
        end_only = mock.patch.object(tracking_runs, "log_folder_and_end",  # where the sweep reads it
                                     lambda store, run_id, run_dir: tracking_runs.end_run(store, run_id, "FINISHED"))
        with end_only if not log_folders else contextlib.nullcontext():
            start = time.perf_counter()
            result = run_sweep(spec, data_dir, Path(tmp) / "results", store, jobs)
            wall = time.perf_counter() - start
        seconds = pd.read_parquet(result.table_path, columns=["cell", "seconds"]).set_index("cell")["seconds"]
        ratios = [result.logging_by_cell[cell] / seconds[cell] for cell in result.ran]
        return wall, result.logging_seconds, ratios


def bench_profile_logging(spec_dir: str | Path = SPEC_DIR, profile: str = "quick",
                          data_dir: str | Path = ROOT / "data", repeats: int = 2, jobs: int = 2,
                          progress: Callable[[str], None] = lambda message: None) -> dict:
    """Every spec in `spec_dir` swept at `jobs` worker processes, logged and unlogged (runs still created and
    ended), interleaved; each spec's best of `repeats`. profile_logging_wall_overhead = sum of logged wall times /
    sum of unlogged - 1: what MLflow logging adds to the profile's wall time (target <= 0.10), and the worst
    spec's. profile_logging_share = the parent's seconds logging run folders (its MLflow seconds per cell, less
    those of the unlogged sweep, which still ends each run) / the unlogged wall time: the overhead if none of the
    logging overlapped the workers' runs."""
    specs = sorted(Path(spec_dir).glob("*.yaml"))
    logged, unlogged, logging = {}, {}, {}
    for done, path in enumerate(specs):
        progress(f"profile: {path.stem} ({done + 1}/{len(specs)})")
        spec = load_spec(path, profile)
        walls, mlflow_seconds = {True: [], False: []}, {True: [], False: []}
        for repeat in range(repeats):
            for log_folders in (True, False) if repeat % 2 == 0 else (False, True):
                wall, seconds, _ = _sweep_once(spec, Path(data_dir), jobs, log_folders)
                walls[log_folders].append(wall)
                mlflow_seconds[log_folders].append(seconds)
        logged[path.stem], unlogged[path.stem] = min(walls[True]), min(walls[False])
        logging[path.stem] = max(0.0, min(mlflow_seconds[True]) - min(mlflow_seconds[False]))
    overhead = {name: logged[name] / unlogged[name] - 1.0 for name in logged}
    worst = max(overhead, key=overhead.get)
    total_logged, total_unlogged = sum(logged.values()), sum(unlogged.values())
    total_logging = sum(logging.values())
    return {"profile_specs": len(specs), "profile_seconds_logged": total_logged,
            "profile_seconds_unlogged": total_unlogged,
            "profile_logging_wall_overhead": total_logged / total_unlogged - 1.0,
            "profile_worst_spec": worst, "profile_worst_spec_overhead": overhead[worst],
            "profile_logging_seconds": total_logging, "profile_logging_share": total_logging / total_unlogged}
