"""The report's remedies section on a fake sweep whose learning is planted per arm (tests/fixtures_runs.py): each arm
is recognised from its config, the success counts and Wilson intervals match the planted pattern and an
independent formula, every number the section prints is in metrics.json, and its figures are drawn."""

from __future__ import annotations

import html as htmllib
import json
import math
import re

import pandas as pd
import pytest

import fixtures_runs as fx
from pipeline import cli
from pipeline.report import studies

cli._register()

# arm -> (config, parameter count to plant, runs that learn at T = 50 and T = 100, of 3 seeds each)
ARMS = {
    "tanh_unclipped": (dict(init="sparse", gamma_w=0.95, clip_mode="none"), 100, (0, 0)),
    "tanh_clipped": (dict(init="sparse", gamma_w=0.95, clip_mode="global"), 100, (1, 0)),
    "tanh_clipped_omega": (dict(init="sparse", gamma_w=0.95, clip_mode="global", omega=2.0), 100, (2, 0)),
    "irnn": (dict(activation="relu", init="identity", clip_mode="global", lr=0.001), 100, (3, 1)),
    "orthogonal_tanh": (dict(init="orthogonal", clip_mode="global"), 100, (1, 1)),
    "exprnn": (dict(cell_type="exprnn", init="orthogonal", clip_mode="global", hidden=44), 90, (0, 1)),
    "lstm": (dict(cell_type="lstm", init="orthogonal", clip_mode="global", forget_bias=1.0), 400, (3, 2)),
    "gru": (dict(cell_type="gru", init="orthogonal", clip_mode="global", hidden=17), 110, (3, 3)),
}
TS = (50, 100)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval at z = 1.96 (two-sided 95 %), written out here from Wilson (1927)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def remedies_runs() -> list[fx.FakeRun]:
    runs = []
    for arm, (config, n_params, learned) in ARMS.items():
        for T, k in zip(TS, learned):
            for seed in range(3):
                cfg = {**fx.BASE_CONFIG, "task": "temporal_order", "seq_len": T, "seed": seed, **config}
                chance = fx.CHANCE_LOSS["temporal_order"]
                loss = 0.2 * chance if seed < k else chance  # below 0.9 x chance: learned
                runs.append(fx.FakeRun("remedies", cfg, overrides={"final_val_loss": loss, "n_params": n_params}))
    return runs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = fx.report_of(tmp_path_factory.mktemp("remedies"), remedies_runs())
    return {"out": out, "table": pd.read_csv(out / "tables" / "remedies.csv"),
            "metrics": json.loads((out / "metrics.json").read_text()),
            "html": (out / "report.html").read_text(encoding="utf-8")}


def test_every_arm_is_recognised_and_counted_with_its_wilson_interval(built):
    table = built["table"]
    assert set(table["arm"]) == set(ARMS)
    for arm, (_, n_params, learned) in ARMS.items():
        for T, k in zip(TS, learned):
            row = table[(table["arm"] == arm) & (table["T"] == T)].iloc[0]
            assert (row["n_learned"], row["n_scored"], row["n_params"]) == (k, 3, n_params)
            low, high = wilson(k, 3)
            assert row["learned_rate"] == pytest.approx(k / 3) and row["n_beat_chance"] == k
            assert (row["learned_rate_low"], row["learned_rate_high"]) == (pytest.approx(low), pytest.approx(high))


def test_the_headline_quotes_the_longest_t_per_arm(built):
    head = built["metrics"]["specs"]["remedies"]["headline"]
    assert list(head) == list(ARMS)  # in report order
    for arm, (_, n_params, learned) in ARMS.items():
        assert head[arm]["T"] == 100 and head[arm]["n_params"] == n_params
        assert list(head[arm]["tasks"]) == ["temporal_order"]  # per task, never pooled
        by_task = head[arm]["tasks"]["temporal_order"]["learned"]  # every planted run is temporal order
        assert (by_task["k"], by_task["n"]) == (learned[1], 3)


def test_each_arms_sentence_states_its_settings_and_rates_per_task(built):
    html = " ".join(htmllib.unescape(re.sub(r"<(?!/?li>)[^>]+>", "", built["html"])).split())
    for arm, (config, _, learned) in ARMS.items():
        name = studies.REMEDY_ARMS[arm]
        start = html.index(f"<li>{name} (")
        sentence = html[start:html.index("</li>", start)]
        assert f"{config['init']} W_hh" in sentence and f"lr {config.get('lr', fx.BASE_CONFIG['lr']):g}" in sentence
        assert ("unclipped" in sentence) == (config["clip_mode"] == "none")
        assert ("Ω weight 2" in sentence) == ("omega" in config)
        assert ("forget bias" in sentence) == (arm == "lstm")
        assert f"at T = 100: temporal order: learned in {learned[1]} of 3 runs" in sentence, sentence


