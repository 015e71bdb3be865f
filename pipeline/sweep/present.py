"""The sweep in MLflow: its experiment described, its parent run opened (or reopened by a resumed sweep) and closed with
its counts, results table and spec, one child run per cell started with its datasets and ended once its folder is
logged (or FAILED with the reason), and the parent's summary table of its cells.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

from ..run.config import applicable, flatten
from ..run.verdicts import OUTCOMES
from ..tracking import runs, server, ui
from ..tracking.values import round_significant, untracked_run_id
from .plan import Cell, SweepResult


def _present_experiment(store, exp_id: str, spec) -> None:
    """The experiment's description (the spec's) and its runs-table view; MLflow's empty Default experiment out of
    the list."""
    ui.describe_experiment(store, exp_id, getattr(spec, "description", ""))
    ui.hide_empty_default_experiment(store)


IN_MEMORY = "in memory"  # the Dataset column's digest of a validation set built from its seed (the UI showed "()")


def dataset_refs(cells: list[Cell], data_dir: Path) -> dict[str, list[ui.DatasetRef]]:
    """{config_hash: the datasets the cell reads}, with the digests `rnngrad generate` wrote in data/manifest.json:
    a synthetic cell's held-out validation set (its training sequences are drawn fresh from its seed, so they are
    no file), a text cell's corpus. A digest the manifest lacks (data built in memory) is left empty."""
    from ..run.datasets import TEXT_TASK, dataset_name
    from ..run.paths import read_manifest

    manifest = read_manifest(data_dir)  # checked whole before the sweep started (paths.check_data_dir)
    files = manifest.get("files") or {}
    refs: dict[str, list[ui.DatasetRef]] = {}
    for cell in cells:
        cfg = cell.config
        if cfg.task == TEXT_TASK:  # the corpus `generate` recorded under the name the cell gives (`default` or a path)
            entry = (manifest.get("corpora") or {}).get(cfg.text) or {}
            source = entry.get("source") or str(cfg.text)
            profile = {"task": TEXT_TASK, "window": cfg.seq_len, "source": source}
            name = "text" if cfg.text == "default" else Path(str(cfg.text)).stem
            refs[cell.config_hash] = [ui.DatasetRef(name, (entry.get("sha256") or "")[:12], source, profile,
                                                    "training")]
            continue
        name = dataset_name(cfg.task, cfg.seq_len, cfg.val_size, cfg.data_seed)
        digest = ((files.get(f"{name}.npz") or {}).get("sha256") or "")[:12]
        profile = {"task": cfg.task, "T": cfg.seq_len, "count": cfg.val_size, "seed": cfg.data_seed}
        source = str((data_dir / f"{name}.npz").resolve())
        if not (data_dir / f"{name}.npz").is_file():  # the run builds it from its seed: no file to point at
            digest, source = IN_MEMORY, f"built in memory from data_seed {cfg.data_seed} (no {name}.npz in data/)"
        refs[cell.config_hash] = [ui.DatasetRef(name, digest, source, profile)]
    return refs


def _open_parent(store, exp_id: str, spec, shash: str, work: bool = True) -> str:
    """The unfinished parent run of this same sweep (spec, profile, configs) reopened; with no work, the finished
    one (so repeating a done sweep adds no empty parent); else a new one."""
    same = f"tags.spec_hash = '{shash}' and tags.profile = '{spec.profile}' and tags.spec = '{spec.name}'"
    previous = runs.find_runs(store, exp_id, same)
    unfinished = [r for r in previous if r.status != "FINISHED"]
    if unfinished:
        runs.reopen_run(store, unfinished[0].run_id)
        return unfinished[0].run_id
    if previous and not work:  # one parent per sweep: it gets the same table again, and keeps its times
        return previous[0].run_id
    base = shared_values(spec.cells)
    tags = {"spec": spec.name, "profile": spec.profile, "spec_hash": shash, BASE_TAG: json.dumps(base, default=str)}
    tags |= _source(spec)
    if getattr(spec, "description", ""):
        tags["mlflow.note.content"] = spec.description  # shown as the run's description in the UI
    name = parent_name(spec, shash, base, _earlier_bases(store, exp_id, spec, shash))
    parent = runs.start_run(store, exp_id, name, tags=tags)
    runs.log_values(store, parent, params=applicable(base))  # two parents compare by what they share
    return parent


