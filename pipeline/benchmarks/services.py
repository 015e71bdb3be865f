"""Throwaway services on 127.0.0.1 for the cluster benchmark and the cluster tests: a PostgreSQL cluster and an
`mlflow server` on it (docs/cluster.md, "The tracking server"). Each is a context manager that stops what it
started, whatever happens inside.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import UserError

INSTALL_HINT = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed (Debian: apt-get install postgresql)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin(name: str) -> str | None:
    """A PostgreSQL program on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (newest version)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return versions[-1] if versions else None


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: its tools run as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def postgres(database: str = "mlflow") -> Iterator[str]:
    """A PostgreSQL cluster on a free port of 127.0.0.1 (trust authentication: local tests only) with an empty
    `database`; yields its SQLAlchemy URI for MLflow, postgresql+psycopg2://postgres@127.0.0.1:PORT/<database>."""
    initdb, pg_ctl, psql = postgres_bin("initdb"), postgres_bin("pg_ctl"), postgres_bin("psql")
    if not (initdb and pg_ctl and psql):
        raise UserError(INSTALL_HINT)
    folder = Path(tempfile.mkdtemp(prefix="rnngrad-pg-"))  # in /tmp, not a 0700 folder: postgres must enter it
    folder.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port, run = folder / "data", free_port(), _as_postgres()
    try:
        _check([*run, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        _check([*run, pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o", options, "start"])
        try:
            _check([*run, psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q",
                    "-c", f"CREATE DATABASE {database}"])
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{database}"
        finally:
            subprocess.run([*run, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-500:]}")


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:PORT
    pid: int  # the `mlflow server` process, leader of its process group (uvicorn workers, job runner)

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the server's processes have used so far: the leader and every descendant
        still alive (psutil, which the cluster extra brings)."""
        import psutil

        total = 0.0
        try:
            leader = psutil.Process(self.pid)
            for process in [leader, *leader.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
        except psutil.Error:
            pass
        return total


@contextmanager
def mlflow_server(backend_uri: str, folder: Path, workers: int = 1, seconds: float = 180) -> Iterator[Server]:
    """`mlflow server` on 127.0.0.1 with `backend_uri`, proxying artifacts to folder/artifacts (its log in
    folder/server.log); yields it once /health answers."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    with open(folder / "server.log", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
             "--backend-store-uri", backend_uri, "--artifacts-destination", str(folder / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, seconds)
            yield Server(url, proc.pid)
        finally:
            stop_group(proc)


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"mlflow server at {url} not healthy after {seconds} s")


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM a process started with start_new_session (and its children), SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue
