"""Sweep specs `experiments/<name>.yaml` (docs/internals.md, "Sweep specs"): read, validate, expand the grid, and
derive the datasets its cells train on.

This is the one parser of spec files: `rnngrad sweep` runs its cells and `rnngrad generate` makes the data they need,
so the two cannot disagree. A spec lists no datasets: each synthetic cell validates on
`data/<task>_T<seq_len>_N<val_size>_s<data_seed>.npz` (it trains on fresh batches), and text cells need their corpus
to hold their longest window.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .config import (FIELDS, RunConfig, as_mapping, check_values, closest_key_hint, config_from_values, config_hash,
                     read_yaml)
from . import rates
from .datasets import TEXT_TASK, DataRequest
from ..errors import UserError, clip, did_you_mean, shown

SPEC_KEYS = ("name", "description", "base", "profiles")
PROFILE_KEYS = ("base", "grid", "select")
# Cells a sweep runs unless told otherwise (`rnngrad sweep --max-cells`): the specs' largest grid has 160; a grid
# of millions is a typo in an axis, and would spend minutes and gigabytes planning before it ran anything.
MAX_CELLS = 10_000
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Keys that once were valid, and what replaced them: the refusal says so instead of only naming the closest key.
_RETIRED_KEYS = {"data": "datasets now derive from the cells (task, seq_len, val_size, data_seed; text cells: "
                         "text and their longest seq_len); remove it"}


@dataclass(frozen=True)
class Spec:
    """One profile of a sweep spec, fully validated and expanded."""

    name: str  # = the file stem; the MLflow experiment is "rnngrad/<name>"
    description: str  # one sentence shown in the report
    profile: str  # which profile the cells come from (quick, full, ...)
    cells: list[RunConfig]  # the grid's cartesian product over the merged base, in grid order
    grid: list[dict[str, Any]]  # per cell, the grid values that made it (for run names and tables)
    path: Path  # the spec file
    selection: rates.Selection | None = None  # a learning-rate selection run before the grid (run/rates.py)

    @property
    def data(self) -> list[DataRequest]:
        """The datasets the cells (and the rate-selection cells) train on, each once, in the order of the first cell
        needing it."""
        stage = self.selection_stage() if self.selection is not None else None
        cells, grid = (self.cells, self.grid) if stage is None else (self.cells + stage.cells, self.grid + stage.grid)
        return data_requests(cells, grid, self._where)

    @property
    def _where(self) -> str:
        return f"{self.path}: profiles.{self.profile}"

    def selection_stage(self) -> "Spec":
        """Stage one of a profile with a `select` block: the spec `<name>_rates`, every arm at every candidate rate
        on the selection seeds (run/rates.py)."""
        if self.selection is None:
            raise ValueError(f"{self._where} has no select block")
        cells, grid = rates.selection_cells(self.cells, self.grid, self.selection, self._where)
        s = self.selection
        text = (f"Learning-rate selection for {self.name}: every arm at rates {', '.join(map(str, s.lr))} on seeds "
                f"{', '.join(map(str, s.seeds))} (not the seeds reported in {self.name}), T = {s.seq_len}.")
        return Spec(f"{self.name}{rates.STAGE_SUFFIX}", text, self.profile, cells, grid, self.path)

    def at_rates(self, chosen: dict[str, float]) -> "Spec":
        """Stage two: every cell at its arm's rate in `chosen` (rates.choose), no selection left to run."""
        cells, grid = rates.with_rates(self.cells, self.grid, chosen, self._where)
        _check_unique(cells, grid, f"{self._where} at the selected rates")
        return Spec(self.name, self.description, self.profile, cells, grid, self.path)


