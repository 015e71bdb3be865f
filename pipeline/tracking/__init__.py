"""The MLflow seam: the only package in rnngrad that imports mlflow (lazily: it costs about a second, and other
commands never pay it).

A `Store` names where runs go; `open_store(root)` opens it (MLFLOW_TRACKING_URI, else the embedded SQLite store in
`root`). `log_run_folder` turns a finished run folder (docs/internals.md) into params, tags, metrics and artifacts.

One job per module:
- `connection`: `Store`, mlflow imported with rnngrad's settings, and the MlflowClient of a store;
- `server`: reaching a tracking server (does it answer, bounded waits, the client wrapper that fails in one line);
- `store`: opening a store (the embedded SQLite file made whole or not at all, in WAL mode);
- `artifacts`: where a run's artifacts live (the embedded store's portable layout under MLflow's artifact proxy)
  and how they are written and read;
- `values`: a run folder's contents as MLflow values (no mlflow);
- `runs`: experiments and runs (start, end, find; values, artifacts and run folders logged);
- `ui`: what a person sees in the MLflow UI (short names, links, descriptions, datasets, tables).

The names below are the package's face for the stages, the benchmarks and the tests; its own modules import from
the module that owns a name.
"""

from .connection import ARTIFACTS_FOLDER, Store, client
from .runs import (RunRecord, end_run, end_stale_runs, ensure_experiment, find_runs, finished_runs,
                   log_folder_and_end, log_run_folder, start_run)
from .server import SERVER_PATIENCE_SECONDS, ServerUnreachable, StoreUnreachable
from .store import default_project_root, existing_store, open_store
from .ui import (SUMMARY_TABLE, DatasetRef, describe_experiment, experiment_ids, experiment_link,
                 hide_empty_default_experiment, link_lines, log_datasets, log_files, log_summary_table, sweep_parent,
                 run_link, short_run_names, source_tags)
from .values import is_tracked, regime_tags, round_significant, untracked_run_id

__all__ = ["ARTIFACTS_FOLDER", "SERVER_PATIENCE_SECONDS", "SUMMARY_TABLE", "DatasetRef", "RunRecord", "ServerUnreachable", "Store",
           "StoreUnreachable",
           "client", "default_project_root", "describe_experiment", "end_run", "end_stale_runs", "ensure_experiment",
           "existing_store", "experiment_ids", "experiment_link", "find_runs", "finished_runs",
           "hide_empty_default_experiment", "is_tracked", "link_lines", "log_datasets", "log_files", "log_folder_and_end",
           "log_run_folder", "log_summary_table", "open_store", "regime_tags", "round_significant",
           "run_link", "short_run_names", "source_tags", "start_run", "sweep_parent", "untracked_run_id"]
