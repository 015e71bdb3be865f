"""What a person sees of the runs in the MLflow UI: short run names, links to an experiment's runs table and to a run's
page, the experiment's description, who ran what, the datasets a run reads, a parent's summary table, the report's
files, and no empty Default experiment. The sweep, the report stage and `rnngrad train` call these beside the
logging of runs.py, so that the runs table, the run pages and the links the commands print tell the story.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from .connection import Store, _mlflow, client
from .runs import PARENT_TAG
from .values import MAX_TAG_CHARS, _text


UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves unless told otherwise
# MLflow 3 opens an experiment on its GenAI overview (traces) unless the link asks for the runs table
RUNS_VIEW = "workflowType=machine_learning"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # the UI opens a "custom_model_development" experiment on its runs
SUMMARY_TABLE = "summary_table.json"  # the parent run's table of its cells (mlflow.log_table: the UI renders it)


def ui_address(store: Store) -> str:
    """The address the UI of this store answers at: the tracking server itself, or `mlflow ui`'s default."""
    return store.tracking_uri.rstrip("/") if not store.is_embedded else UI_ADDRESS


def experiment_link(store: Store, experiment_id: str) -> str:
    """A link that opens the experiment's runs table (not MLflow 3's GenAI overview)."""
    return f"{ui_address(store)}/#/experiments/{experiment_id}?{RUNS_VIEW}"


def run_link(store: Store, experiment_id: str, run_id: str) -> str:
    """A link that opens one run's page."""
    return f"{ui_address(store)}/#/experiments/{experiment_id}/runs/{run_id}?{RUNS_VIEW}"


def describe_experiment(store: Store, experiment_id: str, description: str) -> None:
    """Set the experiment's description (shown above its runs) and mark it a model-training experiment, so that the
    UI opens it on the runs table."""
    c = client(store)
    if description:
        c.set_experiment_tag(experiment_id, "mlflow.note.content", _text(" ".join(description.split()), MAX_TAG_CHARS))
    c.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, "custom_model_development")


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def source_tags(command: str) -> dict:
    """MLflow's own tags for who ran what (the runs table's User and Source columns): the user, the command, and
    the git commit of the working directory when it is a git checkout."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the column stays empty
        user = None
    tags = {"mlflow.source.name": command, "mlflow.source.type": "LOCAL"}
    if user:
        tags["mlflow.user"] = user
    if _git_commit():
        tags["mlflow.source.git.commit"] = _git_commit()
    return tags


# How a grid axis reads in a run name: (label, how its value reads); "{v}" is the value as `_short_value` writes it.
# An axis not listed reads "<key>=<value>".
_AXIS_LABELS = {
    "gamma_w": "γW={v}", "seq_len": "T={v}", "task": "{v}", "activation": "{v}", "init": "{v}", "form": "{v}",
    "clip_mode": "{v}", "clip_threshold": "·{v}", "layers": "L={v}", "hidden": "n={v}", "seed": "s{v}",
    "optimizer": "{v}", "lr": "lr={v}", "batch": "B={v}", "iters": "{v} it", "weight_decay": "wd={v}",
}
_VALUE_WORDS = {"elementwise": "elem", "global": "global", "none": "no clip", "orthogonal": "orth",
                "gaussian": "gauss", "leaky_relu": "leaky", "hard_tanh": "hardtanh", "temporal_order": "order"}


def _short_value(v) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:g}"
    return _VALUE_WORDS.get(v, str(v)) if isinstance(v, str) else str(v)


def short_run_names(grid: list[dict], base: str = "base") -> list[str]:
    """One short, readable name per grid cell from the axes whose values differ between cells (e.g. `γW=3 s1`,
    `elem·100 s2`, `copy T=40`): the runs table cuts long names, so an axis every cell shares is left out.
    A clipping threshold joins its mode (`elem·100`). A grid of one cell is `base`."""
    keys = list(dict.fromkeys(k for cell in grid for k in cell))
    varying = [k for k in keys if len({json.dumps(cell.get(k), sort_keys=True, default=str) for cell in grid}) > 1]
    names = []
    for cell in grid:
        parts = {k: _AXIS_LABELS.get(k, f"{k}={{v}}").format(v=_short_value(cell[k])) for k in varying if k in cell}
        if "clip_threshold" in parts:
            threshold = parts.pop("clip_threshold")
            if "clip_mode" in parts:
                parts["clip_mode"] += threshold  # "elem" + "·100"
            else:
                parts["clip_threshold"] = "clip " + threshold.lstrip("·")
        parts = list(parts.values())
        names.append(" ".join(parts) or base)
    return names


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a run reads, as MLflow's Dataset column shows it (no data: name, digest and where it lives)."""

    name: str  # e.g. adding_T30_N1000_s0
    digest: str  # the file's sha256, cut to 12 characters (MLflow shows it beside the name)
    source: str  # where the data lives, e.g. a file path
    profile: dict  # what it is: task, T, count, seed (shown on the run page)
    context: str = "validation"  # the role MLflow shows as a tag: the held-out set, or "training"


