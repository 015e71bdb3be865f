"""What a Dask cluster buys a sweep, and how fast one driver logs finished cells to a tracking server.

`bench_cluster_scaling`: the quick weight-norm sweep on `local:1` and on `local:2` (Dask LocalClusters of 1 and 2
single-threaded worker processes), each into a fresh temp sqlite store; the clusters' start-up is timed apart.
`bench_driver_logging`: the driver's side alone. A throwaway PostgreSQL and `mlflow server` on it are started on
127.0.0.1 (benchmarks/services.py); one real quick run folder is made, and a sweep of the weight-norm spec's cells
whose "computation" copies that folder (in threads: no worker start-up, no CPU taken from the logging) is logged
through the sweep's own loop with 1 logging thread and with sweep.compute.SERVER_LOG_THREADS. cells/s = cells / wall
time of the sweep: the rate at which one driver turns returned folders into FINISHED runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

from .. import sweep, tracking
from ..sweep import compute
from ..run.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = ROOT / "experiments" / "weight_norms.yaml"
TEMPLATE_ENV = "RNNGRAD_BENCH_TEMPLATE"  # the run folder copy_template copies (threads share the environment)


def bench_cluster_scaling(spec_path: str | Path = DEFAULT_SPEC, profile: str = "quick",
                          data_dir: str | Path = ROOT / "data") -> dict:
    """cluster_seconds_local_1, cluster_seconds_local_2 (wall time of run_sweep on the connected cluster: runs,
    returning folders, logging to sqlite), cluster_speedup = local:1 / local:2, cluster_start_seconds_local_2
    (LocalCluster start-up and the version check, paid once per sweep)."""
    from .. import cluster

    spec = load_spec(spec_path, profile)
    figures = {"cluster_cells": len(spec.cells)}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory(prefix="rnngrad-bench-") as tmp:
            store = tracking.open_store(tmp, tracking_uri="")
            start = time.perf_counter()
            with cluster.connect(f"local:{workers}") as opened:
                figures[f"cluster_start_seconds_local_{workers}"] = time.perf_counter() - start
                start = time.perf_counter()
                sweep.run_sweep(spec, Path(data_dir), Path(tmp) / "results", store, opened.slots,
                                executor=opened.executor(Path(data_dir)))
                figures[f"cluster_seconds_local_{workers}"] = time.perf_counter() - start
    figures["cluster_speedup"] = figures["cluster_seconds_local_1"] / figures["cluster_seconds_local_2"]
    del figures["cluster_start_seconds_local_1"]
    return figures


def bench_driver_logging(spec_path: str | Path = DEFAULT_SPEC, profile: str = "quick",
                         data_dir: str | Path = ROOT / "data", server_workers: int = 2) -> dict:
    """driver_log_cells_per_s (the sweep's logging threads) and driver_log_cells_per_s_1_thread, against an
    `mlflow server --workers server_workers` on a local PostgreSQL; driver_log_cells is the sweep's cell count.

    Where the time goes, for the capacity model of docs/cluster.md: the CPU seconds per cell of the driver process
    (its logging, and the copying that stands in for the workers' computation) and of the server's processes, with
    the logging threads. cells/s per CPU second is how many cells one core of each sustains; on a machine where
    driver, server and PostgreSQL share few cores, the server's share sets the measured rate."""
    from ..run.runner import execute_run
    from . import services

    spec = load_spec(spec_path, profile)
    cells = len(spec.cells)
    figures = {"driver_log_cells": cells, "driver_log_threads": compute.SERVER_LOG_THREADS}
    with tempfile.TemporaryDirectory(prefix="rnngrad-bench-") as tmp:
        template = Path(tmp) / "template"
        execute_run(spec.cells[0], Path(data_dir), template)
        with services.postgres() as database, services.mlflow_server(database, Path(tmp) / "server",
                                                                      workers=server_workers) as server:
            store = tracking.open_store(tmp, tracking_uri=server.url)
            for threads, key in ((1, "driver_log_cells_per_s_1_thread"),
                                 (compute.SERVER_LOG_THREADS, "driver_log_cells_per_s")):
                results = Path(tmp) / f"results-{threads}"
                with mock.patch.object(compute, "SERVER_LOG_THREADS", threads), \
                        mock.patch.dict(os.environ, {TEMPLATE_ENV: str(template)}):
                    driver_cpu, server_cpu = time.process_time(), server.cpu_seconds()
                    start = time.perf_counter()
                    sweep.run_sweep(dataclasses.replace(spec, name=f"bench{threads}"), Path(data_dir), results,
                                    store, cells, execute=copy_template, executor=ThreadPoolExecutor)
                    figures[key] = cells / (time.perf_counter() - start)
                    driver_cpu, server_cpu = time.process_time() - driver_cpu, server.cpu_seconds() - server_cpu
            figures |= {"driver_cpu_s_per_cell": driver_cpu / cells, "server_cpu_s_per_cell": server_cpu / cells,
                        "driver_cells_per_cpu_s": cells / driver_cpu, "server_cells_per_cpu_s": cells / server_cpu}
    return figures


def copy_template(cfg, data_dir, run_dir, progress=None) -> None:
    """Stands in for runner.execute_run: the template run folder, under this cell's hash (its folder's name)."""
    run_dir = Path(run_dir)
    shutil.copytree(os.environ[TEMPLATE_ENV], run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    (run_dir / "summary.json").write_text(json.dumps(summary | {"config_hash": run_dir.name}), encoding="utf-8")
