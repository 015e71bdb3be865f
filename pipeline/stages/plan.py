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
    against: Annotated[Path | None, typer.Option(help="A results folder of this profile's sweeps (e.g. results): "
                                                 "beside each spec's estimate, what its finished runs took (each "
                                                 "run's CPU seconds; its wall seconds for a run that recorded no CPU "
                                                 "time) over the same cells, and the ratio. A sweep still running or "
                                                 "stopped midway is read from its finished run folders.")] = None,
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
    table = None if against is None else _results_table(against)
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
    if table is not None:
        report["measured"] = compare(rows, table, _folder_times(against, [(s.name, n, c) for s, n, c, _ in named]))
    typer.echo(json.dumps(report) if as_json else render(report, cells))


def _results_table(results_dir: Path):
    """(spec, cell, seconds, cpu) of every finished run in the folder's results tables, read as `analyze` reads
    them; cpu is NaN for a run that recorded no CPU time (before runs did)."""
    import pandas as pd

    from ..report.artifacts import load_results, result_tables
    from ..run.paths import check_path_names

    check_path_names(results_dir, f"--against {results_dir}")
    if not results_dir.is_dir():
        what = "is not a folder" if results_dir.exists() else "no such folder"
        raise UserError(f"--against {results_dir}: {what}; give the results folder the sweeps wrote (e.g. results)")
    if not result_tables(results_dir):  # no sweep has finished yet: its run folders may still say what ran
        if not any(f for pattern in RUN_SUMMARIES for f in results_dir.glob(pattern)):
            raise UserError(f"--against {results_dir}: no finished runs there (no results table, no run folder); "
                            "give the results folder the sweeps wrote (e.g. results)")
        return pd.DataFrame({"spec": [], "cell": [], "seconds": [], "cpu": []})
    table = load_results(results_dir)
    lacking = [c for c in ("cell", "seconds") if c not in table.columns]
    if lacking:
        raise UserError(f"--against {results_dir}: its tables lack {', '.join(lacking)}; re-run the sweeps")
    cpu = table["cpu_seconds"] if "cpu_seconds" in table.columns else float("nan")
    return table[["spec", "cell", "seconds"]].assign(cpu=cpu)


RUN_FOLDERS = ("*/runs", "*/*/runs")  # a spec's runs/ and its learning-rate selection's, under results/
RUN_SUMMARIES = tuple(f"{folder}/*/summary.json" for folder in RUN_FOLDERS)


def _folder_times(results_dir: Path, cells: list[tuple[str, str, object]]) -> dict[tuple[str, str], tuple]:
    """(spec, cell) -> (seconds, cpu seconds) of the planned cells whose finished run folder is in results_dir's
    runs/ folders (a spec's, results/<spec>/runs/, and its learning-rate selection's, results/<spec>/<stage>/runs/):
    a sweep writes its results table at its end, so these are what a sweep still running, or stopped, has done.
    A folder is matched to a cell by its config.json (the config alone: the folder's name also hashes the data it
    read); one that is unreadable, failed or whose config no planned cell has is passed over."""
    from ..report.artifacts import read_artifact
    from ..run.config import config_from_values, config_hash

    wanted = {config_hash(cfg): (spec, cell) for spec, cell, cfg in cells}
    found: dict[tuple[str, str], tuple] = {}
    for runs in (runs for pattern in RUN_FOLDERS for runs in results_dir.glob(pattern)):
        if runs.is_symlink() or runs.parent.is_symlink() or not runs.is_dir():
            continue
        for folder in sorted(runs.iterdir()):
            if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir():
                continue  # a run still being written (.tmp) or something rnngrad did not write
            summary, problem = read_artifact(folder / "summary.json")
            values, problem_cfg = read_artifact(folder / "config.json")
            if problem or problem_cfg or not isinstance(summary, dict) or not isinstance(values, dict):
                continue
            if summary.get("outcome") == "failed":
                continue
            try:
                key = wanted.get(config_hash(config_from_values(values, lambda k: k)))
            except (UserError, ValueError, TypeError):
                continue
            sec, cpu = summary.get("seconds"), summary.get("cpu_seconds")
            if key is not None and isinstance(sec, (int, float)):
                found[key] = (float(sec), float(cpu) if isinstance(cpu, (int, float)) else float("nan"))
    return found


