"""Reaching a tracking server: whether anything answers at its URL, MLflow's HTTP settings that bound every wait on it,
and the client wrapper that turns a server gone silent into one line (`ServerUnreachable`) and fails at once after.
"""

from __future__ import annotations

import contextlib
import functools
import os

from ..errors import UserError


def _check_server_answers(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when nothing listens at the server URL."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri, timeout=10).close()
    except urllib.error.HTTPError:
        pass  # something answered; MLflow's own request says whether it is an MLflow server
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"MLFLOW_TRACKING_URI={uri}: no server answers ({reason}); start `mlflow server` there, "
                        "or unset the variable to use the embedded store") from None


SERVER_PATIENCE_SECONDS = 60  # the longest one call waits for a tracking server that stopped answering
# MLflow's HTTP settings for a tracking server unless the user set them: at most 3 attempts of at most 15 s, 1 + 2 s
# apart (about 50 s, within SERVER_PATIENCE_SECONDS). MLflow's own, 7 retries with exponential backoff and a 120 s
# timeout, wait about 4 minutes on a server that refuses connections and a quarter of an hour on one that hangs.
SERVER_HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5"}
# ... and while a stopping sweep ends its runs KILLED: one attempt of 3 s (MLflow reads them for every request)
HURRIED_HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "3", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
_server_calls = 0  # tracking-server calls under way in this process (a signal may interrupt those at once)


class ServerUnreachable(UserError):
    """The tracking server stopped answering: the sweep ends, its finished run folders stay for the next one."""


class _ServerClient:
    """An MlflowClient for a tracking server whose calls fail in one line, naming the URI, once the server does not
    answer within SERVER_PATIENCE_SECONDS; after that every call on it fails at once, so that a sweep ending its
    runs does not wait that long again for each of them."""

    def __init__(self, inner, uri: str) -> None:
        self._inner, self._uri, self._dead = inner, uri, ""

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            global _server_calls
            if self._dead:
                raise ServerUnreachable(self._dead)
            _server_calls += 1
            try:
                return attr(*args, **kwargs)
            except Exception as e:
                reason = _unreachable_reason(e)
                if reason is None:
                    raise
                self._dead = (f"MLFLOW_TRACKING_URI={self._uri}: the tracking server stopped answering ({reason}); "
                              "the run folders computed stay under the results folder, and the next sweep logs "
                              "them once the server is back")
                raise ServerUnreachable(self._dead) from None
            finally:
                _server_calls -= 1

        return call


def _unreachable_reason(error: BaseException) -> str | None:
    """A short reason when `error` (or what caused it) is a failed HTTP exchange: refused, timed out, or too many
    retries; None for an answer the server gave (an MLflow error such as a missing run)."""
    import requests

    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, (requests.exceptions.RequestException, ConnectionError, TimeoutError)):
            kind = "no answer in time" if isinstance(seen, (requests.exceptions.Timeout, TimeoutError)) else \
                "connection refused or lost"
            return f"{kind}, gave up after {SERVER_PATIENCE_SECONDS} s at most"
        seen = seen.__cause__ or seen.__context__
    return None


def in_server_call() -> bool:
    """Whether this process is waiting on a tracking server now (a signal handler may stop such a wait at once:
    unlike an sqlite call, it holds no lock that the cleanup after it would need)."""
    return _server_calls > 0


@contextlib.contextmanager
def hurry():
    """Calls to a tracking server in this block try once, for 3 s (HURRIED_HTTP_SETTINGS): for ending runs KILLED
    while a sweep stops, which must take seconds even if the server is gone."""
    saved = {name: os.environ.get(name) for name in HURRIED_HTTP_SETTINGS}
    os.environ.update(HURRIED_HTTP_SETTINGS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
