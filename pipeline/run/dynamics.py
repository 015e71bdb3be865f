"""Training dynamics: each layer's measured ||W_hh||_2, spectral radius, top Lyapunov exponent and mean-field rate
at the gradient checkpoints of training (docs/math.md 7.6), so that a run shows whether training moves it towards
the edge of chaos (lambda_1 = 0) rather than only where it started and ended.

The numbers are the probe's own (`probe.weight_numbers`, `probe.dynamics_numbers`) on the same driven trajectories,
so the table's iteration 0 is the initial probe's and its last checkpoint the final probe's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.cells import GATED_CELLS, Model, as_vanilla, forward
from .probe import Drive, dynamics_numbers, series_rows, weight_numbers

DYNAMICS_COLUMNS = ("iter", "layer", "w_norm", "rho", "lyap", "lyap_mf")
DYNAMICS_FILE = "probe/dynamics.parquet"
# the top layer's curves as MLflow step metrics (step = iteration); ||W_hh||_2 and rho are by_iter/w_norm and
# by_iter/spectral_radius already, from the training history
SERIES_KEYS = {"lyap": "by_iter/lyapunov", "lyap_mf": "by_iter/lyapunov_mf"}


def dynamics_table(model: Model, drive: Drive, iteration: int) -> pd.DataFrame:
    """Rows (iter, layer, w_norm, rho, lyap, lyap_mf) of `model` at one iteration of training: ||W_hh||_2 and the
    spectral radius of the matrix itself, lambda_1 along the drive's trajectories (mean over them) and lambda_MF
    from the weights and the drive's input statistics. rho is NaN where W_hh is not square (an LSTM's, a GRU's);
    lyap and lyap_mf are NaN for the gated cells, which the probe defines neither for."""
    model = as_vanilla(model)
    gated = model.cell in GATED_CELLS
    trace = None if gated else forward(model, drive.xs)
    rows = []
    for layer in range(model.layers):
        w_norm, rho = weight_numbers(model.W_hh(layer))
        numbers, _ = dynamics_numbers(model, trace, drive, layer)
        rows.append((iteration, layer, w_norm, rho, numbers["lyapunov"], numbers["meanfield_rate"]))
    table = pd.DataFrame(rows, columns=list(DYNAMICS_COLUMNS))
    return table.astype({"iter": np.int64, "layer": np.int64})


def write_dynamics(folder: Path, tables: list[pd.DataFrame]) -> pd.DataFrame:
    """probe/dynamics.parquet under `folder` (a run folder being built) from the checkpoints' tables, in iteration
    order; returns the table written."""
    table = (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(DYNAMICS_COLUMNS)))
    table = table.sort_values(["iter", "layer"], kind="stable").reset_index(drop=True)
    (folder / "probe").mkdir(parents=True, exist_ok=True)
    table.to_parquet(folder / DYNAMICS_FILE, index=False)
    return table


def dynamics_series(table: pd.DataFrame) -> pd.DataFrame:
    """The top layer's lambda_1 and lambda_MF by iteration as step metrics (key, step, value)."""
    if table.empty:
        return pd.DataFrame(columns=["key", "step", "value"])
    top = table[table["layer"] == table["layer"].max()].set_index("iter")
    return pd.concat([series_rows(key, top[column].astype(float)) for column, key in SERIES_KEYS.items()],
                     ignore_index=True)
