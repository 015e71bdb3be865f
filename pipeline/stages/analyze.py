"""`rnngrad analyze`: check every logged Jacobian norm against its bounds and summarise the sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError

VIOLATIONS_SHOWN = 10  # violations printed at full precision (tables/violations.csv holds them all)


def analyze_cmd(
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder of results/<spec>.parquet and the run "
                                              "folders results/<spec>/runs/<hash>/.")] = Path("results"),
    out: Annotated[Path, typer.Option("--out", help="Where metrics.json, analysis.json and tables/ go.")] = Path(
        "reports"),
    params: Annotated[Path | None, typer.Option("--params", help="Analyse only the specs this file's `specs:` list "
                                                "names (and their learning-rate selections, <spec>_rates), e.g. "
                                                "params.yaml (dvc.yaml gives it); results of other specs are ignored "
                                                "and named. Default: every spec in --results-dir.")] = None,
) -> None:
    """Check measured <= product bound <= global bound for every run, probe, layer and (t, k); compare decay slopes,
    Lyapunov exponents and regimes; summarise each sweep spec. Writes reports/metrics.json (DVC metrics),
    reports/analysis.json and tidy CSV tables in reports/tables/ for `rnngrad report` and DVC plots.
    A run with missing files is listed and skipped; no runs at all is an error. The outputs are written either
    way, but a bound violation (the check holds by construction, so one is a bug) is printed at full precision
    with the bound it broke and the command exits 1."""
    from ..report import analysis  # pandas: imported when the stage runs, not for every --help
    from ..report.headline import write_headline
    from ..report.reductions import violation_text
    from ..run.paths import check_output_folder, check_path_names, option_label

    check_path_names(results_dir, option_label("--results-dir", results_dir))
    check_output_folder(out, option_label("--out", out))  # before the analysis: nothing computed in vain
    results = analysis.load_results(results_dir)
    named = listed_specs(params) if params is not None else None
    if named is not None:
        ignored = sorted(set(results["spec"]) - kept_specs(named))
        if ignored:
            typer.echo(f"ignored (not in {params}'s specs): {', '.join(ignored)}")
        results = results[results["spec"].isin(kept_specs(named))]
        if not len(results):
            raise UserError(f"{results_dir}/: no runs of the specs {params} names ({', '.join(named)}); run their "
                            "sweeps first")
    result = analysis.analyze(results_dir, results)
    analysis.write_analysis(result, out)
    write_headline(result.metrics, out)
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


def listed_specs(params: Path) -> list[str] | None:
    """The names in `params`'s `specs:` list; None when it has no such key (every spec is analysed). UserError when
    the file is missing, not YAML, or the key not a list of names."""
    from ..run.config import as_mapping, read_yaml

    if not params.is_file():
        raise UserError(f"--params {params}: no such file; give the params.yaml whose specs: list to analyse")
    raw = as_mapping(read_yaml(params, "params.yaml of DVC parameters"), str(params), "{profile: quick, specs: [...]}")
    specs = raw.get("specs")
    if specs is None:
        return None
    if not isinstance(specs, list) or not specs or not all(isinstance(name, str) and name for name in specs):
        raise UserError(f"--params {params}: specs: expected a non-empty list of spec names like [weight_norms, "
                        f"depth], got {specs!r}")
    return specs


def kept_specs(named: list[str]) -> set[str]:
    """The result names of the specs `named`: each spec and its learning-rate selection stage."""
    from ..run.rates import STAGE_SUFFIX

    return set(named) | {f"{name}{STAGE_SUFFIX}" for name in named}
