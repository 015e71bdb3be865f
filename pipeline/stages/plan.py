"""`rnngrad plan`: what a profile's sweeps will cost before they run."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from ..run.paths import check_data_dir
from ..run.spec import MAX_CELLS, check_max_cells

PROFILES = ("quick", "full")


def plan_cmd(
    specs: Annotated[list[Path] | None, typer.Argument(
        metavar="SPEC", help="Sweep specs, e.g. experiments/remedies.yaml; default: the specs params.yaml names "
        "(else every experiments/*.yaml).")] = None,
    profile: Annotated[str, typer.Option(help="Which profile of the specs: quick or full.")] = "quick",
    jobs: Annotated[int, typer.Option(help="Workers the wall time is given for; 0 = one per CPU this process may "
                                      "use (its affinity).")] = 0,
    data_dir: Annotated[Path, typer.Option(help="Datasets written by `rnngrad generate` (text corpora are checked "
                                           "against its manifest).")] = Path("data"),
    max_cells: Annotated[int, typer.Option(help="Refuse a grid of more cells than this, as `rnngrad sweep` "
                                           "does.")] = MAX_CELLS,
    cells: Annotated[bool, typer.Option("--cells", help="Also list every cell with its estimate.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (every cell's core-seconds and peak "
                                          "memory, each spec's and the total) instead of the table.")] = False,
) -> None:
    """Estimate a profile's sweeps before they run: per spec its cells, core-seconds and peak memory per cell, and
    the totals (core-hours, wall time on --jobs workers, the memory each worker needs).

    Memory is the estimate that `rnngrad train` and `rnngrad sweep` refuse a cell by (--max-memory). Time is
    calibrated: each kind of cell (its cell, sizes and optimiser) runs the engine briefly on this machine (a few
    training steps, one validation chunk, one probe), and every cell's counts of steps, validation passes and probes
    are priced with those timings. The calibration takes about a minute for the full profile on idle cores; run it
    on the machine (and kind of worker) the study will use. A run that diverges stops early, so its cell costs less
    than planned. Estimates hold to about a factor of 1.5.
    """
    from ..run import cost
    from ..run.calibrate import Calibration, estimate_seconds
    from ..run.spec import load_spec
    from ..sweep import cell_names
    from .generate import _spec_paths

    check_max_cells(max_cells)
    if profile not in PROFILES:
        raise UserError(f"--profile: unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    if jobs < 0:
        raise UserError(f"--jobs: {jobs} is negative; give a number of workers >= 1, or 0 for one per core")
    check_data_dir(data_dir)
    loaded = [load_spec(path, profile, max_cells) for path in _spec_paths(specs)]
    # a profile with a `select` block sweeps its learning-rate selection first, as a spec of its own: priced too
    loaded = [stage for spec in loaded for stage in
              ([spec.selection_stage()] if spec.selection is not None else []) + [spec]]
    sizes_of = cost.sizes_reader(data_dir)
    named = [(spec, name, cfg, sizes_of(cfg)) for spec in loaded for name, cfg in zip(cell_names(spec), spec.cells)]
    start = time.perf_counter()
    calibration = Calibration(data_dir, progress=None if as_json else lambda text: typer.echo(f"  {text}", err=True))
    try:
        rows = [{"spec": spec.name, "cell": name, "memory_bytes": cost.peak_bytes(cfg, sizes),
                 "core_seconds": estimate_seconds(cost.work_counts(cfg, sizes), calibration.units(cfg, sizes))}
                for spec, name, cfg, sizes in named]
    finally:
        calibration.close()
    report = summarise(rows, profile, jobs or cost.usable_cpus(), time.perf_counter() - start)
    typer.echo(json.dumps(report) if as_json else render(report, cells))


def summarise(rows: list[dict], profile: str, workers: int, calibration_seconds: float) -> dict:
    """Per spec: cells, median and largest core-seconds of a cell, largest memory, total; and the study's."""
    specs = {}
    for name in dict.fromkeys(r["spec"] for r in rows):
        mine = [r for r in rows if r["spec"] == name]
        seconds = [r["core_seconds"] for r in mine]
        specs[name] = {"cells": len(mine), "median_cell_core_seconds": statistics.median(seconds),
                       "max_cell_core_seconds": max(seconds), "max_memory_bytes": max(r["memory_bytes"] for r in mine),
                       "core_seconds": sum(seconds)}
    total = sum(r["core_seconds"] for r in rows)
    longest = max(rows, key=lambda r: r["core_seconds"])
    heaviest = max(rows, key=lambda r: r["memory_bytes"])
    return {"profile": profile, "cells": len(rows), "core_seconds": total, "core_hours": total / 3600,
            "workers": workers, "wall_seconds": max(total / workers, longest["core_seconds"]),
            "worker_memory_bytes": heaviest["memory_bytes"], "heaviest_cell": f"{heaviest['spec']}: {heaviest['cell']}",
            "longest_cell": f"{longest['spec']}: {longest['cell']}", "calibration_seconds": calibration_seconds,
            "specs": specs, "rows": rows}


def render(report: dict, with_cells: bool) -> str:
    """The plan as a table for people."""
    from ..run.cost import format_bytes

    head = f"{'spec':<14}{'cells':>6}  {'core-s per cell (median, max)':>30}  {'memory per cell':>15}  {'core-hours':>10}"
    lines = [f"rnngrad plan: profile {report['profile']}, {report['cells']} cells "
             f"(calibrated on this machine in {report['calibration_seconds']:.0f} s)", "", head]
    for name, s in report["specs"].items():
        per_cell = f"{s['median_cell_core_seconds']:,.1f}, {s['max_cell_core_seconds']:,.1f}"
        lines.append(f"{name:<14}{s['cells']:>6}  {per_cell:>30}  {format_bytes(s['max_memory_bytes']):>15}  "
                     f"{s['core_seconds'] / 3600:>10.2f}")
    lines.append(f"{'total':<14}{report['cells']:>6}  {'':>30}  {format_bytes(report['worker_memory_bytes']):>15}  "
                 f"{report['core_hours']:>10.2f}")
    hours, minutes = divmod(round(report["wall_seconds"] / 60), 60)
    lines += ["", f"On {report['workers']} workers: about {hours} h {minutes:02d} min of wall time (the longest cell, "
              f"{report['longest_cell']}, alone {report_seconds(report)}); each worker needs "
              f"{format_bytes(report['worker_memory_bytes'])} ({report['heaviest_cell']})."]
    if with_cells:
        lines += ["", f"{'cell':<60}{'core-s':>10}  {'memory':>10}"]
        lines += [f"{r['spec'] + ': ' + r['cell']:<60.60}{r['core_seconds']:>10,.1f}  {format_bytes(r['memory_bytes']):>10}"
                  for r in report["rows"]]
    return "\n".join(lines)


def report_seconds(report: dict) -> str:
    longest = max(r["core_seconds"] for r in report["rows"])
    return f"{longest / 60:.0f} min" if longest >= 120 else f"{longest:.0f} s"
