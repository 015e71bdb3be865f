"""The processes a sweep's cells are computed in, and the threads that log them: a local process pool that learns which
worker computes which cell, so that when one dies the cell it was computing is told apart from those stopped with it
(`_CellPool`); a caller's executor, such as a Dask cluster's, behind the same interface (`_ExecutorPool`); the worker
side (`compute_cell`, `_worker_init`); and the daemon threads that log returned cells (`_LogThreads`).

Knows nothing of MLflow, not even through another module: a worker computes a run folder, and what to log is the
caller's (the cells it is handed are `plan.Cell`s, read for their config, config_hash, run_dir and redo).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import UserError
from ..run.sources import run_hash


# Workers compute at a lower priority than the parent, which logs to MLflow while they run: with as many workers
# as cores the parent would otherwise wait for CPU, and finished runs would queue up unlogged. (`rnngrad bench
# --only scaling` reports the parent's logging time per run.)
WORKER_NICENESS = 5
DEATH_WAIT_SECONDS = 10  # how long a broken pool's worker is given to report its exit code


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


def _worker_init(parent_pid: int, started=None, preload: tuple[str, ...] = ()) -> None:
    """Workers leave Ctrl-C to the parent (which ends the runs KILLED and stops them), exit when the parent is gone
    (SIGKILL), so that no orphan keeps computing beside a restarted sweep, and yield the CPU to the parent
    (WORKER_NICENESS). (Each run uses one BLAS thread, runner.BLAS_THREADS, so workers do not fight over cores.)
    Then they import the `preload` modules (the runner's numpy, pandas and matplotlib): at once, while the parent
    still prepares the sweep, rather than when the first cell arrives."""
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
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the cell that needs it fails on it again, and says so as its error
            pass


def _ready() -> int:
    """A task that only makes the pool start a worker (`_CellPool.start`)."""
    return os.getpid()


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop at once: shutdown(wait=True) would wait for the running cells. (Python 3.14 has
    pool.terminate_workers(); before it, the processes are only reachable through `_processes`.) A worker still
    alive after SIGTERM is killed, so that the executor's own cleanup at exit, which joins them, cannot block; each
    is waited for until its exit code is known, so that no caller sees a stopped worker as alive."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.terminate()
    for p in processes:  # until its exit code is stored (_exit_code: the executor's thread may be reaping it too)
        if _exit_code(p, 5) is None:
            p.kill()
            _exit_code(p, 5)


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

    def __init__(self, jobs: int, preload: tuple[str, ...] = ()) -> None:
        context = multiprocessing.get_context("spawn")
        self.started = context.SimpleQueue()  # written by a worker in one small write, read only here
        self.executor = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                            initargs=(os.getpid(), self.started, preload))
        self.jobs = jobs
        self.processes: dict[int, Any] = {}  # pid -> multiprocessing.Process, every worker this pool started
        self.worker_of: dict[str, int] = {}  # config_hash -> pid of the worker that started it

    def start(self) -> None:
        """Start every worker now, without waiting for them: the executor starts one per task submitted while none is
        idle, so one tiny task each, which is done as soon as that worker has imported its modules."""
        for _ in range(self.jobs):
            self.executor.submit(_ready)
        self.processes.update(getattr(self.executor, "_processes", None) or {})

    def submit(self, execute: Callable, cell: Any, data_dir: Path) -> Future:
        future = self.executor.submit(compute_cell, execute, cell.config, data_dir, cell.run_dir, cell.redo,
                                      cell.config_hash)
        self.processes.update(getattr(self.executor, "_processes", None) or {})
        return future

    @property
    def broken(self) -> bool:
        return bool(getattr(self.executor, "_broken", False))

    def death_of(self, cell: Any) -> str | None:
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


@contextmanager
def started_workers(jobs: int, preload: tuple[str, ...]) -> Iterator[_CellPool | None]:
    """A local pool of `jobs` workers, started now (None when `jobs` is 0): each spawned worker imports `preload`
    while the caller goes on (opening the store, presenting the sweep), so that the first cells find them ready.
    Shut down at the end; stopped at once if the block raises."""
    if jobs <= 0:
        yield None
        return
    pool = _CellPool(jobs, preload)
    try:
        pool.start()
        yield pool
    except BaseException:
        pool.stop()
        raise
    pool.shutdown()


class _ExecutorPool:
    """The pool of run_sweep's `executor` (a Dask cluster's, pipeline/cluster.py) behind _CellPool's interface. The
    cluster reschedules a dead worker's cell itself, so this pool never breaks."""

    broken = False

    def __init__(self, executor) -> None:
        self.executor = executor

    def submit(self, execute: Callable, cell: Any, data_dir: Path) -> Future:
        # a worker computes in a fresh folder of its own, from the data shipped at the sweep's start
        return self.executor.submit(compute_cell, execute, cell.config, data_dir, cell.run_dir)

    def death_of(self, cell: Any) -> str | None:
        return None

    def stop(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)


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
