"""`rnngrad analyze`: check every logged Jacobian norm against its bounds and summarise the sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

VIOLATIONS_SHOWN = 10  # violations printed at full precision (tables/violations.csv holds them all)


def analyze_cmd(
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder of results/<spec>.parquet and the run "
                                              "folders results/<spec>/runs/<hash>/.")] = Path("results"),
    out: Annotated[Path, typer.Option("--out", help="Where metrics.json, analysis.json and tables/ go.")] = Path(
        "reports"),
) -> None:
    """Check measured <= product bound <= global bound for every run, probe, layer and (t, k); compare decay slopes,
    Lyapunov exponents and regimes; summarise each sweep spec. Writes reports/metrics.json (DVC metrics),
    reports/analysis.json and tidy CSV tables in reports/tables/ for `rnngrad report` and DVC plots.
    A run with missing files is listed and skipped; no runs at all is an error. The outputs are written either
    way, but a bound violation (the check holds by construction, so one is a bug) is printed at full precision
    with the bound it broke and the command exits 1."""
    from ..report import analysis  # pandas: imported when the stage runs, not for every --help
    from ..report.reductions import violation_text
    from ..run.paths import check_output_folder, check_path_names, option_label

    check_path_names(results_dir, option_label("--results-dir", results_dir))
    check_output_folder(out, option_label("--out", out))  # before the analysis: nothing computed in vain
    results = analysis.load_results(results_dir)
    result = analysis.analyze(results_dir, results)
    analysis.write_analysis(result, out)
    m = result.metrics
    typer.echo(f"analyzed {m['n_runs']} runs, {m['n_probes']} probes, {m['n_checks']} (t, k) pairs: "
               f"{m['violations']} bound violations (expected 0), {m['n_missing_artifacts']} missing artifacts "
               f"-> {out / 'metrics.json'}")
    if m["violations"]:  # the check holds by construction: a violation is a bug, and the pipeline stops on it
        for v in result.report["violations"][:VIOLATIONS_SHOWN]:
            typer.echo(f"violation: run {v['run_id']} ({v['spec']}, {v['when']}, layer {v['layer']}, "
                       f"t = {v['t']}, k = {v['k']}): {violation_text(v)}", err=True)
        typer.echo(f"{m['violations']} bound violations (all in {out / 'tables' / 'violations.csv'}): the bounds "
                   "hold by construction, so this is a bug", err=True)
        raise typer.Exit(1)
