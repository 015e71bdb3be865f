"""Each report figure against its caption: the figure is drawn from hand-made tables and what its caption promises
(the points' x values, the number of lines, the labels) is checked on the matplotlib objects it drew."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.report import figures, rate_figures


def offsets(ax) -> np.ndarray:
    """The (x, y) of every scatter point of an axes, all collections together."""
    points = [c.get_offsets() for c in ax.collections if len(c.get_offsets())]
    return np.concatenate(points) if points else np.empty((0, 2))


def test_the_phase_diagram_places_each_run_at_its_measured_log_rate():
    """A sparse run whose config says 0.95 (its spectral radius) but whose ||W_hh||_2 is 1.73 is drawn at
    log(1.73 gamma_phi) = +0.548, right of the line, not at log 0.95 inside the vanishing region."""
    phase = pd.DataFrame({"run_id": ["a", "b", "c"], "spec": "s", "activation": ["tanh", "tanh", "sigmoid"],
                          "init": ["sparse", "orthogonal", "orthogonal"], "gamma_w": [0.95, 0.5, 4.0],
                          "w_norm_init": [1.73, 0.5, 4.0], "gamma_phi": [1.0, 1.0, 0.25],
                          "slope_init": [0.1, -0.7, -0.01]})
    phase["log_rate_init"] = np.log(phase["w_norm_init"] * phase["gamma_phi"])
    fig, caption, ids = rate_figures.draw_phase({"phase": phase})
    ax = fig.axes[0]
    drawn = offsets(ax)
    assert sorted(drawn[:, 0]) == pytest.approx(sorted(phase["log_rate_init"]), abs=1e-12)
    assert math.log(1.73) == pytest.approx(0.548, abs=1e-3) and ids == ["a", "b", "c"]
    assert [line.get_xdata()[0] for line in ax.lines] == [0.0]  # one boundary, at gamma_W gamma_phi = 1
    assert "measured" in ax.get_xlabel() and "not the configured gamma_w" in caption
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "sparse init" in legend and "orthogonal init" in legend
    assert not ax.get_legend()  # the legend sits below the axes, over no point


def test_the_activation_figure_draws_slope_and_lambda_1_per_activation_at_the_measured_rate():
    act = pd.DataFrame({"activation": ["tanh", "tanh", "linear", "linear"], "gamma_w": [0.5, 2.0, 0.5, 2.0],
                        "log_rate": np.log([0.5, 2.0, 0.5, 2.0]), "slope": [-0.7, -0.1, -0.69, 0.69],
                        "lyapunov": [-0.69, -0.12, -0.693, np.nan], "run_ids": ["a", "b", "c", "d"]})
    fig, caption, ids = rate_figures.draw_activations({"activations": act})
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) >= {"tanh", "linear", "log(γ_W γ_φ) itself (the bound)"}
    assert list(lines["linear"].get_xdata()) == pytest.approx(list(np.log([0.5, 2.0])))
    hollow = [line for line in ax.lines if line.get_label().startswith("_") and line.get_linestyle() == "--"]
    assert sorted(len(line.get_xdata()) for line in hollow) == [1, 2]  # linear's lambda_1 is missing at 2.0
    assert sorted(ids) == ["a", "b", "c", "d"] and "missing where the trajectory overflowed" in caption


def success_rows(n_scored: list[int]) -> pd.DataFrame:
    """success_vs_T rows of one task at T = 10, 20, 40 with learned and solved rates and their intervals."""
    t = pd.DataFrame({"task": "adding", "T": [10, 20, 40], "n_scored": n_scored, "run_ids": ["a", "b", "c"],
                      "learned_rate": [1.0, 0.5, 0.0], "solved_rate": [0.5, 0.0, 0.0]})
    for level in ("learned", "solved"):
        t[f"{level}_rate_low"], t[f"{level}_rate_high"] = t[f"{level}_rate"] * 0.5, (t[f"{level}_rate"] + 1) / 2
    return t


@pytest.mark.parametrize("n_scored, joined", [([3, 3, 3], 2), ([1, 1, 1], 0), ([3, 3, 1], 1)])
def test_success_vs_t_joins_only_cells_of_several_runs_and_draws_learned_and_solved(n_scored, joined):
    """A line joins two neighbouring T only where both rest on at least two runs (one run places no boundary), for
    the learned rate and the solved rate alike; every cell is drawn as a point at its T whatever its n."""
    fig, caption, ids = figures.draw_success({"success_vs_T": success_rows(n_scored)})
    ax = fig.axes[0]
    joins = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_linestyle() in ("-", "--")]
    assert len(joins) == 2 * joined  # learned (solid) and solved (dashed) segments
    points = [line for line in ax.lines if line.get_marker() in ("o", "s")]  # the data, not the caps
    assert len(points) == 2 and all(list(p.get_xdata()) == [10, 20, 40] for p in points)
    assert "partial baseline" in caption and "99 %" in caption and "one run" in caption


def test_success_vs_t_legend_names_both_levels():
    fig, _, _ = figures.draw_success({"success_vs_T": success_rows([3, 3, 3])})
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["learned", "solved"]
