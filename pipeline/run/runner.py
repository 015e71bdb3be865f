"""Execute one run: data -> model -> training (validation, text samples) -> probes -> the run folder.

`execute_run(cfg, data_dir, run_dir)` writes the folder of docs/internals.md ("A run's folder") atomically: it is
built in a temp folder beside `run_dir` and renamed into place when complete, so a folder that exists is a
finished run. Overflow is data: a non-finite loss, gradient or parameter stops training with outcome "diverged";
a run that stays finite but whose loss or weights run away is "unstable" (run/verdicts.py says when).
Any other exception inside the run gives outcome "failed" with the error in summary.json (a sweep goes on) beside
whatever the run wrote before it; bad user input (UserError) propagates, and nothing is written.
"""

from __future__ import annotations

import math
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from . import environment, files
from .config import RunConfig, config_hash, flatten
from .files import write_json
from .stopping import signals_held
from . import plots
from .dynamics import dynamics_series, dynamics_table, write_dynamics
from .depthprobe import across_layers, weight_gradient_table, write_across, write_weight_gradients
from .probe import (Drive, Probe, driving_inputs, probe_model, relabelled, same_model, series_rows, step_series,
                    summary_numbers, training_gradient_table, write_probe)
from .sources import Source, input_digests, make_source, scores_positions, sequences_right
from .textscore import Validation, text_scores
from .verdicts import LEVELS, growth, levels, run_outcome
from ..engine import trainer
from ..engine.cells import Model, n_params
from ..engine.init import init_exprnn, init_gru, init_lstm, init_model
from ..engine.optim import make_optimizer
from ..engine.text import decode, sample_ids
from ..engine.trainer import HISTORY_COLUMNS, TrainLog, TrainSettings
from ..errors import UserError

Progress = Callable[[dict], None]
# by_iter/* step metrics from the history, w_norm and spectral_radius included, at this many evenly spaced iterations (plus the last):
# each point costs a weight-norm eigensolve in the run and a row in MLflow's store, and a short quick run must not
# spend more than a tenth of its time logging (`rnngrad bench --only logging`). history.csv keeps every iteration.
SERIES_POINTS = 30
# A run computes on one BLAS thread wherever it runs: OpenBLAS splits a long sum differently on 2 threads than
# on 1, and those last-bit differences grow over training, so otherwise a config's numbers would depend on the
# machine's cores and on the sweep's --jobs. (Sweeps get their parallelism from worker processes instead.)
BLAS_THREADS = 1
# The Lyapunov trajectories (docs/math.md 7.3): burn-in and measured steps, trajectories, exponents
DRIVE_BURN_IN, DRIVE_STEPS, DRIVE_TRAJECTORIES, DRIVE_EXPONENTS = 200, 1000, 2, 4
GRADIENT_POINTS = 5  # iterations (evenly spread, 0 and the last included) whose ||dE/dh_k|| by k is recorded


def load_blas_libraries(cell_type: str) -> None:
    """Load every BLAS library a cell computes with, before its threads are limited: threadpoolctl limits only the
    libraries loaded when its context opens, and the expRNN's scipy.linalg brings scipy's own OpenBLAS on first use,
    which would then run on every core inside a run meant to use one (twice the CPU time of the run, the same
    numbers). Other cells never import scipy: it would cost every command its startup."""
    if cell_type == "exprnn":
        import scipy.linalg  # noqa: F401


@dataclass(frozen=True)
class Checkpoints:
    """Where `train` records the training dynamics at its gradient checkpoints: the driven trajectories the
    Lyapunov and mean-field numbers are measured on, and the list that receives each checkpoint's table."""

    drive: Drive
    tables: list[pd.DataFrame]


@dataclass(frozen=True)
class RunResult:
    config_hash: str
    outcome: str  # one of verdicts.OUTCOMES: "ok" | "unstable" | "diverged" | "failed"
    summary: dict  # summary.json as written (non-finite numbers as None)
    run_dir: Path


