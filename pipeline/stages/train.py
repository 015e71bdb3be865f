"""`rnngrad train`: train and probe one config, write its run folder, log it to MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .. import tracking
from ..run.config import FIELDS, RunConfig, config_from_values, config_hash, describe_field, load_config_file
from ..errors import UserError
from ..run.paths import check_data_dir, check_output_folder

if TYPE_CHECKING:  # the runner pulls in pandas and the engine: imported when a run starts, not for --help
    from ..run.runner import RunResult

EXPERIMENT = "rnngrad/train"
JSON_KEYS = ("run_id", "outcome", "final_train_loss", "final_val_loss", "val_accuracy", "seconds")
_DEFAULTS = RunConfig()


def _opt(name: str, text: str) -> typer.models.OptionInfo:
    """A RunConfig field's option: its meaning, what it accepts, and its default (None = not given)."""
    from rich.markup import escape  # "[1, 4096]" would otherwise read as rich markup and vanish

    accepts = describe_field(name).replace(" (or null)", "").replace(", or null for the default corpus", "")
    default = getattr(_DEFAULTS, name)  # None: the help text says what leaving the option out means
    help_text = escape(f"{text} [{accepts}" + ("]" if default is None else f"; default: {default}]"))
    return typer.Option(help=help_text, show_default=False, rich_help_panel="Run config (overrides --config)")


def train_cmd(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML mapping of run-config fields "
                                                   "(e.g. hidden: 64); options given explicitly override it.")] = None,
    data_dir: Annotated[Path, typer.Option(help="Folder written by `rnngrad generate`; a dataset missing there "
                                           "is built in memory from its seed.")] = Path("data"),
    out: Annotated[Path, typer.Option(help="Parent folder of run folders; this run goes to OUT/<config_hash>/.")]
    = Path("results/train"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (run_id, outcome, final_train_loss, "
                                          "final_val_loss, val_accuracy, seconds) as the only stdout line.")] = False,
    task: Annotated[Optional[str], _opt("task", "What to learn.")] = None,
    text: Annotated[Optional[str], _opt("text", "Text task: corpus file; left out, the text `rnngrad "
                                        "generate` put in --data-dir, else the stdlib docstrings.")] = None,
    seq_len: Annotated[Optional[int], _opt("seq_len", "Synthetic: task length T; text: window in characters.")] = None,
    train_size: Annotated[Optional[int], _opt("train_size", "Synthetic: sequences (last 20% validate).")] = None,
    data_seed: Annotated[Optional[int], _opt("data_seed", "Synthetic: dataset seed.")] = None,
    form: Annotated[Optional[str], _opt("form", "Recurrence form.")] = None,
    activation: Annotated[Optional[str], _opt("activation", "Activation phi.")] = None,
    leaky_slope: Annotated[Optional[float], _opt("leaky_slope", "leaky_relu slope for z < 0.")] = None,
    layers: Annotated[Optional[int], _opt("layers", "Stacked recurrent layers L.")] = None,
    hidden: Annotated[Optional[int], _opt("hidden", "Units per layer n.")] = None,
    init: Annotated[Optional[str], _opt("init", "How W_hh is drawn.")] = None,
    gamma_w: Annotated[Optional[float], _opt("gamma_w", "||W_hh||_2 at init (sparse: spectral radius).")] = None,
    input_scale: Annotated[Optional[float], _opt("input_scale", "Std of W_xh entries; left out, "
                                                 "1/sqrt(fan-in).")] = None,
    optimizer: Annotated[Optional[str], _opt("optimizer", "Update rule.")] = None,
    lr: Annotated[Optional[float], _opt("lr", "Learning rate.")] = None,
    weight_decay: Annotated[Optional[float], _opt("weight_decay", "L2 coefficient.")] = None,
    batch: Annotated[Optional[int], _opt("batch", "Sequences (text: windows) per step.")] = None,
    iters: Annotated[Optional[int], _opt("iters", "Optimisation steps.")] = None,
    clip_mode: Annotated[Optional[str], _opt("clip_mode", "Gradient clipping.")] = None,
    clip_threshold: Annotated[Optional[float], _opt("clip_threshold", "Global norm cap / elementwise bound.")] = None,
    eval_every: Annotated[Optional[int], _opt("eval_every", "Iterations between validation passes (0: end).")] = None,
    samples: Annotated[Optional[int], _opt("samples", "Text: sampling checkpoints.")] = None,
    sample_len: Annotated[Optional[int], _opt("sample_len", "Text: characters per sample.")] = None,
    probe_len: Annotated[Optional[int], _opt("probe_len", "Steps of the Jacobian probe sequence.")] = None,
    seed: Annotated[Optional[int], _opt("seed", "Seed of init, minibatches and sampling.")] = None,
) -> None:
    """Train one vanilla RNN, probe its Jacobians at init and at the end, and log the run to MLflow.

    Defaults are a min-char-rnn text run: hidden 100, 25-character windows, adagrad lr 0.1, clipping at norm 5.

    Example (a few seconds): rnngrad train --task adding --seq-len 50 --hidden 64 --batch 32 --iters 200 --json

    Writes OUT/<config_hash>/: config.json, summary.json, history.csv, probe/, figures/, series.parquet.

    A diverged run (a non-finite loss, gradient or validation loss) is a result and exits 0; a failed run (an error
    inside it) exits 1.
    """
    given = {k: v for k, v in locals().items() if k in FIELDS and v is not None}
    cfg = resolve_config(config, given)
    _check_paths(cfg, data_dir, out)
    store = tracking.open_store(tracking.default_project_root())
    experiment_id = tracking.ensure_experiment(store, EXPERIMENT)
    try:
        result = _run_with_progress_bar(cfg, data_dir, out / config_hash(cfg))
    except OSError as e:  # creating or renaming the run folder (errors inside the run are its `failed` outcome)
        raise UserError(f"--out {out}: cannot write the run folder there ({e.strerror or e})") from None
    run_id = _log_run(store, experiment_id, result)
    report = {"run_id": run_id, **{k: result.summary.get(k) for k in JSON_KEYS[1:]}}
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_human(result, run_id, store)
    if result.outcome == "failed":
        typer.echo(f"run failed: {result.summary.get('error')}", err=True)
        raise typer.Exit(1)


