"""The recurrent cells behind one interface: the vanilla RNN (rnn.py, cell "rnn"), the LSTM (lstm.py, cell "lstm"),
the GRU (gru.py, cell "gru") and the vanilla RNN trained with an orthogonal W_hh = exp(A) (exprnn.py, cell "exprnn").
The trainer, the model files and the probe call these functions and never ask which cell they hold.

A model file says which cell it holds in its `cell` entry; vanilla files written before the LSTM existed have no
such entry and read as "rnn", and vanilla files are still written without it, so that their bytes are unchanged. An
expRNN's files are vanilla files: the network it computes is a vanilla RNN whose W_hh_l is exp(A_l).
"""

from __future__ import annotations

import numpy as np

from . import exprnn, gru, lstm, rnn
from .exprnn import ExpRNN
from .gru import GRU, GRUTrace
from .lstm import LSTM, LSTMTrace
from .rnn import RNN, Trace, Workspace

CELLS = ("rnn", "lstm", "gru", "exprnn")
Model = RNN | LSTM | GRU | ExpRNN
FILE_CELLS = ("rnn", "lstm", "gru")  # what a model file's `cell` entry says (an expRNN is stored as its vanilla RNN)
# Gated cells: their step Jacobians are formed densely and bounded by the product of their norms alone; no
# (gamma_W gamma_phi)^(t-k) global bound exists for them (docs/math.md, section 13.4).
GATED_CELLS = ("lstm", "gru")


def cell_of(model: Model) -> str:
    return model.cell


def forward(model: Model, xs: np.ndarray, h0: np.ndarray | None = None, workspace: Workspace | None = None
            ) -> Trace | LSTMTrace | GRUTrace:
    """The cell's forward pass over a batch (rnn.forward, lstm.forward or gru.forward; an expRNN's is its vanilla
    RNN's)."""
    if isinstance(model, LSTM):
        return lstm.forward(model, xs, h0, workspace)
    if isinstance(model, GRU):
        return gru.forward(model, xs, h0, workspace)
    return rnn.forward(as_vanilla(model), xs, h0, workspace)


def bptt(model: Model, trace: Trace | LSTMTrace, dy: np.ndarray, workspace: Workspace | None = None,
         with_signal: bool = True, backward: list | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The cell's backpropagation through time (rnn.bptt, lstm.bptt, gru.bptt or exprnn.bptt); `backward` (cell rnn
    only) as rnn.bptt."""
    if backward is not None and model.cell != "rnn":
        raise ValueError("the per-layer backward quantities (Pascanu's regulariser) exist for cell rnn only")
    if isinstance(model, LSTM):
        return lstm.bptt(model, trace, dy, workspace, with_signal)
    if isinstance(model, GRU):
        return gru.bptt(model, trace, dy, workspace, with_signal)
    if isinstance(model, ExpRNN):
        return exprnn.bptt(model, trace, dy, workspace, with_signal)
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


def as_vanilla(model: Model) -> Model:
    """The network a model computes: an expRNN's vanilla RNN (W_hh_l = exp(A_l)), any other model itself. The probe
    and the model files take this, so that an expRNN is measured and stored like any vanilla RNN."""
    return model.as_rnn() if isinstance(model, ExpRNN) else model


def n_params(model: Model) -> int:
    """Free parameters: every entry of every array, but for an expRNN's A_l only its strict upper triangle."""
    return exprnn.n_params(model) if isinstance(model, ExpRNN) else int(sum(p.size for p in model.params.values()))


def model_arrays(model: Model) -> dict[str, np.ndarray]:
    """The arrays of a model*.npz file: rnn.model_arrays (no `cell` entry; an expRNN's vanilla RNN), lstm.lstm_arrays
    (cell = "lstm") or gru.gru_arrays (cell = "gru")."""
    if isinstance(model, LSTM):
        return lstm.lstm_arrays(model)
    if isinstance(model, GRU):
        return gru.gru_arrays(model)
    return rnn.model_arrays(as_vanilla(model))


def model_from_arrays(arrays: dict[str, np.ndarray]) -> Model:
    """The model a model*.npz file holds, by its `cell` entry (absent: "rnn"); ValueError naming what is wrong."""
    cell = str(arrays["cell"]) if "cell" in arrays else "rnn"
    if cell not in FILE_CELLS:
        raise ValueError(f"unknown cell {cell!r}; valid: {', '.join(FILE_CELLS)}")
    if cell == "lstm":
        return lstm.lstm_from_arrays(arrays)
    if cell == "gru":
        return gru.gru_from_arrays(arrays)
    return rnn.model_from_arrays({k: v for k, v in arrays.items() if k != "cell"})
