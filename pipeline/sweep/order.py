"""The order a sweep computes its cells in: longest first, so that the sweep does not end with one worker computing
a long cell while the others wait (the longest-processing-time rule of scheduling). Only the order changes: each
cell's config, seed and run hash are its own, so its result is the same in any order, and the results table keeps
the grid's order.

A cell's length is estimated from its sizes and counts of work (`run.cost`), in multiply-adds plus a fixed price
per sequence step for the interpreter's work on a step of a small model, with no timing on this machine (`rnngrad
plan`'s calibration takes seconds): it only ranks cells, and cells the estimate cannot tell apart keep the grid's
order.
"""

from __future__ import annotations

from pathlib import Path

from ..run import cost
from .plan import Cell

# multiply-adds a one-thread BLAS does in the time numpy takes to dispatch the few calls of one step of one layer of
# a vanilla cell; a gated cell makes about that many calls per gate
STEP_OVERHEAD_MADDS = 2e5
GATES = {"lstm": 4, "gru": 3}


def longest_first(cells: list[Cell], data_dir: Path) -> list[Cell]:
    """`cells` by estimated work, the largest first; ties in the order given."""
    sizes = cost.sizes_reader(data_dir)
    work = [estimated_work(c.config, sizes(c.config)) for c in cells]
    return [cells[i] for i in sorted(range(len(cells)), key=lambda i: -work[i])]


def estimated_work(cfg, sizes: cost.RunSizes) -> float:
    """A run's work in multiply-adds (`STEP_OVERHEAD_MADDS` per gate for each step of each layer as well): its training steps
    (forward and backward: three passes over the parameters per sequence step), its validation passes, its probes
    (every pair of the probe's steps: a product of two state-sized matrices each) and its probes across layers."""
    counts = cost.work_counts(cfg, sizes)
    params = cost.parameter_count(cfg, sizes)
    step = STEP_OVERHEAD_MADDS * cfg.layers * GATES.get(cfg.cell_type, 1)
    train = counts.train_steps * sizes.steps * (3 * cfg.batch * params + 2 * step)
    validation = counts.validation_passes * sizes.steps * (sizes.val_sequences * params + step)
    width = 2 * cfg.hidden if cfg.cell_type == "lstm" else cfg.hidden  # the state's: an LSTM's is (h, c)
    pairs = sizes.probe_steps * (sizes.probe_steps + 1) / 2
    probe = counts.probes * cfg.layers * pairs * (width**3 + step)
    across = counts.across_probes * cfg.layers * pairs * (cfg.hidden**3 + step)
    return float(train + validation + probe + across)
