"""`rnngrad bench`: the speed figures, each against a baseline timed in the same run."""

from __future__ import annotations

import json
from typing import Annotated, Callable

import typer

from ..errors import UserError

BENCHMARKS = ("allpairs", "train", "logging", "scaling", "profile")


def _allpairs() -> dict:
    from ..benchmarks.allpairs import bench_allpairs

    return bench_allpairs()


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


RUNNERS: dict[str, Callable[[], dict]] = {
    "allpairs": _allpairs,
    "train": _train,
    "logging": _logging,
    "scaling": _scaling,
    "profile": _profile,
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
        typer.Option(help=f"Comma-separated benchmarks to run, from: {', '.join(BENCHMARKS)}."),
    ] = ",".join(BENCHMARKS),
    json_out: Annotated[
        bool, typer.Option("--json", help="Also print one JSON object with every figure on the last line.")
    ] = False,
) -> None:
    """Run the benchmarks and print their figures with ratios to baselines timed in the same run.

    allpairs: log_norm_matrix at T = 128, n = 128 vs dense products + np.linalg.norm(P, 2) per pair.
    train: training-step throughput (chars/s; vocab 65, H 100, S 25, batch 32, Adagrad, clip 5) vs min-char-rnn's loop,
    and the step's matrix products alone (gemm_floor: the ceiling for any numpy float64 trainer).
    logging: one of the shortest quick runs (weight-norm cell 0) logged after it, in the same process: MLflow
    seconds over the run's seconds, with no overlap (what `rnngrad train` pays once MLflow is imported).
    scaling: the quick weight-norm sweep's wall time at 1 and 2 worker processes, and at 2 without logging.
    profile: every spec's quick profile swept at 2 worker processes, logged and not: what MLflow logging adds to
    the quick profile's wall time (target <= 0.10; ~3 minutes).
    Takes about 5 minutes; the machine should be otherwise idle for meaningful figures.
    """
    figures: dict = {}
    for name in _parse_only(only):
        typer.echo(f"running {name} ...", err=True)
        figures.update(RUNNERS[name]())
    _print_table(figures)
    if json_out:
        typer.echo(json.dumps(figures))
