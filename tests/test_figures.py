"""Each report figure against its caption: the figure is drawn from hand-made tables and what its caption promises
(the points' x values, the number of lines, the labels) is checked on the matplotlib objects it drew."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.report import figures, formatting, rate_figures


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


def test_the_activation_figure_draws_one_panel_per_form_when_the_table_has_two():
    act = pd.DataFrame({"activation": ["tanh"] * 4, "form": ["elman", "elman", "pascanu", "pascanu"],
                        "gamma_w": [0.5, 2.0] * 2, "log_rate": np.log([0.5, 2.0] * 2), "slope": [-1.0, -0.2, -0.7, 0.1],
                        "lyapunov": [-1.0, -0.2, -0.7, 0.1], "run_ids": list("abcd")})
    fig, caption, ids = rate_figures.draw_activations({"activations": act})
    assert [ax.get_title() for ax in fig.axes] == ["elman form", "pascanu form"]
    slopes = [[line for line in ax.lines if line.get_label() == "tanh"][0] for ax in fig.axes]
    assert [list(line.get_ydata()) for line in slopes] == [[-1.0, -0.2], [-0.7, 0.1]]  # not zigzagging between forms
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend.count("tanh") == 1 and "not pooled" in caption and sorted(ids) == list("abcd")


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


def marker_columns(fig, ax) -> dict[float, list[float]]:
    """Each T (a point's data x) -> the display x, in points, of every learned or solved marker drawn at it."""
    fig.canvas.draw()
    at: dict[float, list[float]] = {}
    for line in ax.lines:
        if line.get_marker() in ("o", "s"):
            for x, y in zip(line.get_xdata(), line.get_ydata()):
                at.setdefault(float(x), []).append(line.get_transform().transform((x, y))[0] * 72 / fig.dpi)
    return at


def assert_apart(at: dict[float, list[float]], series: int) -> None:
    """`series` markers at each T, no two closer than two caps: their intervals never overlap."""
    for xs in at.values():
        assert len(xs) == series and np.diff(sorted(xs)).min() > 2 * figures.CAP_POINTS


def test_success_vs_t_draws_learned_and_solved_apart_with_the_ticks_at_the_true_t():
    """Equal learned and solved rates at one T drew their intervals on top of each other."""
    rows = success_rows([3, 3, 3]).assign(solved_rate=lambda t: t["learned_rate"],
                                          solved_rate_low=lambda t: t["learned_rate_low"],
                                          solved_rate_high=lambda t: t["learned_rate_high"])
    fig, caption, _ = figures.draw_success({"success_vs_T": rows})
    ax = fig.axes[0]
    at = marker_columns(fig, ax)
    assert sorted(at) == [10, 20, 40] and list(ax.get_xticks()) == [10, 20, 40]
    assert_apart(at, 2)
    assert "sideways" in caption


def test_remedies_at_several_t_draw_every_arm_and_level_apart():
    from pipeline.report.studies import REMEDY_ARMS

    arms = ["tanh_unclipped", "tanh_clipped", "irnn"]
    rows = pd.concat([success_rows([2, 2, 2]).assign(arm=a, arm_name=REMEDY_ARMS[a], run_ids=f"{a}1;{a}2")
                      for a in arms], ignore_index=True)
    fig, caption, _ = figures.draw_remedies_success({"remedies": rows})
    at = marker_columns(fig, fig.axes[0])
    assert sorted(at) == [10, 20, 40]
    assert_apart(at, 2 * len(arms))
    assert "learned left of solved" in caption


def test_success_vs_t_legend_names_both_levels():
    fig, _, _ = figures.draw_success({"success_vs_T": success_rows([3, 3, 3])})
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["learned", "solved"]


# ---- the figures of the bound and of training: each against what its caption promises --------------------------


def heat_rows(run_id: str, when: str, scale: float, T: int = 6) -> pd.DataFrame:
    """A probe's (t, k, log10_norm) rows for k < t: log10 norm = scale * (t - k)."""
    t, k = np.tril_indices(T + 1, -1)
    return pd.DataFrame({"run_id": run_id, "spec": "s", "when": when, "t": t, "k": k, "log10_norm": scale * (t - k)})


def test_heatmap_rows_run_from_the_lowest_rate_each_on_its_own_colour_range_with_the_init_named():
    runs = pd.DataFrame({"run_id": ["hi", "lo", "mid"], "spec": "s", "activation": "tanh",
                         "init": ["gaussian", "orthogonal", "sparse"], "w_norm_init": [4.0, 0.5, 1.0],
                         "log_rate_init": np.log([4.0, 0.5, 1.0])})
    scales = {"hi": 3.0, "lo": -2.0, "mid": -0.01}  # 18 decades against 0.06: a shared range blanks 'mid'
    heat = pd.concat([heat_rows(r, w, scales[r] * (0.5 if w == "final" else 1.0)) for r in ("hi", "lo", "mid")
                      for w in ("init", "final")], ignore_index=True)
    fig, caption, ids = figures.draw_heatmaps({"heatmaps": heat, "runs": runs})
    assert ids == ["lo", "mid", "hi"]  # by measured log(gamma_W gamma_phi)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6
    for row, rid in enumerate(ids):
        pair = panels[2 * row: 2 * row + 2]
        assert all(rid in ax.get_title() and runs.set_index("run_id").at[rid, "init"] in ax.get_title()
                   for ax in pair)
        for ax, factor in zip(pair, (1.0, 0.5)):  # each panel on its own range: the final probe is half the init's
            m = abs(scales[rid]) * 6 * factor
            expected = figures.draw_heatmap_panel.__globals__["centred_range"](-m, m)
            assert ax.images[0].get_clim() == pytest.approx(expected)
    assert "own colour range" in caption and "lowest measured rate to the highest" in caption


def test_each_heatmap_panel_names_the_norm_and_rate_measured_when_its_probe_ran():
    """A run trained from ||W_hh||_2 = 0.5 to 1.21: its final panel must read 1.21 and log(1.21) = 0.191 (tanh's
    gamma_phi = 1), not the initial -0.693 that the init panel reads; a run with no final measurement shows none."""
    runs = pd.DataFrame({"run_id": ["a", "b"], "spec": "s", "activation": "tanh", "init": "orthogonal",
                         "w_norm_init": [0.5, 2.0], "log_rate_init": np.log([0.5, 2.0]),
                         "w_norm_final": [1.21, np.nan], "log_rate_final": [np.log(1.21), np.nan]})
    heat = pd.concat([heat_rows(r, w, -1.0) for r in ("a", "b") for w in ("init", "final")], ignore_index=True)
    fig, _, ids = figures.draw_heatmaps({"heatmaps": heat, "runs": runs})
    titles = [" ".join(ax.get_title().split()) for ax in fig.axes if ax.images]
    assert ids == ["a", "b"]
    assert titles[0] == "a tanh orthogonal ‖W_hh‖₂=0.5 log(γ_Wγ_φ)=-0.693 · init"
    assert titles[1] == "a tanh orthogonal ‖W_hh‖₂=1.21 log(γ_Wγ_φ)=0.191 · final"
    assert titles[2] == "b tanh orthogonal ‖W_hh‖₂=2 log(γ_Wγ_φ)=0.693 · init"
    assert titles[3] == "b tanh orthogonal · final"


def test_a_spectrum_with_one_resolved_value_is_named_in_the_caption_not_drawn_in_the_legend():
    runs = pd.DataFrame({"run_id": ["a", "b"], "activation": "tanh", "init": "orthogonal", "w_norm_init": 1.0})
    spectra = pd.DataFrame({"run_id": ["a"] * 4 + ["b"] * 3, "spec": "s",
                            "when": ["init", "init", "final", "final", "init", "init", "final"],
                            "i": [0, 1, 0, 1, 0, 1, 0], "log10_sigma": [0, -1, 0, -2, 5, 1, 30]})
    fig, caption, ids = figures.draw_spectrum({"spectra": spectra, "runs": runs})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(ax.lines) == len(labels) == 3 and all(len(line.get_xdata()) >= 2 for line in ax.lines)
    assert not any(label.startswith("b") and "final" in label for label in labels)
    assert "b" in caption and "(final): 1 resolved" in caption


def test_gradients_draw_every_checkpoint_of_the_run_with_the_most_and_cap_the_exploding_norms():
    runs = pd.DataFrame({"run_id": ["blow", "clip"], "activation": "tanh", "init": "gaussian", "w_norm_init": 3.0})
    spikes = pd.DataFrame({"run_id": ["blow"] * 3 + ["clip"] * 3, "iter": [0, 1, 2] * 2,
                           "grad_norm": [1.0, 2.0, 1e159, 0.5, 5.0, 1.0],
                           "clip_mode": ["none"] * 3 + ["global"] * 3, "clip_threshold": [np.nan] * 3 + [1.0] * 3})
    by_k = pd.concat([pd.DataFrame({"run_id": "blow", "spec": "s", "iter": 0, "k": range(5), "log10_dE_dh": 0.0}),
                      *[pd.DataFrame({"run_id": "clip", "spec": "s", "iter": it, "k": range(5),
                                      "log10_dE_dh": -0.1 * it}) for it in (0, 250, 500, 750, 1000)]])
    fig, caption, ids = figures.draw_gradients({"gradient_spikes": spikes, "gradient_by_k": by_k, "runs": runs})
    left, right = fig.axes[:2]
    assert len(right.lines) == 5 and "5 gradient checkpoints" in caption and "0, 250, 500, 750, 1000" in caption
    assert "clip" in caption.split("Right:")[1]
    top = max(float(np.nanmax(line.get_ydata())) for line in left.lines)
    assert top == pytest.approx(figures.GRADIENT_CEILING * 1.0)  # the smallest run median shown is 1
    assert "drawn on the dotted line" in caption
    # the ceiling and its multiple as the report prints a number, not Python's "1e+04" and "1e+04"
    ceiling = formatting.format_value(figures.GRADIENT_CEILING)
    assert f"norms above {ceiling} × the smallest run's median norm ({ceiling})" in caption


def test_spike_runs_come_from_the_study_that_varies_clipping():
    from pipeline.report import prediction

    runs = pd.DataFrame({"run_id": ["adam", "irnn", "none", "glob", "elem"],
                         "spec": ["weight_norms", "remedies", "clipping", "clipping", "clipping"],
                         "clip_mode": ["global", "global", "none", "global", "elementwise"]})
    histories = {rid: pd.DataFrame({"iter": range(4), "grad_norm": g})
                 for rid, g in (("adam", [1, 1, 1, 1e9]), ("irnn", [1, 1, 1, 1e8]), ("none", [1, 2, 1, 50]),
                                ("glob", [1, 1, 3, 1]), ("elem", [1, 1, 2, 1]))}
    # not weight_norms' nor the remedies' spikier Adam runs (remedies varies the clip mode too, over two modes)
    assert set(prediction.spike_runs(runs, histories)) == {"none", "glob", "elem"}


def test_decay_panels_keep_inits_and_probe_lengths_apart_and_gammas_in_distinct_hues():
    rows, info = [], []
    for rid, init, gamma, steps in (("o1", "orthogonal", 1.0, 30), ("o2", "orthogonal", 2.0, 30),
                                    ("g1", "gaussian", 1.0, 30), ("o1long", "orthogonal", 1.0, 60),
                                    ("o3", "orthogonal", 1.5, 60), ("o4", "orthogonal", 2.5, 60)):
        info.append({"run_id": rid, "spec": "weight_norms", "activation": "tanh", "init": init, "gamma_w": gamma,
                     "w_norm_init": gamma, "probe_steps": steps})
        lag = np.arange(1, steps + 1)
        rows.append(pd.DataFrame({"run_id": rid, "spec": "weight_norms", "when": "init", "lag": lag,
                                  "log10_norm": -0.1 * lag, "log10_global": 0.1 * lag}))
    fig, caption, ids = figures.draw_decay({"decay": pd.concat(rows), "runs": pd.DataFrame(info)})
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles == ["tanh, gaussian, at init", "tanh, orthogonal, at init"]
    assert set(ids) == {"g1", "o1long", "o3", "o4"}  # the orthogonal panel keeps its longest probe only
    orth = [ax for ax in fig.axes if ax.get_title() == "tanh, orthogonal, at init"][0]
    assert all(len(line.get_xdata()) == 60 for line in orth.lines)
    colours = [np.array(h.get_color()[:3] if not isinstance(h.get_color(), str) else
                        __import__("matplotlib").colors.to_rgb(h.get_color()))
               for h in fig.legends[0].legend_handles[:4]]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1:]) > 0.25