def compare(rows: list[dict], table, folders: dict[tuple[str, str], tuple] | None = None) -> dict:
    """Per spec (and in all): the cells planned that have a finished run, their planned core-seconds and the
    seconds those runs took (a run uses one core: its CPU seconds, or its wall seconds where it recorded no CPU
    time, counted in `cells_wall`: beside other work those overstate it), and measured over planned. `folders`
    ((spec, cell) -> (seconds, cpu), `_folder_times`) adds the runs of sweeps whose table is not written yet,
    counted in `cells_from_folders`."""
    took, wall = {}, set()
    table_rows = list(table.itertuples(index=False))
    in_table = {(str(r[0]), str(r[1])) for r in table_rows}
    from_folders = {k: v for k, v in (folders or {}).items() if k not in in_table}
    for spec, cell, sec, cpu in [*table_rows, *((s, c, sec, cpu) for (s, c), (sec, cpu) in from_folders.items())]:
        key = (str(spec), str(cell))
        if cpu == cpu:
            took[key] = float(cpu)
        elif sec == sec:  # NaN: a run that recorded no time
            took[key] = float(sec)
            wall.add(key)
    out, planned_all, measured_all, n_all = {}, 0.0, 0.0, 0
    for name in dict.fromkeys(r["spec"] for r in rows):
        mine = [(r["core_seconds"], took[(name, r["cell"])]) for r in rows
                if r["spec"] == name and (name, r["cell"]) in took]
        planned, measured = sum(p for p, _ in mine), sum(m for _, m in mine)
        out[name] = {"cells": sum(r["spec"] == name for r in rows), "cells_run": len(mine),
                     "cells_wall": sum(1 for r in rows if (name, r["cell"]) in wall),
                     "planned_core_seconds": planned, "measured_seconds": measured,
                     "measured_over_planned": measured / planned if planned else None}
        planned_all, measured_all, n_all = planned_all + planned, measured_all + measured, n_all + len(mine)
    planned_keys = {(r["spec"], r["cell"]) for r in rows}
    return {"specs": out, "cells_run": n_all, "cells_wall": len(wall & planned_keys),
            "cells_from_folders": len(set(from_folders) & planned_keys),
            "planned_core_seconds": planned_all, "measured_seconds": measured_all,
            "measured_over_planned": measured_all / planned_all if planned_all else None}


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
    if "measured" in report:
        lines += _render_measured(report["measured"])
    if with_cells:
        lines += ["", f"{'cell':<60}{'core-s':>10}  {'memory':>10}"]
        lines += [f"{r['spec'] + ': ' + r['cell']:<60.60}{r['core_seconds']:>10,.1f}  {format_bytes(r['memory_bytes']):>10}"
                  for r in report["rows"]]
    return "\n".join(lines)


def _render_measured(measured: dict) -> list[str]:
    lines = ["", "Against the finished runs (each run's CPU seconds, over the cells that have one):", "",
             f"{'spec':<14}{'cells run':>12}  {'planned core-h':>14}  {'measured core-h':>15}  {'measured/planned':>16}"]
    rows = [*measured["specs"].items(), ("total", {**measured, "cells": sum(s["cells"] for s in
                                                                             measured["specs"].values())})]
    for name, s in rows:
        ratio = "-" if s["measured_over_planned"] is None else f"{s['measured_over_planned']:.2f}"
        lines.append(f"{name:<14}{str(s['cells_run']) + ' of ' + str(s['cells']):>12}  "
                     f"{s['planned_core_seconds'] / 3600:>14.2f}  {s['measured_seconds'] / 3600:>15.2f}  {ratio:>16}")
    if measured.get("cells_from_folders"):
        lines.append(f"{measured['cells_from_folders']} runs read from their run folders: their sweep has not "
                     "written its results table yet (it is running, or stopped)")
    if measured["cells_wall"]:
        lines.append(f"{measured['cells_wall']} runs recorded no CPU time (made before runs did): their wall seconds "
                     "are counted, which overstate their cost if the machine ran other work beside them")
    return lines


def report_seconds(report: dict) -> str:
    longest = max(r["core_seconds"] for r in report["rows"])
    return f"{longest / 60:.0f} min" if longest >= 120 else f"{longest:.0f} s"
