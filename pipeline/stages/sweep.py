"""`rnngrad sweep`: run a spec's grid, log every cell to MLflow, write results/<spec>.parquet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from ..run.paths import check_data_dir, check_output_folder


def sweep_cmd(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="Sweep spec, e.g. experiments/weight_norms.yaml.")],
    profile: Annotated[str, typer.Option(help="Which profile of the spec: quick (minutes) or full (hours).")] = "quick",
    jobs: Annotated[int, typer.Option(help="Worker processes; 0 = one per core.")] = 0,
    data_dir: Annotated[Path, typer.Option(help="Datasets written by `rnngrad generate`.")] = Path("data"),
    results_dir: Annotated[Path, typer.Option(help="Where run folders and <spec>.parquet go.")] = Path("results"),
) -> None:
    """Train every cell of a sweep spec's grid in parallel and log each as a nested MLflow run.

    Writes results/<spec>/runs/<config_hash>/ per cell and results/<spec>.parquet (one row per run). Runs go to
    MLFLOW_TRACKING_URI if set, else to mlflow.db and mlartifacts/ in the project root. A sweep that was killed,
    started again, finishes the missing cells and repeats none that finished.
    """
    from ..run.spec import load_spec

    if jobs < 0:
        raise UserError(f"--jobs: {jobs} is negative; give a number of worker processes >= 1, or 0 for one per core")
    if spec.is_dir():
        raise UserError(f"{spec}: is a folder, not a file; give a sweep spec such as experiments/weight_norms.yaml")
    if not spec.is_file():
        raise UserError(f"{spec}: no such file; give a sweep spec such as experiments/weight_norms.yaml")
    loaded = load_spec(spec, profile)  # validates everything before the store is touched
    _check_paths_and_data(spec, loaded, data_dir, results_dir)
    summary = _run(loaded, data_dir, results_dir, jobs or os.cpu_count() or 1)
    typer.echo(summary)


def _check_paths_and_data(path: Path, spec, data_dir: Path, results_dir: Path) -> None:
    """The folders, and every cell's data (a text file, a window longer than its text), before the store is opened
    or a cell runs."""
    from ..run.sources import check_data
    from ..sweep import cell_names

    check_data_dir(data_dir)
    check_output_folder(results_dir / spec.name, f"--results-dir {results_dir}")  # the spec's runs and lock go there
    texts: dict = {}  # each text file read once
    for name, cfg in zip(cell_names(spec), spec.cells):
        check_data(cfg, data_dir, lambda key, name=name: f"{path}: cell {name}: {key}", texts)


def _run(spec, data_dir: Path, results_dir: Path, jobs: int) -> str:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import tracking
    from ..sweep import run_sweep

    store = tracking.open_store(tracking.default_project_root())
    columns = (TextColumn(f"sweep {spec.name} ({spec.profile})"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = Progress(*columns, transient=False)  # shown once the sweep starts: not above a refusal
    task = bar.add_task("cells", total=len(spec.cells))

    def progress(done: int, total: int, cell: str, status: str) -> None:
        if status == "started":
            bar.start()
            return
        bar.console.print(f"[{done}/{total}] {cell}: {status}")
        bar.update(task, completed=done, total=total)

    try:
        result = run_sweep(spec, data_dir, results_dir, store, jobs, progress)
    finally:
        if bar.live.is_started:
            bar.stop()
    lines = [
        f"{spec.name}: {len(result.ran)} ran, {len(result.skipped)} already done, {len(result.relogged)} re-logged",
        f"results: {result.table_path} and {results_dir / spec.name / 'runs'}/",
    ] + tracking.link_lines(store, [(f"rnngrad/{spec.name}", result.experiment_id, result.parent_run_id)])
    if result.crashed:
        typer.echo("\n".join(lines), err=True)
        crashed = "; ".join(f"{cell}: {error}" for cell, error in result.crashed.items())
        typer.echo(f"Error: {len(result.crashed)} cell(s) crashed ({crashed}); run the sweep again to retry them", err=True)
        raise typer.Exit(1)
    return "\n".join(lines)