def test_remedies_arms_have_distinct_colours():
    from matplotlib.colors import to_rgb

    colours = [np.array(to_rgb(c)) for c in figures.REMEDY_COLOURS.values()]
    assert set(figures.REMEDY_COLOURS) == set(figures.studies.REMEDY_ARMS)
    assert min(np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1:]) > 0.25
    assert np.linalg.norm(np.array(to_rgb(figures.REMEDY_COLOURS["irnn"]))
                          - np.array(to_rgb(figures.REMEDY_COLOURS["lstm"]))) > 0.5


def test_the_decay_figures_legend_and_titles_stay_readable_printed_at_the_pdfs_text_width():
    from pipeline.report import pdf as report_pdf

    rows, info = [], []
    for i, act in enumerate(["tanh", "sigmoid", "relu", "linear", "softplus", "gaussian", "hard_tanh", "leaky_relu",
                             "elu", "selu"]):
        for gamma in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0):
            rid = f"{act}{gamma}"
            info.append({"run_id": rid, "spec": "activations", "activation": act, "init": "orthogonal",
                         "gamma_w": gamma, "w_norm_init": gamma, "probe_steps": 30})
            lag = np.arange(1, 31)
            rows.append(pd.DataFrame({"run_id": rid, "spec": "activations", "when": "init", "lag": lag,
                                      "log10_norm": -0.1 * gamma * lag, "log10_global": 0.1 * lag}))
    fig, _, _ = figures.draw_decay({"decay": pd.concat(rows), "runs": pd.DataFrame(info)})
    # the PDF sets a figure at most the text width wide: a wider one shrinks, and its fonts with it
    scale = min(1.0, report_pdf.PORTRAIT_ROOM / report_pdf.MM_PER_INCH / fig.get_figwidth())
    legend_pt = min(t.get_fontsize() for t in fig.legends[0].get_texts()) * scale
    title_pt = min(ax.title.get_fontsize() for ax in fig.axes if ax.get_visible() and ax.get_title()) * scale
    assert legend_pt >= 6 and title_pt >= 6, (legend_pt, title_pt)  # 10 panels five to a row printed it at 4 pt