def execute_run(cfg: RunConfig, data_dir: Path | str, run_dir: Path | str,
                progress: Progress | None = None) -> RunResult:
    """Train and probe `cfg`, writing `run_dir` (replacing an existing folder only once the new one is complete).

    `progress(event)` is called once per iteration with {iter, iters, loss, grad_norm, clip_scale, val_loss,
    val_accuracy, chance_loss} (the val numbers from the latest validation pass), and after a divergence once more with
    {..., diverged: True}."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = files.temp_folder(run_dir.parent, run_dir.name)
    try:
        load_blas_libraries(cfg.cell_type)
        with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
            summary = _build_folder(cfg, Path(data_dir), tmp, progress)
        with signals_held():  # a stop lands before or after the swap, never between its renames
            files.move_into_place(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunResult(summary["config_hash"], summary["outcome"], summary, run_dir)


def _build_folder(cfg: RunConfig, data_dir: Path, folder: Path, progress: Progress | None) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    write_json(folder / "config.json", flatten(cfg))
    inputs = input_digests(cfg, data_dir)  # the run's identity; bad input (a corpus gone) raises UserError here
    try:
        with np.errstate(all="ignore"):  # an exploding run overflows on purpose; its outcome records it
            summary = _run(cfg, data_dir, folder, progress)
    except UserError:
        raise
    except Exception as e:  # a bug or numerical failure in this one run: recorded, not fatal to a sweep
        summary = {"outcome": "failed", "diverged_at": None, "iters_done": None,
                   **dict.fromkeys(LEVELS, False),
                   "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    # where it was computed: a record beside the identity, not part of it (another machine's BLAS changes the
    # last bits, yet a resumed study must still skip the cell)
    summary = {"config_hash": config_hash(cfg, inputs), "inputs": inputs, **summary,
               "seconds": time.perf_counter() - start,
               # this process's CPU time: the run's cost whatever else the machine ran (a sweep worker runs one run
               # at a time, on one BLAS thread); `rnngrad plan --against` compares it with the plan
               "cpu_seconds": time.process_time() - cpu_start, "environment": environment.gather()}
    return write_json(folder / "summary.json", summary)


def _run(cfg: RunConfig, data_dir: Path, folder: Path, progress: Progress | None) -> dict:
    """Everything a run computes and writes besides config.json and summary.json; returns the summary."""
    # spawn(4)'s first three children are spawn(3)'s: the drive's stream leaves the others' draws as they were
    rng_init, rng_batch, rng_sample, rng_drive = (np.random.default_rng(s)
                                                  for s in np.random.SeedSequence(cfg.seed).spawn(4))
    src = make_source(cfg, data_dir)
    model = new_model(cfg, src, rng_init)
    model_init = model.copy()
    gradients: list[pd.DataFrame] = []
    weight_gradients: list[pd.DataFrame] = []
    dynamics: list[pd.DataFrame] = []
    validation = Validation(src)
    drive = Drive(driving_inputs(src.draw, rng_drive, DRIVE_BURN_IN + DRIVE_STEPS, DRIVE_TRAJECTORIES,
                                 src.input_dim),
                  DRIVE_BURN_IN, DRIVE_EXPONENTS)
    log, samples = train(cfg, model, src, rng_batch, rng_sample, progress, gradients, weight_gradients, validation,
                         Checkpoints(drive, dynamics))
    history = pd.DataFrame(log.history, columns=list(HISTORY_COLUMNS))
    history.to_csv(folder / "history.csv", index=False)  # written first: a run that fails in its probe keeps it
    if cfg.task == "text":
        write_json(folder / "samples.json", samples)
    at_init = probe_model(model_init, src.probe, "init", drive)
    at_end = (relabelled(at_init, "final") if same_model(model_init, log.model)
              else probe_model(log.model, src.probe, "final", drive))
    across = across_layers(model_init, log.model, src.probe, at_init, at_end)
    at_init, at_end = across.init, across.final
    write_probe(folder, model_init, log.model, src.probe, at_init, at_end)
    write_across(folder, across, pd.concat([at_init.jacobian, at_end.jacobian], ignore_index=True))
    write_weight_gradients(folder, weight_gradients)
    trajectory = write_dynamics(folder, dynamics)
    if gradients:
        pd.concat(gradients, ignore_index=True).to_parquet(folder / "probe" / "gradients.parquet", index=False)
    val = pd.DataFrame(log.val, columns=["iter", "val_loss", "val_accuracy"])
    draw_run_figures(folder, at_init, at_end, history, val, src.chance_loss, trained=cfg.iters > 0,
                     partial_loss=src.partial_loss)
    series = pd.concat([step_series(at_init, at_end), across.series, training_series(history, val, cfg.iters),
                        dynamics_series(trajectory)], ignore_index=True)
    series.to_parquet(folder / "series.parquet", index=False)
    final_val = log.val[-1]  # (iter, loss, accuracy) of the final model
    probed, train_loss = summary_numbers(at_init, at_end), final_train_loss(history, log.iters_done)
    loss_growth = growth(first_train_loss(history), train_loss)
    norm_growth = growth(probed["gamma_w_init"], probed["gamma_w_final"])
    outcome = run_outcome(log.diverged_at is not None, loss_growth, norm_growth)
    right = sequences_right(log.model, src) if log.diverged_at is None else None
    return {
        "outcome": outcome,
        "diverged_at": log.diverged_at,
        "iters_done": log.iters_done,
        "final_train_loss": train_loss,
        "final_val_loss": final_val[1],
        "val_accuracy": final_val[2],
        "val_sequences_right": right,
        "chance_loss": src.chance_loss,
        "chance_accuracy": src.chance_accuracy,
        "partial_loss": src.partial_loss,
        "partial_accuracy": src.partial_accuracy,
        **levels(outcome, final_val[1], src.chance_loss, src.partial_loss, right),
        "loss_growth": loss_growth,
        "norm_growth": norm_growth,
        "gamma_phi": model.act.gamma if model.cell in ("rnn", "exprnn") else None,  # none for a gated cell
        "n_params": n_params(model),  # arms of a comparison state their sizes
        **measured_norms(probed),
        **(text_scores(log.model, validation, log.state) if src.vocab else {}),
        **probed,
        **across.summary,
    }


def measured_norms(probed: dict) -> dict:
    """The top layer's W_hh as measured, under names no one reads as the config's `gamma_w` (which fixed the norm,
    or for a sparse init the spectral radius): w_norm_* = ||W_hh||_2, rho_* its spectral radius, at init and end."""
    return {"w_norm_init": probed["gamma_w_init"], "w_norm_final": probed["gamma_w_final"],
            "rho_init": probed["spectral_radius_init"], "rho_final": probed["spectral_radius_final"]}


def new_model(cfg: RunConfig, src: Source, rng: np.random.Generator) -> Model:
    """The run's initial model: `init_model` for cell rnn, `init_lstm`, `init_gru` or `init_exprnn` for the others."""
    sizes = dict(input_dim=src.input_dim, output_dim=src.output_dim, layers=cfg.layers, hidden=cfg.hidden,
                 init=cfg.init, input_scale=cfg.input_scale, output_scale=cfg.output_scale)
    vanilla = dict(form=cfg.form, activation=cfg.activation, leaky_slope=cfg.leaky_slope)
    if cfg.cell_type == "lstm":
        return init_lstm(rng, **sizes, gamma_w=cfg.gamma_w, forget_bias=cfg.forget_bias)
    if cfg.cell_type == "gru":
        return init_gru(rng, **sizes, gamma_w=cfg.gamma_w)
    if cfg.cell_type == "exprnn":
        return init_exprnn(rng, **vanilla, **sizes)  # ||W_hh||_2 = 1: config.cell_conflict refuses another gamma_w
    return init_model(rng, **vanilla, **sizes, gamma_w=cfg.gamma_w)[0]


