"""What a run needs before it runs: its sizes, its peak memory, and how much of each kind of work it does.

`peak_bytes` is the one memory estimate: `rnngrad plan` prints it, and `rnngrad train` and `rnngrad sweep` refuse a
cell whose estimate is above their --max-memory before anything starts (`check_memory`). It adds to a process's
base (`BASE_BYTES`) the arrays a run holds at its peak: its validation data, then either training (the step's
workspace beside one validation chunk, `engine.evaluation`), a probe of one layer (the stacks of products of
`jacobian.log_norm_matrix`, its Lanczos vectors and the tables) or, for a stacked vanilla RNN, the probe across its
layers (`run/depthprobe.py`: the stacks of every layer at once), whichever is largest; they never overlap.

The time a run takes is counted here in units (`WorkCounts`: training steps, validation passes, probes); what a
unit costs on a machine is timed by `run/calibrate.py`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..engine import evaluation, tasks
from ..engine.cells import GATED_CELLS
from ..engine.jacobian import LANCZOS_MAX_STEPS
from ..engine.text import VAL_FRACTION, split_sizes
from ..errors import UserError
from .config import RunConfig
from .datasets import TEXT_TASK
from .sources import TEXT_VAL_WINDOWS, load_text_data

MIB, GIB = 2**20, 2**30
FLOAT = 8  # bytes of a float64 or int64
# A run's process before its arrays: Python, numpy, pandas, pyarrow and matplotlib (figures), measured as the peak
# RSS of a sweep worker after a tiny run (`rnngrad train`'s process, which also imports mlflow, takes about 100 MB
# more, inside the factor of 1.5 the estimate is held to)
BASE_BYTES = 170 * MIB


@dataclass(frozen=True)
class RunSizes:
    """The sizes of a run's task, which its config alone does not give (the corpus sets a text run's)."""

    steps: int  # S: steps per sequence (copy: T + 20)
    input_dim: int  # d (text: the vocabulary, fed as token ids)
    output_dim: int  # o (classes, or the target's width)
    loss: str  # "xent" | "mse"
    val_sequences: int  # sequences (text: windows) of the validation batch; 0 when nothing is scored
    probe_steps: int  # P: steps of the probe sequence
    data_bytes: int  # the validation set's arrays (text: the corpus as ids)


def run_sizes(cfg: RunConfig, corpus_chars: Callable[[RunConfig], tuple[int, int]] | None = None) -> RunSizes:
    """The sizes of `cfg`'s task. A text run needs `corpus_chars(cfg)` -> (characters, vocabulary size) of its
    corpus; a synthetic run's sizes follow from the task and seq_len."""
    if cfg.task == TEXT_TASK:
        if corpus_chars is None:
            raise ValueError("a text run's sizes need its corpus: give corpus_chars")
        chars, vocab = corpus_chars(cfg)
        train, val = split_sizes(chars, VAL_FRACTION)
        windows = min(TEXT_VAL_WINDOWS, max(1, val - cfg.seq_len))
        return RunSizes(cfg.seq_len, vocab, vocab, "xent", windows, min(cfg.probe_len, val - 1), FLOAT * chars)
    meta = tasks.task_meta(cfg.task, cfg.seq_len)
    scored = meta.chance_loss is not None
    per_sequence = meta.steps * (meta.input_dim + (meta.output_dim if meta.loss == "mse" else 1) + 1)
    return RunSizes(meta.steps, meta.input_dim, meta.output_dim, meta.loss, cfg.val_size if scored else 0,
                    min(cfg.probe_len, meta.steps), FLOAT * cfg.val_size * per_sequence)


def sizes_reader(data_dir: Path | str) -> Callable[[RunConfig], RunSizes]:
    """`run_sizes` of any config, each corpus read once (from its source, checked against data/'s record)."""
    corpora: dict[str, tuple[int, int]] = {}

    def corpus_chars(cfg: RunConfig) -> tuple[int, int]:
        if cfg.text not in corpora:
            td = load_text_data(cfg, Path(data_dir))
            corpora[cfg.text] = (len(td.ids_train) + len(td.ids_val), len(td.vocab))
        return corpora[cfg.text]

    return lambda cfg: run_sizes(cfg, corpus_chars)


# ---- memory -------------------------------------------------------------------------------------------------


def peak_bytes(cfg: RunConfig, sizes: RunSizes) -> int:
    """The estimated peak RSS of a process that runs `cfg`: its base, the validation data (held twice: as read
    and time-major), and the largest of training (with a validation chunk beside it), one probe and the probe
    across layers."""
    data = 2 * sizes.data_bytes
    return int(BASE_BYTES + data + max(training_bytes(cfg, sizes) + validation_bytes(cfg, sizes),
                                       probe_bytes(cfg, sizes), across_bytes(cfg, sizes)))


