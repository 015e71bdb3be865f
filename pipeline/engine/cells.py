"""The two recurrent cells behind one interface: the vanilla RNN (rnn.py, cell "rnn") and the LSTM (lstm.py, cell
"lstm"). The trainer, the model files and the probe call these functions and never ask which cell they hold.

A model file says which cell it holds in its `cell` entry; vanilla files written before the LSTM existed have no
such entry and read as "rnn", and vanilla files are still written without it, so that their bytes are unchanged.
"""

from __future__ import annotations

import numpy as np

from . import lstm, rnn
from .lstm import LSTM, LSTMTrace
from .rnn import RNN, Trace, Workspace

CELLS = ("rnn", "lstm")
Model = RNN | LSTM


def cell_of(model: Model) -> str:
    return model.cell


def forward(model: Model, xs: np.ndarray, h0: np.ndarray | None = None, workspace: Workspace | None = None
            ) -> Trace | LSTMTrace:
    """The cell's forward pass over a batch (rnn.forward or lstm.forward)."""
    if isinstance(model, LSTM):
        return lstm.forward(model, xs, h0, workspace)
    return rnn.forward(model, xs, h0, workspace)


def bptt(model: Model, trace: Trace | LSTMTrace, dy: np.ndarray, workspace: Workspace | None = None,
         with_signal: bool = True, backward: list | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The cell's backpropagation through time (rnn.bptt or lstm.bptt); `backward` (vanilla only) as rnn.bptt."""
    if isinstance(model, LSTM):
        if backward is not None:
            raise ValueError("the per-layer backward quantities (Pascanu's regulariser) exist for cell rnn only")
        return lstm.bptt(model, trace, dy, workspace, with_signal)
    return rnn.bptt(model, trace, dy, workspace, with_signal, backward)


def last_state(trace: Trace | LSTMTrace) -> np.ndarray:
    """(L, B, state width): each layer's final state, the h0 of the next window of a stream ((h, c) for an LSTM)."""
    if isinstance(trace, LSTMTrace):
        return lstm.last_state(trace)
    return np.stack([h[-1] for h in trace.h])


def loss_and_grads(model: Model, xs: np.ndarray, targets: np.ndarray, mask: np.ndarray, kind: str,
                   h0: np.ndarray | None = None) -> tuple[float, dict[str, np.ndarray], np.ndarray, object]:
    """Forward, loss and BPTT in one call: (loss, grads, signal (L, T+1), trace), for either cell."""
    trace = forward(model, xs, h0)
    loss, dy = rnn.loss_and_dy(trace.y, targets, mask, kind)
    grads, signal = bptt(model, trace, dy)
    return loss, grads, signal, trace


def model_arrays(model: Model) -> dict[str, np.ndarray]:
    """The arrays of a model*.npz file: rnn.model_arrays (no `cell` entry) or lstm.lstm_arrays (cell = "lstm")."""
    return lstm.lstm_arrays(model) if isinstance(model, LSTM) else rnn.model_arrays(model)


def model_from_arrays(arrays: dict[str, np.ndarray]) -> Model:
    """The model a model*.npz file holds, by its `cell` entry (absent: "rnn"); ValueError naming what is wrong."""
    cell = str(arrays["cell"]) if "cell" in arrays else "rnn"
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; valid: {', '.join(CELLS)}")
    if cell == "lstm":
        return lstm.lstm_from_arrays(arrays)
    return rnn.model_from_arrays({k: v for k, v in arrays.items() if k != "cell"})
