"""What a run's units of work cost on this machine, timed: the price list of `cost.WorkCounts`.

For each kind of cell (what the cost of a unit depends on: the cell, its sizes, the optimiser; not the seed or the
learning rate), a small twin of the cell runs the engine's own code for a moment: a few training steps, one
validation chunk, one probe (at 32 and 64 steps for a longer probe, whose cost a P + b P^2 is then fitted to the
two: a probe pays per step and per pair of steps), a stacked vanilla RNN's probe across its layers (likewise), and
once per calibration a tiny whole run for what every run pays besides (figures, files). A cell's estimate is its
counts times those prices. Times are CPU seconds of this process on one BLAS thread, as a run computes
(`runner.BLAS_THREADS`), so they add up to core-seconds.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ..engine import evaluation, trainer
from ..engine.cells import as_vanilla
from ..engine.optim import make_optimizer
from . import cost, runner
from .config import RunConfig
from .datasets import TEXT_TASK
from .depthprobe import cross_layer
from .probe import Drive, driving_inputs, probe_model
from .sources import Source, evaluate, make_source, scores_positions

MIN_SECONDS = 0.2  # time each unit for at least this long (repeating it), so that the clock's grain is no matter
MAX_STEPS = 50  # training steps timed at most, however fast
DIRECT_PROBE = 64  # probes up to this many steps are timed as they are; longer ones at 32 and 64 and extrapolated
SHORT_PROBE = 4  # steps of the probe that times the Lyapunov trajectories (which do not depend on the probe)


@dataclasses.dataclass(frozen=True)
class UnitCosts:
    """Core-seconds of one unit of each kind of work of a cell."""

    train_step: float
    validation_pass: float
    probe: float
    fixed: float  # what every run pays besides: figures, files, data
    across_probe: float = 0.0  # a probe across layers (a stacked vanilla RNN's)


def estimate_seconds(counts: cost.WorkCounts, units: UnitCosts) -> float:
    """A run's core-seconds: its counts priced."""
    return (counts.train_steps * units.train_step + counts.validation_passes * units.validation_pass
            + counts.probes * units.probe + counts.across_probes * units.across_probe + units.fixed)


def cpu_seconds(work: Callable[[], object], at_least: float = MIN_SECONDS, warm: bool = True) -> float:
    """CPU seconds of one call of `work` on one BLAS thread, repeated until at least `at_least` seconds have passed;
    `warm` first makes an untimed call (caches, allocations, first imports)."""
    with threadpool_limits(limits=runner.BLAS_THREADS, user_api="blas"), np.errstate(all="ignore"):
        if warm:
            work()
        calls, start = 0, time.process_time()
        while True:
            work()
            calls += 1
            spent = time.process_time() - start
            if spent >= at_least:
                return spent / calls