# ---- training -------------------------------------------------------------------------------------------------


def train(cfg: RunConfig, model: Model, src: Source, rng_batch: np.random.Generator, rng_sample: np.random.Generator,
          progress: Progress | None = None, gradients: list | None = None, weight_gradients: list | None = None,
          validation: Validation | None = None, dynamics: Checkpoints | None = None) -> tuple[TrainLog, list[dict]]:
    """`engine.trainer.train` with cfg's settings on src's minibatches: (its log, the text samples {iter, text}).

    Validation passes are `validation`'s (default: Validation(src), which reads a text model as it was trained).
    Text runs sample at `sample_checkpoints` and, unless the last one was there, from the final model. Given a
    `gradients` list, it receives ||dE/dh_k|| by k on the probe sequence at `gradient_checkpoints`, and a
    `weight_gradients` list each layer's ||dE/dW_hh|| and ||dE/dW_xh|| on the first validation sequences there, and
    given `dynamics`, its tables list each layer's ||W_hh||_2, rho, lambda_1 and lambda_MF there (run/dynamics.py)."""
    validation = Validation(src) if validation is None else validation
    samples: list[dict] = []
    sample_at = sample_checkpoints(cfg.iters, cfg.samples) if src.vocab else set()
    gradient_at = gradient_checkpoints(cfg.iters) if gradients is not None or dynamics is not None else set()

    def on_step(i: int, log: TrainLog) -> None:
        if i in gradient_at and gradients is not None:
            gradients.append(training_gradient_table(log.model, src.probe, i))
            if weight_gradients is not None and scores_positions(src):
                weight_gradients.append(weight_gradient_table(log.model, src.val, src.loss_kind, i))
        if i in gradient_at and dynamics is not None:
            dynamics.tables.append(dynamics_table(log.model, dynamics.drive, i))
        if i in sample_at:
            samples.append(_sample(log, i, src, cfg.sample_len, rng_sample, validation))
        if progress is not None and i > 0:
            progress(_event(log, i, cfg.iters) | {"chance_loss": src.chance_loss})

    settings = TrainSettings(cfg.iters, src.loss_kind, cfg.clip_mode, cfg.clip_threshold, cfg.eval_every,
                             series_every(cfg.iters), scores_positions(src), cfg.omega,
                             reduction=cfg.loss_reduction)
    optimizer = make_optimizer(cfg.optimizer, cfg.lr, cfg.weight_decay)
    log = trainer.train(model, optimizer, lambda: src.draw(rng_batch), validation, settings, on_step)
    if src.vocab and cfg.samples and (not samples or samples[-1]["iter"] != log.iters_done):
        samples.append(_sample(log, log.iters_done, src, cfg.sample_len, rng_sample, validation))
    if progress is not None and log.diverged_at is not None:
        progress({**_event(log, log.diverged_at, cfg.iters), "diverged": True})
    return log, samples


