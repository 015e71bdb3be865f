"""`rnngrad train`: train and probe one config, write its run folder, log it to MLflow."""

from __future__ import annotations

import functools
import inspect
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

from .. import tracking
from ..run.config import FieldDoc, RunConfig, config_from_values, field_docs, load_config_file
from ..run.presets import DESCRIPTIONS, PRESETS, differences, preset_values
from ..errors import UserError
from ..run.paths import check_data_dir, check_output_folder, option_label

if TYPE_CHECKING:  # the runner pulls in pandas and the engine: imported when a run starts, not for --help
    from ..run.runner import RunResult
    from ..run.stopping import Stop

EXPERIMENT = "rnngrad/train"
JSON_KEYS = ("run_id", "outcome", "final_train_loss", "final_val_loss", "val_accuracy", "seconds")
# Outside results/, which the analyze stage depends on: a run of `train` is no part of the study and must not make
# `dvc status` report the study changed (nor appear in its report).
DEFAULT_OUT = Path("runs/train")
CONFIG_PANEL = "Run config (overrides --config)"


def preset_help() -> str:
    """--preset's help: what each preset is, and what it changes from the defaults."""
    from rich.markup import escape

    return escape("Start from a named set of settings; --config and the options given override it. "
                  + " ".join(f"{name}: {DESCRIPTIONS[name]}; it differs from the defaults in "
                             f"{', '.join(differences(name))}." for name in PRESETS)
                  + f" [{', '.join(PRESETS)}]")


