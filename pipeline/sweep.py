"""Run a sweep spec's grid: one MLflow parent run, one nested child run per cell, cells in worker processes.

Only this (parent) process talks to MLflow; workers only compute run folders (`runner.execute_run`). A child run
is created RUNNING when its cell is submitted and ended FINISHED once its folder is logged (an outcome such as
`diverged` or `failed` is a tag, not a status); a worker that crashes ends it FAILED.

Resume: a cell whose config_hash has a FINISHED run in the experiment and whose folder
`results/<spec>/runs/<hash>/` exists is skipped; a folder without a FINISHED run (killed between computing and
logging) is logged again without recomputing. A folder whose outcome is `failed` (an exception stopped the run:
no result) or whose summary.json does not parse is computed again ("retried"); a `diverged` or `unstable` one is a
result and stays. Runs left RUNNING by a killed sweep end KILLED at the start (and
the temp folders of its killed workers are removed), and SIGINT/SIGTERM end the in-flight ones KILLED. So a killed
sweep, started again, finishes what is missing and repeats nothing that finished. One sweep of a spec at a time
(per results folder): a second is refused while the first holds `results/<spec>/.lock`.

The results table `results/<spec>.parquet` has one row per cell with a finished run: `spec, cell, run_id,
config_hash, outcome, run_dir` (relative to the results dir, e.g. `weight_norms/runs/<hash>`), `description` (the
spec's, for the report) + config.json flattened + summary.json's numbers and regime labels.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import queue
import re
import shutil
import signal
import socket
import stat
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from . import tracking
from .run.files import atomic_file
from .run.sources import run_hash
from .run.verdicts import OUTCOMES
from .errors import UserError

# progress(done, total, cell_name, status): status is "skipped", "relogged", an outcome, or "crashed"; first, once
# the sweep holds its spec's lock, (0, total, "", "started"); a warning about a cell, which does not end it, is
# "warning: <one line>" with `done` unchanged
Progress = Callable[[int, int, str, str], None]
SUMMARY_LABELS = ("outcome", "predicted_regime", "observed_regime")
# runner.execute_run's temp folders (.<config_hash>.<8 hex digits>.tmp) and files.move_into_place's (mkdtemp, .old)
RUNNER_TEMP_FOLDER = re.compile(r"\.[0-9a-f]{12}\.[a-z0-9_]{8}\.(tmp|old)")
# Workers compute at a lower priority than the parent, which logs to MLflow while they run: with as many workers
# as cores the parent would otherwise wait for CPU, and finished runs would queue up unlogged. (`rnngrad bench
# --only scaling` reports the parent's logging time per run.)
WORKER_NICENESS = 5
# What a sweep writes in its lock file, and so the only content it will overwrite there
LOCK_NOTE = re.compile(r"pid [0-9]+ on [^\n]{0,255}\n?")
LOCK_NOTE_BYTES = 300
DEATH_WAIT_SECONDS = 10  # how long a broken pool's worker is given to report its exit code
MAX_POOL_BREAKS = 2  # a cell caught in this many broken pools without being seen to cause one ends FAILED
POLL_SECONDS = 0.2  # how long a stop request can wait for the sweep to notice it
# Returned cells logged at once to a tracking server: logging one is ~16 HTTP requests, most of it waiting on the
# server, so one thread caps the driver at a few cells per second whatever the number of workers (`rnngrad bench
# --only cluster`). The embedded sqlite store takes one writer at a time: one logging thread there.
SERVER_LOG_THREADS = 8
LOG_DRAIN_SECONDS = 3.0  # how long a stopping sweep waits for a cell being logged to a server
FAILED = "failed"  # the outcome of a run an exception stopped: no result, so the next sweep computes it again


@dataclass(frozen=True)
class Cell:
    name: str  # the grid values that set this cell apart, e.g. "gamma_w=2.0,seed=0"
    config: Any  # the resolved RunConfig
    config_hash: str
    run_dir: Path  # results/<spec>/runs/<config_hash>
    redo: bool = False  # compute it even though its folder exists (a `failed` or unreadable one, replaced)
    label: str = ""  # the MLflow run name: the values of the axes that vary, short (e.g. "γW=3 s1")


@dataclass
class SweepResult:
    experiment_id: str
    parent_run_id: str
    table_path: Path
    ran: list[str] = field(default_factory=list)  # cells computed now
    skipped: list[str] = field(default_factory=list)  # finished before: folder + FINISHED run
    relogged: list[str] = field(default_factory=list)  # folder existed, logged again without recomputing
    retried: list[str] = field(default_factory=list)  # computed again: its folder said `failed` or was unreadable
    crashed: dict[str, str] = field(default_factory=dict)  # cell -> error
    logging_seconds: float = 0.0  # time this process spent logging run folders to MLflow, summed over its threads
    logging_by_cell: dict[str, float] = field(default_factory=dict)  # cell -> MLflow seconds: create + log + end

    @property
    def outcome_counts(self) -> dict[str, int]:
        return {"cells_ran": len(self.ran), "cells_skipped": len(self.skipped),
                "cells_relogged": len(self.relogged), "cells_retried": len(self.retried),
                "cells_crashed": len(self.crashed)}


def cell_names(spec) -> list[str]:
    """Name each cell by its grid values, e.g. "gamma_w=2.0,seed=0" ("base" for a grid of one)."""
    grid = getattr(spec, "grid", None) or [{} for _ in spec.cells]
    return [",".join(f"{k}={v}" for k, v in g.items()) or "base" for g in grid]


def plan_cells(spec, results_dir: Path, data_dir: Path = Path("data")) -> list[Cell]:
    """The spec's cells in grid order, each named by its run hash: its config and the content digest of every
    input it reads (load_spec has rejected duplicate configs; two corpus paths with one content are refused)."""
    runs, names, cache = Path(results_dir) / spec.name / "runs", cell_names(spec), {}
    hashes = [run_hash(cfg, Path(data_dir), cache) for cfg in spec.cells]
    for i, h in enumerate(hashes):
        if h in hashes[:i]:
            raise UserError(f"{getattr(spec, 'path', spec.name)}: cells {names[hashes.index(h)]} and {names[i]} are "
                            "the same run (their corpora have the same content); remove one")
    labels = tracking.short_run_names(getattr(spec, "grid", None) or [{} for _ in spec.cells])
    return [Cell(n, cfg, h, runs / h, label=label) for n, cfg, h, label in zip(names, spec.cells, hashes, labels)]


def spec_hash(cells: list[Cell]) -> str:
    """Identifies a sweep by the set of configs it runs (not by its description or key order)."""
    return hashlib.sha256("\n".join(sorted(c.config_hash for c in cells)).encode()).hexdigest()[:12]


def run_sweep(spec, data_dir: Path, results_dir: Path, store: tracking.Store, jobs: int | None = None,
              progress: Progress | None = None, execute: Callable | None = None,
              executor: Callable[[int], Any] | None = None) -> SweepResult:
    """Run every missing cell of `spec` (a run.spec.Spec) and write `results/<spec>.parquet`.

    `execute(cfg, data_dir, run_dir)` computes one run folder (default `runner.execute_run`); it must be a
    module-level function, since it is sent to worker processes. `executor(jobs)` makes the pool the cells run in
    (`submit` returning a concurrent.futures.Future, `shutdown(wait, cancel_futures)`), e.g. a Dask cluster's
    (`cluster.Cluster.executor`); by default a local process pool of `jobs` workers.
    """
    if execute is None:
        from .run.runner import execute_run as execute
    results_dir, cells = Path(results_dir), plan_cells(spec, results_dir, data_dir)
    with _one_sweep_per_spec(results_dir / spec.name), _stop_on_signals() as stop:
        exp_id = tracking.ensure_experiment(store, f"rnngrad/{spec.name}")
        _present_experiment(store, exp_id, spec)
        inputs = dataset_refs(cells, Path(data_dir))
        tracking.end_stale_runs(store, exp_id)
        _remove_runner_temp_folders(results_dir / spec.name / "runs")
        parent = _open_parent(store, exp_id, spec, spec_hash(cells), _has_work(store, exp_id, cells))
        result = SweepResult(exp_id, parent, results_dir / f"{spec.name}.parquet")
        tick = _ticker(len(cells), progress)
        if progress is not None:
            progress(0, len(cells), "", "started")
        try:
            run_ids, redo = _resume(store, exp_id, parent, spec, cells, result, tick, stop, inputs)
            todo = [replace(c, redo=c.config_hash in redo) for c in cells if c.config_hash not in run_ids]
            run_ids |= _run_cells(store, exp_id, parent, spec, todo, data_dir, jobs, execute, result, tick, stop,
                                  inputs, executor)
            stop.check()  # the last point to stop at: from here the sweep only writes its table and finishes
            table = write_results_table(spec, cells, run_ids, results_dir, result.table_path)
            _present_parent(store, parent, cells, table, inputs)
            _close_parent(store, spec, parent, result, table)
        except BaseException as e:
            with tracking.hurry():  # seconds, even when the tracking server is gone
                _end_runs(store, [parent], "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            raise
    return result


@contextmanager
def _one_sweep_per_spec(spec_dir: Path):
    """Hold an exclusive lock on <results>/<spec>/.lock while the sweep runs. A second sweep of the same spec
    would end the first one's in-flight runs KILLED and delete its temp folders, so it is refused instead. The
    kernel drops the lock when the holder exits, however it exits (SIGKILL included): no stale lock to clear.
    The lock file is never a symbolic link followed (the sweep would write its pid into whatever file the link
    names) nor a file some other program wrote: both are refused."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one sweep of a spec at a time is then up to the user
        yield
        return
    lock = spec_dir / ".lock"
    try:
        spec_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:  # not a folder, read-only, no permission, a symbolic link: no results can go here
        if lock.is_symlink():
            raise UserError(f"{lock}: is a symbolic link, which the sweep will not write through; remove it "
                            "(the sweep makes its own lock file)") from None
        raise UserError(f"{spec_dir}: cannot write the sweep's results there ({e.strerror}); give a writable "
                        "--results-dir") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{lock}: is not a regular file; remove it (the sweep makes its own lock file)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _short_text(os.read(fd, 200).decode(errors="replace").strip()) or "another process"
            raise UserError(f"{spec_dir}: another `rnngrad sweep` of this spec is running ({holder}); wait for it "
                            "to finish or stop it, then run this again") from None
        held = os.read(fd, LOCK_NOTE_BYTES + 1).decode(errors="replace")
        if held and not LOCK_NOTE.fullmatch(held):
            raise UserError(f"{lock}: a file the sweep did not write ({_short_text(held)}); move it aside "
                            "(the sweep makes its own lock file)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _short_text(text: str, limit: int = 60) -> str:
    """`text` on one line, cut to `limit` characters for a message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def _remove_runner_temp_folders(runs_dir: Path) -> None:
    """Remove the temp folders that killed workers left in a spec's runs folder (the runner removes its own
    otherwise). Only names the runner makes: anything else in the folder is not ours to delete."""
    if not runs_dir.is_dir():
        return
    for path in runs_dir.iterdir():
        if RUNNER_TEMP_FOLDER.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def _has_work(store, exp_id: str, cells: list[Cell]) -> bool:
    """Whether a cell must be computed or logged: its folder is missing, has no FINISHED run, or is no result
    (`failed` or unreadable: computed again)."""
    finished = tracking.finished_runs(store, exp_id)
    done = [c.run_dir.is_dir() and c.config_hash in finished and folder_outcome(c.run_dir) not in (None, FAILED)
            for c in cells]
    return not all(done)


def _open_parent(store, exp_id: str, spec, shash: str, work: bool = True) -> str:
    """The unfinished parent run of this same sweep (spec, profile, configs) reopened; with no work, the finished
    one (so repeating a done sweep adds no empty parent); else a new one."""
    same = f"tags.spec_hash = '{shash}' and tags.profile = '{spec.profile}' and tags.spec = '{spec.name}'"
    previous = tracking.find_runs(store, exp_id, same)
    unfinished = [r for r in previous if r.status != "FINISHED"]
    if unfinished:
        tracking.reopen_run(store, unfinished[0].run_id)
        return unfinished[0].run_id
    if previous and not work:
        tracking.reopen_run(store, previous[0].run_id)  # closed again with the same table: one parent per sweep
        return previous[0].run_id
    tags = {"spec": spec.name, "profile": spec.profile, "spec_hash": shash} | _source(spec)
    if getattr(spec, "description", ""):
        tags["mlflow.note.content"] = spec.description  # shown as the run's description in the UI
    return tracking.start_run(store, exp_id, f"{spec.name} ({spec.profile})", tags=tags)


def _close_parent(store, spec, parent: str, result: SweepResult, table) -> None:
    outcomes = table["outcome"].value_counts() if len(table) else {}
    runs = {f"runs_{o}": int(outcomes.get(o, 0)) for o in OUTCOMES}
    tracking.log_values(store, parent, metrics=result.outcome_counts | runs)
    tracking.log_artifact(store, parent, result.table_path)
    if getattr(spec, "path", None):
        tracking.log_artifact(store, parent, spec.path)
    tracking.end_run(store, parent, "FAILED" if result.crashed else "FINISHED")


def _child_tags(spec, cell: Cell) -> dict:
    return {"config_hash": cell.config_hash, "spec": spec.name, "profile": spec.profile, "cell": cell.name} | \
        _source(spec)


def _source(spec) -> dict:
    """The user, the command and the git commit, for the runs table's User and Source columns."""
    path = getattr(spec, "path", None)
    return tracking.source_tags(f"rnngrad sweep {path.as_posix() if path else spec.name}")


