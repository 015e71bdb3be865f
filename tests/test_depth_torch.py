"""Jacobians across layers and time against PyTorch autograd (tests/references/torch_crosslayer.npz, written by
references/make_torch_crosslayer.py): every pair of every layer and source layer of 3-layer stacks, both forms."""

from pathlib import Path

import numpy as np
import pytest

from pipeline import log_norm_matrix
from pipeline.engine.rnn import RNN

TORCH = Path(__file__).parent / "references" / "torch_crosslayer.npz"
LOG_TOL = 1e-8  # natural log: a relative error of 1e-8 in the norm
REF = dict(np.load(TORCH))
CASES = [str(c) for c in REF["cases"]]


def reference_case(i: int) -> tuple[RNN, np.ndarray, np.ndarray, np.ndarray]:
    """(model, xs, h0, logn[top, source, t, k]) of case i."""
    form, activation = CASES[i].split("/")
    params = {k.removeprefix(f"{i}_"): v for k, v in REF.items()
              if k.startswith(f"{i}_") and k.split("_", 1)[1] not in ("xs", "h0", "logn")}
    return RNN(form, activation, 0.01, params), REF[f"{i}_xs"], REF[f"{i}_h0"], REF[f"{i}_logn"]


def largest_log_difference(model: RNN, xs: np.ndarray, h0: np.ndarray, logn: np.ndarray) -> float:
    """max |log_norm_matrix - torch| over every (top, source) pair of layers and every pair where torch has one;
    inf if the two disagree on where a norm is defined."""
    worst = 0.0
    for top in range(model.layers):
        for source in range(top + 1):
            ours, theirs = log_norm_matrix(model, xs, h0, layer=top, source_layer=source), logn[top, source]
            if not np.array_equal(np.isnan(ours), np.isnan(theirs)):
                return np.inf
            defined = ~np.isnan(theirs)
            worst = max(worst, float(np.max(np.abs(ours[defined] - theirs[defined]))))
    return worst


@pytest.mark.parametrize("i", range(len(CASES)), ids=CASES)
def test_every_pair_matches_pytorch_autograd(i):
    model, xs, h0, logn = reference_case(i)
    assert model.layers == 3 and np.isfinite(logn).sum() == 504  # 3 x 78 within layers, 3 x 90 across
    assert largest_log_difference(model, xs, h0, logn) < LOG_TOL


@pytest.mark.parametrize("i", range(len(CASES)), ids=CASES)
def test_a_changed_weight_fails_the_comparison(i):
    """The check can fail: a relative change of 1e-4 in one input weight of the middle layer moves some norm."""
    model, xs, h0, logn = reference_case(i)
    changed = model.copy()
    changed.params["W_xh_1"][2, 3] *= 1 + 1e-4
    assert largest_log_difference(changed, xs, h0, logn) > LOG_TOL