def probed_across_layers(cfg: RunConfig) -> bool:
    """Whether a run probes across layers (`depthprobe.across_layers`): a stacked vanilla RNN or expRNN."""
    return cfg.cell_type in ("rnn", "exprnn") and cfg.layers > 1


# Floats per unit, step and sequence of a training step's trace and backward pass (measured with tracemalloc): the
# vanilla cell's h, drive, phi' and dE/dh (pascanu's phi(h) too; an expRNN's are its vanilla RNN's), the LSTM's
# gates, states and the temporaries of its backward pass, the GRU's three gates, h and hidden drive with the six
# gate gradients of its backward pass and the factors of every step
TRACE_FLOATS = {"lstm": 22, "gru": 17}
# n x n arrays an expRNN's layer holds at once in a training step: W = exp(A) (formed in the forward pass and again
# in the backward one) and the Pade workspace of scipy's expm_frechet, which differentiates through it
EXPONENTIAL_MATRICES = 40


def training_bytes(cfg: RunConfig, sizes: RunSizes) -> int:
    """A training step's workspace: per layer the trace and its gradient buffers (`TRACE_FLOATS`), the readout and
    its gradient, a batch; two copies of the parameters (the gradient, the model kept in case the step diverges);
    an expRNN's matrix exponentials and their Frechet derivative, one layer at a time."""
    T, B, n, L = sizes.steps, cfg.batch, cfg.hidden, cfg.layers
    per_unit = TRACE_FLOATS.get(cfg.cell_type, 5.5 if cfg.form == "pascanu" else 4.5)
    trace = (L * per_unit * n + 2 * sizes.output_dim + sizes.input_dim + 2) * T * B
    exponential = (L + EXPONENTIAL_MATRICES) * n * n if cfg.cell_type == "exprnn" else 0
    return int(FLOAT * (trace + 2 * parameter_count(cfg, sizes) + exponential))


def validation_bytes(cfg: RunConfig, sizes: RunSizes) -> int:
    """A validation pass: one chunk's trace (`engine.evaluation`), and over the whole batch the per-position loss,
    hit and weight (T x V each) and the chunk's readout temporaries."""
    T, V = sizes.steps, sizes.val_sequences
    if V == 0:
        return 0
    per_sequence = evaluation.trace_bytes_per_sequence(cfg.cell_type, cfg.form, cfg.layers, cfg.hidden,
                                                       sizes.output_dim, T)
    chunk = evaluation.chunk_sequences(V, per_sequence, evaluation.CHUNK_BYTES)
    return chunk * per_sequence + (2 * FLOAT + 2) * T * V + 3 * FLOAT * T * chunk * sizes.output_dim


def probe_bytes(cfg: RunConfig, sizes: RunSizes) -> int:
    """One probe of one layer at a time: all pairs' products (`jacobian.log_norm_matrix`: the stack and its spare,
    a compacted copy, the Lanczos vectors and tridiagonals; a gated cell's dense step Jacobians, 2n x 2n for the
    LSTM and n x n for the GRU, and their copies), and the (P+1) x (P+1) matrices and tidy tables of every
    layer."""
    P, n, L = sizes.probe_steps, cfg.hidden, cfg.layers
    m = 2 * n if cfg.cell_type == "lstm" else n  # the state's width
    products = (5 if cfg.cell_type in GATED_CELLS else 2.6) * P * m * m
    lanczos = P * LANCZOS_MAX_STEPS * (m + LANCZOS_MAX_STEPS)
    tables = L * (P + 1) ** 2 * (6 + 3 * 10 / 2)  # six matrices per layer; 10 columns for half the pairs, 3 copies
    return int(FLOAT * (products + lanczos + tables))


def across_bytes(cfg: RunConfig, sizes: RunSizes) -> int:
    """The probe across the layers of a stacked vanilla RNN (`depthprobe.cross_layer`; 0 for any other run): every
    layer's two stacks of products at once and the gemm's operand (`engine.gridpairs`: 2L + 2 stacks of
    n x n x (P+1)), the step Jacobians whose norms bound the edges, the (L, P+1, P+1) grids of norms and bounds and
    the table of every pair across layers, with its copies."""
    if not probed_across_layers(cfg):
        return 0
    P, n, L = sizes.probe_steps, cfg.hidden, cfg.layers
    stacks = (2 * L + 2) * n * n * (P + 1)
    edges = 3 * P * n * n
    grids = L * (P + 1) ** 2 * (8 + 3 * 11 / 2)  # eight grids; 11 columns for half the pairs, 3 copies
    return int(FLOAT * (stacks + edges + grids))