BASE_TAG = "base_values"  # a parent's values every cell shares, as JSON: what the next sweep's name is told from
MAX_NAME_PARTS = 4  # more changed values than this: the name gives the sweep's hash instead


def shared_values(configs) -> dict:
    """The config values every cell of the sweep shares (flattened): the spec's base as it resolved."""
    flat = [flatten(cfg) for cfg in configs]
    return {k: v for k, v in flat[0].items() if all(f.get(k) == v for f in flat[1:])} if flat else {}


def _earlier_bases(store, exp_id: str, spec, shash: str) -> list[dict]:
    """The shared values of this spec and profile's earlier sweeps of other cells, newest first."""
    same = f"tags.profile = '{spec.profile}' and tags.spec = '{spec.name}'"
    bases = []
    for r in runs.find_runs(store, exp_id, same):
        if r.tags.get("spec_hash") != shash and BASE_TAG in r.tags:
            try:
                bases.append(json.loads(r.tags[BASE_TAG]))
            except ValueError:
                continue
    return bases


def parent_name(spec, shash: str, base: dict, earlier: list[dict]) -> str:
    """`<spec> (<profile>)`, and when the spec was swept before with other cells, what sets this sweep apart: the
    shared values that differ from the newest earlier sweep's (`sat_acts (quick) n=64`), or the sweep's short hash
    when the difference is in the grid or too long to read (`sat_acts (quick) #3f2a1c`)."""
    name = f"{spec.name} ({spec.profile})"
    if not earlier:
        return name
    base = json.loads(json.dumps(base, default=str))  # as the earlier sweeps' tags hold their values
    changed = {k: v for k, v in base.items() if earlier[0].get(k, v) != v or k not in earlier[0]}
    if not changed or len(changed) > MAX_NAME_PARTS:
        return f"{name} #{shash[:6]}"
    return f"{name} {ui.short_values(changed)}"


def _close_parent(store, spec, parent: str, result: SweepResult, table) -> None:
    """The parent's counts as metrics (so that parents compare in the runs table and in `mlflow.search_runs`), its
    results table and spec as artifacts; then it ends. A parent a repeated, finished sweep found already FINISHED
    keeps its end time, so its duration stays the sweep's."""
    outcomes = table["outcome"].value_counts() if len(table) else {}
    run_counts = {f"runs_{o}": int(outcomes.get(o, 0)) for o in OUTCOMES}
    runs.log_values(store, parent, metrics=result.outcome_counts | run_counts | parent_metrics(table))
    runs.log_artifact(store, parent, result.table_path)
    if getattr(spec, "path", None):
        runs.log_artifact(store, parent, spec.path)
    if result.crashed or runs.run_status(store, parent) != "FINISHED":
        runs.end_run(store, parent, "FAILED" if result.crashed else "FINISHED")


def parent_metrics(table) -> dict[str, float]:
    """What a sweep found, as numbers a runs table compares across parents: how many runs were scored (their task
    has a chance loss), learned (the margin below the partial baseline: run.verdicts.learned) and solved (learned,
    and at least 99 % of the held-out sequences right, the papers' bar), and the median fitted decay slopes at init and
    after training (nats per step, over the runs that have one; left out when none has)."""
    from ..run.verdicts import levels, scored

    rows = table.to_dict("records") if len(table) else []
    reached = [levels(str(r.get("outcome")), _number(r.get("final_val_loss")), _number(r.get("chance_loss")),
                      _number(r.get("partial_loss")), _number(r.get("val_sequences_right"))) for r in rows]
    out: dict[str, float] = {
        "runs_scored": sum(scored(_number(r.get("chance_loss"))) for r in rows),
        "runs_learned": sum(bool(x["learned"]) for x in reached),
        "runs_solved": sum(bool(x["solved"]) for x in reached)}
    for key in ("slope_init", "slope_final"):
        slopes = [v for v in (_number(r.get(key)) for r in rows) if v is not None]
        if slopes:
            out[f"{key}_median"] = statistics.median(slopes)
    return out


def _child_tags(spec, cell: Cell) -> dict:
    return {"config_hash": cell.config_hash, "spec": spec.name, "profile": spec.profile, "cell": cell.name} | \
        _source(spec)


def _source(spec) -> dict:
    """The user, the command and the git commit, for the runs table's User and Source columns."""
    path = getattr(spec, "path", None)
    return ui.source_tags(f"rnngrad sweep {path.as_posix() if path else spec.name}")