def _start_child(store, exp_id: str, parent: str, spec, cell: Cell, inputs: dict) -> str:
    """Create a cell's RUNNING child run, named by its varying grid values, with its datasets as inputs."""
    run_id = tracking.start_run(store, exp_id, cell.label or cell.name, parent, _child_tags(spec, cell))
    tracking.log_datasets(store, run_id, inputs.get(cell.config_hash, []))
    return run_id


def _resume(store, exp_id, parent, spec, cells, result: SweepResult, tick, stop: _StopRequest,
            inputs: dict) -> tuple[dict[str, str], set[str]]:
    """({config_hash: run_id} of cells already done: skipped if logged, logged now if only the folder exists;
    the config_hashes to compute again). A folder whose outcome is `failed` (an exception inside the run) is not a
    result: its cell is computed again, as is one whose summary.json does not parse (with a one-line warning). A
    `diverged` or `unstable` folder is a result and stays."""
    finished, run_ids, redo = tracking.finished_runs(store, exp_id), {}, set()
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
        if cell.config_hash in finished:
            run_ids[cell.config_hash] = finished[cell.config_hash]
            result.skipped.append(cell.name)
            tick(cell.name, "skipped")
            continue
        run_id = _start_child(store, exp_id, parent, spec, cell, inputs)
        _log_and_finish(store, run_id, cell, result)
        run_ids[cell.config_hash] = run_id
        result.relogged.append(cell.name)
        tick(cell.name, "relogged")
    return run_ids, redo