def test_the_section_has_a_sentence_per_arm_the_papers_and_both_figures(built):
    html = built["html"]
    for name in studies.REMEDY_ARMS.values():
        assert f"<li>{name} (" in html
    assert "Pascanu, Mikolov &amp; Bengio (2013)" in html and "Hochreiter &amp; Schmidhuber (1997)" in html
    for figure in ("remedies_success", "remedies_decay"):
        assert (built["out"] / "figures" / f"{figure}.png").is_file()


@pytest.mark.parametrize("config, arm", [
    ({"cell_type": "lstm", "clip_mode": "none"}, "lstm"),
    ({"activation": "relu", "init": "identity", "omega": 0.0}, "irnn"),
    ({"activation": "tanh", "init": "sparse", "omega": 2.0, "clip_mode": "global"}, "tanh_clipped_omega"),
    ({"activation": "tanh", "init": "orthogonal", "clip_mode": "global"}, "orthogonal_tanh"),
    ({"activation": "tanh", "init": "gaussian", "clip_mode": "none"}, "tanh_unclipped"),
    ({"activation": "tanh", "init": "gaussian", "clip_mode": "elementwise"}, "tanh_clipped"),
])
def test_remedy_arm_reads_the_config(config, arm):
    assert studies.remedy_arm(config) == arm


def test_each_arms_sentence_says_how_far_its_norm_falls_over_the_longest_lag(built):
    head = built["metrics"]["specs"]["remedies"]["headline"]
    html = " ".join(htmllib.unescape(re.sub(r"<(?!/?li>)[^>]+>", "", built["html"])).split())  # text and <li>s
    lag = min(fx.BASE_CONFIG["probe_len"], min(TS)) - 1  # every run probes its first probe_len steps
    for arm, name in studies.REMEDY_ARMS.items():
        assert head[arm]["max_lag"] == lag
        h = head[arm]["tasks"]["temporal_order"]  # the slopes of one task at the longest T
        for phase in ("init", "final"):
            d = h[f"slope_{phase}"] * lag / math.log(10)  # orders of magnitude over the longest lag, written out
            assert h[f"orders_{phase}"] == pytest.approx(round(abs(d), 1), abs=1e-12)
        start = html.index(f"<li>{name} (")
        sentence = html[start:html.index("</li>", start)]
        d = h["slope_init"] * lag / math.log(10)
        words = "stays within one order of magnitude" if abs(round(d, 1)) < 1 else \
            f"{'falls' if d < 0 else 'grows'} by {h['orders_init']:g} orders of magnitude"
        assert f"‖∂h_t/∂h_k‖ {words} over {lag} steps of lag at initialisation" in sentence, sentence


@pytest.mark.parametrize("slope, lag, orders", [(-0.2578, 49, -5.5), (0.0, 49, 0.0), (0.1, 23, 1.0),
                                                (None, 49, None), (-0.1, None, None), (math.nan, 9, None)])
def test_decades_is_the_slope_times_the_lag_in_powers_of_ten(slope, lag, orders):
    assert studies.decades(slope, lag) == orders


def section_text(html: str, spec: str = "remedies") -> str:
    sec = html[html.index(f'id="spec-{spec}"'):]
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", sec[:sec.index("</section>")])).split())


def test_the_exprnns_sentence_reads_its_measured_norm_against_its_bound(built):
    head = built["metrics"]["specs"]["remedies"]["headline"]["exprnn"]
    assert head["w_norm_off"] is not None
    text = section_text(built["html"])
    assert "its ‖W_hh‖₂, measured before and after training, is 1 within" in text
    assert "γ_φ^(t−k) = 1 with no slack from γ_W" in text


def test_fixed_rates_and_overlapping_intervals_are_said_plainly(built):
    """Three seeds per arm: every interval at T = 100 overlaps every other, and the rates were not chosen."""
    text = section_text(built["html"])
    assert "The learning rates here were fixed, not chosen per arm" in text
    assert "On temporal order at T = 100 every two arms' 95% intervals overlap: this budget cannot rank the arms" in text


