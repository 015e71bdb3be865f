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
import re
import shutil
import socket
import tarfile
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
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
CONNECT_SECONDS = 5  # how long to wait for a scheduler to accept, to greet (its handshake) and to let a client in
HANDSHAKE_BYTES = 1 << 16  # a scheduler's greeting is a few hundred bytes: a larger length is not Dask's protocol
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
    """Parse the address and, for a running scheduler, check within CONNECT_SECONDS that something listens there
    (Dask's own connect retries until its timeout even when the port refuses at once) and, for tcp://, that it
    greets as a Dask scheduler does: Dask's client waits on a listener that accepts and never answers without a
    bound, and reads a length from whatever a web server or another service sends first."""
    address = parse_address(text)
    if not address.local_workers:
        host, port = REMOTE.fullmatch(address.text).group(2, 3)
        try:
            sock = socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS)
        except OSError as e:
            raise _unreachable(address, e.strerror or type(e).__name__) from None
        with sock:
            try:  # a tls:// scheduler greets only after the TLS handshake, which Dask's client bounds itself
                problem = _greeting_problem(sock) if address.text.startswith("tcp://") else None
            except TimeoutError:
                problem = f"it accepted the connection but sent nothing in {CONNECT_SECONDS} s"
            except OSError as e:
                problem = f"the connection failed: {e.strerror or type(e).__name__}"
        if problem:
            raise _not_a_scheduler(address, problem)
    return address


def _greeting_problem(sock: socket.socket) -> str | None:
    """What is wrong with the first message a listener sends, or None if it is a Dask handshake.

    A Dask server writes its handshake as soon as it accepts: an 8-byte little-endian length, then that many bytes
    of frames (a frame count, the frames' lengths, the msgpack'd {compression, python, pickle-protocol}). Only the
    framing and the handshake's keys are checked, nothing is unpickled, and no more than HANDSHAKE_BYTES is read."""
    head = _read_exactly(sock, 8)
    if len(head) < 8:
        return "it closed the connection without a Dask handshake"
    size = int.from_bytes(head, "little")
    if not 16 <= size <= HANDSHAKE_BYTES:
        return f"its first bytes {head[:8]!r} are not a Dask handshake (another service, e.g. a web server?)"
    body = _read_exactly(sock, size)
    frames = int.from_bytes(body[:8], "little")
    if len(body) < size or not 0 < frames <= 16 or b"pickle-protocol" not in body:
        return "what it sent is not a Dask handshake (another service, e.g. a web server?)"
    return None


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    """Up to n bytes (fewer if the peer closes); the socket's timeout bounds each wait."""
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _unreachable(address: Address, reason: str) -> UserError:
    return UserError(f"--cluster {address.text}: no Dask scheduler answers there ({reason}); start one with "
                     "`dask scheduler` there, or use local:N")


def _not_a_scheduler(address: Address, reason: str) -> UserError:
    return UserError(f"--cluster {address.text}: not a Dask scheduler ({reason}); give {VALID}")


def versions(packages: tuple[str, ...] = KEY_PACKAGES, root: str | None = None) -> dict[str, str]:
    """This process's rnngrad version, its code ("rnngrad code": sha256 over path + bytes of every .py of the
    `pipeline` package at `root`, default the one imported: two checkouts whose code differs compute different
    numbers under the same version string), Python (major.minor) and `packages`' versions.

    Self-contained (its imports inside, no module globals): it is sent to the workers by value (`_portable`),
    since a worker with another rnngrad may not have this module at all."""
    import hashlib
    import platform
    from importlib import metadata, util
    from pathlib import Path

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    package = Path(root) if root else Path(util.find_spec("pipeline").origin).parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    out = {"rnngrad": version("rnngrad"), "rnngrad code": h.hexdigest()[:12],
           "python": ".".join(platform.python_version_tuple()[:2])}
    return out | {name: version(name) for name in packages}


def code_fingerprint(root: Path = PIPELINE) -> str:
    return versions((), str(root))["rnngrad code"]


def _portable(fn: Callable) -> Callable:
    """A copy of a self-contained module-level function that cloudpickle sends by value (it has no importable
    name), so that it runs on a worker whatever version of its module the worker has."""
    import builtins
    import types

    copy = types.FunctionType(fn.__code__, {"__builtins__": builtins}, fn.__name__, fn.__defaults__)
    copy.__qualname__ = f"<portable {fn.__name__}>"
    return copy


