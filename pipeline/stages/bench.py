"""`rnngrad bench`: the speed figures, each against a baseline timed in the same run."""

from __future__ import annotations

import json
from typing import Annotated, Callable

import typer

from ..errors import UserError

BENCHMARKS = (
    "allpairs", "crosslayer", "train", "logging", "scaling", "profile", "startup", "minchar", "cluster", "study",
    "figures",
)
DEFAULT = tuple(name for name in BENCHMARKS if name != "study")  # study takes half an hour or more: asked for by name


def _allpairs() -> dict:
    from ..benchmarks.allpairs import bench_allpairs

    return bench_allpairs()


def _crosslayer() -> dict:
    from ..benchmarks.crosslayer import bench_crosslayer

    return bench_crosslayer()


def _train() -> dict:
    from ..benchmarks.throughput import bench_train_throughput

    return bench_train_throughput()


def _logging() -> dict:
    from ..benchmarks.logging import bench_logging_overhead

    return bench_logging_overhead()


def _scaling() -> dict:
    from ..benchmarks.logging import bench_sweep_scaling

    return bench_sweep_scaling()


def _profile() -> dict:
    from ..benchmarks.logging import bench_profile_logging

    return bench_profile_logging(progress=lambda message: typer.echo(f"  {message}", err=True))


def _startup() -> dict:
    from ..benchmarks.startup import bench_worker_startup

    return bench_worker_startup()


def _minchar() -> dict:
    from ..benchmarks.minchar import bench_minchar_fidelity

    return bench_minchar_fidelity()


def _cluster() -> dict:
    from ..benchmarks import services
    from ..benchmarks.cluster import bench_cluster_scaling, bench_driver_logging

    figures = bench_cluster_scaling()
    if services.postgres_bin("initdb") is None:
        typer.echo(f"  cluster: no driver_log_* figures: {services.INSTALL_HINT}", err=True)
        return figures
    return figures | bench_driver_logging()


def _study() -> dict:
    from ..benchmarks.study import bench_study

    return bench_study(progress=lambda message: typer.echo(f"  {message}", err=True))


def _figures() -> dict:
    from ..benchmarks.figures import bench_run_figures

    return bench_run_figures()


RUNNERS: dict[str, Callable[[], dict]] = {
    "allpairs": _allpairs,
    "crosslayer": _crosslayer,
    "train": _train,
    "logging": _logging,
    "scaling": _scaling,
    "profile": _profile,
    "startup": _startup,
    "minchar": _minchar,
    "cluster": _cluster,
    "study": _study,
    "figures": _figures,
}


def _parse_only(only: str) -> list[str]:
    names = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in names if s not in BENCHMARKS]
    if unknown or not names:
        raise UserError(f"--only: unknown benchmark {', '.join(unknown) or repr(only)}; valid: {', '.join(BENCHMARKS)}")
    return names


def _print_table(figures: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="rnngrad bench (baselines timed in the same run)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else str(value))
    Console(stderr=False).print(table)


def bench_cmd(
    only: Annotated[
        str,
        typer.Option(help=f"Comma-separated benchmarks to run, from: {', '.join(BENCHMARKS)} (all but study by "
                          "default)."),
    ] = ",".join(DEFAULT),
    json_out: Annotated[
        bool, typer.Option("--json", help="Also print one JSON object with every figure on the last line.")
    ] = False,
) -> None:
    """Run the benchmarks and print their figures with ratios to baselines timed in the same run.

    allpairs: log_norm_matrix at T = 128, n = 128 against dense products + np.linalg.norm(P, 2) per pair.

    crosslayer: every cross-layer pair ||dh^L_t/dh^l_k|| (l < L, k <= t) of a 4-layer stack at n = 64, T = 128, lag
    by lag, against explicit products of the whole stack's (4n x 4n) step Jacobians with an SVD per block; wall-clock
    and CPU ratios (about 1.5 minutes, the dense route most of it). crosslayer_products: the dense route against the
    fast route's matrix products alone (no Lanczos), the ceiling for its speedup.

    train: training chars/s (vocab 65, H 100, S 25, batch 32, Adagrad, clip 5) against min-char-rnn's loop.

    gemm_floor (with train): the step's matrix products alone, the ceiling for any numpy float64 trainer.

    logging: one of the shortest quick runs, then its MLflow logging in the same process: logging / run seconds.

    scaling: the quick weight-norm sweep at 1 and 2 worker processes, and at 2 with no run folder logged.

    scaling, per run: the parent's MLflow seconds / the run's seconds (a cost; the parent logs while workers run).

    profile: every spec's quick profile at 2 worker processes, logged and not: what logging adds (target <= 0.10).

    startup: a sweep worker's start-up (a fresh interpreter's imports and first cell, minus a warm cell) against a
    bare `python -c pass`, and the plotting or report modules a worker imports.

    minchar: min-char-rnn fidelity on the default corpus, from the same initial weights: validation loss of a
    faithful port of min-char-rnn.py after 1 M training characters and of the port from last-bit-nudged weights
    (how far the algorithm lands from itself: its training is chaotic), of rnngrad with consecutive windows at batch
    1 after the same characters, and at batch 32 after the port's wall-clock time; and, after 20 steps in lockstep,
    rnngrad's distance from the port over the nudged port's (below 1: closer than a last-bit change). About 3 minutes.

    cluster: the quick weight-norm sweep on Dask local:1 and local:2; and cells/s the sweep's driver logs to an
    `mlflow server` on a throwaway local PostgreSQL (needs its server binaries), with 1 and with its logging threads,
    and the CPU seconds one cell costs the driver and the server (docs/cluster.md, "Capacity").

    study: representative full-profile cells (REPRESENTATIVES in pipeline/benchmarks/study.py) with this checkout's
    code and the baseline commit's (5e825f7, from git history), in turns, each at two reduced iteration counts and
    extrapolated to its full count: core-seconds before and after, their ratio, peak RSS, and `rnngrad plan`'s
    estimate over the measured time; the study's core-hours before and after (every full-profile cell as the plan
    prices it, before = times its representative's ratio). Not run by default: 30 to 60 minutes on 2 idle cores.

    figures: a run's three figures (heatmap, decay, loss) drawn from one quick-study run's folder by this checkout's
    code and by the baseline commit's (36382ad, from git history), in fresh processes taking turns: CPU seconds the
    first time in a process (cold) and on each later run (warm), before and after, and their share of the run's CPU.
    About a minute.

    All but minchar and study take about 5 minutes (profile 3); the machine should be otherwise idle for meaningful
    figures.
    """
    figures: dict = {}
    for name in _parse_only(only):
        typer.echo(f"running {name} ...", err=True)
        figures.update(RUNNERS[name]())
    _print_table(figures)
    if json_out:
        typer.echo(json.dumps(figures))
