"""Computing a sweep's missing cells: each submitted to the pool once its child run exists, at most `jobs` at a time,
and logged as it returns, on a logging thread, while the workers go on; a broken pool settled (only the cell whose
worker died ends FAILED) and replaced; on a stop, the runs in flight end KILLED.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..errors import UserError
from ..run.cost import usable_cpus
from ..tracking import server
from .plan import Cell, SweepResult
from .pool import _CellPool, _ExecutorPool, _LogThreads
from .present import _end_runs, _log_and_finish, _record_crash, _start_child
from .stop import _StopRequest


MAX_POOL_BREAKS = 2  # a cell caught in this many broken pools without being seen to cause one ends FAILED
POLL_SECONDS = 0.2  # how long a stop request can wait for the sweep to notice it
# Returned cells logged at once to a tracking server: logging one is ~16 HTTP requests, most of it waiting on the
# server, so one thread caps the driver at a few cells per second whatever the number of workers (`rnngrad bench
# --only cluster`). The embedded sqlite store takes one writer at a time: one logging thread there.
SERVER_LOG_THREADS = 8
LOG_DRAIN_SECONDS = 3.0  # how long a stopping sweep waits for a cell being logged to a server


def _run_cells(store, exp_id, parent, spec, todo: list[Cell], data_dir, jobs, execute,
               result: SweepResult, tick, stop: _StopRequest, inputs: dict, executor=None,
               workers: _CellPool | None = None) -> dict[str, str]:
    """Compute `todo` in worker processes (or in the pool `executor(jobs)` makes, a Dask cluster's), at most `jobs`
    at a time; log each as it returns, in a small thread pool (SERVER_LOG_THREADS). The wait for them wakes every
    POLL_SECONDS to see whether a signal asked the sweep to stop.

    A worker that dies (the out-of-memory killer, a SIGKILL, a crash in native code) breaks the whole process
    pool, and the pool stops its other workers. Only the cell of the worker that died ends FAILED, with the
    reason; the pool is replaced, and the other cells it was running are started again in the new one (at most
    MAX_POOL_BREAKS times each, in case the dead worker cannot be told apart). (A cluster reschedules a dead
    worker's cell itself, up to its allowed failures, and never breaks.)

    `workers`: a local pool started earlier (`pool.started_workers`), used first; it stays its starter's to shut down
    (it is stopped here only if it breaks or the sweep stops)."""
    if not todo:
        return {}
    jobs = min(jobs or usable_cpus(), len(todo))

    def new_pool():
        return _ExecutorPool(executor(jobs)) if executor is not None else _CellPool(jobs, (execute.__module__,))

    pool = workers if workers is not None and executor is None else new_pool()
    pending: deque[tuple[Cell, str | None]] = deque((cell, None) for cell in todo)  # (cell, its run if created)
    inflight: dict[Future, tuple[Cell, str]] = {}
    breaks: dict[str, int] = {}  # config_hash -> pool breaks the cell was caught in
    run_ids: dict[str, str] = {}
    logger = _LogThreads(1 if store is None or store.is_embedded else SERVER_LOG_THREADS)
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
        logger.stop(None if store is None or store.is_embedded else LOG_DRAIN_SECONDS)
        unlogged = [r for f, (_, r) in logging.items() if not f.done() or f.cancelled()]
        with server.hurry():  # seconds, even when the tracking server is gone
            _end_runs(store, [r for _, r in [*inflight.values(), *pending] if r is not None] + unlogged, "KILLED")
        raise
    if pool is not workers:
        pool.shutdown()
    logger.stop(None)
    return run_ids


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
