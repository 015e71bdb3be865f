"""The full study's cost with this checkout's code against a baseline commit's, timed in the same run.

Representative full-profile cells (`REPRESENTATIVES`, one per spec and kind of cell) run in fresh processes, the
baseline's code (the commit's `pipeline/`, from `git archive`) and this checkout's taking turns, each at two
iteration counts; a cell's core-seconds at its full iteration count is extrapolated from the two (a fixed part and
a part per iteration, validation passes included at the spec's eval_every); an untrained cell (iters 0) runs once.
Each child reports the CPU seconds of its run alone (imports excluded, as in a sweep's warm worker) and its peak RSS.

The study's totals: every full-profile cell priced by `rnngrad plan`'s calibration of this code (`after`) and the
same times its representative's measured before/after ratio (`before`); and the study as the baseline ran it (its
own specs, priced the same way) against this study whole. A kind of cell the baseline cannot run (an
arm it does not have: the GRU, the expRNN) is timed after only and priced apart (`study_core_hours_new_arms`): the
ratio compares the cells both codes run. The figures of each representative also hold the plan's estimate over its
measured time, the check that the plan holds to a factor of 1.5.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Callable

BASELINE = "5e825f7"  # the commit the issue measured the full study on (main before the study was made cheaper)
REPEATS = 2  # runs of each representative at each count and code, the least kept
ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "experiments"

# The child: one run of a config (JSON) into a folder, printing its CPU seconds and peak RSS. Both codes have this API.
CHILD = r"""
import json, resource, sys, time
from pipeline.run.config import RunConfig
from pipeline.run.runner import execute_run
cfg = RunConfig(**json.loads(sys.argv[1]))
start = time.process_time()
execute_run(cfg, sys.argv[2], sys.argv[3])
print(json.dumps({"cpu": time.process_time() - start,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


@dataclass(frozen=True)
class Representative:
    """A full-profile cell that stands for the cells of its spec that `stands_for` accepts (by their grid values)."""

    name: str
    spec: str
    cell: dict  # the grid values that pick it
    stands_for: Callable[[dict], bool]
    iters: tuple[int, int]  # the two reduced iteration counts it is timed at
    in_baseline: bool = True  # False: an arm the baseline's code cannot run, timed after only


def _always(grid: dict) -> bool:
    return True


def _vanilla_remedy(grid: dict) -> bool:
    return "cell_type" not in grid and "omega" not in grid and grid.get("activation") != "relu"


REPRESENTATIVES = (
    Representative("weight_norms", "weight_norms", {"init": "orthogonal", "gamma_w": 1.0, "seed": 0}, _always,
                   (100, 400)),
    Representative("activations elman", "activations", {"activation": "tanh", "gamma_w": 1.5, "form": "elman"},
                   lambda g: g["form"] == "elman", (0, 0)),
    Representative("activations pascanu", "activations", {"activation": "relu", "gamma_w": 4.0, "form": "pascanu"},
                   lambda g: g["form"] == "pascanu", (0, 0)),
    Representative("depth", "depth", {"activation": "tanh", "gamma_w": 1.0, "seq_len": 30, "probe_len": 30, "layers": 4,
                                    "seed": 0}, _always, (100, 400)),
    Representative("clipping", "clipping", {"clip_mode": "global", "clip_threshold": 1.0, "seed": 0}, _always,
                   (100, 500)),
    Representative("long_range adding/order", "long_range", {"task": "adding", "seq_len": 200, "seed": 0},
                   lambda g: g["task"] != "copy", (100, 300)),
    Representative("long_range copy", "long_range", {"task": "copy", "seq_len": 50, "seed": 0},
                   lambda g: g["task"] == "copy", (100, 300)),
    Representative("text rnn", "text", {"seed": 0}, lambda g: g.get("cell_type") != "lstm", (500, 1500)),
    Representative("text lstm", "text", {"seed": 0, "cell_type": "lstm", "hidden": 44},
                   lambda g: g.get("cell_type") == "lstm", (500, 1500)),
    Representative("remedies tanh", "remedies", {"task": "adding", "seq_len": 100, "seed": 0, "init": "sparse",
                                                 "gamma_w": 0.95, "clip_mode": "global"}, _vanilla_remedy, (100, 300)),
    Representative("remedies omega", "remedies", {"task": "adding", "seq_len": 100, "seed": 0, "init": "sparse",
                                                  "gamma_w": 0.95, "clip_mode": "global", "omega": 2.0},
                   lambda g: "omega" in g, (100, 300)),
    Representative("remedies irnn", "remedies", {"task": "adding", "seq_len": 100, "seed": 0, "activation": "relu",
                                                 "init": "identity", "gamma_w": 1.0, "clip_mode": "global"},
                   lambda g: g.get("activation") == "relu", (100, 300)),
    Representative("remedies lstm", "remedies", {"task": "adding", "seq_len": 100, "seed": 0, "cell_type": "lstm",
                                                 "hidden": 24, "init": "orthogonal", "gamma_w": 1.0,
                                                 "clip_mode": "global"}, lambda g: g.get("cell_type") == "lstm",
                   (100, 300)),
    Representative("remedies gru", "remedies", {"task": "adding", "seq_len": 100, "seed": 0, "cell_type": "gru",
                                                "hidden": 28, "init": "orthogonal", "gamma_w": 1.0,
                                                "clip_mode": "global"}, lambda g: g.get("cell_type") == "gru",
                   (100, 300), in_baseline=False),
    Representative("remedies exprnn", "remedies", {"task": "adding", "seq_len": 100, "seed": 0,
                                                   "cell_type": "exprnn", "hidden": 69, "init": "orthogonal",
                                                   "gamma_w": 1.0, "clip_mode": "global"},
                   lambda g: g.get("cell_type") == "exprnn", (100, 300), in_baseline=False),
)


def baseline_code(commit: str, into: Path) -> Path:
    """The commit's `pipeline/` package and `experiments/` specs, extracted under `into` (ready for PYTHONPATH).
    RuntimeError when this is not a git checkout holding the commit."""
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit, "pipeline", "experiments"],
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"the baseline commit {commit} is not in this checkout's git history ({e})") from None
    with tarfile.open(fileobj=BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into


def _run_child(code_path: str, values: dict, folder: Path) -> dict:
    """One run in a fresh interpreter whose `pipeline` is the one under `code_path`."""
    env = {**os.environ, "PYTHONPATH": code_path}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(values), str(folder / "no-data"),
                           str(folder / "run")], capture_output=True, text=True, env=env, cwd=folder)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "the run failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _full_cost(points: dict[int, float], iters: int) -> float:
    """Core-seconds at `iters` from runs at two reduced counts (fixed + per iteration), or the one run of iters 0."""
    if len(points) == 1:
        return next(iter(points.values()))
    (a, ca), (b, cb) = sorted(points.items())
    per_iter = max(0.0, (cb - ca) / (b - a))
    return max(ca - per_iter * a, 0.0) + per_iter * iters


