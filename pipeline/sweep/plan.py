"""A sweep's plan: its cells in grid order, each named by its grid values and by its run hash (its config and the
content of every input it reads), the sweep's own hash, and `SweepResult`, the tally of what became of each cell.
Knows nothing of processes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..run.config import flatten
from ..run.sources import run_hash
from ..tracking import ui


@dataclass(frozen=True)
class Cell:
    name: str  # the grid values that set this cell apart, e.g. "gamma_w=2.0,seed=0"
    config: Any  # the resolved RunConfig
    config_hash: str
    run_dir: Path  # results/<spec>/runs/<config_hash>
    redo: bool = False  # compute it even though its folder exists (a `failed` or unreadable one, replaced)
    label: str = ""  # the MLflow run name: the values of the axes that vary, short (e.g. "γW=3 s1")


@dataclass
class SweepResult:
    experiment_id: str | None  # None for a sweep without MLflow (--no-track), as is its parent's
    parent_run_id: str | None
    table_path: Path
    ran: list[str] = field(default_factory=list)  # cells computed now
    skipped: list[str] = field(default_factory=list)  # finished before: folder + FINISHED run
    relogged: list[str] = field(default_factory=list)  # folder existed, logged again without recomputing
    retried: list[str] = field(default_factory=list)  # computed again: its folder said `failed` or was unreadable
    crashed: dict[str, str] = field(default_factory=dict)  # cell -> error
    logging_seconds: float = 0.0  # time this process spent logging run folders to MLflow, summed over its threads
    logging_by_cell: dict[str, float] = field(default_factory=dict)  # cell -> MLflow seconds: create + log + end

    @property
    def outcome_counts(self) -> dict[str, int]:
        return {"cells_ran": len(self.ran), "cells_skipped": len(self.skipped),
                "cells_relogged": len(self.relogged), "cells_retried": len(self.retried),
                "cells_crashed": len(self.crashed)}


def cell_names(spec) -> list[str]:
    """Name each cell by its grid values, e.g. "gamma_w=2.0,seed=0" ("base" for a grid of one)."""
    grid = getattr(spec, "grid", None) or [{} for _ in spec.cells]
    return [",".join(f"{k}={v}" for k, v in g.items()) or "base" for g in grid]


def plan_cells(spec, results_dir: Path, data_dir: Path = Path("data")) -> list[Cell]:
    """The spec's cells in grid order, each named by its run hash: its config and the content digest of every
    input it reads (load_spec has rejected duplicate configs; two corpus paths with one content are refused)."""
    runs, names, cache = Path(results_dir) / spec.name / "runs", cell_names(spec), {}
    hashes = [run_hash(cfg, Path(data_dir), cache) for cfg in spec.cells]
    for i, h in enumerate(hashes):
        if h in hashes[:i]:
            raise UserError(f"{getattr(spec, 'path', spec.name)}: cells {names[hashes.index(h)]} and {names[i]} are "
                            "the same run (their corpora have the same content); remove one")
    labels = ui.short_run_names(getattr(spec, "grid", None) or [{} for _ in spec.cells],
                                [flatten(cfg) for cfg in spec.cells])
    return [Cell(n, cfg, h, runs / h, label=label) for n, cfg, h, label in zip(names, spec.cells, hashes, labels)]


def spec_hash(cells: list[Cell]) -> str:
    """Identifies a sweep by the set of configs it runs (not by its description or key order)."""
    return hashlib.sha256("\n".join(sorted(c.config_hash for c in cells)).encode()).hexdigest()[:12]