def test_the_tightness_figure_draws_one_unbroken_line_per_spec_and_phase():
    rows = []
    for spec, runs in (("weight_norms", {"a": 30, "b": 30}), ("long_range", {"c": 10, "d": 40, "e": 40})):
        for rid, steps in runs.items():
            for when in ("init", "final"):
                lag = np.arange(1, steps + 1)
                gap = (0.2 if spec == "weight_norms" else 0.05) * lag + (3.0 if steps == 10 else 0.0)
                rows.append(pd.DataFrame({"run_id": rid, "spec": spec, "when": when, "lag": lag,
                                          "gap_global": gap, "gap_product": gap}))
    fig, caption, ids = figures.draw_tightness({"decay": pd.concat(rows), "tightness": pd.DataFrame()})
    (ax,) = fig.axes
    assert len(ax.lines) == 4 and sorted(ids) == ["a", "b", "d", "e"]  # long_range's short probe "c" left out
    for line in ax.lines:
        y = np.asarray(line.get_ydata())
        assert np.all(np.diff(y) > 0)  # no step where a shorter probe drops out: the pooled curve's sawtooth
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["long_range (n = 2)", "weight_norms (n = 2)"]
    assert "one line per spec" in caption


def test_a_tightness_line_is_the_median_of_one_set_of_runs_at_every_lag():
    """Two of four runs lose their rows after lag 5 (a norm that reached 0): the line is the median of the two that
    are whole, at every lag, not a line that jumps where the others drop out, and the legend says 2 of 4."""
    rows = []
    for rid, slope in (("a", 0.1), ("b", 0.2), ("c", 1.0), ("d", 2.0)):
        lag = np.arange(1, 11)
        gap = slope * lag
        rows.append(pd.DataFrame({"run_id": rid, "spec": "remedies", "when": "final", "lag": lag,
                                  "gap_global": gap, "gap_product": gap}))  # after training all 4 are whole
        if rid in ("c", "d"):
            gap = np.where(lag > 5, np.nan, gap)
        rows.append(pd.DataFrame({"run_id": rid, "spec": "remedies", "when": "init", "lag": lag,
                                  "gap_global": gap, "gap_product": gap}))
    fig, caption, _ = figures.draw_tightness({"decay": pd.concat(rows), "tightness": pd.DataFrame()})
    init, final = fig.axes[0].lines
    assert np.allclose(init.get_ydata(), 0.15 * np.arange(1, 11))  # median of a and b at every lag
    assert np.allclose(final.get_ydata(), 0.6 * np.arange(1, 11))  # of all four
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["remedies (n = 2 of 4; after training 4)"]
    assert "the same runs all along the line" in caption


