"""How a sweep stops: SIGINT and SIGTERM are recorded while it runs and raised as KeyboardInterrupt at its next safe
point, so that its in-flight runs end KILLED; a second signal, or one that comes while it waits on a tracking
server, raises at once.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from ..tracking import server


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
        # server.SERVER_PATIENCE_SECONDS): stop it now, it holds no lock the cleanup needs
        if self.signum is not None or server.in_server_call():
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
