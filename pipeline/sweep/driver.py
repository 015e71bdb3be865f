"""`run_sweep`: one spec's sweep from start to end. Holding the spec's lock and its signal handlers, it plans the
cells, presents the experiment, ends what a killed sweep left running, opens the parent run, resumes (skips what is
done, logs what is only on disk, marks what failed for computing again), computes the rest, then writes the results
table and presents and closes the parent; on any error the parent ends FAILED (KILLED on a stop).

Without a store (`rnngrad sweep --no-track`) the same sweep writes run folders and the results table only: no
experiment, parent or child run; a cell is done when its folder holds a result, and its results row keeps the run id
the spec's previous table gave it (a tracked sweep's) or gets `<config_hash>-untracked`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..tracking import runs, server
from ..tracking.connection import Store
from ..tracking.values import untracked_run_id
from .compute import _run_cells
from .order import longest_first
from .plan import Cell, SweepResult, plan_cells, spec_hash
from .present import (_close_parent, _end_runs, _log_and_finish, _open_parent, _present_experiment,
                      _present_parent, _start_child, dataset_refs)
from .results import (FAILED, _one_sweep_per_spec, _remove_runner_temp_folders, earlier_run_ids, folder_outcome,
                      write_results_table)
from .stop import _StopRequest, _stop_on_signals


# progress(done, total, cell_name, status): status is "skipped", "relogged", an outcome, or "crashed"; first, once
# the sweep holds its spec's lock, (0, total, "", "started"); a warning about a cell, which does not end it, is
# "warning: <one line>" with `done` unchanged
Progress = Callable[[int, int, str, str], None]


def run_sweep(spec, data_dir: Path, results_dir: Path, store: Store | None, jobs: int | None = None,
              progress: Progress | None = None, execute: Callable | None = None,
              executor: Callable[[int], Any] | None = None, workers=None) -> SweepResult:
    """Run every missing cell of `spec` (a run.spec.Spec) and write `results/<spec>.parquet`.

    `execute(cfg, data_dir, run_dir)` computes one run folder (default `runner.execute_run`); it must be a
    module-level function, since it is sent to worker processes. `executor(jobs)` makes the pool the cells run in
    (`submit` returning a concurrent.futures.Future, `shutdown(wait, cancel_futures)`), e.g. a Dask cluster's
    (`cluster.Cluster.executor`); by default a local process pool of `jobs` workers: `workers`, one already started
    (`pool.started_workers`, sized by `cells_to_compute`), else one made when the first cell is computed. `store`
    None: no MLflow (the result's experiment and parent run ids are None).
    """
    if execute is None:
        from ..run.runner import execute_run as execute
    results_dir, cells = Path(results_dir), plan_cells(spec, results_dir, data_dir)
    with _one_sweep_per_spec(results_dir / spec.name), _stop_on_signals() as stop:
        exp_id, parent, inputs = None, None, {}
        if store is not None:
            exp_id = runs.ensure_experiment(store, f"rnngrad/{spec.name}")
            _present_experiment(store, exp_id, spec)
            inputs = dataset_refs(cells, Path(data_dir))
            runs.end_stale_runs(store, exp_id)
        _remove_runner_temp_folders(results_dir / spec.name / "runs")
        if store is not None:
            parent = _open_parent(store, exp_id, spec, spec_hash(cells), _has_work(store, exp_id, cells))
        result = SweepResult(exp_id, parent, results_dir / f"{spec.name}.parquet")
        tick = _ticker(len(cells), progress)
        if progress is not None:
            progress(0, len(cells), "", "started")
        try:
            run_ids, redo = _resume(store, exp_id, parent, spec, cells, result, tick, stop, inputs)
            todo = longest_first([replace(c, redo=c.config_hash in redo) for c in cells if c.config_hash not in run_ids],
                                 Path(data_dir))
            run_ids |= _run_cells(store, exp_id, parent, spec, todo, data_dir, jobs, execute, result, tick, stop,
                                  inputs, executor, workers)
            stop.check()  # the last point to stop at: from here the sweep only writes its table and finishes
            table = write_results_table(spec, cells, run_ids, results_dir, result.table_path)
            if store is not None:
                _present_parent(store, parent, cells, table, inputs)
                _close_parent(store, spec, parent, result, table)
        except BaseException as e:
            if store is None:
                raise
            with server.hurry():  # seconds, even when the tracking server is gone
                _end_runs(store, [parent], "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            raise
    return result


def cells_to_compute(spec, results_dir: Path, data_dir: Path) -> int:
    """How many of the spec's cells the sweep will compute, from the results folder alone: those without a folder
    and those whose folder holds no result (`failed` or unreadable), as `_resume` finds them. (A folder that holds
    a result is only logged, if at all: which cells a sweep computes does not depend on the store.)"""
    return sum(_needs_computing(c) for c in plan_cells(spec, results_dir, data_dir))


def _needs_computing(cell: Cell) -> bool:
    return not cell.run_dir.is_dir() or folder_outcome(cell.run_dir) in (None, FAILED)


def _has_work(store, exp_id: str, cells: list[Cell]) -> bool:
    """Whether a cell must be computed or logged: its folder is missing, has no FINISHED run, or is no result
    (`failed` or unreadable: computed again)."""
    finished = runs.finished_runs(store, exp_id)
    done = [c.run_dir.is_dir() and c.config_hash in finished and folder_outcome(c.run_dir) not in (None, FAILED)
            for c in cells]
    return not all(done)


def _resume(store, exp_id, parent, spec, cells, result: SweepResult, tick, stop: _StopRequest,
            inputs: dict) -> tuple[dict[str, str], set[str]]:
    """({config_hash: run_id} of cells already done: skipped if logged, logged now if only the folder exists;
    the config_hashes to compute again). A folder whose outcome is `failed` (an exception inside the run) is not a
    result: its cell is computed again, as is one whose summary.json does not parse (with a one-line warning). A
    `diverged` or `unstable` folder is a result and stays."""
    finished = runs.finished_runs(store, exp_id) if store is not None else earlier_run_ids(result.table_path)
    run_ids, redo = {}, set()
    for cell in cells:
        stop.check()
        if not cell.run_dir.is_dir():
            continue
        outcome = folder_outcome(cell.run_dir)
        if outcome is None:
            tick.note(cell.name, f"{cell.run_dir / 'summary.json'} is missing or does not parse; computing the "
                                 "cell again")
        if outcome in (None, FAILED):
            redo.add(cell.config_hash)
            result.retried.append(cell.name)
            continue
        if cell.config_hash in finished or store is None:  # untracked: its folder is its whole record
            run_ids[cell.config_hash] = finished.get(cell.config_hash) or untracked_run_id(cell.config_hash)
            result.skipped.append(cell.name)
            tick(cell.name, "skipped")
            continue
        run_id = _start_child(store, exp_id, parent, spec, cell, inputs)
        _log_and_finish(store, run_id, cell, result)
        run_ids[cell.config_hash] = run_id
        result.relogged.append(cell.name)
        tick(cell.name, "relogged")
    return run_ids, redo


class _Ticker:
    """Counts cells as they end and reports them to `progress`; `note` reports a warning about a cell without
    counting it."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.progress, self.done = total, progress, 0

    def __call__(self, name: str, status: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, name, status)

    def note(self, name: str, warning: str) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total, name, f"warning: {warning}")


def _ticker(total: int, progress: Progress | None) -> _Ticker:
    return _Ticker(total, progress)
