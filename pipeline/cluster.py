"""Sweep cells on a Dask distributed cluster (`rnngrad sweep --cluster ADDRESS`; docs/cluster.md).

`connect(address)` opens a cluster (`local:N`: a LocalCluster of N single-threaded worker processes on this
machine; `tcp://HOST:PORT` or `tls://HOST:PORT`: a running `dask scheduler`), checks that every worker runs the
same rnngrad code, Python and key packages as this process, and yields a `Cluster`. `Cluster.executor(data_dir)` is
the executor seam of `sweep.run_sweep`: it makes a pool whose `submit` returns a `concurrent.futures.Future`, so
the sweep's loop (signals, KILLED/FAILED runs, logging) is the same as with its local process pool.

Only the sweep's driver talks to MLflow. A cell can run twice (its worker died after finishing it but before its
result was read), so a worker never logs and never writes into `results/`: it computes the cell in a temp folder
of its own and returns the finished run folder as tar bytes; the driver unpacks them beside
`results/<spec>/runs/<config_hash>/` and renames the folder into place (`files.move_into_place`), then logs it.
The data folder goes to each worker once (the result of one task every cell depends on), not once per cell.

Each task's key is `rnngrad-cell-<config_hash>`, and its future is released as soon as its result is read: the
scheduler would recompute a held result whose worker died. A worker that dies mid-cell has its cell rescheduled,
up to the scheduler's `distributed.scheduler.allowed-failures` (3 by default); then the cell's future raises
KilledWorker and the sweep ends that run FAILED with the reason.

dask/distributed are imported lazily (the `[cluster]` extra): a sweep without --cluster never pays for them.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import platform
import re
import shutil
import socket
import tarfile
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import UserError
from .run import files

LOCAL = re.compile(r"local:([1-9][0-9]{0,3})")  # local:N, N worker processes (at most 9999)
REMOTE = re.compile(r"(tcp|tls)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
VALID = "local:N (N worker processes on this machine) or tcp://HOST:PORT of a running `dask scheduler`"
# What must match between the driver and every worker for a cell to give the same numbers wherever it runs
# (and for the task and its result to unpickle): the code, the interpreter, and the packages a run computes with.
KEY_PACKAGES = ("numpy", "pandas", "pyarrow", "threadpoolctl", "cloudpickle", "dask", "distributed")
CONNECT_SECONDS = 10  # how long to wait for a scheduler to answer
WORKERS_SECONDS = 30  # and for a scheduler without workers to get one
TASK_PREFIX = "rnngrad-cell-"
# Workers compute at the process pool's lower priority (sweep.WORKER_NICENESS): on local:N the driver logs on the
# same cores. Kept as a literal here since the cluster module does not import the sweep.
WORKER_NICENESS = 5
PIPELINE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Address:
    text: str  # as given, e.g. "local:2" or "tcp://10.0.0.5:8786"
    local_workers: int  # N for local:N; 0 for a running scheduler


def parse_address(text: str) -> Address:
    """`local:N` or `tcp://HOST:PORT` (`tls://` with Dask's TLS configuration); anything else is a UserError."""
    text = text.strip()
    if m := LOCAL.fullmatch(text):
        return Address(text, int(m.group(1)))
    m = REMOTE.fullmatch(text)
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise UserError(f"--cluster {text!r}: not a cluster address; give {VALID}")
    return Address(text, 0)


def check_reachable(text: str) -> Address:
    """Parse the address and, for a running scheduler, check in seconds that something listens there (Dask's own
    connect retries until its timeout even when the port refuses at once)."""
    address = parse_address(text)
    if not address.local_workers:
        host, port = REMOTE.fullmatch(address.text).group(2, 3)
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
        except OSError as e:
            raise _unreachable(address, e.strerror or type(e).__name__) from None
    return address


def _unreachable(address: Address, reason: str) -> UserError:
    return UserError(f"--cluster {address.text}: no Dask scheduler answers there ({reason}); start one with "
                     "`dask scheduler` there, or use local:N")


def code_fingerprint(root: Path = PIPELINE) -> str:
    """sha256 over the pipeline package's source (path + bytes of every .py): two checkouts whose code differs
    compute different numbers under the same version string."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def versions() -> dict[str, str]:
    """This process's rnngrad version and code, Python (major.minor) and KEY_PACKAGES versions."""
    out = {"rnngrad": _version("rnngrad"), "rnngrad code": code_fingerprint(),
           "python": ".".join(platform.python_version_tuple()[:2])}
    return out | {name: _version(name) for name in KEY_PACKAGES}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _worker_versions() -> dict[str, str]:
    return versions()  # sent to workers by reference: what runs there is the worker's own code


def version_mismatch(mine: dict[str, str], theirs: dict[str, dict[str, str]]) -> str | None:
    """The first difference between the driver's versions and a worker's, as a phrase; None if all match."""
    for worker, found in sorted(theirs.items()):
        for name, want in mine.items():
            if found.get(name) != want:
                return f"worker {worker} has {name} {found.get(name, 'unknown')}, this driver {want}"
    return None


@dataclass
class Cluster:
    client: Any  # distributed.Client
    address: Address
    slots: int  # worker threads when connected: how many cells the sweep keeps in flight

    def executor(self, data_dir: Path) -> Callable[[int], "ClusterPool"]:
        """sweep.run_sweep's `executor`: makes the pool of its cells, shipping `data_dir` to the workers once."""
        return lambda jobs: ClusterPool(self.client, Path(data_dir))


@contextmanager
def connect(text: str) -> Iterator[Cluster]:
    """Open the cluster named by `text` and check its workers' versions; closes what it opened on exit. Every
    refusal (malformed or unreachable address, no workers, a version mismatch) is a UserError."""
    address = parse_address(text)
    distributed = _import_distributed()
    cluster = client = None
    try:
        if address.local_workers:
            cluster = distributed.LocalCluster(n_workers=address.local_workers, threads_per_worker=1,
                                               processes=True, dashboard_address=None, host="127.0.0.1")
            client = distributed.Client(cluster)
        else:
            client = _client_for(distributed, address)
        slots = _wait_for_workers(client, address)
        problem = version_mismatch(versions(), client.run(_worker_versions))
        if problem:
            raise UserError(f"--cluster {address.text}: {problem}; install the same rnngrad checkout and "
                            "packages on the workers (pip install -e \".[cluster]\")")
        yield Cluster(client, address, slots)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise UserError("--cluster: dask distributed is not installed; pip install -e \".[cluster]\", or leave "
                        "--cluster out to use the local process pool") from None
    return distributed


def _client_for(distributed, address: Address):
    try:
        return distributed.Client(address.text, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError) as e:
        raise _unreachable(address, " ".join(str(e).split())[:160] or type(e).__name__) from None


def _wait_for_workers(client, address: Address) -> int:
    try:
        client.wait_for_workers(1, timeout=WORKERS_SECONDS)
    except TimeoutError:
        raise UserError(f"--cluster {address.text}: the scheduler has no workers after {WORKERS_SECONDS} s; start "
                        f"some with `dask worker {address.text} --nthreads 1`") from None
    return max(1, sum(client.nthreads().values()))


class ClusterPool:
    """The subset of concurrent.futures.Executor that sweep._run_cells uses, over a distributed Client.

    `submit(fn, execute, cfg, data_dir, run_dir)` runs `fn(execute, cfg, <worker's data>, <worker temp>/<name>)`
    on a worker and returns a concurrent Future that is done once the driver has moved the returned run folder to
    `run_dir` (or that carries the task's exception). The dask future is released right after its result is read.
    """

    def __init__(self, client, data_dir: Path) -> None:
        self._client = client
        self._data = None  # the future of the data folder (tar bytes), made on the first submit
        self._data_dir = data_dir
        self._data_key = ""
        self._futures: dict[str, Any] = {}  # key -> dask future not yet read
        self._lock = threading.Lock()

    def submit(self, fn: Callable, execute: Callable, cfg, data_dir: Path, run_dir: Path) -> concurrent.futures.Future:
        if self._data is None:
            blob = pack_folder(self._data_dir) if self._data_dir.is_dir() else b""
            self._data_key = hashlib.sha256(blob).hexdigest()[:16]
            # A task rather than scattered data: the scheduler keeps the bytes in the task and recomputes the
            # result when the workers holding it die (scattered data would be lost with them); workers fetch it
            # from each other once, not once per cell.
            self._data = self._client.submit(_identity, blob, key=f"rnngrad-data-{self._data_key}", pure=False)
            # On every worker before the first cell: otherwise the scheduler queues the first cells on the one
            # worker that holds the data rather than copy it, and the others idle.
            self._client.replicate([self._data])
        done: concurrent.futures.Future = concurrent.futures.Future()
        key = TASK_PREFIX + run_dir.name
        future = self._client.submit(compute_remote, fn, execute, cfg, self._data, self._data_key, run_dir.name,
                                     key=key, pure=False)
        with self._lock:
            self._futures[key] = future
        future.add_done_callback(lambda f: self._deliver(f, done, Path(run_dir)))
        return done

    def _deliver(self, future, done: concurrent.futures.Future, run_dir: Path) -> None:
        """On dask's callback thread: read the result, release the future, move the folder into place."""
        try:
            blob = future.result()
            error = None
        except BaseException as e:  # the cell raised, its workers died too often (KilledWorker), or cancelled
            blob, error = None, e
        finally:
            with self._lock:
                self._futures.pop(future.key, None)
            future.release()
        try:
            if error is None:
                unpack_folder(blob, run_dir)
        except BaseException as e:
            error = e
        try:
            done.set_exception(error) if error is not None else done.set_result(str(run_dir))
        except concurrent.futures.InvalidStateError:
            pass  # cancelled by shutdown: nobody waits for it

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """With cancel_futures, cancel every task not yet read (queued ones never start; a running one's result
        is dropped). The client itself belongs to `connect`."""
        with self._lock:
            pending = list(self._futures.values())
            self._futures.clear()
        if cancel_futures and pending:
            self._client.cancel(pending)
        if self._data is not None:
            self._data.release()
            self._data = None


def _identity(value):
    return value


def compute_remote(fn: Callable, execute: Callable, cfg, data: bytes, data_key: str, name: str) -> bytes:
    """Worker side: compute one cell in a temp folder of this worker's and return the run folder as tar bytes."""
    _lower_priority_once()
    local = _worker_directory()
    data_dir = _unpacked_data(data, data_key, local)
    tmp = Path(tempfile.mkdtemp(prefix="rnngrad-cell-", dir=local))
    try:
        run_dir = tmp / name
        fn(execute, cfg, data_dir, run_dir)
        return pack_folder(run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_niced = False
_data_lock = threading.Lock()


def _lower_priority_once() -> None:
    global _niced
    if not _niced and hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)  # cumulative: once per worker process
    _niced = True


def _worker_directory() -> Path:
    """The worker's scratch folder (removed when the worker closes); the temp dir outside a worker (tests)."""
    try:
        from distributed import get_worker

        return Path(get_worker().local_directory)
    except (ImportError, ValueError):
        return Path(tempfile.gettempdir())


def _unpacked_data(data: bytes, key: str, local: Path) -> Path:
    """The data folder unpacked once per worker (and per data content) under the worker's scratch folder."""
    target = local / f"rnngrad-data-{key}"
    with _data_lock:
        if not target.is_dir():
            tmp = files.temp_folder(local, target.name)
            _extract(data, tmp)
            os.replace(tmp, target)
    return target


def pack_folder(folder: Path) -> bytes:
    """A folder's files as an uncompressed tar (run folders hold compressed .npz/.parquet/.png already)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(Path(folder).rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def _extract(blob: bytes, folder: Path) -> None:
    if blob:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
            tar.extractall(folder, filter="data")  # refuses absolute paths, .. and links out of the folder


def unpack_folder(blob: bytes, run_dir: Path) -> None:
    """Unpack a returned run folder into a temp folder beside `run_dir`, then rename it into place: a run folder
    that exists is complete, as with the local runner."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = files.temp_folder(run_dir.parent, run_dir.name)
    try:
        _extract(blob, tmp)
        files.move_into_place(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