def _event(log: TrainLog, i: int, iters: int) -> dict:
    row, val = log.history[-1] if log.history else (0, math.nan, math.nan, math.nan), log.val[-1]
    return {"iter": i, "iters": iters, "loss": row[1], "grad_norm": row[2], "clip_scale": row[3],
            "val_loss": val[1], "val_accuracy": val[2]}


def sample_checkpoints(iters: int, samples: int) -> set[int]:
    """`samples` iterations spread evenly over training, the last at the end (iteration 0 if iters = 0)."""
    if samples == 0:
        return set()
    if iters == 0:
        return {0}
    return {max(1, round(iters * j / samples)) for j in range(1, samples + 1)}


def gradient_checkpoints(iters: int, points: int = GRADIENT_POINTS) -> set[int]:
    """`points` iterations spread evenly over training, 0 (the untrained model) and the last included."""
    return {round(iters * j / (points - 1)) for j in range(points)}


def _sample(log: TrainLog, i: int, src: Source, length: int, rng: np.random.Generator, validation: Validation) -> dict:
    """{iter, text}: `length` characters sampled from the log's model, from where `validation.sample_start` puts it
    (a model trained on consecutive windows continues the held-out text from its carried state)."""
    first_id, h0 = validation.sample_start(log.model, log.state)
    ids = sample_ids(log.model, first_id, length, rng, h0)
    return {"iter": i, "text": decode(np.array(ids, dtype=np.int64), src.vocab)}


