"""Experiments and runs in a store: an experiment created or restored, runs started, reopened, found and ended, and
values, artifacts and whole run folders logged (a folder's scalars and step metrics in one `MlflowClient.log_batch`
call, which splits itself into requests).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..run.environment import describe
from .artifacts import experiment_location as _artifact_experiment_location
from .artifacts import log_file as _artifact_log_file
from .artifacts import log_folder as _artifact_log_folder
from .artifacts import log_text as _artifact_log_text
from .connection import Store, _mlflow, client
from .server import StoreUnreachable, hurry
from .values import (MAX_PARAM_CHARS, MAX_TAG_CHARS, _samples_text, _series_metrics, _summary_metrics, _text,
                     flatten_json, regime_tags)


STATUSES = ("FINISHED", "FAILED", "KILLED")
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under this parent
SUMMARY_TAGS = ("outcome", "learned", "predicted_regime")  # what a runs table filters on (and regime_tags')


@dataclass(frozen=True)
class RunRecord:
    """What the sweep needs to know about an existing run, without mlflow types."""

    run_id: str
    run_name: str
    status: str  # RUNNING | SCHEDULED | FINISHED | FAILED | KILLED
    start_time: int  # ms since the epoch
    tags: dict


def ensure_experiment(store: Store, name: str) -> str:
    """The id of experiment `name`, created (or restored from the trash) if needed."""
    c = client(store)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        return c.create_experiment(name, artifact_location=_artifact_experiment_location(store, name))
    if exp.lifecycle_stage == "deleted":
        c.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def start_run(store: Store, experiment_id: str, run_name: str, parent_run_id: str | None = None,
              tags: dict | None = None) -> str:
    """Create a RUNNING run (nested under `parent_run_id` if given); returns its id."""
    tags = {k: _text(v, MAX_TAG_CHARS) for k, v in (tags or {}).items()}
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id
    return client(store).create_run(experiment_id, tags=tags, run_name=run_name).info.run_id


def reopen_run(store: Store, run_id: str) -> None:
    """Mark an ended run RUNNING again (a resumed sweep's parent)."""
    client(store).update_run(run_id, status="RUNNING")


def run_status(store: Store, run_id: str) -> str:
    """RUNNING, SCHEDULED, FINISHED, FAILED or KILLED."""
    return client(store).get_run(run_id).info.status


def end_run(store: Store, run_id: str, status: str = "FINISHED") -> None:
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: expected one of {STATUSES}")
    client(store).set_terminated(run_id, status)


def find_runs(store: Store, experiment_id: str, filter_string: str = "") -> list[RunRecord]:
    """Every run of the experiment matching an MLflow filter (e.g. "attributes.status = 'RUNNING'"),
    newest first, across result pages."""
    c, records, token = client(store), [], None
    while True:
        page = c.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        records += [RunRecord(r.info.run_id, r.info.run_name, r.info.status, r.info.start_time, dict(r.data.tags))
                    for r in page]
        token = page.token
        if not token:
            return records


def finished_runs(store: Store, experiment_id: str) -> dict[str, str]:
    """{config_hash: run_id} of the FINISHED runs that carry a config_hash (the newest wins)."""
    done: dict[str, str] = {}
    for r in find_runs(store, experiment_id, "attributes.status = 'FINISHED'"):
        if "config_hash" in r.tags:
            done.setdefault(r.tags["config_hash"], r.run_id)
    return done


def end_stale_runs(store: Store, experiment_id: str) -> int:
    """End as KILLED every run still RUNNING (left by a killed sweep); returns how many."""
    stale = find_runs(store, experiment_id, "attributes.status = 'RUNNING'")
    for r in stale:
        end_run(store, r.run_id, "KILLED")
    return len(stale)


def log_values(store: Store, run_id: str, metrics: dict | None = None, tags: dict | None = None,
               params: dict | None = None) -> None:
    """Scalars, tags and params in one batch (for a sweep's parent run)."""
    m = _mlflow().entities
    now = _now_ms()
    client(store).log_batch(
        run_id,
        metrics=[m.Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[m.Param(k, _text(v, MAX_PARAM_CHARS)) for k, v in (params or {}).items()],
        tags=[m.RunTag(k, _text(v, MAX_TAG_CHARS)) for k, v in (tags or {}).items()],
    )


def log_artifact(store: Store, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    _artifact_log_file(store, run_id, path, artifact_path)


def log_run_folder(store: Store, run_id: str, run_dir: str | Path, tags: dict | None = None) -> None:
    """Log a finished run folder: config.json's fields that apply to the run as params (run.config.applicable;
    config.json keeps every field), summary.json as tags (its environment in one line: `environment`) + metrics,
    series.parquet as step metrics (one log_batch for all of it), every file as an artifact at its relative path."""
    from ..run.config import applicable

    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    run_tags = {"config_hash": summary.get("config_hash", run_dir.name)}
    run_tags |= {k: summary[k] for k in SUMMARY_TAGS + ("error",) if summary.get(k) is not None}
    run_tags |= regime_tags(summary)
    run_tags["environment"] = describe(summary.get("environment"))  # where it was computed: the UI's runs table
    run_tags |= tags or {}
    # Artifacts first: finding a run's artifact folder reads the whole run back, which is cheapest before its
    # metrics are in.
    _artifact_log_folder(store, run_id, run_dir)
    if (run_dir / "samples.json").exists():
        _artifact_log_text(store, run_id, _samples_text(run_dir / "samples.json"), "samples.txt")
    m, now = _mlflow().entities, _now_ms()
    metrics = [m.Metric(k, v, now, step) for k, step, v in _summary_metrics(summary)]
    metrics += [m.Metric(k, v, now, step) for k, step, v in _series_metrics(run_dir / "series.parquet")]
    client(store).log_batch(
        run_id,
        metrics=metrics,
        params=[m.Param(k, _text(v, MAX_PARAM_CHARS)) for k, v in flatten_json(applicable(config)).items()],
        tags=[m.RunTag(k, _text(v, MAX_TAG_CHARS)) for k, v in run_tags.items()],
    )


def log_folder_and_end(store: Store, run_id: str, run_dir: str | Path) -> None:
    """`log_run_folder`, then end the run FINISHED (whatever the run's outcome: that is a tag). If logging is
    interrupted the run ends KILLED, if it fails FAILED, so no run is left RUNNING."""
    try:
        log_run_folder(store, run_id, run_dir)
    except BaseException as e:
        with hurry():  # seconds, even when a tracking server is gone
            try:
                end_run(store, run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            except StoreUnreachable:
                pass  # the run stays RUNNING until the next sweep ends it; `e` is the error to report
        raise
    end_run(store, run_id, "FINISHED")


def _now_ms() -> int:
    return int(time.time() * 1000)