def version_mismatch(mine: dict[str, str], theirs: dict[str, dict[str, str]]) -> str | None:
    """The first difference between the driver's versions and those of a process of the cluster (keyed by a
    name such as "worker tcp://10.0.0.7:40213"), as a phrase; None if all match."""
    for who, found in sorted(theirs.items()):
        for name, want in mine.items():
            if found.get(name) != want:
                return f"{who} has {name} {found.get(name, 'unknown')}, this driver {want}"
    return None


def cluster_versions(client) -> dict[str, dict[str, str]]:
    """The versions of the scheduler (which unpickles the tasks, so it needs rnngrad's code too) and of every
    worker, each computed in its own process."""
    check = _portable(versions)
    theirs = {f"the scheduler at {client.scheduler.address}": client.run_on_scheduler(check)}
    return theirs | {f"worker {worker}": found for worker, found in client.run(check).items()}


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
                                               processes=True, host="127.0.0.1",
                                               dashboard_address=":0")  # any free port: 8787 may be taken
            client = distributed.Client(cluster)
        else:
            client = _client_for(distributed, address)
        slots = _wait_for_workers(client, address)
        try:
            theirs = cluster_versions(client)
        except Exception as e:  # e.g. a worker without rnngrad: no `pipeline` package to fingerprint
            problem = f"a worker cannot report its versions ({type(e).__name__}: {' '.join(str(e).split())[:120]})"
        else:
            problem = version_mismatch(versions(), theirs)
        if problem:
            raise UserError(f"--cluster {address.text}: {problem}; install the same rnngrad checkout and "
                            "packages on the scheduler and the workers (pip install -e \".[cluster]\")")
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


TLS_SETTINGS = ("distributed.comm.tls.ca-file", "distributed.comm.tls.client.cert")


def _client_for(distributed, address: Address):
    import dask

    if address.text.startswith("tls://") and not all(dask.config.get(key, None) for key in TLS_SETTINGS):
        raise UserError(f"--cluster {address.text}: a tls:// scheduler needs this client's certificate; set "
                        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE, DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT and "
                        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY (docs/cluster.md, \"Dask's TLS option\")")
    check_reachable(address.text)
    opened: list = []
    failed: list = []

    def open_client() -> None:
        try:
            opened.append(distributed.Client(address.text, timeout=CONNECT_SECONDS))
        except BaseException as e:
            failed.append(e)

    # Dask bounds the TCP connect by `timeout` but not the wait for the handshake after it: a thread of our own
    # bounds the whole. One left waiting ends with its connection, or with the process.
    opener = threading.Thread(target=open_client, name="rnngrad-cluster-connect", daemon=True)
    opener.start()
    opener.join(2 * CONNECT_SECONDS)
    if opened:
        return opened[0]
    if not failed or isinstance(failed[0], TimeoutError):
        raise _not_a_scheduler(address, f"it greeted as one, then did not let a client in within {CONNECT_SECONDS} s")
    if isinstance(failed[0], OSError):
        raise _unreachable(address, " ".join(str(failed[0]).split())[:160] or type(failed[0]).__name__)
    raise _not_a_scheduler(address, f"{type(failed[0]).__name__}: {' '.join(str(failed[0]).split())[:120]}")


def _wait_for_workers(client, address: Address) -> int:
    try:
        client.wait_for_workers(1, timeout=WORKERS_SECONDS)
    except TimeoutError:
        raise UserError(f"--cluster {address.text}: the scheduler has no workers after {WORKERS_SECONDS} s; start "
                        f"some with `dask worker {address.text} --nthreads 1`") from None
    return max(1, sum(client.nthreads().values()))


class ClusterPool:
    """The subset of concurrent.futures.Executor that sweep.compute._run_cells uses, over a distributed Client.

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
            # worker that holds the data rather than copy it, and the others idle. (Computed first: replicate
            # can reach the scheduler before the task does.)
            from distributed import wait

            wait([self._data])
            if self._data.status != "finished":  # the scheduler or the workers cannot unpickle rnngrad's tasks
                error = self._data.exception()
                raise UserError(f"the Dask cluster cannot run rnngrad's tasks ({type(error).__name__}: "
                                f"{' '.join(str(error).split())[:160]})")
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