def folder_outcome(run_dir: Path) -> str | None:
    """The `outcome` in a run folder's summary.json, or None when the file is missing, does not parse, or has no
    outcome (a disk that filled up, a hand edit): such a folder is no result."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    outcome = summary.get("outcome") if isinstance(summary, dict) else None
    return outcome if outcome in OUTCOMES else None


_RESULT_LOCK = threading.Lock()  # SweepResult's sums, added to from the logging threads


def _log_and_finish(store, run_id: str, cell: Cell, result: SweepResult) -> str:
    start = time.perf_counter()
    tracking.log_folder_and_end(store, run_id, cell.run_dir)
    seconds = time.perf_counter() - start
    with _RESULT_LOCK:
        result.logging_seconds += seconds
        result.logging_by_cell[cell.name] = result.logging_by_cell.get(cell.name, 0.0) + seconds
    return json.loads((cell.run_dir / "summary.json").read_text()).get("outcome", "ok")


def _run_cells(store, exp_id, parent, spec, todo: list[Cell], data_dir, jobs, execute,
               result: SweepResult, tick, stop: _StopRequest, inputs: dict, executor=None) -> dict[str, str]:
    """Compute `todo` in worker processes (or in the pool `executor(jobs)` makes, a Dask cluster's), at most `jobs`
    at a time; log each as it returns, in a small thread pool (SERVER_LOG_THREADS). The wait for them wakes every
    POLL_SECONDS to see whether a signal asked the sweep to stop.

    A worker that dies (the out-of-memory killer, a SIGKILL, a crash in native code) breaks the whole process
    pool, and the pool stops its other workers. Only the cell of the worker that died ends FAILED, with the
    reason; the pool is replaced, and the other cells it was running are started again in the new one (at most
    MAX_POOL_BREAKS times each, in case the dead worker cannot be told apart). (A cluster reschedules a dead
    worker's cell itself, up to its allowed failures, and never breaks.)"""
    if not todo:
        return {}
    jobs = min(jobs or os.cpu_count() or 1, len(todo))

    def new_pool():
        return _ExecutorPool(executor(jobs)) if executor is not None else _CellPool(jobs)

    pool = new_pool()
    pending: deque[tuple[Cell, str | None]] = deque((cell, None) for cell in todo)  # (cell, its run if created)
    inflight: dict[Future, tuple[Cell, str]] = {}
    breaks: dict[str, int] = {}  # config_hash -> pool breaks the cell was caught in
    run_ids: dict[str, str] = {}
    logger = _LogThreads(1 if store.is_embedded else SERVER_LOG_THREADS)
    logging: dict[Future, tuple[Cell, str]] = {}  # a returned cell's logging -> (cell, run_id)

    def submit_next() -> None:
        while pending:
            stop.check()
            cell, run_id = pending.popleft()
            if run_id is None:
                start = time.perf_counter()
                run_id = _start_child(store, exp_id, parent, spec, cell, inputs)
                result.logging_by_cell[cell.name] = time.perf_counter() - start
            try:
                inflight[pool.submit(execute, cell, Path(data_dir))] = (cell, run_id)
                return
            except BrokenProcessPool:  # broken since the last wait: its futures say why; this cell goes first
                pending.appendleft((cell, run_id))
                return

    def after_break() -> None:
        """The pool broke: settle every cell it held, then start a new pool."""
        nonlocal pool
        wait(list(inflight), timeout=30)  # the executor fails all its futures at once; this only waits for that
        for future in [f for f in inflight if f.done()]:
            cell, run_id = inflight.pop(future)
            death = None
            if isinstance(future.exception(), BrokenProcessPool):
                death = pool.death_of(cell)
                breaks[cell.config_hash] = breaks.get(cell.config_hash, 0) + 1
                if death is None and breaks[cell.config_hash] < MAX_POOL_BREAKS:
                    pending.appendleft((cell, run_id))  # stopped with the pool, not its cause: computed again
                    continue
                death = death or f"its worker process was stopped with {MAX_POOL_BREAKS} broken process pools"
            status = _finish_cell(store, run_id, cell, future, result, death)
            run_ids.update({cell.config_hash: run_id} if status != "crashed" else {})
            tick(cell.name, status)
        pool.stop()
        pool = new_pool()

    try:
        for _ in range(jobs):
            submit_next()
        while inflight or pending or logging:
            stop.check()
            if pool.broken:
                after_break()
                for _ in range(jobs - len(inflight)):
                    submit_next()
                continue
            for future in wait([*inflight, *logging], timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)[0]:
                stop.check()
                if future in inflight:
                    if isinstance(future.exception(), BrokenProcessPool):
                        break  # the pool is broken: after_break settles its cells
                    if isinstance(future.exception(), UserError):
                        raise future.exception()  # an input changed under the sweep: stop, as for bad input
                    cell, run_id = inflight.pop(future)
                    submit_next()  # first, so that a worker computes while this process logs
                    logging[logger.submit(_finish_cell, store, run_id, cell, future, result)] = (cell, run_id)
                    continue
                cell, run_id = logging.pop(future)
                status = future.result()
                run_ids.update({cell.config_hash: run_id} if status != "crashed" else {})
                tick(cell.name, status)
            if not inflight and pending and not pool.broken:
                submit_next()
    except BaseException:
        pool.stop()
        # a folder being logged to sqlite is logged and ended (a call holds the store's lock for milliseconds);
        # one being logged to a server is given LOG_DRAIN_SECONDS, since a hung server holds it for minutes
        logger.stop(None if store.is_embedded else LOG_DRAIN_SECONDS)
        unlogged = [r for f, (_, r) in logging.items() if not f.done() or f.cancelled()]
        with tracking.hurry():  # seconds, even when the tracking server is gone
            _end_runs(store, [r for _, r in [*inflight.values(), *pending] if r is not None] + unlogged, "KILLED")
        raise
    pool.shutdown()
    logger.stop(None)
    return run_ids


def _end_runs(store, run_ids: list[str], status: str) -> None:
    """End runs as the sweep stops; a tracking server that stopped answering leaves them RUNNING (the next sweep
    ends them KILLED), and the error that stopped the sweep is the one reported."""
    for run_id in run_ids:
        try:
            tracking.end_run(store, run_id, status)
        except tracking.ServerUnreachable:
            return


def _exit_code(process, seconds: float) -> int | None:
    """The exit code of a worker of a broken pool, once it has one (None: still alive after `seconds`).

    The executor's own thread joins the same processes as it shuts the broken pool down. Of two threads waiting
    for one child, the one that loses the race gets ECHILD, and multiprocessing then reports the exit code as None
    until the winner has stored it: so exitcode is read again until it appears, not once after a join."""
    deadline = time.monotonic() + seconds
    process.join(timeout=seconds)
    while (code := process.exitcode) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return code


class _CellPool:
    """A ProcessPoolExecutor of `jobs` workers that also learns which worker process computes which cell (each
    worker reports (config_hash, pid) as it starts one), so that when the pool breaks the sweep can tell the cell
    whose worker died from those the pool stopped with it (their workers end by the executor's SIGTERM)."""

    def __init__(self, jobs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.started = context.SimpleQueue()  # written by a worker in one small write, read only here
        self.executor = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                            initargs=(os.getpid(), self.started))
        self.processes: dict[int, Any] = {}  # pid -> multiprocessing.Process, every worker this pool started
        self.worker_of: dict[str, int] = {}  # config_hash -> pid of the worker that started it

    def submit(self, execute: Callable, cell: Cell, data_dir: Path) -> Future:
        future = self.executor.submit(compute_cell, execute, cell.config, data_dir, cell.run_dir, cell.redo,
                                      cell.config_hash)
        self.processes.update(getattr(self.executor, "_processes", None) or {})
        return future

    @property
    def broken(self) -> bool:
        return bool(getattr(self.executor, "_broken", False))

    def death_of(self, cell: Cell) -> str | None:
        """Why the worker computing `cell` died, or None when it did not die on its own (stopped with the pool,
        or never started the cell, or unknown)."""
        while not self.started.empty():
            config_hash, pid = self.started.get()
            self.worker_of[config_hash] = pid
        process = self.processes.get(self.worker_of.get(cell.config_hash, -1))
        if process is None:
            return None
        code = _exit_code(process, DEATH_WAIT_SECONDS)
        if code is None or code == -signal.SIGTERM:  # alive, or stopped by the executor once another died
            return None
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = " (the out-of-memory killer sends it, as does kill -9)" if -code == signal.SIGKILL else ""
            return f"its worker process was killed by {name}{hint}"
        return f"its worker process exited with code {code} while computing it"

    def stop(self) -> None:
        _stop_workers(self.executor)
        self.started.close()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)
        self.started.close()


class _LogThreads:
    """The threads that log returned cells (SERVER_LOG_THREADS). Daemon threads, unlike a ThreadPoolExecutor's: a
    sweep stopped while one of them waits on a hung tracking server exits at once instead of waiting out the call
    at interpreter exit; its run is ended KILLED, and the next sweep logs the folder again."""

    def __init__(self, threads: int) -> None:
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"rnngrad-log-{i}", daemon=True)
                         for i in range(threads)]
        self._futures: list[Future] = []
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        self._futures.append(future)
        self._tasks.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # handed to the sweep's main thread, which re-raises it
                future.set_exception(e)

    def stop(self, timeout: float | None) -> None:
        """Cancel what has not started, then wait for what has (at most `timeout` seconds; None: until done)."""
        for future in self._futures:
            future.cancel()
        for _ in self._threads:
            self._tasks.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