def load_spec(path: Path | str, profile: str, max_cells: int = MAX_CELLS) -> Spec:
    """Read, validate and expand `experiments/<name>.yaml`. Every profile is validated (a typo in `full` fails
    a `quick` sweep too), then the cells of `profile` are returned: at most `max_cells` of them, counted before
    the grid is expanded. (Another profile's grid beyond that is validated value by value, not expanded.)"""
    path = Path(path)
    raw = as_mapping(read_yaml(path, "sweep spec (docs/internals.md, Sweep specs)"), str(path),
                     "{name: ..., description: ..., base: {...}, profiles: {quick: {...}}}")
    _check_keys(raw, SPEC_KEYS, f"{path}: ")
    name, description = _spec_name(raw, path), raw.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{path}: description: expected one sentence of text, got {shown(description)}")
    base = check_values(as_mapping(raw.get("base"), f"{path}: base", "{task: adding, hidden: 64}"),
                        lambda k: f"{path}: base.{k}")
    profiles = as_mapping(raw.get("profiles"), f"{path}: profiles", "{quick: {grid: {...}}, full: {...}}")
    if not profiles:
        raise UserError(f"{path}: profiles: missing or empty; add at least one profile, e.g. profiles: {{quick: ...}}")
    if profile not in profiles:
        have = ", ".join(shown(p) if not isinstance(p, str) else p for p in profiles)
        raise UserError(f"{path}: profiles: no profile {shown(profile)}{did_you_mean(profile, profiles)}; "
                        f"this spec has: {have}")
    expanded = {p: _expand_profile(profiles[p], base, path, str(p), max_cells, p == profile) for p in profiles}
    cells, grid, selection = expanded[profile]
    return Spec(name, description, profile, cells, grid, path, selection)


def data_requests(cells: list[RunConfig], grid: list[dict], where: str) -> list[DataRequest]:
    """What `cells` need: per synthetic cell its validation set (task, seq_len, val_size, data_seed); per corpus
    (cfg.text: a path or `default`) the longest window of the text cells reading it. `where` names the
    profile, e.g. "experiments/x.yaml: profiles.quick"; each request names the first cell that needs it."""
    synthetic: dict[tuple, DataRequest] = {}
    windows: dict[str, DataRequest] = {}
    for i, cfg in enumerate(cells):
        cell = f"{where}: cell {i} {grid[i]}"
        if cfg.task != TEXT_TASK:
            key = (cfg.task, cfg.seq_len, cfg.val_size, cfg.data_seed)
            synthetic.setdefault(key, DataRequest(*key, where=cell))
        elif cfg.text not in windows or cfg.seq_len > windows[cfg.text].seq_len:
            first = windows[cfg.text].where if cfg.text in windows else cell
            windows[cfg.text] = DataRequest(TEXT_TASK, path=cfg.text, seq_len=cfg.seq_len, where=first)
    return [*synthetic.values(), *windows.values()]


def _check_keys(raw: Mapping, valid: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key in _RETIRED_KEYS:
            raise UserError(f"{where}unknown key {shown(key)}: {_RETIRED_KEYS[key]}")
        if key not in valid:
            raise UserError(f"{where}unknown key {shown(key)}{closest_key_hint(key, valid)}")


def _spec_name(raw: Mapping, path: Path) -> str:
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"{path}: name: {shown(name)} is not a valid name; use letters, digits, '_', '-', '.'")
    if name != path.stem:
        raise UserError(f"{path}: name: {shown(name)} differs from the file name; set name: {path.stem}")
    return name


def _expand_profile(section: Any, base: dict, path: Path, profile: str, max_cells: int,
                    chosen: bool) -> tuple[list[RunConfig], list[dict], rates.Selection | None]:
    """Validate one profile and expand its grid: (cells, grid values per cell, its rate selection or None). A grid
    of more than `max_cells` cells is refused if it is the `chosen` profile's, else only validated (([], [], None)
    returned)."""
    where = f"{path}: profiles.{profile}"
    section = as_mapping(section, where, "{base: {...}, grid: {...}}")
    _check_keys(section, PROFILE_KEYS, f"{where}: ")
    merged = {**base, **check_values(as_mapping(section.get("base"), f"{where}.base", "{iters: 150}"),
                                     lambda k: f"{where}.base.{k}")}
    parts = _grid_parts(section.get("grid"), f"{where}.grid")
    size = sum(math.prod(len(values) for values in axes.values()) for axes in parts)
    if size > max_cells:
        if not chosen:
            return [], [], None
        raise UserError(f"{where}.grid: {size} cells, more than the {max_cells} a sweep runs without asking; "
                        f"shrink the grid, or give --max-cells {size} if you mean it")
    grid = [cell for axes in parts for cell in _product(axes)]
    cells = [config_from_values({**merged, **g}, lambda k: f"{where}: cell {i} {g}: {k}") for i, g in enumerate(grid)]
    _check_corpus_named(cells, grid, merged, where)
    _check_unique(cells, grid, where)
    selection = rates.parse_selection(section["select"], where) if "select" in section else None
    if selection is not None:
        rates.selection_cells(cells, grid, selection, where)  # refuses selection seeds among the grid's
    return cells, grid, selection