def time_representative(rep: Representative, cfg, baseline: str, scratch: Path, repeats: int = REPEATS) -> dict:
    """{before, after}: core-seconds at the cell's full iteration count; {rss_before, rss_after}: peak bytes. Each
    run is repeated, the two codes in turns (ABBA), and the least CPU time kept: other load on the machine only
    ever adds to it."""
    from ..run.config import flatten

    codes = {"before": baseline, "after": str(ROOT)}
    versions = ("before", "after") if rep.in_baseline else ("after",)
    points: dict[str, dict[int, float]] = {version: {} for version in versions}
    rss = dict.fromkeys(versions, 0)
    for repeat in range(repeats):
        for iters in dict.fromkeys(rep.iters):
            values = {**flatten(cfg), "iters": iters}
            for version in versions if repeat % 2 == 0 else versions[::-1]:
                child = _run_child(codes[version], values, Path(tempfile.mkdtemp(dir=scratch)))
                points[version][iters] = min(points[version].get(iters, math.inf), child["cpu"])
                rss[version] = max(rss[version], child["rss"])
    return {"before": _full_cost(points["before"], cfg.iters) if rep.in_baseline else None,
            "after": _full_cost(points["after"], cfg.iters),
            "rss_before": rss.get("before"), "rss_after": rss["after"]}


