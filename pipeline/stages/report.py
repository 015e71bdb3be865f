"""`rnngrad report`: draw the figures and write the HTML and PDF reports from `rnngrad analyze`'s outputs."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote
from typing import Annotated

import typer

from ..errors import UserError


def report_cmd(
    analysis_dir: Annotated[Path, typer.Option("--analysis-dir", help="Folder `rnngrad analyze` wrote: metrics.json, "
                                               "analysis.json, tables/.")] = Path("reports"),
    out: Annotated[Path, typer.Option("--out", help="Where report.html, report.pdf and figures/ go.")] = Path(
        "reports"),
) -> None:
    """Write reports/figures/*.png, reports/report.html (self-contained: opens offline, prints) and
    reports/report.pdf (same sections and figures) from the analysis outputs."""
    from ..run.paths import check_output_files, check_output_folder, check_path_names, option_label

    epoch = _source_date_epoch()  # before the report's libraries load: one of them reads it on import, unchecked
    check_path_names(analysis_dir, option_label("--analysis-dir", analysis_dir))
    check_output_folder(out, option_label("--out", out))
    check_output_files(out, ("report.html", "report.pdf"), ("figures",), option_label("--out", out))
    from ..report import analysis, figures, html as report_html, pdf as report_pdf  # seaborn, fpdf: not for --help
    from ..run.files import write_atomic

    metrics, report, tables = analysis.read_analysis(analysis_dir)
    created = _report_date(analysis_dir, epoch)  # checked before anything is written
    drawn = figures.draw_figures(tables, out / "figures")
    store, links = _mlflow_links(tables["runs"])
    sections = report_html.build_sections(metrics, report, tables, drawn, links)
    write_atomic(out / "report.html", report_html.render_html(sections, metrics))
    write_atomic(out / "report.pdf", report_pdf.render_pdf(sections, metrics, created))
    typer.echo(f"wrote {out / 'report.html'}, {out / 'report.pdf'} and {len(drawn)} figures in {out / 'figures'}")
    logged = _log_to_sweeps(store, tables["runs"], drawn, [out / "report.html", out / "report.pdf"])
    if logged:
        typer.echo(f"logged the report and its figures to the sweep runs of {logged} MLflow experiment(s)")
    typer.echo(f"\nReport: {(out / 'report.html').resolve()}")
    if links is None or not links.experiments:
        from ..tracking import is_tracked

        untracked = not any(is_tracked(i) for i in tables["runs"]["run_id"])
        typer.echo("Runs:   not in MLflow (swept with --no-track); their folders are under results/<spec>/runs/"
                   if untracked else f"Runs:   {_mlflow_ui_hint()}")
        return
    typer.echo("Runs (each experiment's runs table in the MLflow UI):")
    for spec, url in links.experiments.items():
        typer.echo(f"  rnngrad/{spec}: {url}")
    if links.ui_command:  # the terminal gets this machine's paths; the document, the portable command
        typer.echo(f"  open the links after starting the UI: {store.ui_command()}")


def _mlflow_links(runs):
    """(the tracking store, where the report's experiments and runs open in the MLflow UI), or (None, None) when
    no store holds them: the report is then written without links."""
    from .. import tracking
    from ..report.document import MlflowLinks

    store = tracking.existing_store(tracking.default_project_root())
    if store is None:
        return None, None
    runs = runs[runs["run_id"].map(tracking.is_tracked)]  # a sweep with --no-track has no runs there to link
    specs = list(dict.fromkeys(runs["spec"].astype(str)))
    ids = tracking.experiment_ids(store, [f"rnngrad/{s}" for s in specs])
    experiments = {s: tracking.experiment_link(store, ids[f"rnngrad/{s}"]) for s in specs if f"rnngrad/{s}" in ids}
    run_links = {r.run_id: tracking.run_link(store, ids[f"rnngrad/{r.spec}"], r.run_id)
                 for r in runs.itertuples() if f"rnngrad/{r.spec}" in ids}
    return store, MlflowLinks(_portable_ui_command(store) if store.is_embedded else "", experiments, run_links)


def _portable_ui_command(store) -> str:
    """The UI command as the report prints it: the store's path relative to the project folder, where the command
    is run, so that no path of the machine that wrote the report is in it (a store elsewhere is named by the
    variable that chose it)."""
    from .. import tracking

    root = tracking.default_project_root()
    path = Path(unquote(store.tracking_uri.removeprefix("sqlite:///"))).resolve()
    try:
        relative = path.relative_to(root)
        artifacts = store.artifacts_folder.resolve().relative_to(root)
    except (ValueError, AttributeError):
        return 'mlflow ui --backend-store-uri "$MLFLOW_TRACKING_URI"'
    return (f"mlflow ui --backend-store-uri sqlite:///{relative.as_posix()} "
            f"--artifacts-destination {artifacts.as_posix()}")


def _log_to_sweeps(store, runs, drawn: dict, documents: list[Path]) -> int:
    """Log the report (HTML and PDF) and each spec's figures (those drawn from its runs) to the sweep (parent)
    run of each spec under report/, only where every run id the table lists for the spec is a child run of that
    one sweep (`tracking.sweep_parent`); returns how many sweep runs got them."""
    if store is None or runs.empty:
        return 0
    from .. import tracking

    by_spec = runs.groupby(runs["spec"].astype(str))["run_id"].apply(lambda ids: [str(i) for i in ids]).to_dict()
    done = 0
    for spec, ids in by_spec.items():
        parent = tracking.sweep_parent(store, spec, ids)
        if parent is None and not any(tracking.is_tracked(i) for i in ids):
            typer.echo(f"not logged to MLflow for {spec}: its runs were swept with --no-track")
            continue
        if parent is None:
            typer.echo(f"not logged to MLflow for {spec}: its runs in the table are not the runs of one sweep of "
                       f"rnngrad/{spec} in this store")
            continue
        figures = [f.path for f in drawn.values() if set(f.run_ids) & set(ids)]
        tracking.log_files(store, parent, documents, "report")
        tracking.log_files(store, parent, figures, "report/figures")
        done += 1
    return done


def _report_date(analysis_dir: Path, epoch: datetime | None = None) -> datetime:
    """When the analysis was written (metrics.json's modification time), or SOURCE_DATE_EPOCH if set (the
    reproducible-builds convention): never the wall clock, so rendering the same analysis twice gives the same
    PDF bytes and DVC sees no change."""
    epoch = epoch or _source_date_epoch()
    if epoch is not None:
        return epoch
    return datetime.fromtimestamp(int((analysis_dir / "metrics.json").stat().st_mtime), timezone.utc)


def _source_date_epoch() -> datetime | None:
    """SOURCE_DATE_EPOCH as a date (None when unset); UserError when it is not whole seconds since 1970."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return None
    try:
        if not epoch.isdigit():
            raise ValueError(epoch)
        return datetime.fromtimestamp(int(epoch), timezone.utc)
    except (ValueError, OverflowError, OSError):
        shown = epoch if len(epoch) <= 40 else f"{epoch[:20]}...({len(epoch)} characters)"
        raise UserError(f"SOURCE_DATE_EPOCH={shown}: not a date; expected whole seconds since 1970 "
                        "(e.g. 1700000000), or unset it to date the PDF by the analysis") from None


def _mlflow_ui_hint() -> str:
    """How to open the runs: the tracking server if one is set, else the store's `mlflow ui` (serving its artifact
    folder)."""
    from ..tracking import ARTIFACTS_FOLDER, Store, default_project_root
    from ..tracking.uri import parse_tracking_uri

    parsed = parse_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"), default_project_root())
    if parsed.kind == "server":
        return f"open {parsed.uri} (the MLflow server in MLFLOW_TRACKING_URI)"
    folder = (parsed.path.parent if parsed.kind == "sqlite" else default_project_root()) / ARTIFACTS_FOLDER
    return Store(parsed.uri, folder.as_uri()).ui_command()
