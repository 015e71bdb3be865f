"""Execute one run: data -> model -> training (validation, text samples) -> probes -> the run folder.

`execute_run(cfg, data_dir, run_dir)` writes the folder of docs/internals.md ("A run's folder") atomically: it is
built in a temp folder beside `run_dir` and renamed into place when complete, so a folder that exists is a
finished run. Overflow is data: a non-finite loss, gradient or parameter stops training with outcome "diverged".
Any other exception inside the run gives outcome "failed" with the error in summary.json (a sweep goes on) beside
whatever the run wrote before it; bad user input (UserError) propagates, and nothing is written.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from . import datasets
from ..engine import jacobian
from .config import RunConfig, config_hash, flatten
from ..engine.text import decode, sample_windows
from ..errors import UserError
from ..engine.init import init_model
from ..engine.optim import make_optimizer
from .probe import ProbeInput, probe_model, series_rows, step_series, summary_numbers, write_probe
from ..engine.rnn import RNN, Workspace, forward, loss_and_dy
from ..engine.trainer import train_step

Progress = Callable[[dict], None]
HISTORY_COLUMNS = ("iter", "loss", "grad_norm", "clip_scale", "w_norm", "spectral_radius")
# train/* step metrics, w_norm and spectral_radius included, at this many evenly spaced iterations (plus the last):
# a weight-norm eigensolve costs ~3 ms at n = 100, and each logged point ~0.1 ms of MLflow/sqlite time. A run
# logs a fixed ~35 ms plus 5 keys x this many points: at 50, the smallest quick run (0.8 s) spent 10.5 % of its
# time logging; at 30, 8.8 %. history.csv keeps every iteration.
SERIES_POINTS = 30
# A run computes on one BLAS thread wherever it runs: OpenBLAS splits a long sum differently on 2 threads than
# on 1, and those last-bit differences grow over training, so otherwise a config's numbers would depend on the
# machine's cores and on the sweep's --jobs. (Sweeps get their parallelism from worker processes instead.)
BLAS_THREADS = 1
MAX_VAL_SEQUENCES = 1000  # synthetic validation passes use at most this many sequences
TEXT_VAL_WINDOWS = 128  # text validation: this many evenly spaced windows of the validation text


@dataclass(frozen=True)
class RunResult:
    config_hash: str
    outcome: str  # "ok" | "diverged" | "failed"
    summary: dict  # summary.json as written (non-finite numbers as None)
    run_dir: Path


@dataclass(frozen=True)
class Source:
    """A task's data as the training loop sees it: time-major batches (T, B, ...)."""

    loss_kind: str  # "xent" | "mse"
    input_dim: int
    output_dim: int
    draw: Callable[[np.random.Generator], tuple]  # -> (xs (T,B,d), targets (T,B)|(T,B,o), mask (T,B))
    val: tuple  # a fixed validation batch, same layout
    probe: ProbeInput  # one validation sequence, h0 zeros
    chance_loss: float | None  # loss of a model that learned nothing (the task's baseline)
    chance_accuracy: float | None
    tolerance: float | None = None  # mse tasks: |error| below this counts as correct (adding)
    vocab: list[str] | None = None  # text only


@dataclass
class TrainLog:
    model: RNN  # after the last step; if diverged, the last model with finite parameters
    history: list[tuple] = field(default_factory=list)  # HISTORY_COLUMNS per iteration
    val: list[tuple] = field(default_factory=list)  # (iter, val_loss, val_accuracy)
    samples: list[dict] = field(default_factory=list)  # text: {iter, text}
    diverged_at: int | None = None  # iteration whose loss, gradient or update, or validation loss, was non-finite
    iters_done: int = 0  # completed finite steps


