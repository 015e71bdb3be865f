"""The way into MLflow: `Store` (where runs go), mlflow imported with rnngrad's settings, and the MlflowClient of a
store, one per URI (a tracking server's wrapped so that its waits are bounded: server.py).

mlflow is imported lazily: it costs about a second, and other commands never pay it.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from .server import _DatabaseClient, _ServerClient

ARTIFACTS_FOLDER = "mlartifacts"  # beside mlflow.db: also `mlflow ui`'s default --artifacts-destination


@dataclass(frozen=True)
class Store:
    tracking_uri: str  # sqlite:////abs/mlflow.db, http(s)://host:port or postgresql://... (tracking/uri.py)
    artifact_root: str | None  # file URI that experiment artifacts go under; None: the server decides

    @property
    def is_embedded(self) -> bool:
        """A database this process opens itself (SQLite, PostgreSQL), which `mlflow ui` serves; not a server."""
        return not self.tracking_uri.startswith(("http://", "https://"))

    @property
    def artifacts_folder(self) -> Path | None:
        """The embedded store's artifact folder (`mlartifacts` beside an SQLite file, in the project for PostgreSQL);
        None for a server."""
        if not self.is_embedded:
            return None
        if self.artifact_root is not None:
            return Path(unquote(urlparse(self.artifact_root).path))
        if self.tracking_uri.startswith("sqlite:///"):
            return Path(unquote(self.tracking_uri[len("sqlite:///"):])).parent / ARTIFACTS_FOLDER
        return None

    def ui_command(self) -> str:
        """The one command that opens these runs in a browser: for the embedded store, `mlflow ui` serving the
        store's artifact folder (its runs name their artifacts relative to it: tracking/artifacts.py)."""
        if self.is_embedded:
            return (f"mlflow ui --backend-store-uri {shlex.quote(self.tracking_uri)} "
                    f"--artifacts-destination {shlex.quote(str(self.artifacts_folder))}")
        return f"open {self.tracking_uri} (the MLflow server in MLFLOW_TRACKING_URI)"


def _mlflow():
    # Telemetry is a network call from inside a pipeline stage; off unless the user asked for it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Ending a run on a server otherwise prints two "View run/experiment at" lines and costs one more request per
    # run: a sweep prints where its runs are once.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    _skip_absent_modules(DATABRICKS_ONLY_MODULES)
    import mlflow

    # "Creating initial MLflow database tables..." and "Updating database tables" on stderr for a new store: noise
    # in a command's output (warnings and errors still show)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

    return mlflow


# Modules MLflow's client tries to import on every request to a tracking server, to detect a Databricks notebook or
# Spark task: absent here, each try scans sys.path again, about half of what logging a cell costs the driver's CPU.
DATABRICKS_ONLY_MODULES = ("dbruntime", "pyspark", "IPython")


@functools.cache  # once per process: _mlflow() is called for every tracking call
def _skip_absent_modules(names: tuple[str, ...]) -> None:
    """Record modules that are not installed as absent (None in sys.modules), so that importing them fails at
    once, as it would anyway; installed ones are left alone."""
    import importlib.util
    import sys

    for name in names:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = None


@functools.lru_cache(maxsize=8)
def _client_for(tracking_uri: str):
    inner = _mlflow().MlflowClient(tracking_uri=tracking_uri)
    if tracking_uri.startswith(("http://", "https://")):
        return _ServerClient(inner, tracking_uri)
    return _DatabaseClient(inner, tracking_uri)


def client(store: Store):
    """The MlflowClient for a store (cached per URI)."""
    return _client_for(store.tracking_uri)
