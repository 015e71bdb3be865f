"""Learning-rate selection, the first of a spec profile's two stages (docs/math.md, section 15.4).

A profile with a `select` block, e.g.

    select: {lr: [0.0003, 0.001, 0.003, 0.01], seeds: [100, 101, 102], seq_len: 100}

is swept in two stages by `rnngrad sweep`. Stage one, the spec `<name>_rates`: every arm of the grid (a cell with
its lr, seed and seq_len set aside) at every listed rate, on the listed seeds, at one length. Stage two: the grid
itself, each cell at its arm's rate chosen from stage one's results (`choose`). The selection seeds must not be
among the grid's seeds, so the reported runs never include the runs a rate was chosen on; `<name>_rates` is an
ordinary sweep with its own runs, results table and MLflow experiment, so every number a choice rests on is visible.
Its results live inside the spec's own folder (`stage_results_dir`): results/<name>/<name>_rates.parquet and
results/<name>/<name>_rates/runs/, so that dvc.yaml's sweep stage of <name>, whose outputs are results/<name>.parquet
and results/<name>/, holds both stages, and a profile without a selection has nothing more.

An arm's rate is the one with the most runs that learned (`verdicts.learned`, judged afresh from each run's numbers,
as the report judges them, not read from its summary.json: a folder written before the verdict changed is judged
by today's rule), ties broken by the lower
median final validation loss over chance (a run that diverged or failed counts as infinite), then by the lower
rate.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .config import RunConfig, check_values, config_from_values
from .verdicts import learned

STAGE_SUFFIX = "_rates"  # stage one of spec <name> is the spec <name>_rates
SET_ASIDE = ("lr", "seed", "seq_len")  # what a stage-one cell varies: the rest of its config names its arm
SELECTION_KEYS = ("lr", "seeds", "seq_len")


def stage_results_dir(results_dir: Path, name: str) -> Path:
    """The results folder stage one of spec `name` is swept into: the spec's own folder, results/<name>/."""
    return Path(results_dir) / name


@dataclass(frozen=True)
class Selection:
    """A profile's `select` block, validated."""

    lr: tuple[float, ...]  # the candidate rates
    seeds: tuple[int, ...]  # the selection seeds (none of them a seed of the grid)
    seq_len: int  # the one length the rates are compared at


def parse_selection(raw: Any, where: str) -> Selection:
    """The `select` block of profile `where` ("experiments/x.yaml: profiles.full"), or UserError naming what is
    wrong: a missing or unknown key, an empty list, a value its config field refuses."""
    example = "{lr: [0.001, 0.01], seeds: [100, 101], seq_len: 100}"
    if not isinstance(raw, dict):
        raise UserError(f"{where}.select: expected a mapping like {example}, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in SELECTION_KEYS]
    missing = [k for k in SELECTION_KEYS if k not in raw]
    if unknown or missing:
        problem = f"unknown key {unknown[0]!r}" if unknown else f"missing key {missing[0]!r}"
        raise UserError(f"{where}.select: {problem}; a select block has exactly {', '.join(SELECTION_KEYS)}, "
                        f"e.g. {example}")
    lists = {}
    for key, field in (("lr", "lr"), ("seeds", "seed")):
        values = raw[key]
        if not isinstance(values, list) or not values or len(set(map(str, values))) != len(values):
            raise UserError(f"{where}.select.{key}: expected a non-empty list of distinct values, got {values!r}")
        lists[key] = tuple(check_values({field: v}, lambda k, i=i: f"{where}.select.{key}[{i}]")[field]
                           for i, v in enumerate(values))
    seq_len = check_values({"seq_len": raw["seq_len"]}, lambda k: f"{where}.select.seq_len")["seq_len"]
    return Selection(lists["lr"], lists["seeds"], seq_len)


def arm_key(cfg: RunConfig) -> str:
    """What names a cell's arm: its config with lr, seed and seq_len set aside, as canonical JSON."""
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in SET_ASIDE}
    return json.dumps(values, sort_keys=True)


def selection_cells(cells: list[RunConfig], grid: list[dict], selection: Selection, where: str
                    ) -> tuple[list[RunConfig], list[dict]]:
    """Stage one's cells and grid values: each arm of `cells` (first appearance order) at every candidate rate and
    selection seed, at the selection length. UserError when a selection seed is a seed of the grid."""
    shared = sorted({c.seed for c in cells} & set(selection.seeds))
    if shared:
        raise UserError(f"{where}.select.seeds: {shared} are also seeds of the grid; the rates must be chosen on "
                        "other seeds than the runs reported")
    arms: dict[str, tuple[RunConfig, dict]] = {}
    for cfg, g in zip(cells, grid):
        arms.setdefault(arm_key(cfg), (cfg, {k: v for k, v in g.items() if k not in SET_ASIDE}))
    out, names = [], []
    for cfg, g in arms.values():
        for lr in selection.lr:
            for seed in selection.seeds:
                values = {"lr": lr, "seed": seed, "seq_len": selection.seq_len}
                out.append(config_from_values(values, lambda k: f"{where}.select.{k}", base=cfg))
                names.append({**g, **values})
    return out, names


def choose(cells: list[RunConfig], summaries: list[dict | None]) -> dict[str, float]:
    """{arm_key: chosen lr} from stage one: its cells and each one's summary.json (None for a cell with no finished
    run, which counts as failed). See the module docstring for the order."""
    scores: dict[str, dict[float, list]] = {}
    for cfg, summary in zip(cells, summaries):
        scores.setdefault(arm_key(cfg), {}).setdefault(cfg.lr, []).append(summary or {"outcome": "failed"})
    return {arm: min(by_lr, key=lambda lr: rank(by_lr[lr], lr)) for arm, by_lr in scores.items()}


def rank(runs: list[dict], lr: float) -> tuple[int, float, float]:
    """The sort key of one candidate rate of one arm: (- runs learned, median loss over chance, lr)."""
    ratios = sorted(loss_over_chance(r) for r in runs)
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else 0.5 * (ratios[mid - 1] + ratios[mid])
    return -sum(learned_now(r) for r in runs), median, lr


def learned_now(run: dict) -> bool:
    """The `learned` verdict of a run's summary.json numbers under this code's rule (run/verdicts.py)."""
    return learned(str(run.get("outcome")), run.get("final_val_loss"), run.get("chance_loss"), run.get("partial_loss"))


def loss_over_chance(run: dict) -> float:
    """final validation loss / chance loss of a finished run; inf for a diverged or failed one, or no numbers."""
    loss, chance = run.get("final_val_loss"), run.get("chance_loss")
    finished = run.get("outcome") in ("ok", "unstable")
    if not finished or not isinstance(loss, (int, float)) or not isinstance(chance, (int, float)) or not chance > 0:
        return math.inf
    return float(loss) / float(chance) if math.isfinite(loss) else math.inf


def with_rates(cells: list[RunConfig], grid: list[dict], chosen: dict[str, float], where: str
               ) -> tuple[list[RunConfig], list[dict]]:
    """Stage two's cells: each cell at its arm's chosen rate (its grid values gain `lr`). UserError naming a cell
    whose arm stage one has no runs for (a sweep that did not finish its first stage)."""
    out, names = [], []
    for i, (cfg, g) in enumerate(zip(cells, grid)):
        key = arm_key(cfg)
        if key not in chosen:
            raise UserError(f"{where}: cell {i} {g}: no finished rate-selection runs of its arm; run the sweep again "
                            "to finish its first stage")
        out.append(dataclasses.replace(cfg, lr=chosen[key]))
        names.append({**g, "lr": chosen[key]})
    return out, names
