"""experiments/remedies.yaml as the runner builds it: eight arms whose parameter counts (counted on the models
new_model builds, free parameters as summary.json counts them) agree within the tolerance docs/math.md 15.4 states;
the full profile chooses the rates on seeds it does not report, the quick profile fixes them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.engine.cells import n_params
from pipeline.engine.tasks import task_meta
from pipeline.run.rates import arm_key
from pipeline.run.runner import new_model
from pipeline.run.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
PARAMETER_TOLERANCE = 0.06  # every arm's count within 6 % of the vanilla arms' on each task (docs/math.md 15.4)


def parameters(cfg) -> int:
    meta = task_meta(cfg.task, cfg.seq_len)
    src = SimpleNamespace(input_dim=meta.input_dim, output_dim=meta.output_dim)
    return n_params(new_model(cfg, src, np.random.default_rng(0)))


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_eight_arms_at_matched_parameter_counts(profile):
    cells = load_spec(ROOT / "experiments" / "remedies.yaml", profile).cells
    assert {c.cell_type for c in cells} == {"rnn", "exprnn", "lstm", "gru"}
    assert len({arm_key(c) for c in cells}) == 8 * 2  # eight arms on two tasks
    for task in ("temporal_order", "adding"):
        here = [c for c in cells if c.task == task]
        vanilla = {parameters(c) for c in here if c.cell_type == "rnn"}
        assert len(vanilla) == 1
        (reference,) = vanilla
        for c in here:
            assert abs(parameters(c) - reference) <= PARAMETER_TOLERANCE * reference, (task, c.cell_type, c.hidden)


def test_the_full_profile_chooses_rates_on_seeds_it_does_not_report():
    full = load_spec(ROOT / "experiments" / "remedies.yaml", "full")
    assert full.selection is not None and len(full.selection.lr) >= 3
    assert set(full.selection.seeds).isdisjoint({c.seed for c in full.cells})
    assert {c.seq_len for c in full.cells} == {100, 200} and full.selection.seq_len in {100, 200}
    assert load_spec(ROOT / "experiments" / "remedies.yaml", "quick").selection is None