def log_datasets(store: Store, run_id: str, datasets: list[DatasetRef]) -> None:
    """Log `datasets` as the run's inputs, in one request, so the runs table's Dataset column fills and filters."""
    if not datasets:
        return
    e = _mlflow().entities
    inputs = [e.DatasetInput(e.Dataset(d.name, d.digest, "local", json.dumps({"uri": d.source}),
                                       profile=json.dumps(d.profile)),
                             tags=[e.InputTag("mlflow.data.context", d.context)]) for d in datasets]
    client(store).log_inputs(run_id, datasets=inputs)


def log_summary_table(store: Store, run_id: str, table, artifact_file: str = SUMMARY_TABLE) -> None:
    """A table (pandas DataFrame) as a run artifact the UI renders as a table (mlflow.log_table). An existing
    table of that name is replaced, not appended to (log_table appends), so a resumed sweep logs its table once."""
    import tempfile

    c = client(store)
    with tempfile.TemporaryDirectory(prefix="rnngrad-table-") as tmp:
        # log_table's own file format (a pandas "split" JSON with the table marker) written here, since
        # MlflowClient.log_table appends to a table already logged under that name
        path = Path(tmp) / Path(artifact_file).name
        path.write_text(table.to_json(orient="split", index=False, date_format="iso"))
        parent = str(Path(artifact_file).parent) if Path(artifact_file).parent != Path(".") else None
        c.log_artifact(run_id, str(path), parent)
    tags = dict(c.get_run(run_id).data.tags)
    logged = json.loads(tags.get("mlflow.loggedArtifacts", "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in logged:
        c.set_tag(run_id, "mlflow.loggedArtifacts", json.dumps(logged + [entry]))


def log_files(store: Store, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    """Log existing files under `artifact_path` of a run (the report's figures and documents on a sweep's parent)."""
    c = client(store)
    for path in paths:
        c.log_artifact(run_id, str(path), artifact_path)


def parents_of(store: Store, run_ids: list[str]) -> dict[str, str]:
    """{parent run id: experiment id} of the sweeps these child runs belong to (one lookup per experiment seen)."""
    c, parents, seen = client(store), {}, set()
    for run_id in run_ids:
        try:
            run = c.get_run(run_id)
        except _mlflow().exceptions.MlflowException:  # not in this store (e.g. logged to another tracking server)
            continue
        if run.info.experiment_id in seen:
            continue
        seen.add(run.info.experiment_id)
        parent = run.data.tags.get(PARENT_TAG)
        if parent:
            parents[parent] = run.info.experiment_id
    return parents


def hide_empty_default_experiment(store: Store) -> None:
    """Move MLflow's "Default" experiment (id 0, which creating a store makes) to the trash while it holds no run,
    so the experiment list shows only rnngrad's experiments. A tracking server's Default is left alone: it is
    not ours."""
    if not store.is_embedded:
        return
    c = client(store)
    try:
        default = c.get_experiment("0")
    except _mlflow().exceptions.MlflowException:
        return
    if default is None or default.lifecycle_stage != "active" or default.name != "Default":
        return
    if not c.search_runs(["0"], max_results=1, run_view_type=3):  # ViewType.ALL: a deleted run still counts
        c.delete_experiment("0")


def link_lines(store: Store, sweeps: list[tuple[str, str, str | None]]) -> list[str]:
    """What a command prints last: per (experiment name, experiment id, parent run id or None) the link to its
    runs table and to its sweep's run page, then how to start the UI the links open in (embedded store)."""
    lines = []
    for name, experiment_id, parent in sweeps:
        lines.append(f"MLflow {name}: {experiment_link(store, experiment_id)}")
        if parent:
            lines.append(f"  sweep run: {run_link(store, experiment_id, parent)}")
    if store.is_embedded:
        lines.append(f"open the links after starting the UI: {store.ui_command()}")
    return lines


def experiment_ids(store: Store, names: list[str]) -> dict[str, str]:
    """{name: id} of the active experiments among `names` (absent or deleted ones are left out)."""
    c, ids = client(store), {}
    for name in names:
        exp = c.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage == "active":
            ids[name] = exp.experiment_id
    return ids