def rate_runs() -> list[fx.FakeRun]:
    """The rate-selection stage: two arms at two rates on seeds 100-101; the IRNN learns only at 0.001, the GRU at
    both (below 0.9 x the partial baseline, half the chance loss; then the lower median loss, planted at 0.01,
    wins)."""
    runs = []
    for arm, lr, seed, loss in [("irnn", 0.001, 100, 0.2), ("irnn", 0.001, 101, 0.2), ("irnn", 0.01, 100, 1.0),
                                ("irnn", 0.01, 101, 1.0), ("gru", 0.001, 100, 0.4), ("gru", 0.001, 101, 0.4),
                                ("gru", 0.01, 100, 0.3), ("gru", 0.01, 101, 0.3)]:
        config = {**ARMS[arm][0], "lr": lr}
        cfg = {**fx.BASE_CONFIG, "task": "temporal_order", "seq_len": 100, "seed": seed, **config}
        chance = fx.CHANCE_LOSS["temporal_order"]
        runs.append(fx.FakeRun("remedies_rates", cfg, overrides={"final_val_loss": loss * chance}))
    return runs


def test_a_rate_selection_is_shown_with_its_choice_and_named_in_the_remedies_section(tmp_path):
    out = fx.report_of(tmp_path, remedies_runs() + rate_runs())
    table = pd.read_csv(out / "tables" / "rate_selection.csv")
    chosen = table[table["chosen"]].set_index("arm")["lr"].to_dict()
    assert chosen == {"irnn": 0.001, "gru": 0.01}
    assert table.set_index(["arm", "lr"])["n_learned"].to_dict() == {
        ("irnn", 0.001): 2, ("irnn", 0.01): 0, ("gru", 0.001): 2, ("gru", 0.01): 2}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Learning-rate selection: every arm at every candidate rate on its own seeds" in section_text(
        html, "remedies_rates")
    assert ("Each arm trained at its own learning rate, chosen per task among 0.001 and 0.01 on seeds 100 and 101 at "
            "T = 100 (the rate-selection section); those seeds are not among the seeds of the runs reported here"
            in section_text(html))


def test_at_one_length_the_success_figure_puts_the_arms_side_by_side(built):
    """A quick study runs the remedies at one T: the arms are named along the axis (no T axis to spread them on),
    learned and solved each drawn per arm."""
    from pipeline.report import figures

    rows = pd.read_csv(built["out"] / "tables" / "remedies.csv")
    one = rows[rows["T"] == rows["T"].min()]
    fig, caption, _ = figures.draw_remedies_success({"remedies": one})
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names == [n for n in studies.REMEDY_ARMS.values() if n in set(one["arm_name"])]
    assert f"at T = {int(one['T'].iloc[0])}" in caption
    points = [line for line in ax.get_lines() if line.get_marker() in ("o", "s")]
    assert len(points) == 2 * len(names)  # learned and solved, each arm
    two = figures.draw_remedies_success({"remedies": rows})[0]
    assert two.axes[0].get_xlabel() == "sequence length T"


def test_the_zero_pair_caveat_reads_the_count_where_metrics_json_stores_it(built):
    """analysis.json once kept each arm's count of zero-norm pairs beside metrics.json's: the section reads the
    headline's, so that changing it there (and only there) brings the caveat in or out."""
    import copy

    from pipeline.report import html as report_html
    from pipeline.report.document import Bullets, plain_text

    analysis = json.loads((built["out"] / "analysis.json").read_text())
    assert "zeros" not in analysis["specs"]["remedies"]
    tables = {"remedies": built["table"]}

    def caveats(metrics) -> dict[str, bool]:
        """Per arm's sentence: whether it carries the zero-pairs caveat."""
        section = report_html.spec_section("remedies", metrics, analysis, tables, {})
        items = [" ".join(plain_text(p, metrics) for p in item) for b in section.blocks if isinstance(b, Bullets)
                 for item in b.items]
        return {arm: any(i.startswith(f"{name} (") and "have a norm of exactly 0" in i for i in items)
                for arm, name in studies.REMEDY_ARMS.items()}

    metrics = copy.deepcopy(built["metrics"])
    tasks = {arm: h["tasks"]["temporal_order"] for arm, h in metrics["specs"]["remedies"]["headline"].items()}
    assert caveats(metrics) == {arm: bool(t["zero_pairs"]) for arm, t in tasks.items()}
    for t in tasks.values():  # every count flipped: the caveat follows the headline, arm by arm
        t["zero_pairs"], t["zero_pair_runs"] = (0, 0) if t["zero_pairs"] else (5, 1)
    assert caveats(metrics) == {arm: bool(t["zero_pairs"]) for arm, t in tasks.items()}