class _ExecutorPool:
    """The pool of run_sweep's `executor` (a Dask cluster's, pipeline/cluster.py) behind _CellPool's interface. The
    cluster reschedules a dead worker's cell itself, so this pool never breaks."""

    broken = False

    def __init__(self, executor) -> None:
        self.executor = executor

    def submit(self, execute: Callable, cell: Cell, data_dir: Path) -> Future:
        # a worker computes in a fresh folder of its own, from the data shipped at the sweep's start
        return self.executor.submit(compute_cell, execute, cell.config, data_dir, cell.run_dir)

    def death_of(self, cell: Cell) -> str | None:
        return None

    def stop(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)


def _finish_cell(store, run_id: str, cell: Cell, future: Future, result: SweepResult,
                 death: str | None = None) -> str:
    """Log a returned cell; a worker exception (or a dead worker: `death` says why it died) ends the run FAILED."""
    error = future.exception()
    if error is None and cell.run_dir.is_dir():
        result.ran.append(cell.name)
        return _log_and_finish(store, run_id, cell, result)
    if death is not None:
        message = f"{death}; the sweep went on with the other cells"
    else:
        message = f"{type(error).__name__}: {error}" if error else f"no run folder at {cell.run_dir}"
    _record_crash(store, run_id, cell, message, result)
    return "crashed"