def _cell(spec, grid: dict):
    """The spec's cell whose grid values are `grid`."""
    return spec.cells[spec.grid.index(_grid_of(spec, grid))]


def _grid_of(spec, grid: dict) -> dict:
    """The grid values of the spec's cell that `grid` names (LookupError when none)."""
    for values in spec.grid:
        if values == grid:
            return values
    raise LookupError(f"{spec.name}: no full-profile cell {grid}")


def bench_study(baseline: str = BASELINE, progress: Callable[[str], None] = lambda message: None,
                spec_dir: Path = SPECS, representatives: tuple[Representative, ...] = REPRESENTATIVES) -> dict:
    """Figures `study/<representative>/...` (before, after, ratio, planned_over_measured, peak RSS) and the study's
    core-hours before and after (`study_core_hours_*`, `study_ratio`), baseline timed in the same run."""
    from ..run import cost
    from ..run.calibrate import Calibration, estimate_seconds
    from ..run.spec import load_spec

    specs = {path.stem: load_spec(path, "full") for path in sorted(Path(spec_dir).glob("*.yaml"))}
    figures, measured = {}, {}
    with tempfile.TemporaryDirectory(prefix="rnngrad-bench-study-") as scratch:
        code = str(baseline_code(baseline, Path(scratch) / "baseline"))
        no_data = Path(scratch) / "no-data"  # datasets are built in memory, by both codes alike
        calibration, sizes_of = Calibration(no_data, progress=progress), cost.sizes_reader(no_data)
        try:
            for rep in representatives:
                if rep.spec not in specs:
                    continue
                progress(f"study: {rep.name}")
                cfg = _cell(specs[rep.spec], rep.cell)
                result = time_representative(rep, cfg, code, Path(scratch))
                measured[rep.name] = result
                sizes = sizes_of(cfg)
                planned = estimate_seconds(cost.work_counts(cfg, sizes), calibration.units(cfg, sizes))
                before = "not in the baseline" if result["before"] is None else f"{result['before']:,.1f} core-s before"
                progress(f"study: {rep.name}: {before}, {result['after']:,.1f} after, {planned:,.1f} planned")
                figures[f"study/{rep.name}/after_core_s"] = result["after"]
                if result["before"] is not None:
                    figures |= {f"study/{rep.name}/before_core_s": result["before"],
                                f"study/{rep.name}/ratio": result["before"] / result["after"],
                                f"study/{rep.name}/peak_rss_before_mib": result["rss_before"] / cost.MIB}
                figures |= {f"study/{rep.name}/planned_over_measured": planned / result["after"],
                            f"study/{rep.name}/peak_rss_after_mib": result["rss_after"] / cost.MIB}
            progress("study: the plan of every full-profile cell")
            figures |= _study_totals(specs, representatives, measured, calibration, no_data)
            progress("study: the plan of every cell of the baseline's own full profile")
            this_study = figures["study_core_hours_after"] + figures["study_core_hours_new_arms"]
            figures |= _baseline_study(Path(code) / "experiments", representatives, measured, calibration, no_data,
                                       this_study)
            figures["study_baseline"] = baseline
        finally:
            calibration.close()
    return figures