def _grid_parts(raw: Any, where: str) -> list[dict[str, list]]:
    """A grid's parts, each a mapping of validated value lists whose cartesian product is a run of cells: the
    grid itself when it is a mapping, or each mapping of a list of them, one after another (for axes that only
    make sense together, e.g. clip_mode none has no threshold to vary)."""
    example = "{gamma_w: [0.5, 1.0]}"
    if not isinstance(raw, list):
        return [_grid_axes(as_mapping(raw, where, example), where)]
    if not raw:
        raise UserError(f"{where}: expected a mapping like {example} or a non-empty list of them, got []")
    return [_grid_axes(as_mapping(part, f"{where}[{i}]", example), f"{where}[{i}]") for i, part in enumerate(raw)]


def _product(axes: dict[str, list]) -> list[dict[str, Any]]:
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def _grid_axes(grid: Mapping, where: str) -> dict[str, list]:
    """Each grid key's validated list of values (in file order); `where` names the grid."""
    axes = {}
    for key, values in grid.items():
        if key not in FIELDS:
            raise UserError(f"{where}: unknown key {shown(key)}{closest_key_hint(key, FIELDS)}")
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}.{key}: expected a non-empty list of values, e.g. [a, b], got {shown(values)}")
        axes[key] = [check_values({key: v}, lambda k, i=i: f"{where}.{k}[{i}]")[key] for i, v in enumerate(values)]
    return axes


def _check_corpus_named(cells: list[RunConfig], grid: list[dict], merged: dict, where: str) -> None:
    """A text cell names its corpus (a path or `default`): left unset, which text it read would be implicit."""
    for i, (cfg, g) in enumerate(zip(cells, grid)):
        if cfg.task == TEXT_TASK and "text" not in merged and "text" not in g:
            raise UserError(f"{where}: cell {i} {g}: a text cell must name its corpus; add text: default (the "
                            "embedded stdlib docstrings) or text: <path to a UTF-8 file> to the spec's base")


def _check_unique(cells: list[RunConfig], grid: list[dict], where: str) -> None:
    """Two cells with one config would share a run folder: reject duplicate grid values."""
    seen: dict[str, int] = {}
    for i, cfg in enumerate(cells):
        h = config_hash(cfg)
        if h in seen:
            raise UserError(f"{where}.grid: cells {seen[h]} {grid[seen[h]]} and {i} {grid[i]} are the same run; "
                            "remove the duplicate value")
        seen[h] = i


def check_files_inside(requests: list[DataRequest], roots: list[Path]) -> None:
    """A spec reads files only inside `roots` (the project, and any folder the command line allows with
    --data-root): a spec is a file anyone can hand over, and what its cells read (their text) is sampled into the
    run's outputs and sent to the tracking server, which may be shared. Links are followed before the check, so a
    link inside the project to /etc does not pass. Nothing is read here."""
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    for req in requests:
        if req.path is None:
            continue
        real = Path(os.path.realpath(req.path))
        if not any(real.is_relative_to(root) for root in real_roots):
            raise UserError(f"{req.where}: text {clip(req.path)}: outside the project ({roots[0]}); a spec reads "
                            f"files only there: move the file into it, or allow its folder with --data-root "
                            f"{clip(str(real.parent))}")


def check_spec_reads(requests: list[DataRequest], data_root: list[Path] | None) -> None:
    """`check_files_inside` the project (the working folder, where `dvc repro` and every command run) and the
    --data-root folders, which must be folders."""
    for root in data_root or []:
        if not root.is_dir():
            raise UserError(f"--data-root {clip(str(root))}: not a folder; give a folder whose files specs may read")
    check_files_inside(requests, [Path.cwd(), *(data_root or [])])


def check_max_cells(max_cells: int) -> None:
    """The --max-cells option: at least 1."""
    if max_cells < 1:
        raise UserError(f"--max-cells: {max_cells} is below 1; give the largest number of cells to run, "
                        f"e.g. {MAX_CELLS} (the default)")