def _record_crash(store, run_id: str, cell: Cell, message: str, result: SweepResult) -> None:
    tracking.log_values(store, run_id, tags={"outcome": "failed", "error": message})
    tracking.end_run(store, run_id, "FAILED")
    result.crashed[cell.name] = message


def compute_cell(execute: Callable, cfg, data_dir: Path, run_dir: Path, redo: bool = False,
                 config_hash: str = "") -> str:
    """Worker side: build the run folder unless it already exists (`redo`: replace it); returns its path. First
    it tells the parent which cell this worker process computes (`_CellPool.death_of`), and checks that the inputs
    still are those the sweep planned the cell on (`config_hash`, the folder's name)."""
    if _STARTED is not None:
        _STARTED.put((config_hash, os.getpid()))
    if redo or not run_dir.is_dir():
        if config_hash:
            _check_inputs_unchanged(cfg, data_dir, config_hash)
        execute(cfg, data_dir, run_dir)
    return str(run_dir)


def _check_inputs_unchanged(cfg, data_dir: Path, planned: str) -> None:
    """UserError when a corpus or dataset the cell reads changed after the sweep planned it: its result would be
    filed under the hash of content it never read."""
    now = run_hash(cfg, Path(data_dir))
    if now != planned:
        what = f"text {cfg.text}" if cfg.task == "text" else f"the {cfg.task} validation set in {data_dir}"
        raise UserError(f"{what}: its content changed while the sweep ran (planned as run {planned}, now {now}); "
                        "leave the study's inputs alone during a sweep and run it again")