def _baseline_study(spec_dir: Path, representatives: tuple[Representative, ...], measured: dict, calibration,
                    data_dir: Path, this_study: float) -> dict:
    """The whole study as the baseline ran it: the baseline's own full-profile specs (its grids, sizes and cadences),
    each cell priced by this code's plan times its representative's before/after ratio; beside it this study whole
    (its cells both codes run, the new arms and the rate selection), and the ratio of the two. An estimate: the
    ratio is measured on this study's representative cells. None when this loader cannot read the baseline's specs."""
    from ..errors import UserError
    from ..run.spec import load_spec

    try:
        specs = {path.stem: load_spec(path, "full") for path in sorted(spec_dir.glob("*.yaml"))}
    except UserError:
        return {}
    out = {f"study/{name}/baseline_study_core_hours": 0.0 for _, _, name in _stages(specs)}
    for name, times, planned in _priced_cells(specs, representatives, measured, calibration, data_dir):
        if times["before"] is not None:
            out[f"study/{name}/baseline_study_core_hours"] += planned * times["before"] / times["after"] / 3600
    total = sum(out.values())
    return out | {"study_core_hours_baseline_study": total, "study_core_hours_this_study": this_study,
                  "study_ratio_whole": total / this_study if this_study else float("nan")}


def _priced_cells(specs: dict, representatives: tuple[Representative, ...], measured: dict, calibration,
                  data_dir: Path):
    """(stage's name, the cell's measured representative, its planned core-seconds by this code) of every cell of
    the specs' sweeps that a measured representative stands for."""
    from ..run import cost
    from ..run.calibrate import estimate_seconds

    sizes_of = cost.sizes_reader(data_dir)
    for base, stage, name in _stages(specs):
        reps = [r for r in representatives if r.spec == base and r.name in measured]
        for cfg, grid in zip(stage.cells, stage.grid):
            rep = next((r for r in reps if r.stands_for(grid)), None)
            if rep is not None:
                sizes = sizes_of(cfg)
                yield name, measured[rep.name], estimate_seconds(cost.work_counts(cfg, sizes),
                                                                 calibration.units(cfg, sizes))


def _stages(specs: dict):
    """(spec file's name, stage, stage's name) of every sweep the study runs: a profile with a learning-rate selection
    sweeps its `<name>_rates` stage first, whose cells the spec's representatives stand for too."""
    for name, spec in specs.items():
        for stage in ([spec.selection_stage()] if spec.selection is not None else []) + [spec]:
            yield name, stage, stage.name


def _study_totals(specs: dict, representatives: tuple[Representative, ...], measured: dict, calibration,
                  data_dir: Path) -> dict:
    """Every full-profile cell's planned core-seconds (after), and those times its representative's ratio (before),
    summed per spec and over the study; the cells of arms the baseline cannot run summed apart (after only), so that
    the ratio compares the same cells."""
    per_stage = {name: {"before": 0.0, "after": 0.0, "new_arms": 0.0} for _, _, name in _stages(specs)}
    for name, times, planned in _priced_cells(specs, representatives, measured, calibration, data_dir):
        own = per_stage[name]
        if times["before"] is None:
            own["new_arms"] += planned
        else:
            own["after"] += planned
            own["before"] += planned * times["before"] / times["after"]
    out, totals = {}, {"before": 0.0, "after": 0.0, "new_arms": 0.0}
    for name, own in per_stage.items():
        out[f"study/{name}/core_hours_before"], out[f"study/{name}/core_hours_after"] = (own["before"] / 3600,
                                                                                         own["after"] / 3600)
        if own["new_arms"]:
            out[f"study/{name}/core_hours_new_arms"] = own["new_arms"] / 3600
        totals = {key: totals[key] + own[key] for key in totals}
    return out | {"study_core_hours_before": totals["before"] / 3600, "study_core_hours_after": totals["after"] / 3600,
                  "study_core_hours_new_arms": totals["new_arms"] / 3600,
                  "study_ratio": totals["before"] / totals["after"] if totals["after"] else float("nan")}
