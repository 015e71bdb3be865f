"""`rnngrad analyze`: check every logged Jacobian norm against its bounds and summarise the sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def analyze_cmd(
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder of results/<spec>.parquet and the run "
                                              "folders results/<spec>/runs/<hash>/.")] = Path("results"),
    out: Annotated[Path, typer.Option("--out", help="Where metrics.json, analysis.json and tables/ go.")] = Path(
        "reports"),
) -> None:
    """Check measured <= product bound <= global bound for every run, probe, layer and (t, k); compare decay slopes,
    Lyapunov exponents and regimes; summarise each sweep spec. Writes reports/metrics.json (DVC metrics),
    reports/analysis.json and tidy CSV tables in reports/tables/ for `rnngrad report` and DVC plots.
    A run with missing files is listed and skipped; no runs at all is an error."""
    from ..report import analysis  # pandas: imported when the stage runs, not for every --help
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
