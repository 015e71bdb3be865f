"""`rnngrad sweep`: run a spec's grid, log every cell to MLflow, write results/<spec>.parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from ..run.paths import check_data_dir, check_output_folder, option_label
from ..run.spec import MAX_CELLS, check_max_cells, check_spec_reads


def sweep_cmd(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="Sweep spec, e.g. experiments/weight_norms.yaml.")],
    profile: Annotated[str, typer.Option(help="Which profile of the spec: quick (minutes) or full (hours).")] = "quick",
    jobs: Annotated[int, typer.Option(help="Worker processes; 0 = one per CPU this process may use (its "
                                      "affinity).")] = 0,
    data_dir: Annotated[Path, typer.Option(help="Datasets written by `rnngrad generate`.")] = Path("data"),
    results_dir: Annotated[Path, typer.Option(help="Where run folders and <spec>.parquet go.")] = Path("results"),
    cluster: Annotated[str, typer.Option(
        metavar="ADDRESS",
        help="Run the cells on Dask workers: local:N (N worker processes here) or tcp://HOST:PORT of a running "
             "`dask scheduler` (docs/cluster.md; needs the \\[cluster] extra). Empty: the local process pool of "
             "--jobs workers.")] = "",
    max_cells: Annotated[int, typer.Option(help="Refuse a grid of more cells than this (a typo in an axis can "
                                           "make millions); raise it for a larger sweep.")] = MAX_CELLS,
    data_root: Annotated[list[Path] | None, typer.Option(
        metavar="FOLDER", help="A folder outside the project whose files the spec may read (its cells' text); repeat for several. "
        "Without it a spec reads only files inside the project.")] = None,
    max_memory: Annotated[str, typer.Option(
        metavar="SIZE", help="Refuse the sweep before it starts if a cell would need more memory than this, e.g. 1.5G "
        "or 2Gi (binary units; `rnngrad plan` prints each spec's largest cell). Default: this machine's RAM shared "
        "by the workers (--jobs, or N of --cluster local:N); none for a remote cluster.")] = "",
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the runs to MLflow; --no-track writes only "
                                        "the run folders and <spec>.parquet (no store is opened or made; "
                                        "`rnngrad report` reads them as usual).")] = True,
) -> None:
    """Train every cell of a sweep spec's grid in parallel and log each as a nested MLflow run.

    Writes results/<spec>/runs/<config_hash>/ per cell and results/<spec>.parquet (one row per run). Runs go to
    MLFLOW_TRACKING_URI if set, else to mlflow.db and mlartifacts/ in the project root. A sweep that was killed,
    started again, finishes the missing cells and repeats none that finished. With --cluster, only this process
    talks to MLflow: workers return finished run folders, and --jobs is ignored (every worker thread gets a cell).

    A profile with a `select` block runs in two stages: first the spec <name>_rates (every arm at every candidate
    learning rate, on seeds the grid does not use; its table and runs go inside results/<name>/), then the grid, each
    arm at the rate chosen from those runs.
    """
    from ..run.cost import usable_cpus
    from ..run.spec import load_spec

    check_max_cells(max_cells)
    if jobs < 0:
        raise UserError(f"--jobs: {jobs} is negative; give a number of worker processes >= 1, or 0 for one per core")
    if spec.is_dir():
        raise UserError(f"{spec}: is a folder, not a file; give a sweep spec such as experiments/weight_norms.yaml")
    if not spec.is_file():
        raise UserError(f"{spec}: no such file; give a sweep spec such as experiments/weight_norms.yaml")
    loaded = load_spec(spec, profile, max_cells)  # validates everything before the store is touched
    check_spec_reads(loaded.data, data_root)
    _check_paths_and_data(spec, loaded, data_dir, results_dir)
    workers = jobs or usable_cpus()
    _check_memory(spec, loaded, data_dir, max_memory, workers, cluster.strip())
    if loaded.selection is not None:
        from ..run.rates import stage_results_dir

        stage, stage_dir = loaded.selection_stage(), stage_results_dir(results_dir, loaded.name)
        _check_paths_and_data(spec, stage, data_dir, stage_dir)
        _check_memory(spec, stage, data_dir, max_memory, workers, cluster.strip())
        typer.echo(_run(stage, data_dir, stage_dir, workers, cluster.strip(), track))
        loaded = loaded.at_rates(_chosen_rates(stage, data_dir, stage_dir))
        typer.echo(f"{loaded.name}: learning rates chosen on {stage.name}: {_rates_line(loaded)}")
    typer.echo(_run(loaded, data_dir, results_dir, workers, cluster.strip(), track))


def _chosen_rates(stage, data_dir: Path, results_dir: Path) -> dict[str, float]:
    """rates.choose on the finished runs of a selection stage (their summary.json)."""
    import json

    from ..run.rates import choose
    from ..sweep import plan_cells

    cells = plan_cells(stage, results_dir, data_dir)
    summaries = [json.loads((c.run_dir / "summary.json").read_text(encoding="utf-8"))
                 if (c.run_dir / "summary.json").is_file() else None for c in cells]
    return choose([c.config for c in cells], summaries)


def _rates_line(spec) -> str:
    """Each arm's chosen rate, by the grid values that name the arm ("cell_type=gru,task=adding: 0.003; ...")."""
    from ..run.rates import SET_ASIDE

    seen: dict[str, float] = {}
    for g, cfg in zip(spec.grid, spec.cells):
        seen.setdefault(",".join(f"{k}={v}" for k, v in g.items() if k not in SET_ASIDE) or "base", cfg.lr)
    return "; ".join(f"{arm}: {lr:g}" for arm, lr in seen.items())