def resolve_config(config_file: Path | None, given: dict) -> RunConfig:
    """Defaults, then the --config file's values, then the options given explicitly; all validated."""
    base = RunConfig()
    if config_file is not None:
        base = config_from_values(load_config_file(config_file), lambda k: f"{config_file}: {k}")
    return config_from_values(given, lambda k: f"--{k.replace('_', '-')}", base=base)


def _check_paths(cfg: RunConfig, data_dir: Path, out: Path) -> None:
    """Path and data problems are found before the MLflow store is opened or anything runs."""
    from ..run.sources import check_data

    check_data_dir(data_dir)
    check_output_folder(out, f"--out {out}")
    check_data(cfg, data_dir, lambda key: f"--{key.replace('_', '-')}")


def _run_with_progress_bar(cfg: RunConfig, data_dir: Path, run_dir: Path) -> RunResult:
    """execute_run with a progress bar (loss, grad norm) on stderr when stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..run.runner import execute_run

    console = Console(stderr=True)
    columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("loss {task.fields[loss]:.4g}  |g| {task.fields[grad_norm]:.3g}"))
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        job = bar.add_task("train", total=cfg.iters, loss=float("nan"), grad_norm=float("nan"))

        def update(event: dict) -> None:
            bar.update(job, completed=event["iter"], loss=event["loss"], grad_norm=event["grad_norm"])

        return execute_run(cfg, data_dir, run_dir, progress=update)


def _log_run(store: tracking.Store, experiment_id: str, result: RunResult) -> str:
    """One MLflow run for the finished folder (FINISHED whatever the outcome: the outcome is a tag, as in sweeps)."""
    run_id = tracking.start_run(store, experiment_id, f"train-{result.config_hash}",
                                tags={"config_hash": result.config_hash})
    tracking.log_folder_and_end(store, run_id, result.run_dir)
    return run_id


def _print_human(result: RunResult, run_id: str, store: tracking.Store) -> None:
    s = result.summary

    def num(key: str) -> str:
        return "n/a" if s.get(key) is None else f"{s[key]:.4g}"

    typer.echo(f"{result.outcome}: train loss {num('final_train_loss')}, val loss {num('final_val_loss')}, "
               f"val accuracy {num('val_accuracy')} (chance {num('chance_accuracy')}) in {s['seconds']:.1f} s")
    if s.get("diverged_at") is not None:
        typer.echo(f"diverged at iteration {s['diverged_at']} (non-finite loss, gradient, update or validation loss)")
    typer.echo(f"run folder: {result.run_dir}")
    typer.echo(f"mlflow run {run_id} in {EXPERIMENT}: {store.ui_command()}")