class Calibration:
    """Unit costs, timed once for each kind of cell and shared by the cells of that kind. `progress(text)` hears of
    every timing as it starts (they take up to a few seconds each)."""

    def __init__(self, data_dir: Path, progress: Callable[[str], None] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.progress = progress or (lambda text: None)
        self._cache: dict[tuple, float] = {}
        self._scratch = tempfile.TemporaryDirectory(prefix="rnngrad-calibrate-")

    def units(self, cfg: RunConfig, sizes: cost.RunSizes) -> UnitCosts:
        """The unit costs of `cfg` (timed now unless a cell of its kind was timed already)."""
        runner.load_blas_libraries(cfg.cell_type)  # timed on one thread, as the run computes
        per_sequence = 0.0 if not sizes.val_sequences else self._timed(
            ("validation", *validation_kind(cfg, sizes)), lambda: self._validation(cfg, sizes))
        return UnitCosts(
            train_step=0.0 if not cfg.iters else self._timed(("train", *training_kind(cfg, sizes)),
                                                             lambda: self._training(cfg, sizes)),
            validation_pass=per_sequence * sizes.val_sequences,
            probe=self._timed(("probe", *probe_kind(cfg, sizes)), lambda: self._probe(cfg, sizes)),
            fixed=self._timed(("fixed",), self._fixed),
            across_probe=0.0 if not cost.probed_across_layers(cfg) else self._timed(
                ("across", *across_kind(cfg, sizes)), lambda: self._across(cfg, sizes)))

    def close(self) -> None:
        self._scratch.cleanup()

    def _timed(self, key: tuple, measure: Callable[[], float]) -> float:
        if key not in self._cache:
            self.progress(f"timing {key[0]}: {', '.join(str(k) for k in key[1:])}")
            self._cache[key] = measure()
        return self._cache[key]

    def _twin(self, cfg: RunConfig, sizes: cost.RunSizes, **changes) -> tuple[Source, object]:
        """A source and initial model like the cell's, its validation set one chunk (built in memory)."""
        chunk = max(1, min(sizes.val_sequences, evaluation.chunk_sequences(
            sizes.val_sequences or 1, evaluation.trace_bytes_per_sequence(
                cfg.cell_type, cfg.form, cfg.layers, cfg.hidden, sizes.output_dim, sizes.steps),
            evaluation.CHUNK_BYTES)))
        twin = dataclasses.replace(cfg, **({} if cfg.task == TEXT_TASK else {"val_size": chunk}), **changes)
        data_dir = self.data_dir if cfg.task == TEXT_TASK else Path(self._scratch.name)  # nothing there: in memory
        src = make_source(twin, data_dir)
        rng = np.random.default_rng(twin.seed)
        return src, runner.new_model(twin, src, rng)

    def _training(self, cfg: RunConfig, sizes: cost.RunSizes) -> float:
        """CPU seconds of one step of the training loop (its batch, step, copy and checks, and the weight norms at
        the rate the run logs them)."""
        src, model = self._twin(cfg, sizes)
        rng = np.random.default_rng(1)
        done = []

        def steps(k: int) -> None:
            settings = trainer.TrainSettings(k, src.loss_kind, cfg.clip_mode, cfg.clip_threshold, 0,
                                             runner.series_every(cfg.iters), scores_positions(src), cfg.omega,
                                             reduction=cfg.loss_reduction)
            log = trainer.train(model.copy(), make_optimizer(cfg.optimizer, cfg.lr, cfg.weight_decay),
                                lambda: src.draw(rng), lambda m, state=None: (None, None), settings)
            done.append(max(1, len(log.history)))  # a cell that diverges stops early: what was timed is what ran

        one = cpu_seconds(lambda: steps(1), at_least=0.0)
        k = int(min(MAX_STEPS, max(2, math.ceil(MIN_SECONDS / max(one, 1e-6)))))
        return cpu_seconds(lambda: steps(k), at_least=0.0, warm=False) / done[-1]

    def _validation(self, cfg: RunConfig, sizes: cost.RunSizes) -> float:
        """CPU seconds of one validation sequence (a chunk's pass over the chunk's sequences)."""
        src, model = self._twin(cfg, sizes)
        return cpu_seconds(lambda: evaluate(model, src)) / src.val[2].shape[1]

    def _probe(self, cfg: RunConfig, sizes: cost.RunSizes) -> float:
        """CPU seconds of one probe of the initial model with its Lyapunov trajectories; a probe of more than
        DIRECT_PROBE steps is timed at half and all of DIRECT_PROBE without them and grown to P steps (`grown`), and
        the trajectories timed beside a probe of SHORT_PROBE steps."""
        P = sizes.probe_steps
        src, model = self._twin(cfg, sizes, probe_len=min(P, DIRECT_PROBE))
        xs = driving_inputs(src.draw, np.random.default_rng(2), runner.DRIVE_BURN_IN + runner.DRIVE_STEPS,
                            runner.DRIVE_TRAJECTORIES, src.input_dim)
        drive = Drive(xs, runner.DRIVE_BURN_IN, runner.DRIVE_EXPONENTS)
        if P <= DIRECT_PROBE:
            return cpu_seconds(lambda: probe_model(model, src.probe, "init", drive), warm=False)
        short, full = (cpu_seconds(lambda p=p: probe_model(model, p, "init", None), warm=False)
                       for p in (cut_probe(src.probe, DIRECT_PROBE // 2), src.probe))
        trajectories = cpu_seconds(lambda: probe_model(model, cut_probe(src.probe, SHORT_PROBE), "init", drive),
                                   warm=False)
        return grown(short, full, P) + trajectories

    def _across(self, cfg: RunConfig, sizes: cost.RunSizes) -> float:
        """CPU seconds of one probe across layers of the initial model (`depthprobe.cross_layer`: every pair across
        layers, its bounds and spot check); a longer probe than DIRECT_PROBE grown from two as `_probe`'s is."""
        P = sizes.probe_steps
        src, model = self._twin(cfg, sizes, probe_len=min(P, DIRECT_PROBE))
        vanilla = as_vanilla(model)
        if P <= DIRECT_PROBE:
            return cpu_seconds(lambda: cross_layer(vanilla, src.probe, "init"), warm=False)
        short, full = (cpu_seconds(lambda p=p: cross_layer(vanilla, p, "init"), warm=False)
                       for p in (cut_probe(src.probe, DIRECT_PROBE // 2), src.probe))
        return grown(short, full, P)

    def _fixed(self) -> float:
        """A tiny whole run (a few steps of a few units): its figures, files and bookkeeping, which every run pays."""
        cfg = RunConfig(task="adding", seq_len=4, hidden=4, batch=2, iters=2, val_size=8, probe_len=4, eval_every=0)
        out = Path(self._scratch.name) / "tiny"
        return cpu_seconds(lambda: runner.execute_run(cfg, Path(self._scratch.name), out), at_least=0.0)


def grown(short: float, full: float, steps: int) -> float:
    """A probe's cost at `steps` from its costs at DIRECT_PROBE / 2 and DIRECT_PROBE steps, as a P + b P^2 fitted
    to the two (its P(P+1)/2 pairs and its P steps), a, b >= 0: a power law P^alpha fitted between 32 and 64
    steps, where the per-step part still weighs, grew too slowly and priced a 200-step probe at 0.64-0.74 of its
    time."""
    half = DIRECT_PROBE // 2
    quadratic = (full - 2 * short) / (DIRECT_PROBE * DIRECT_PROBE - 2 * half * half)  # b; a P cancels
    if not (short > 0 and full > 0) or quadratic <= 0:  # at most linear growth measured (noise): grow linearly
        return max(short, full) * steps / DIRECT_PROBE
    linear = max(0.0, (full - quadratic * DIRECT_PROBE ** 2) / DIRECT_PROBE)
    return linear * steps + quadratic * steps ** 2


def cut_probe(probe, steps: int):
    """The first `steps` of a probe input, its last step scored (a gradient must flow, as the run's probe makes sure)."""
    mask = probe.mask[:steps].copy()
    mask[-1] = 1.0
    return dataclasses.replace(probe, xs=probe.xs[:steps], targets=probe.targets[:steps], mask=mask)


def validation_kind(cfg: RunConfig, sizes: cost.RunSizes) -> tuple:
    """What a validation sequence's cost depends on."""
    return (cfg.cell_type, cfg.form, cfg.activation, cfg.layers, cfg.hidden, sizes.steps, sizes.input_dim,
            sizes.output_dim, sizes.loss, cfg.task == TEXT_TASK)


def training_kind(cfg: RunConfig, sizes: cost.RunSizes) -> tuple:
    """What a training step's cost depends on."""
    return (*validation_kind(cfg, sizes), cfg.batch, cfg.optimizer, cfg.clip_mode, cfg.omega > 0,
            cfg.loss_reduction, cfg.windows)


def across_kind(cfg: RunConfig, sizes: cost.RunSizes) -> tuple:
    """What a probe across layers costs depends on: the stack's form, activation, depth and width, the probe's
    length (a short one per init and gamma_W too, as `probe_kind`)."""
    kind = (cfg.form, cfg.activation, cfg.layers, cfg.hidden, sizes.probe_steps, sizes.input_dim)
    return kind + ((cfg.init, cfg.gamma_w) if sizes.probe_steps <= DIRECT_PROBE else ())


def probe_kind(cfg: RunConfig, sizes: cost.RunSizes) -> tuple:
    """What a probe's cost depends on; a short probe is timed per init and gamma_W too (its cost depends on how
    fast the products converge), a long one per activation and form only, to keep the calibration short."""
    kind = (cfg.cell_type, cfg.form, cfg.activation, cfg.layers, cfg.hidden, sizes.probe_steps, sizes.input_dim)
    return kind + ((cfg.init, cfg.gamma_w) if sizes.probe_steps <= DIRECT_PROBE else ())