# ---- outputs --------------------------------------------------------------------------------------------------


def draw_run_figures(folder: Path, at_init: Probe, at_end: Probe, history: pd.DataFrame, val: pd.DataFrame,
                     chance_loss: float | None, trained: bool, partial_loss: float | None = None) -> None:
    """figures/decay.png (decay against lag with both bounds, at init and after training) and figures/loss.png
    (loss against iterations with the chance baseline; not for a task that scores nothing), beside the heatmap:
    the images the MLflow run page shows."""
    jacobian = pd.concat([at_init.jacobian, at_end.jacobian], ignore_index=True)
    plots.draw_decay(jacobian, trained, folder / "figures" / plots.DECAY_FIGURE)
    if trained:
        plots.draw_loss(history, val, chance_loss, folder / "figures" / plots.LOSS_FIGURE, partial_loss)


def final_train_loss(history: pd.DataFrame, iters_done: int) -> float | None:
    """Mean minibatch loss over the last 10 % of the finite steps (at least 1, at most 50)."""
    done = history[history["iter"] <= iters_done]
    if done.empty:
        return None
    k = max(1, min(50, iters_done // 10))
    return float(done["loss"].iloc[-k:].mean())


def first_train_loss(history: pd.DataFrame) -> float | None:
    """The first logged minibatch loss (iteration 1), the start an unstable run is measured against; None when
    no step was taken or the task scores nothing (its history loss is NaN)."""
    if history.empty:
        return None
    first = float(history["loss"].iloc[0])
    return first if math.isfinite(first) else None


def series_every(iters: int) -> int:
    """The stride of the iterations whose history numbers reach MLflow as by_iter/* (at most SERIES_POINTS of them)."""
    return max(1, math.ceil(iters / SERIES_POINTS))


def smoothed_loss(history: pd.DataFrame, logged: np.ndarray) -> pd.Series:
    """At each logged iteration, the mean minibatch loss over the iterations since the previous logged one: every
    iteration counts once, so the curve is the training loss with a minibatch's noise averaged out (the training
    loss key holds single steps). A block holding a non-finite loss is non-finite: overflow is data, not averaged
    away."""
    loss = history.set_index("iter")["loss"]
    block = np.asarray(logged)[np.searchsorted(logged, loss.index.to_numpy())]  # the first logged iteration >= i
    return loss.groupby(block).agg(lambda part: float(np.mean(part.to_numpy())))


def iteration_key(column: str) -> str:
    """The step-metric key of a history.csv column: `by_iter/<column>`, the loss as `by_iter/train_loss` beside
    `by_iter/val_loss` (the prefix names the step's axis: the iteration)."""
    return f"by_iter/{'train_loss' if column == 'loss' else column}"


def training_series(history: pd.DataFrame, val: pd.DataFrame, iters: int) -> pd.DataFrame:
    """by_iter/* step metrics: the history's at every `series_every(iters)`-th iteration and the last one run
    (`by_iter/train_loss_smoothed` beside `by_iter/train_loss`), validation loss and accuracy at every validation
    pass; step = iteration."""
    at = history["iter"]
    keep = history[(at % series_every(iters) == 0) | (at == at.max())].set_index("iter")
    parts = [series_rows(iteration_key(c), keep[c]) for c in HISTORY_COLUMNS[1:]]
    parts.append(series_rows("by_iter/train_loss_smoothed", smoothed_loss(history, keep.index.to_numpy())))
    parts += [series_rows(f"by_iter/val_{c}", val.set_index("iter")[f"val_{c}"].astype(float))
              for c in ("loss", "accuracy")]
    return pd.concat(parts, ignore_index=True)