_STARTED = None  # in a worker: the pool's queue of (config_hash, pid) of the cells started


def _worker_init(parent_pid: int, started=None) -> None:
    """Workers leave Ctrl-C to the parent (which ends the runs KILLED and stops them), exit when the parent is gone
    (SIGKILL), so that no orphan keeps computing beside a restarted sweep, and yield the CPU to the parent
    (WORKER_NICENESS). (Each run uses one BLAS thread, runner.BLAS_THREADS, so workers do not fight over cores.)"""
    global _STARTED
    _STARTED = started
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop at once: shutdown(wait=True) would wait for the running cells. (Python 3.14 has
    pool.terminate_workers(); before it, the processes are only reachable through `_processes`.) A worker still
    alive after SIGTERM is killed, so that the executor's own cleanup at exit, which joins them, cannot block."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


class _StopRequest:
    """SIGINT or SIGTERM received while the sweep runs: the handler only records it, and the sweep raises
    KeyboardInterrupt at its next `check()` (a second signal raises at once, wherever the sweep is).

    Raised by the handler itself, it came out of whatever the main thread was doing: inside an MLflow/SQLAlchemy
    call it left sqlite's lock held, so each cleanup write (ending runs KILLED) waited out MLflow's 20 s busy
    timeout; inside a weakref callback it was ignored; inside concurrent.futures.wait it can leave a future's lock
    held, which the executor's thread, joined at exit, needs."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame) -> None:
        # asked twice: the sweep is stuck in a long call, so stop right here; waiting on a tracking server (up to
        # tracking.SERVER_PATIENCE_SECONDS): stop it now, it holds no lock the cleanup needs
        if self.signum is not None or tracking.in_server_call():
            self.signum = signum
            raise KeyboardInterrupt(f"signal {signum}")
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"signal {self.signum}")


@contextmanager
def _stop_on_signals():
    """SIGTERM behaves like Ctrl-C while the sweep runs: both stop it at a safe point with KeyboardInterrupt, so
    in-flight runs end KILLED. (Only the main thread can set signal handlers; elsewhere `check()` never raises.)"""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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


def write_results_table(spec, cells: list[Cell], run_ids: dict[str, str], results_dir: Path, path: Path):
    """One row per cell with a finished run, written to a temp file and renamed into place; returns the table."""
    import pandas as pd

    rows = [_result_row(spec, c, run_ids[c.config_hash], results_dir) for c in cells if c.config_hash in run_ids]
    table = pd.DataFrame(rows)
    with atomic_file(path) as f:  # a new temp file (never one that is there, nor a link's target), renamed
        table.to_parquet(f, index=False)
    return table


def _result_row(spec, cell: Cell, run_id: str, results_dir: Path) -> dict:
    config = json.loads((cell.run_dir / "config.json").read_text())
    summary = json.loads((cell.run_dir / "summary.json").read_text())
    row = {"spec": spec.name, "cell": cell.name, "run_id": run_id, "config_hash": cell.config_hash,
           "outcome": summary.get("outcome"), "run_dir": cell.run_dir.relative_to(results_dir).as_posix(),
           "description": getattr(spec, "description", "")}  # the report's section opens with it
    row |= {k: v for k, v in tracking.flatten_json(config).items() if k not in row}
    for k, v in summary.items():  # numbers (None where a number is missing) and the regime labels
        if (v is None or isinstance(v, (int, float)) or k in SUMMARY_LABELS) and k not in row:
            row[k] = v
    return row


# ---- what the MLflow UI shows of a sweep ------------------------------------------------------------------------

def _present_experiment(store, exp_id: str, spec) -> None:
    """The experiment's description (the spec's) and its runs-table view; MLflow's empty Default experiment out of
    the list."""
    tracking.describe_experiment(store, exp_id, getattr(spec, "description", ""))
    tracking.hide_empty_default_experiment(store)


def dataset_refs(cells: list[Cell], data_dir: Path) -> dict[str, list[tracking.DatasetRef]]:
    """{config_hash: the datasets the cell reads}, with the digests `rnngrad generate` wrote in data/manifest.json:
    a synthetic cell's held-out validation set (its training sequences are drawn fresh from its seed, so they are
    no file), a text cell's corpus. A digest the manifest lacks (data built in memory) is left empty."""
    from .run.datasets import TEXT_TASK, dataset_name

    try:
        manifest = json.loads((data_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    files = manifest.get("files") or {}
    refs: dict[str, list[tracking.DatasetRef]] = {}
    for cell in cells:
        cfg = cell.config
        if cfg.task == TEXT_TASK:  # the corpus `generate` recorded under the name the cell gives (`default` or a path)
            entry = (manifest.get("corpora") or {}).get(cfg.text) or {}
            source = entry.get("source") or str(cfg.text)
            profile = {"task": TEXT_TASK, "window": cfg.seq_len, "source": source}
            name = "text" if cfg.text == "default" else Path(str(cfg.text)).stem
            refs[cell.config_hash] = [tracking.DatasetRef(name, (entry.get("sha256") or "")[:12], source, profile,
                                                          "training")]
            continue
        name = dataset_name(cfg.task, cfg.seq_len, cfg.val_size, cfg.data_seed)
        digest = ((files.get(f"{name}.npz") or {}).get("sha256") or "")[:12]
        profile = {"task": cfg.task, "T": cfg.seq_len, "count": cfg.val_size, "seed": cfg.data_seed}
        refs[cell.config_hash] = [tracking.DatasetRef(name, digest, str((data_dir / f"{name}.npz").resolve()),
                                                      profile)]
    return refs


def _present_parent(store, parent: str, cells: list[Cell], table, inputs: dict) -> None:
    """The parent run's summary table of its cells (rendered by the UI) and the union of its cells' datasets."""
    if len(table):
        tracking.log_summary_table(store, parent, summary_table(cells, table))
    seen = {}
    for refs in inputs.values():
        seen |= {(r.name, r.digest): r for r in refs}
    tracking.log_datasets(store, parent, list(seen.values()))


def summary_table(cells: list[Cell], table):
    """One row per run: its short name, the grid axes that vary, its outcome, whether it learned (verdict), its
    final validation loss over the chance loss, and the regime predicted at init and observed at init and after
    training. Numbers rounded to 4 significant digits: a table to read, not to recompute from."""
    import pandas as pd

    from .run.probe import observed_regime
    from .run.verdicts import verdict

    axes = {c.name: dict(part.split("=", 1) for part in c.name.split(",") if "=" in part) for c in cells}
    keys = list(dict.fromkeys(k for values in axes.values() for k in values))
    varying = [k for k in keys if len({values.get(k) for values in axes.values()}) > 1]
    labels = {c.config_hash: c.label or c.name for c in cells}
    rows = []
    for r in table.to_dict("records"):
        loss, chance, slope_final = (_number(r.get(k)) for k in ("final_val_loss", "chance_loss", "slope_final"))
        rows.append({"run": labels.get(r["config_hash"], r["cell"])}
                    | {k: axes.get(r["cell"], {}).get(k) for k in varying}
                    | {"outcome": r.get("outcome"),
                       "verdict": verdict(r.get("outcome"), loss, chance),
                       "val_loss": _rounded(loss), "chance_loss": _rounded(chance),
                       "val_over_chance": _rounded(loss / chance if loss is not None and chance else None),
                       "predicted_regime": r.get("predicted_regime"),
                       "observed_regime_init": r.get("observed_regime"),
                       "observed_regime_final": None if slope_final is None else observed_regime(slope_final),
                       "run_id": r["run_id"]})
    rows.sort(key=lambda row: tuple(_axis_order(row[k]) for k in varying))  # read down an axis, not grid order
    return pd.DataFrame(rows)


def _axis_order(value) -> tuple:
    """Numbers by value (0.5 before 4, 4 before 10), then words, then missing values."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (2, 0.0, "") if value is None else (1, 0.0, str(value))


def _number(v) -> float | None:
    import math

    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _rounded(v: float | None) -> float | None:
    return None if v is None else tracking.round_significant(v)
