"""A run's own figures (pipeline/run/plots.py) and the centred heatmap scale: what the MLflow run page shows."""

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pipeline.run import plots
from pipeline.run.probe import centred_range


def jacobian_rows(when: str, T: int, rate: float) -> pd.DataFrame:
    """Every pair k < t of a probe whose norm is exactly exp(rate (t - k)), bounds twice and three times that."""
    t, k = np.tril_indices(T + 1, -1)
    lag = t - k
    return pd.DataFrame({"when": when, "layer": 0, "t": t, "k": k, "lag": lag, "log_norm": rate * lag,
                         "log_bound_product": 2 * rate * lag, "log_bound_global": 3 * rate * lag})


def test_decay_by_lag_is_the_mean_per_lag_in_log10():
    rows = pd.concat([jacobian_rows("init", 6, -0.5), jacobian_rows("final", 6, 0.2)], ignore_index=True)
    rows.loc[(rows["when"] == "init") & (rows["lag"] == 2) & (rows["k"] == 0), "log_norm"] = np.nan  # left out
    d = plots.decay_by_lag(rows, "init")
    assert d["lag"].tolist() == list(range(1, 7))
    assert np.allclose(d["measured"], -0.5 * d["lag"] / math.log(10))
    assert np.allclose(d["global"], -1.5 * d["lag"] / math.log(10))


@pytest.mark.parametrize("trained", [True, False])
def test_the_decay_and_loss_figures_are_pngs(tmp_path, trained):
    from PIL import Image

    rows = pd.concat([jacobian_rows("init", 8, -0.3), jacobian_rows("final", 8, -0.1)], ignore_index=True)
    plots.draw_decay(rows, trained, tmp_path / "decay.png")
    history = pd.DataFrame({"iter": np.arange(1, 51), "loss": 1.0 / np.arange(1, 51)})
    val = pd.DataFrame({"iter": [0, 25, 50], "val_loss": [1.0, 0.2, 0.1]})
    assert plots.draw_loss(history, val, 0.7, tmp_path / "loss.png")
    with Image.open(tmp_path / "decay.png") as a, Image.open(tmp_path / "loss.png") as b:
        assert a.size[0] > (800 if trained else 400) and b.size[0] > 400
    assert not plots.draw_loss(history, val, 0.0, tmp_path / "none.png")  # a task that scores nothing
    assert not (tmp_path / "none.png").exists()


def test_a_curve_of_rounding_is_drawn_flat_not_as_a_trend():
    ax = Figure().subplots()
    ax.plot([1, 2, 3], [1e-15, 2e-15, 4e-15])
    plots.keep_min_span(ax)
    lo, hi = ax.get_ylim()
    assert hi - lo >= plots.MIN_DECADES_SPAN and lo < 0 < hi
    ax = Figure().subplots()
    ax.plot([1, 2, 3], [-30, 0, 20])
    plots.keep_min_span(ax)
    assert ax.get_ylim()[1] - ax.get_ylim()[0] > 50  # a wide range is left as it is


def test_heatmap_colours_are_centred_at_zero():
    assert centred_range(-3.0, 1.0) == (-3.0, 3.0)
    assert centred_range(0.5, 12.0) == (-12.0, 12.0)
    lo, hi = centred_range(-1e-15, 1e-15)
    assert lo == -hi and hi >= 0.1  # exact ones are drawn white, not as noise