def config_options(docs: tuple[FieldDoc, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the command gets one option per config field, made from the field's entry in the config table
    (`--seq-len` for seq_len; its meaning, what it accepts and its default as help). The decorated function takes
    `given`, the {field: value} of the options given (left out: None, so that --config's value stands), instead."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "given"]
        names = [doc.name for doc in docs]

        @functools.wraps(command)
        def with_options(**options: Any) -> Any:
            fields = {name: options.pop(name) for name in names}
            return command(given={k: v for k, v in fields.items() if v is not None}, **options)

        # Typer reads the parameters from the signature; __signature__ stops inspect at this wrapper
        with_options.__signature__ = inspect.Signature(own + [_option(doc) for doc in docs])
        return with_options

    return decorate


def _option(doc: FieldDoc) -> inspect.Parameter:
    """One field's option, a keyword parameter typed Optional[kind] whose default None means "not given"."""
    from rich.markup import escape  # "[1, 4096]" would otherwise read as rich markup and vanish

    flag = doc.name.replace("_", "-")
    decls = f"--{flag}/--no-{flag}" if doc.rule.kind is bool else f"--{flag}"
    accepts = doc.rule.describe(null=False)  # an option cannot be given null: leaving it out is that
    help_text = f"{doc.help} [{accepts}" + ("]" if doc.default is None else f"; default: {_shown(doc.default)}]")
    info = typer.Option(decls, help=escape(help_text), show_default=False, rich_help_panel=CONFIG_PANEL)
    return inspect.Parameter(doc.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[doc.rule.kind], info])


def _shown(value: Any) -> str:
    """A default as help shows it: a switch as true/false (as YAML writes it), other values as they are."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@config_options(field_docs(RunConfig))
def train_cmd(
    given: dict[str, Any],
    preset: Annotated[Optional[str], typer.Option(help=preset_help(), show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", exists=True, dir_okay=False, readable=True,
                                                   help="YAML mapping of run-config fields (e.g. hidden: 64); "
                                                   "options given explicitly override it.")] = None,
    data_dir: Annotated[Path, typer.Option(help="Folder written by `rnngrad generate`; a dataset missing there "
                                           "is built in memory from its seed.")] = Path("data"),
    out: Annotated[Path, typer.Option(help="Parent folder of run folders; this run goes to OUT/<config_hash>/ "
                                      "(outside results/, so the study's DVC stages do not see it).")] = DEFAULT_OUT,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (run_id, outcome, final_train_loss, "
                                          "final_val_loss, val_accuracy, seconds, run_dir; text: samples, the first "
                                          "and the last) as the only stdout line.")] = False,
    max_memory: Annotated[str, typer.Option(
        metavar="SIZE", help="Refuse the run before it starts if it would need more memory than this, e.g. 1.5G or "
        "2Gi (binary units). Default: this machine's RAM.")] = "",
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the run to MLflow; --no-track writes only "
                                        "the run folder (no store is opened or made; run_id is null).")] = True,
    data_root: Annotated[list[Path] | None, typer.Option(
        metavar="FOLDER", help="A folder outside the project whose files the run may read (its --text); repeat for several. Without "
        "it a run reads only files inside the project, as a sweep does.")] = None,
) -> None:
    """Train one RNN (vanilla; an LSTM or a GRU with --cell-type lstm or gru; an orthogonal-constrained expRNN with
    --cell-type exprnn --init orthogonal), probe its Jacobians at init and at the end, and log the run to MLflow.

    Defaults are min-char-rnn's sizes (hidden 100, 25-character windows, adagrad lr 0.1, batch 1), but random
    windows from h = 0 and rnngrad's usual init, loss and clipping; --preset min-char-rnn gives min-char-rnn's
    exact settings (its help lists what they change).

    Example (a few seconds): rnngrad train --task adding --seq-len 50 --hidden 64 --batch 32 --iters 200 --json

    Writes OUT/<config_hash>/: config.json, summary.json, history.csv, probe/, figures/, series.parquet.

    A diverged run (a non-finite loss, gradient or validation loss) is a result and exits 0; a failed run (an error
    inside it) exits 1; SIGTERM or Ctrl-C stops it with one line and exit code 143 or 130, its temp folder removed.
    """
    from ..run.stopping import StopRequested, stop_on_signals

    cfg = resolve_config(config, given, preset)
    _check_reads(cfg, data_root)
    run_hash = _check_paths(cfg, data_dir, out, max_memory)
    with stop_on_signals() as stop:
        try:
            result, run_id, store, experiment_id = _train(cfg, data_dir, out, run_hash, track, stop)
        except StopRequested as e:
            done = getattr(e, "done", f"the run did not finish; {out / run_hash} was not written (a previous "
                                      "run's folder there stands)")
            typer.echo(f"stopped by {e.name}: {done}", err=True)
            raise typer.Exit(e.exit_code) from None
    report = {"run_id": run_id, **{k: result.summary.get(k) for k in JSON_KEYS[1:]}, "run_dir": str(result.run_dir)}
    samples = first_and_last_samples(result.run_dir)
    if samples:
        report["samples"] = samples
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_human(result, run_id, store, experiment_id)
    if stop.signum is not None:  # it came while the run was logged: that was finished first
        typer.echo(f"stopped by {signal.Signals(stop.signum).name} once the run was written and logged", err=True)
        raise typer.Exit(128 + stop.signum)
    if result.outcome == "failed":
        typer.echo(f"run failed: {result.summary.get('error')}", err=True)
        raise typer.Exit(1)


def _train(cfg: RunConfig, data_dir: Path, out: Path, run_hash: str, track: bool, stop: Stop
           ) -> tuple[RunResult, str | None, tracking.Store | None, str | None]:
    """Clear what killed runs left in --out, run, log: (result, run_id, store, experiment_id). A stop signal ends
    the run at once (its temp folder removed), but waits for a step with the MLflow store to end."""
    from ..run.stopping import StopRequested

    _remove_leftovers(out)
    store = tracking.open_store(tracking.default_project_root()) if track else None
    experiment_id = tracking.ensure_experiment(store, EXPERIMENT) if store else None
    run_dir = out / run_hash
    before = _folder_identity(run_dir)
    with _ProgressBar(cfg) as bar:
        try:
            with stop.at_once():
                result = _run_with_progress_bar(cfg, data_dir, run_dir, bar)
        except StopRequested as e:
            if _folder_identity(run_dir) not in (None, before):  # it came just as the new folder was swapped in
                e.done = f"{run_dir} was written, but the run was not logged to MLflow"
            raise
        except OSError as e:  # creating or renaming the run folder (errors inside the run are its `failed` outcome)
            raise UserError(f"--out {out}: cannot write the run folder there ({e.strerror or e})") from None
        bar.phase("logging" if store else "done")
        try:
            run_id = _log_run(store, experiment_id, result) if store else None
        except StopRequested as e:  # a second signal while logging
            e.done = f"{run_dir} was written; its MLflow run ended KILLED"
            raise
        bar.phase("done")
    return result, run_id, store, experiment_id


def _folder_identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of `folder`, None if there is none: a run folder swapped in has a new one."""
    try:
        st = os.stat(folder, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def resolve_config(config_file: Path | None, given: dict, preset: str | None = None) -> RunConfig:
    """Defaults, then the preset's values, then the --config file's, then the options given explicitly; all
    validated."""
    base = RunConfig() if preset is None else config_from_values(preset_values(preset), lambda k: f"--preset {k}")
    if config_file is not None:
        base = config_from_values(load_config_file(config_file), lambda k: f"{config_file}: {k}", base=base)
    return config_from_values(given, lambda k: f"--{k.replace('_', '-')}", base=base)


def _check_reads(cfg: RunConfig, data_root: list[Path] | None) -> None:
    """A text run's corpus is inside the project or a --data-root, as for a sweep (`spec.check_spec_reads`): its
    samples are logged to the store, which may be shared, so a config must not make it read /etc/shadow."""
    from ..run.datasets import TEXT_TASK, DataRequest
    from ..run.spec import check_spec_reads

    where = "--text (or --config's text)"
    reads = [DataRequest(TEXT_TASK, path=cfg.text, where=where)] if cfg.task == TEXT_TASK else []
    check_spec_reads(reads, data_root)


def _check_paths(cfg: RunConfig, data_dir: Path, out: Path, max_memory: str) -> str:
    """Path, data and memory problems are found before the MLflow store is opened or anything runs; returns the
    run's hash (its config and the content digest of its data)."""
    from ..run.sources import check_data, run_hash

    check_data_dir(data_dir)
    check_output_folder(out, option_label("--out", out))
    check_data(cfg, data_dir, lambda key: f"--{key.replace('_', '-')}")
    _check_memory(cfg, data_dir, max_memory)  # before the hash, which digests the validation set (built if missing)
    return run_hash(cfg, data_dir)


def _remove_leftovers(out: Path) -> None:
    """What killed runs left in --out (each run clears its own otherwise): a run folder a run killed while it
    replaced it left aside is put back; temp folders and the aside folders of finished swaps are removed."""
    from ..run.leftovers import clear_killed_writes

    cleared = clear_killed_writes(out, r"[0-9a-f]{12}")  # a run folder's name is its config_hash
    for folder in cleared.restored:
        typer.echo(f"put back {folder}, which a run killed while replacing it had moved aside", err=True)
    if cleared.removed:
        typer.echo(f"removed {len(cleared.removed)} temp folder(s) that killed runs left in {out}", err=True)


def _check_memory(cfg: RunConfig, data_dir: Path, max_memory: str) -> None:
    """The run fits --max-memory (`run.cost.check_cells_memory`), before the store is opened."""
    from ..run.cost import check_cells_memory, memory_limit

    check_cells_memory([("this run", cfg)], data_dir, memory_limit(max_memory, 1))


def first_and_last_samples(run_dir: Path) -> list[dict]:
    """A text run's first and last sample ({iter, text}; one if it sampled once), from samples.json; [] else."""
    path = run_dir / "samples.json"
    samples = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    return samples[:1] + samples[1:][-1:]


class _ProgressBar:
    """The run's progress on stderr when stderr is a terminal: its phase (training, probing, logging), the
    iteration, and the training loss as the summary gives it (the mean over the last steps, `runner.final_train_loss`'s
    window, not one step's jumpy loss) beside its chance loss and the gradient norm. Its last numbers are the ones the
    command prints."""

    def __init__(self, cfg: RunConfig) -> None:
        from collections import deque

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        columns = (TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("loss {task.fields[loss]:.4g} (chance {task.fields[chance]:.4g})  "
                              "|g| {task.fields[grad_norm]:.3g}"))
        self.bar = Progress(*columns, console=console, disable=not console.is_terminal)
        self.iters, self.recent = cfg.iters, deque(maxlen=max(1, min(50, cfg.iters // 10)))
        self.job = self.bar.add_task("training", total=max(cfg.iters, 1), loss=float("nan"), chance=float("nan"),
                                     grad_norm=float("nan"))

    def __enter__(self) -> "_ProgressBar":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def step(self, event: dict) -> None:
        """A training step's event (runner.execute_run's `progress`)."""
        self.recent.append(event["loss"])
        done = event.get("diverged") or event["iter"] >= self.iters
        self.bar.update(self.job, completed=event["iter"], loss=sum(self.recent) / len(self.recent),
                        chance=event.get("chance_loss", float("nan")), grad_norm=event["grad_norm"],
                        description="probing" if done else "training")

    def phase(self, name: str, summary: dict | None = None) -> None:
        """A phase after training; given the summary, the bar shows its numbers."""
        fields = {}
        if summary is not None:
            fields = {k: v for k, v in (("loss", summary.get("final_train_loss")),
                                        ("chance", summary.get("chance_loss"))) if v is not None}
        self.bar.update(self.job, description=name, **fields)


def _run_with_progress_bar(cfg: RunConfig, data_dir: Path, run_dir: Path, bar: _ProgressBar) -> RunResult:
    """execute_run, its steps shown on `bar`."""
    from ..run.runner import execute_run

    result = execute_run(cfg, data_dir, run_dir, progress=bar.step)
    bar.phase("written", result.summary)
    return result


def _log_run(store: tracking.Store, experiment_id: str, result: RunResult) -> str:
    """One MLflow run for the finished folder (FINISHED whatever the outcome: the outcome is a tag, as in sweeps)."""
    run_id = tracking.start_run(store, experiment_id, f"train-{result.config_hash}",
                                tags={"config_hash": result.config_hash})
    tracking.log_folder_and_end(store, run_id, result.run_dir)
    return run_id


def _print_human(result: RunResult, run_id: str | None, store: tracking.Store | None, experiment_id: str | None
                 ) -> None:
    from ..run.verdicts import verdict

    s = result.summary

    def num(key: str) -> str:
        return "n/a" if s.get(key) is None else f"{s[key]:.4g}"

    judged = verdict(result.outcome, s.get("final_val_loss"), s.get("chance_loss"))
    typer.echo(f"{result.outcome}, {judged}: train loss {num('final_train_loss')}, val loss "
               f"{num('final_val_loss')} (chance {num('chance_loss')}), val accuracy {num('val_accuracy')} "
               f"(chance {num('chance_accuracy')}) in {s['seconds']:.1f} s")
    if s.get("diverged_at") is not None:
        typer.echo(f"diverged at iteration {s['diverged_at']} (non-finite loss, gradient, update or validation loss)")
    for sample in first_and_last_samples(result.run_dir):
        typer.echo(f"sample at iteration {sample['iter']}:\n{_indented(sample['text'])}")
    typer.echo(f"run folder: {result.run_dir}")
    if store is None:
        typer.echo("not logged to MLflow (--no-track)")
        return
    typer.echo(f"mlflow run {run_id} in {EXPERIMENT}: {tracking.run_link(store, experiment_id, run_id)}")
    if store.is_embedded:
        typer.echo(f"(the link works once the UI runs: {store.ui_command()})")


def _indented(text: str) -> str:
    """A sample as a block set off from the command's own lines."""
    return "\n".join(f"    {line}" for line in text.splitlines() or [""])
