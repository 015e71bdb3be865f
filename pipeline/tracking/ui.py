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

from .artifacts import log_file as _artifact_log_file
from .artifacts import run_folder as _artifact_run_folder
from .connection import Store, _mlflow, client
from .runs import PARENT_TAG, find_runs
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
    "cell_type": "{v}",
}
_VALUE_WORDS = {"elementwise": "elem", "global": "global", "none": "no clip", "orthogonal": "orth",
                "gaussian": "gauss", "leaky_relu": "leaky", "hard_tanh": "hardtanh", "temporal_order": "order"}


def _short_value(v) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:g}"
    return _VALUE_WORDS.get(v, str(v)) if isinstance(v, str) else str(v)


def short_run_names(grid: list[dict], configs: list[dict] | None = None, base: str = "base") -> list[str]:
    """One short, readable name per grid cell from the axes whose values differ between cells (e.g. `γW=3 s1`,
    `elem·100 s2`, `copy T=40`): the runs table cuts long names, so an axis every cell shares is left out.
    A clipping threshold joins its mode (`elem·100`). `configs` (each cell's resolved config, flat) give the value
    of an axis a cell leaves to the base: in a grid of two arms, `{seed: [0]}` and `{seed: [0], cell_type: [lstm],
    hidden: [44]}`, the first is `rnn n=100`, not nameless. A single cell is named by its arm (its cell type) and
    its own grid values (`rnn s0`); `base` only when there is nothing to name it by."""
    values = [{**(configs[i] if configs else {}), **cell} for i, cell in enumerate(grid)]
    keys = sorted(dict.fromkeys(k for cell in grid for k in cell), key=lambda k: (k != "cell_type", k == "seed"))
    varying = [k for k in keys if len({json.dumps(v.get(k), sort_keys=True, default=str) for v in values}) > 1]
    if len(grid) == 1:  # the arm first, then the cell's own values
        varying = (["cell_type"] if "cell_type" in values[0] and "cell_type" not in keys else []) + keys
    names = []
    for cell in values:
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


def short_values(values: dict) -> str:
    """Config values as a run name writes them: `n=64 lr=0.01` ({hidden: 64, lr: 0.01})."""
    return " ".join(_AXIS_LABELS.get(k, f"{k}={{v}}").format(v=_short_value(v)) for k, v in values.items())


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
        path.write_text(table.to_json(orient="split", index=False, date_format="iso"), encoding="utf-8")
        parent = str(Path(artifact_file).parent) if Path(artifact_file).parent != Path(".") else None
        _artifact_log_file(store, run_id, path, parent)
    tags = dict(c.get_run(run_id).data.tags)
    logged = json.loads(tags.get("mlflow.loggedArtifacts", "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in logged:
        c.set_tag(run_id, "mlflow.loggedArtifacts", json.dumps(logged + [entry]))


def log_files(store: Store, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    """Log existing files under `artifact_path` of a run (the report's figures and documents on a sweep's parent)."""
    for path in paths:
        _artifact_log_file(store, run_id, path, artifact_path)


def sweep_parent(store: Store, spec: str, run_ids: list[str]) -> str | None:
    """The sweep (parent) run of experiment `rnngrad/<spec>` in this store that planned exactly `run_ids`: the
    results table it logged lists those runs. None when no sweep of that spec here did. A results table is a file
    anyone can hand over: the report is logged only to the sweep whose runs it shows, never to whatever run an id
    in a table names."""
    exp = experiment_ids(store, [f"rnngrad/{spec}"]).get(f"rnngrad/{spec}")
    if exp is None or not run_ids:
        return None
    found = {r.run_id: r.tags for r in find_runs(store, exp)}
    wanted = set(run_ids)
    candidates = dict.fromkeys(found[i].get(PARENT_TAG) for i in run_ids if i in found)
    for parent in candidates:
        tags = found.get(parent) or {}
        if tags.get("spec") == spec and tags.get("spec_hash") and _planned_runs(store, parent, spec) == wanted:
            return parent
    return None


def _planned_runs(store: Store, parent: str, spec: str) -> set[str]:
    """The run ids of the results table `<spec>.parquet` a sweep logged to its parent run (empty without one)."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="rnngrad-planned-") as tmp:
        try:
            folder = _artifact_run_folder(store, client(store).get_run(parent).info.artifact_uri)
            path = folder / f"{spec}.parquet" if folder is not None else \
                client(store).download_artifacts(parent, f"{spec}.parquet", tmp)  # a server's run
            return {str(i) for i in pq.read_table(path, columns=["run_id"]).column("run_id").to_pylist()}
        except (_mlflow().exceptions.MlflowException, OSError, pa.ArrowException, KeyError):
            return set()  # no table logged (a sweep stopped before its end), or not one a sweep wrote


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
