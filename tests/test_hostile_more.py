"""More hostile and careless input (test_hostile.py has the rest): addresses that accept and never answer or answer
garbage, temp folders a killed run leaves, empty paths, deeply nested files, a full disk, markup in names shown on
the terminal, encodings; and the whole list run against the CLI with nothing outside the project changed.

Every command given bad input exits 2 with one `Error:` line and no traceback; servers are threads on 127.0.0.1,
and a command that could hang runs under a watchdog that fails the test rather than wait for ever."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import cluster, tracking
from pipeline.errors import UserError
from test_hostile import cli_app, one_line_refusal  # noqa: F401 (cli_app is a fixture)
from test_sweep import env  # noqa: F401 (a fixture: a project with a fresh store and the mini spec)
from test_tracking import empty_db  # noqa: F401 (a fixture)

HANG_GUARD_SECONDS = 120  # far above any bound under test: reaching it means the command hung


def finishes(fn, *args):
    """fn(*args) on a thread; fails the test (instead of hanging it) if it has not returned after HANG_GUARD_SECONDS."""
    out: list = []
    worker = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    worker.start()
    worker.join(HANG_GUARD_SECONDS)
    assert not worker.is_alive(), f"{fn.__name__} still waiting after {HANG_GUARD_SECONDS} s: it hangs"
    return out[0]


# ---- 1. a --cluster address that accepts and then stalls or sends garbage ---------------------------------------

# A Dask handshake as a scheduler sends it on accepting a connection (distributed 2026.8: an 8-byte length, a frame
# count, the frame's length, then msgpack of {compression: None, python: (3, 12, 3), pickle-protocol: 5})
DASK_GREETING = (b":\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00*\x00\x00\x00\x00\x00\x00\x00"
                 b"\x83\xabcompression\xc0\xa6python\x93\x03\x0c\x03\xafpickle-protocol\x05")
ANSWERS = {
    "silent": b"",  # accepts, never writes
    "garbage": b"\xff" * 64,  # a length of 2**64 - 1
    "http": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "greets then stalls": DASK_GREETING,  # a Dask handshake, then nothing: the client waits for its reply
}


class Listener:
    """A TCP listener on 127.0.0.1 that sends `answer` to every connection and keeps it open until closed."""

    def __init__(self, answer: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer, self.conns = answer, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.answer:
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def listener(request):
    server = Listener(ANSWERS[request.param])
    yield server
    server.close()


@pytest.mark.parametrize("listener", list(ANSWERS), indirect=True)
def test_a_cluster_address_that_stalls_or_answers_garbage_is_one_line_not_a_hang(cli_app, env, monkeypatch,
                                                                                 listener):
    monkeypatch.chdir(env)
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    address = f"tcp://127.0.0.1:{listener.port}"
    result = finishes(CliRunner().invoke, cli_app, ["sweep", "mini.yaml", "--cluster", address])
    line = one_line_refusal(result)
    assert line.startswith(f"Error: --cluster {address}: not a Dask scheduler (")
    assert line.endswith(f"give {cluster.VALID}")
    assert not (env / "results").exists()


def test_the_greeting_check_accepts_a_real_scheduler():
    distributed = pytest.importorskip("distributed")

    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=":0") as local:
        assert finishes(cluster.check_reachable, local.scheduler_address).text == local.scheduler_address


def test_connect_bounds_the_client_after_a_valid_greeting():
    """The greeting passes the check; Dask's client then waits for a reply that never comes: the thread bounds it."""
    server = Listener(DASK_GREETING)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cluster, "CONNECT_SECONDS", 1)

            def opened():
                said = r"not a Dask scheduler \(it greeted as one, then did not let a client in within 1 s\)"
                with pytest.raises(UserError, match=said):
                    with cluster.connect(f"tcp://127.0.0.1:{server.port}"):
                        pass
                return True

            assert finishes(opened)
    finally:
        server.close()