def _start_child(store, exp_id: str, parent: str, spec, cell: Cell, inputs: dict) -> str:
    """Create a cell's RUNNING child run, named by its varying grid values, with its datasets as inputs. Without a
    store (--no-track), no run: the cell's untracked run id."""
    if store is None:
        return untracked_run_id(cell.config_hash)
    run_id = runs.start_run(store, exp_id, cell.label or cell.name, parent, _child_tags(spec, cell))
    ui.log_datasets(store, run_id, inputs.get(cell.config_hash, []))
    return run_id


_RESULT_LOCK = threading.Lock()  # SweepResult's sums, added to from the logging threads


def _log_and_finish(store, run_id: str, cell: Cell, result: SweepResult) -> str:
    start = time.perf_counter()
    if store is not None:
        runs.log_folder_and_end(store, run_id, cell.run_dir)
    seconds = time.perf_counter() - start
    with _RESULT_LOCK:
        result.logging_seconds += seconds
        result.logging_by_cell[cell.name] = result.logging_by_cell.get(cell.name, 0.0) + seconds
    return json.loads((cell.run_dir / "summary.json").read_text(encoding="utf-8")).get("outcome", "ok")


def _record_crash(store, run_id: str, cell: Cell, message: str, result: SweepResult) -> None:
    if store is not None:
        runs.log_values(store, run_id, tags={"outcome": "failed", "error": message})
        runs.end_run(store, run_id, "FAILED")
    result.crashed[cell.name] = message


def _end_runs(store, run_ids: list[str], status: str) -> None:
    """End runs as the sweep stops; a tracking server that stopped answering leaves them RUNNING (the next sweep
    ends them KILLED), and the error that stopped the sweep is the one reported. No store (--no-track): no runs."""
    for run_id in run_ids if store is not None else []:
        try:
            runs.end_run(store, run_id, status)
        except server.StoreUnreachable:
            return


def _present_parent(store, parent: str, cells: list[Cell], table, inputs: dict) -> None:
    """The parent run's summary table of its cells (rendered by the UI) and the union of its cells' datasets."""
    if len(table):
        ui.log_summary_table(store, parent, summary_table(cells, table))
    seen = {}
    for refs in inputs.values():
        seen |= {(r.name, r.digest): r for r in refs}
    ui.log_datasets(store, parent, list(seen.values()))


def summary_table(cells: list[Cell], table):
    """One row per run: its short name, the grid axes that vary, its outcome, whether it learned (verdict), its
    final validation loss over the chance loss, and the regime predicted at init and observed at init and after
    training. Numbers rounded to 4 significant digits: a table to read, not to recompute from."""
    import pandas as pd

    from ..run.probe import observed_regime
    from ..run.verdicts import verdict

    axes = {c.name: dict(part.split("=", 1) for part in c.name.split(",") if "=" in part) for c in cells}
    keys = list(dict.fromkeys(k for values in axes.values() for k in values))
    varying = [k for k in keys if len({values.get(k) for values in axes.values()}) > 1]
    labels = {c.config_hash: c.label or c.name for c in cells}
    rows = []
    for r in table.to_dict("records"):
        loss, chance, slope_final = (_number(r.get(k)) for k in ("final_val_loss", "chance_loss", "slope_final"))
        rows.append({"run": labels.get(r["config_hash"], r["cell"])}
                    | {k: axes.get(r["cell"], {}).get(k) for k in varying}
                    | {"outcome": r.get("outcome"),
                       "verdict": verdict(r.get("outcome"), loss, chance),
                       "val_loss": _rounded(loss), "chance_loss": _rounded(chance),
                       "val_over_chance": _rounded(loss / chance if loss is not None and chance else None),
                       "predicted_regime": r.get("predicted_regime"),
                       "observed_regime_init": r.get("observed_regime"),
                       "observed_regime_final": None if slope_final is None else observed_regime(slope_final),
                       "run_id": r["run_id"]})
    rows.sort(key=lambda row: tuple(_axis_order(row[k]) for k in varying))  # read down an axis, not grid order
    return pd.DataFrame(rows)


def _axis_order(value) -> tuple:
    """Numbers by value (0.5 before 4, 4 before 10), then words, then missing values."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (2, 0.0, "") if value is None else (1, 0.0, str(value))


def _number(v) -> float | None:
    import math

    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _rounded(v: float | None) -> float | None:
    return None if v is None else round_significant(v)