def execute_run(cfg: RunConfig, data_dir: Path | str, run_dir: Path | str,
                progress: Progress | None = None) -> RunResult:
    """Train and probe `cfg`, writing `run_dir` (replacing an existing folder only once the new one is complete).

    `progress(event)` is called once per iteration with {iter, iters, loss, grad_norm, clip_scale, val_loss,
    val_accuracy} (the val numbers from the latest validation pass)."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_folder(run_dir.parent, run_dir.name)
    try:
        with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
            summary = _build_folder(cfg, Path(data_dir), tmp, progress)
        _move_into_place(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunResult(summary["config_hash"], summary["outcome"], summary, run_dir)


def _build_folder(cfg: RunConfig, data_dir: Path, folder: Path, progress: Progress | None) -> dict:
    start = time.perf_counter()
    write_json(folder / "config.json", flatten(cfg))
    try:
        with np.errstate(all="ignore"):  # an exploding run overflows on purpose; its outcome records it
            summary = _run(cfg, data_dir, folder, progress)
    except UserError:
        raise
    except Exception as e:  # a bug or numerical failure in this one run: recorded, not fatal to a sweep
        summary = {"outcome": "failed", "diverged_at": None, "iters_done": None,
                   "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    summary = {"config_hash": config_hash(cfg), **summary, "seconds": time.perf_counter() - start}
    return write_json(folder / "summary.json", summary)


def _run(cfg: RunConfig, data_dir: Path, folder: Path, progress: Progress | None) -> dict:
    """Everything a run computes and writes besides config.json and summary.json; returns the summary."""
    rng_init, rng_batch, rng_sample = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(3))
    src = text_source(cfg, data_dir) if cfg.task == "text" else synthetic_source(cfg, data_dir)
    model, _ = init_model(rng_init, input_dim=src.input_dim, output_dim=src.output_dim, form=cfg.form,
                          activation=cfg.activation, leaky_slope=cfg.leaky_slope, layers=cfg.layers,
                          hidden=cfg.hidden, init=cfg.init, gamma_w=cfg.gamma_w, input_scale=cfg.input_scale)
    model_init = model.copy()
    log = train(cfg, model, src, rng_batch, rng_sample, progress)
    history = pd.DataFrame(log.history, columns=list(HISTORY_COLUMNS))
    history.to_csv(folder / "history.csv", index=False)  # written first: a run that fails in its probe keeps it
    if cfg.task == "text":
        write_json(folder / "samples.json", log.samples)
    at_init, at_end = probe_model(model_init, src.probe, "init"), probe_model(log.model, src.probe, "final")
    write_probe(folder, model_init, log.model, src.probe, at_init, at_end)
    val = pd.DataFrame(log.val, columns=["iter", "val_loss", "val_accuracy"])
    series = pd.concat([step_series(at_init, at_end), training_series(history, val, cfg.iters)], ignore_index=True)
    series.to_parquet(folder / "series.parquet", index=False)
    final_val = log.val[-1]  # (iter, loss, accuracy) of the final model
    return {
        "outcome": "diverged" if log.diverged_at is not None else "ok",
        "diverged_at": log.diverged_at,
        "iters_done": log.iters_done,
        "final_train_loss": final_train_loss(history, log.iters_done),
        "final_val_loss": final_val[1],
        "val_accuracy": final_val[2],
        "chance_loss": src.chance_loss,
        "chance_accuracy": src.chance_accuracy,
        "gamma_phi": model.act.gamma,
        **summary_numbers(at_init, at_end),
    }


# ---- data sources ---------------------------------------------------------------------------------------------


def _time_major(a: np.ndarray) -> np.ndarray:
    """(N, S, ...) -> (S, N, ...), contiguous for the per-step matmuls."""
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


def synthetic_source(cfg: RunConfig, data_dir: Path) -> Source:
    """Random minibatches (with replacement) of the training split; the probe is validation sequence 0."""
    ds = datasets.load_dataset(data_dir, cfg.task, cfg.seq_len, cfg.train_size, cfg.data_seed)
    meta, n_train = ds.meta, len(ds.x_train)

    def draw(rng: np.random.Generator) -> tuple:
        idx = rng.integers(0, n_train, size=cfg.batch)
        return _time_major(ds.x_train[idx]), _time_major(ds.y_train[idx]), _time_major(ds.mask_train[idx])

    val = tuple(_time_major(a[:MAX_VAL_SEQUENCES]) for a in (ds.x_val, ds.y_val, ds.mask_val))
    steps = min(cfg.probe_len, ds.x_val.shape[1])
    mask = ds.mask_val[0, :steps].copy()
    if not mask.any():  # the loss sits beyond the truncated probe (or the task has none): measure from its end
        mask[-1] = 1.0
    probe = ProbeInput(ds.x_val[0, :steps], np.zeros((cfg.layers, cfg.hidden)), ds.y_val[0, :steps], mask, meta.loss)
    chance_loss, chance_accuracy = chance_from_baselines(meta.baselines)
    return Source(meta.loss, meta.input_dim, meta.output_dim, draw, val, probe, chance_loss, chance_accuracy,
                  meta.tolerance)


def chance_from_baselines(baselines: dict[str, float]) -> tuple[float | None, float | None]:
    """(loss, accuracy) of a model that learned nothing, from a task's baselines (tasks.py names them
    mse_* / xent_* for losses, accuracy_* or error_* for success rates); None where the task gives none."""
    loss = next((v for k, v in baselines.items() if k.startswith(("mse_", "xent_"))), None)
    accuracy = next((v for k, v in baselines.items() if k.startswith("accuracy_")), None)
    error = next((v for k, v in baselines.items() if k.startswith("error_")), None)
    if accuracy is None and error is not None:
        accuracy = 1.0 - error
    return loss, accuracy


def load_text_data(cfg: RunConfig, data_dir: Path, option: str = "text") -> datasets.TextData:
    """data/text.npz (or the default corpus); a `text` file other than the one data/ was made from is read directly.
    UserError (naming `option`) for a file that is missing, a folder, empty or not UTF-8 text."""
    generated = datasets.load_text(data_dir) if cfg.text is None or (data_dir / "text.npz").exists() else None
    if generated is not None and (cfg.text is None or generated.source == cfg.text):
        return generated
    return datasets.text_data_from_string(datasets.read_text_file(Path(cfg.text), option), cfg.text)


def check_windows(td: datasets.TextData, seq_len: int, where: str = "seq_len") -> None:
    """Both splits of the text must hold one window of seq_len characters and its target."""
    for name, ids in (("training", td.ids_train), ("validation", td.ids_val)):
        if len(ids) < seq_len + 1:
            raise UserError(f"{where}: {seq_len} needs {seq_len + 1} characters, the {name} text has {len(ids)}; "
                            "give a smaller value or a longer text")


def check_data(cfg: RunConfig, data_dir: Path, label: Callable[[str], str] = str,
               texts: dict | None = None) -> None:
    """UserError for data the run could not use, for a command to refuse before it opens a store or starts a run: a
    text task's file (missing, a folder, empty, not UTF-8) or a seq_len longer than a split of its text. `label(field)`
    says where a field came from (e.g. "--seq-len"); `texts` keeps loaded texts across the cells of a sweep."""
    if cfg.task != "text":
        return
    texts = {} if texts is None else texts
    if cfg.text not in texts:
        texts[cfg.text] = load_text_data(cfg, Path(data_dir), label("text"))
    check_windows(texts[cfg.text], cfg.seq_len, label("seq_len"))


def one_hot(ids: np.ndarray, depth: int) -> np.ndarray:
    """ids (...) int -> (..., depth) float64."""
    out = np.zeros(ids.shape + (depth,))
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


def text_source(cfg: RunConfig, data_dir: Path) -> Source:
    """Random training windows (min-char-rnn's next-character task); fixed, evenly spaced validation windows."""
    td = load_text_data(cfg, data_dir)
    V, T = len(td.vocab), cfg.seq_len
    check_windows(td, T)

    def draw(rng: np.random.Generator) -> tuple:
        xs, targets = sample_windows(td.ids_train, T, cfg.batch, rng, vocab_size=V)
        return xs, targets, np.ones((T, cfg.batch))

    starts = np.unique(np.linspace(0, len(td.ids_val) - T - 1, TEXT_VAL_WINDOWS).astype(np.int64))  # (B,)
    index = starts[None, :] + np.arange(T)[:, None]  # (T, B)
    val = (one_hot(td.ids_val[index], V), td.ids_val[index + 1], np.ones(index.shape))
    steps = min(cfg.probe_len, len(td.ids_val) - 1)
    probe = ProbeInput(one_hot(td.ids_val[:steps], V), np.zeros((cfg.layers, cfg.hidden)), td.ids_val[1 : steps + 1],
                       np.ones(steps), "xent")
    return Source("xent", V, V, draw, val, probe, math.log(V), 1.0 / V, vocab=list(td.vocab))


# ---- training -------------------------------------------------------------------------------------------------


def train(cfg: RunConfig, model: RNN, src: Source, rng_batch: np.random.Generator, rng_sample: np.random.Generator,
          progress: Progress | None = None) -> TrainLog:
    """cfg.iters steps of `trainer.train_step` on random minibatches, stopping at the first non-finite one (its
    loss, gradient or update) or at the first validation pass after a step whose loss is not finite; the final
    model's validation loss not finite is a divergence too. The untrained model's alone is not: training may bring
    an overflowing initialisation back (clipping does), so for iters 0 only the final check counts it.
    A task that scores no position (probe) has no loss: NaN in the history, not the 0 the step reports."""
    optimizer, workspace = make_optimizer(cfg.optimizer, cfg.lr, cfg.weight_decay), Workspace()
    log = TrainLog(model)
    norm_every = series_every(cfg.iters)
    sample_at = sample_checkpoints(cfg.iters, cfg.samples) if src.vocab else set()
    _validate(log, 0, src)
    scored = scores_positions(src)
    _maybe_sample(log, 0, src, cfg, rng_sample, sample_at)
    for i in range(1, cfg.iters + 1):
        before = model.copy()
        xs, targets, mask = src.draw(rng_batch)
        s = train_step(model, optimizer, xs, targets, mask, src.loss_kind, cfg.clip_mode, cfg.clip_threshold,
                       workspace=workspace)
        finite = bool(s.finite) and math.isfinite(s.loss) and math.isfinite(s.grad_norm) and params_finite(model)
        norms = weight_norms(model) if finite and (i % norm_every == 0 or i == cfg.iters) else (math.nan, math.nan)
        loss = float(s.loss) if scored else math.nan
        log.history.append((i, loss, float(s.grad_norm), float(s.clip_scale), *norms))
        if not finite:
            log.diverged_at, model = i, before  # keep the last model with finite parameters
            break
        log.iters_done = i
        if cfg.eval_every and i % cfg.eval_every == 0 and not _validate(log, i, src):
            log.diverged_at = i  # finite parameters and minibatch loss, but the validation loss overflows
            break
        _maybe_sample(log, i, src, cfg, rng_sample, sample_at)
        if progress is not None:
            progress(_event(log, i, cfg.iters))
    log.model = model
    if log.val[-1][0] != log.iters_done:
        _validate(log, log.iters_done, src)
    if log.diverged_at is None and not _finite_or_none(log.val[-1][1]):
        log.diverged_at = log.iters_done  # e.g. iters 0: the untrained model's validation loss overflows
    if src.vocab and cfg.samples and (not log.samples or log.samples[-1]["iter"] != log.iters_done):
        _maybe_sample(log, log.iters_done, src, cfg, rng_sample, {log.iters_done})
    if progress is not None and log.diverged_at is not None:
        progress({**_event(log, log.diverged_at, cfg.iters), "diverged": True})
    return log


def _event(log: TrainLog, i: int, iters: int) -> dict:
    row, val = log.history[-1] if log.history else (0, math.nan, math.nan, math.nan), log.val[-1]
    return {"iter": i, "iters": iters, "loss": row[1], "grad_norm": row[2], "clip_scale": row[3],
            "val_loss": val[1], "val_accuracy": val[2]}


def params_finite(model: RNN) -> bool:
    return all(np.isfinite(p).all() for p in model.params.values())


def weight_norms(model: RNN) -> tuple[float, float]:
    """(||W_hh||_2, spectral radius) of the top layer."""
    W = model.W_hh(-1)
    return float(jacobian.spectral_norm(W)), float(jacobian.spectral_radius(W))


def scores_positions(src: Source) -> bool:
    """Whether the task has a loss at all (the probe task's sequences only drive the Jacobian probes)."""
    return bool((np.asarray(src.val[2]) > 0).any())


def evaluate(model: RNN, src: Source) -> tuple[float | None, float | None]:
    """(validation loss, task success rate) of `model` on the fixed validation batch; (None, None) for a task
    that scores no position (the probe task: its sequences only drive the Jacobian probes)."""
    xs, targets, mask = src.val
    if not scores_positions(src):
        return None, None  # not a loss of 0
    y = forward(model, xs).y
    loss, _ = loss_and_dy(y, targets, mask, src.loss_kind)
    return loss, task_accuracy(y, targets, mask, src.loss_kind, src.tolerance)


def task_accuracy(y: np.ndarray, targets: np.ndarray, mask: np.ndarray, kind: str,
                  tolerance: float | None) -> float | None:
    """Share of masked positions answered correctly: argmax = class (xent), or every |error| < tolerance (mse).
    None when there is no criterion (an mse task without tolerance) or no masked position."""
    counted = mask > 0
    if not counted.any() or (kind == "mse" and tolerance is None):
        return None
    if kind == "xent":
        correct = y.argmax(axis=-1) == targets
    else:
        correct = (np.abs(y - targets) < tolerance).all(axis=-1)
    return float(correct[counted].mean())


def _validate(log: TrainLog, i: int, src: Source) -> bool:
    """Evaluate the current model; False if its validation loss is not finite (a divergence, like a training one)."""
    log.val.append((i, *evaluate(log.model, src)))
    return _finite_or_none(log.val[-1][1])


def _finite_or_none(loss: float | None) -> bool:
    return loss is None or math.isfinite(loss)


def sample_checkpoints(iters: int, samples: int) -> set[int]:
    """`samples` iterations spread evenly over training, the last at the end (iteration 0 if iters = 0)."""
    if samples == 0:
        return set()
    if iters == 0:
        return {0}
    return {max(1, round(iters * j / samples)) for j in range(1, samples + 1)}


def _maybe_sample(log: TrainLog, i: int, src: Source, cfg: RunConfig, rng: np.random.Generator, at: set[int]) -> None:
    if i in at and src.vocab:
        ids = sample_ids(log.model, int(src.probe.xs[0].argmax()), cfg.sample_len, rng)  # seed: 1st val char
        log.samples.append({"iter": i, "text": decode(np.array(ids, dtype=np.int64), src.vocab)})


def sample_ids(model: RNN, first_id: int, length: int, rng: np.random.Generator) -> list[int]:
    """Sample `length` characters from the model, feeding each back in, starting from `first_id` and zero state.
    Stops early if the model's probabilities are not finite."""
    V, h, x, out = model.input_dim, None, first_id, []
    for _ in range(length):
        trace = forward(model, one_hot(np.array([[x]]), V), h)
        h = np.stack([states[-1] for states in trace.h])  # (L, 1, n)
        z = trace.y[0, 0] - trace.y[0, 0].max()
        p = np.exp(z) / np.exp(z).sum()
        if not np.all(np.isfinite(p)):
            break
        x = int(rng.choice(V, p=p))
        out.append(x)
    return out


# ---- outputs --------------------------------------------------------------------------------------------------


def final_train_loss(history: pd.DataFrame, iters_done: int) -> float | None:
    """Mean minibatch loss over the last 10 % of the finite steps (at least 1, at most 50)."""
    done = history[history["iter"] <= iters_done]
    if done.empty:
        return None
    k = max(1, min(50, iters_done // 10))
    return float(done["loss"].iloc[-k:].mean())


def series_every(iters: int) -> int:
    """The stride of the iterations whose train/* numbers reach MLflow (at most SERIES_POINTS of them)."""
    return max(1, math.ceil(iters / SERIES_POINTS))


def training_series(history: pd.DataFrame, val: pd.DataFrame, iters: int) -> pd.DataFrame:
    """train/* step metrics at every `series_every(iters)`-th iteration and the last one run, val/* at every
    validation pass; step = iteration."""
    at = history["iter"]
    keep = history[(at % series_every(iters) == 0) | (at == at.max())].set_index("iter")
    parts = [series_rows(f"train/{c}", keep[c]) for c in HISTORY_COLUMNS[1:]]
    parts += [series_rows(f"val/{c}", val.set_index("iter")[f"val_{c}"].astype(float)) for c in ("loss", "accuracy")]
    return pd.concat(parts, ignore_index=True)


def jsonable(value: Any) -> Any:
    """numpy scalars to Python, non-finite floats to None (strict JSON), recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, obj: Any) -> Any:
    """Write strict JSON (temp file + rename); returns what was written."""
    clean = jsonable(obj)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return clean


def _temp_folder(parent: Path, name: str) -> Path:
    """A new, empty parent/.<name>.<8 random hex digits>.tmp with the umask's permissions (tempfile.mkdtemp's are
    0700, which the run folder renamed from it would keep: unreadable to the group that shares the results)."""
    while True:
        tmp = parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def _move_into_place(tmp: Path, run_dir: Path) -> None:
    """Rename the finished temp folder to run_dir; an existing run_dir is replaced only now."""
    if not run_dir.exists():
        os.replace(tmp, run_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", suffix=".old", dir=run_dir.parent))
    os.replace(run_dir, old / run_dir.name)
    os.replace(tmp, run_dir)
    shutil.rmtree(old)
