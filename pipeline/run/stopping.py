"""How one command stops on SIGTERM or SIGINT: at once while it only computes (numpy, and files in its own temp
folder, which the exception removes), and after the step it is in while it talks to the MLflow store, whose
transactions a signal must not cut (a second signal stops it there too).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """A stop signal: a KeyboardInterrupt, so that whatever cleans up after Ctrl-C (temp folders, MLflow runs ended
    KILLED) does so after it too. `exit_code` is the shell's 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum


class Stop:
    """The handler: records the signal, and raises StopRequested at once inside `at_once()`, on a second signal, or
    at the next `check()`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._at_once = False

    def __call__(self, signum: int, frame) -> None:
        repeated = self.signum is not None
        self.signum = self.signum or signum
        if self._at_once or repeated:
            raise StopRequested(self.signum)

    def check(self) -> None:
        if self.signum is not None:
            raise StopRequested(self.signum)

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """A signal stops the block where it is."""
        self.check()
        self._at_once = True
        try:
            yield
        finally:
            self._at_once = False
        self.check()


@contextmanager
def stop_on_signals() -> Iterator[Stop]:
    """SIGINT and SIGTERM handled by a `Stop` while the block runs (only the main thread can set handlers:
    elsewhere the signals keep their handlers and `Stop` never raises)."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop) for s in SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back in this thread until the block ends, and delivered then: for steps that must not
    be cut in two, such as `files.move_into_place`'s two renames."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