def test_the_gradients_legend_covers_no_data_of_its_panel():
    runs = pd.DataFrame({"run_id": ["blow", "clip"], "activation": "tanh", "init": "gaussian", "w_norm_init": 3.0})
    spikes = pd.DataFrame({"run_id": ["blow"] * 3 + ["clip"] * 3, "iter": [0, 1, 2] * 2,
                           "grad_norm": [1.0, 1e9, 1e159, 0.5, 5.0, 1.0],
                           "clip_mode": ["none"] * 3 + ["global"] * 3, "clip_threshold": [np.nan] * 3 + [1.0] * 3})
    fig, _, _ = figures.draw_gradients({"gradient_spikes": spikes, "runs": runs})
    fig.canvas.draw()
    (left,) = [ax for ax in fig.axes if ax.get_ylabel() == "gradient norm before clipping"]
    legends = [lg for lg in [left.get_legend(), *fig.legends] if lg is not None]
    assert [t.get_text().endswith(("clip none", "clip global")) for t in legends[0].get_texts()] == [True, True]
    box = left.get_window_extent()
    # the exploding run runs along the top of the panel at the cap, where the legend sat
    assert not any(lg.get_window_extent().overlaps(box) for lg in legends)


def test_the_gradients_legend_names_each_runs_learning_rate():
    """The clipping study's unclipped control trains at another step than the unclipped arm: "clip none" alone
    reads as the arm."""
    runs = pd.DataFrame({"run_id": ["ctl", "clip"], "activation": "tanh", "init": "gaussian", "w_norm_init": 3.0,
                         "lr": [0.2955, 0.3]})
    spikes = pd.DataFrame({"run_id": ["ctl"] * 3 + ["clip"] * 3, "iter": [0, 1, 2] * 2,
                           "grad_norm": [1.0, 9.0, 2.0, 0.5, 5.0, 1.0],
                           "clip_mode": ["none"] * 3 + ["global"] * 3, "clip_threshold": [np.nan] * 3 + [1.0] * 3})
    fig, _, _ = figures.draw_gradients({"gradient_spikes": spikes, "runs": runs})
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert [label.split(", ", 1)[1] for label in labels] == ["clip none, lr 0.2955", "clip global, lr 0.3"]


def test_a_huge_measured_norm_is_labelled_as_a_power_of_ten():
    """A diverged run's final ||W_hh||_2 of 7e154 is a whole float: its label must not print 155 digits, nor
    Python's "6.93e+154" in a legend beside axes ticked 10^k."""
    from pipeline.report.figures import measured_norm

    label = measured_norm(pd.Series({"w_norm_init": 3.0, "w_norm_final": 6.935e154}))
    assert label == "‖W_hh‖₂=3→6.93×10¹⁵⁴"  # measured: at the report's 3 significant digits
    assert measured_norm(pd.Series({"w_norm_init": 1.0, "w_norm_final": 1.0})) == "‖W_hh‖₂=1"