def parameter_count(cfg: RunConfig, sizes: RunSizes) -> int:
    """Trained parameters: per layer W_hh, W_xh (W_ih) and the bias, four times over for the LSTM's gates and three
    for the GRU's (whose two biases count as one more); the readout."""
    n, gates = cfg.hidden, {"lstm": 4, "gru": 3}.get(cfg.cell_type, 1)
    bias = 2 if cfg.cell_type == "gru" else 1
    layers = gates * n * (n + sizes.input_dim + bias) + (cfg.layers - 1) * gates * n * (2 * n + bias)
    return layers + sizes.output_dim * (n + 1)


# ---- work ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkCounts:
    """How many of each unit of work a run does (`estimate_seconds` prices them)."""

    train_steps: int
    validation_passes: int  # over the whole validation batch
    probes: int  # 1 when the final model is the initial one (iters 0), else 2
    across_probes: int = 0  # probes across layers: 2 for a stacked vanilla RNN (init and final), else 0


def work_counts(cfg: RunConfig, sizes: RunSizes) -> WorkCounts:
    """The trainer validates before the first step, after every eval_every-th and after the last (once); a task
    that scores nothing skips the passes. A run that diverges stops early: this counts a run that does not."""
    passes = 0
    if sizes.val_sequences:
        every = cfg.eval_every
        passes = 1 + (cfg.iters // every if every else 0)
        passes += cfg.iters > 0 and (not every or cfg.iters % every != 0)
    return WorkCounts(cfg.iters, int(passes), 1 if cfg.iters == 0 else 2, 2 if probed_across_layers(cfg) else 0)


# ---- limits -------------------------------------------------------------------------------------------------

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(?:([kmgt])(?:ib|i|b)?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str, option: str = "--max-memory") -> int:
    """A size such as 1.5G, 1500M, 2Gi or 2GiB in bytes; K, M, G and T are binary (1G = 1024^3 bytes), as Slurm's
    --mem and Kubernetes' Gi read them. UserError for anything else."""
    match = _SIZE.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"{option}: {text!r} is not a memory size; give a positive number with a unit, e.g. 1.5G, "
                        "1500M or 2Gi (binary units: 1G = 1024^3 bytes)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def format_bytes(n: float) -> str:
    """Bytes as people read them: 374 MiB, 1.4 GiB."""
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{math.ceil(n / MIB)} MiB"


def physical_memory() -> int | None:
    """This machine's RAM in bytes; None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, as `taskset` or a container's cpuset sets it), which `--jobs
    0` means; os.cpu_count() where the system has no affinity (macOS, Windows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_limit(option_value: str, workers: int | None, option: str = "--max-memory") -> int | None:
    """The memory a cell may need, in bytes: `option_value` parsed (`parse_bytes`), else this machine's RAM shared
    by its `workers` (None when the workers are elsewhere, or the RAM is unknown: no limit)."""
    if str(option_value).strip():
        return parse_bytes(option_value, option)
    ram = physical_memory()
    return None if ram is None or not workers else ram // workers


def check_memory(cells: list[tuple[str, RunConfig, RunSizes]], limit: int | None, option: str = "--max-memory"
                 ) -> None:
    """UserError naming the cell whose `peak_bytes` is largest, when it is above `limit` (and how many are), before
    anything runs: a cell that the machine or a worker's limit cannot hold would be killed half way, or swap. No
    limit: no check."""
    if limit is None or not cells:
        return
    needs = [(peak_bytes(cfg, sizes), name) for name, cfg, sizes in cells]
    need, name = max(needs, key=lambda pair: pair[0])
    if need <= limit:
        return
    above = sum(n > limit for n, _ in needs)
    many = f" ({above} of {len(needs)} cells are above it)" if len(needs) > 1 else ""
    raise UserError(f"{name}: needs about {format_bytes(need)} of memory, above {option} {format_bytes(limit)}{many}; "
                    f"give a larger {option} (e.g. {option} {math.ceil(need / GIB * 10) / 10}G) or shrink the cell "
                    "(val_size, hidden, probe_len)")


def check_cells_memory(named: list[tuple[str, RunConfig]], data_dir: Path | str, limit: int | None,
                       option: str = "--max-memory") -> None:
    """`check_memory` of configs named for messages (e.g. a sweep's cells as "spec.yaml: cell gamma_w=2.0")."""
    if limit is not None:
        sizes_of = sizes_reader(data_dir)
        check_memory([(name, cfg, sizes_of(cfg)) for name, cfg in named], limit, option)