def _check_paths_and_data(path: Path, spec, data_dir: Path, results_dir: Path) -> None:
    """The folders, and every cell's data (a text file, a window longer than its text), before the store is opened
    or a cell runs."""
    from ..run.sources import check_data
    from ..sweep import cell_names

    check_data_dir(data_dir)
    # the spec's runs and lock go there
    check_output_folder(results_dir / spec.name / "runs", option_label("--results-dir", results_dir))
    texts: dict = {}  # each text file read once
    for name, cfg in zip(cell_names(spec), spec.cells):
        check_data(cfg, data_dir, lambda key, name=name: f"{path}: cell {name}: {key}", texts)


def _check_memory(path: Path, spec, data_dir: Path, max_memory: str, jobs: int, cluster: str) -> None:
    """Every cell fits the memory of one worker (`run.cost.check_cells_memory`), before the store is opened."""
    from ..run.cost import check_cells_memory, memory_limit
    from ..sweep import cell_names

    workers = jobs if not cluster else (int(cluster[6:]) if cluster.startswith("local:") and cluster[6:].isdigit()
                                        else None)
    named = [(f"{path}: cell {name}", cfg) for name, cfg in zip(cell_names(spec), spec.cells)]
    check_cells_memory(named, data_dir, memory_limit(max_memory, workers))


def _run(spec, data_dir: Path, results_dir: Path, jobs: int, cluster: str = "", track: bool = True) -> str:
    if cluster:
        from ..cluster import check_reachable, connect

        check_reachable(cluster)  # a malformed or dead address is refused before the store is opened
        store = _open_store(track)
        with connect(cluster) as opened:  # refuses a bad address or mismatched workers before any run is created
            return _run_with(spec, data_dir, results_dir, store, opened.slots, opened.executor(data_dir))
    from ..sweep import cells_to_compute, started_workers

    # The workers start first and import the runner's modules while this process opens the store (MLflow's imports
    # and its schema check): they compute and write only run folders, never the store, so the store need not exist
    # before them. No cell starts before its run is created, as without them.
    with started_workers(min(jobs, cells_to_compute(spec, results_dir, data_dir)), (RUNNER_MODULE,)) as workers:
        return _run_with(spec, data_dir, results_dir, _open_store(track), jobs, workers=workers)


RUNNER_MODULE = "pipeline.run.runner"  # what a worker computes a cell with (runner.execute_run, run_sweep's default)


def _open_store(track: bool):
    from .. import tracking

    return tracking.open_store(tracking.default_project_root()) if track else None


def _run_with(spec, data_dir: Path, results_dir: Path, store, jobs: int, executor=None, workers=None) -> str:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import tracking
    from ..sweep import run_sweep

    columns = (TextColumn(f"sweep {spec.name} ({spec.profile})"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = Progress(*columns, transient=False)  # shown once the sweep starts: not above a refusal
    task = bar.add_task("cells", total=len(spec.cells))

    def progress(done: int, total: int, cell: str, status: str) -> None:
        if status == "started":
            bar.start()
            return
        # a cell's name holds its grid values (a corpus path such as notes[draft].txt): shown as is, not as markup
        bar.console.print(f"[{done}/{total}] {cell}: {status}", markup=False, highlight=False)
        bar.update(task, completed=done, total=total)

    try:
        result = run_sweep(spec, data_dir, results_dir, store, jobs, progress, executor=executor, workers=workers)
    finally:
        if bar.live.is_started:
            bar.stop()
    lines = [
        f"{spec.name}: {len(result.ran)} ran"
        + (f" ({len(result.retried)} of them retried after failing)" if result.retried else "")
        + f", {len(result.skipped)} already done, {len(result.relogged)} re-logged",
        f"results: {result.table_path} and {results_dir / spec.name / 'runs'}/",
    ] + (tracking.link_lines(store, [(f"rnngrad/{spec.name}", result.experiment_id, result.parent_run_id)])
         if store is not None else ["not logged to MLflow (--no-track)"])
    if result.crashed:
        typer.echo("\n".join(lines), err=True)
        crashed = "; ".join(f"{cell}: {error}" for cell, error in result.crashed.items())
        typer.echo(f"Error: {len(result.crashed)} cell(s) crashed ({crashed}); run the sweep again to retry them", err=True)
        raise typer.Exit(1)
    return "\n".join(lines)

