"""The text spec's two arms: the spec loads with a vanilla RNN and an LSTM whose parameter counts, counted on the
models the runner builds for the default corpus, agree within the tolerance experiments/text.yaml states; and the
report's text section shows both arms' validation curves against characters seen, a sentence per arm on whether it
learned, and each arm's last sample (on a fake sweep, tests/fixtures_runs.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import fixtures_runs as fx
from pipeline import cli
from pipeline.engine.text import build_vocab
from pipeline.report.formatting import format_value
from pipeline.run.corpus import default_corpus
from pipeline.run.runner import new_model, sample_checkpoints
from pipeline.run.spec import load_spec

cli._register()

ROOT = Path(__file__).resolve().parents[1]
PARAMETER_TOLERANCE = 0.02  # experiments/text.yaml: the LSTM arm's count within 2 % of the vanilla arm's


@pytest.fixture(scope="module")
def vocab_size() -> int:
    return len(build_vocab(default_corpus()))


def parameters(cfg, vocab_size: int) -> int:
    """Parameters of the model the runner builds for cfg on a corpus of vocab_size characters (one-hot in and out)."""
    model = new_model(cfg, SimpleNamespace(input_dim=vocab_size, output_dim=vocab_size), np.random.default_rng(0))
    return int(sum(p.size for p in model.params.values()))


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_the_text_spec_has_both_arms_at_about_equal_parameter_counts(profile, vocab_size):
    cells = load_spec(ROOT / "experiments" / "text.yaml", profile).cells
    arms = {c.cell_type for c in cells}
    assert arms == {"rnn", "lstm"}
    counts = {arm: {parameters(c, vocab_size) for c in cells if c.cell_type == arm} for arm in arms}
    assert all(len(c) == 1 for c in counts.values())  # one size per arm
    rnn, lstm = counts["rnn"].pop(), counts["lstm"].pop()
    assert abs(lstm - rnn) <= PARAMETER_TOLERANCE * rnn, (rnn, lstm)
    # the arms differ in the cell and its size only: same windows, optimiser, budget and seeds
    same = [{k: v for k, v in vars(c).items() if k not in ("cell_type", "hidden")} for c in cells]
    by_arm = {arm: sorted(json.dumps(s, sort_keys=True) for s, c in zip(same, cells) if c.cell_type == arm)
              for arm in arms}
    assert by_arm["rnn"] == by_arm["lstm"]



@pytest.mark.parametrize("profile", ["quick", "full"])
def test_every_text_sample_falls_on_a_validation_pass(profile):
    """A sample continues the held-out text from the state of a carried read of it; on a validation pass that read
    is the pass's own, off one it is a whole extra read of the text (engine/trainer.py: a pass before the first step,
    after every eval_every-th and after the last)."""
    for cell in load_spec(ROOT / "experiments" / "text.yaml", profile).cells:
        passes = {0, cell.iters} | (set(range(cell.eval_every, cell.iters + 1, cell.eval_every)) if cell.eval_every
                                    else set())
        assert sample_checkpoints(cell.iters, cell.samples) <= passes, (profile, cell.iters, cell.eval_every)


# a fake text sweep: the vanilla arm planted at chance, the LSTM arm learned (final validation loss, chance 1.0x/0.4x;
# the fixture's partial baseline, the bigram model's, is 0.5x)
CHANCE = fx.CHANCE_LOSS["text"]
ARMS = {"rnn": (dict(hidden=8), CHANCE, 1000), "lstm": (dict(cell_type="lstm", hidden=4), 0.4 * CHANCE, 990)}


def text_runs() -> list[fx.FakeRun]:
    runs = []
    for arm, (config, loss, n_params) in ARMS.items():
        cfg = {**fx.BASE_CONFIG, "task": "text", "seq_len": 16, "iters": 100, "eval_every": 25, "batch": 3,
               **config}
        runs.append(fx.FakeRun("text", cfg, overrides={"final_val_loss": loss, "n_params": n_params}))
    return runs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    runs = text_runs()
    out = fx.report_of(tmp_path_factory.mktemp("text_arms"), runs)
    html = (out / "report.html").read_text(encoding="utf-8")
    start = html.index('<section id="spec-text">')
    return {"runs": runs, "out": out, "curve": pd.read_csv(out / "tables" / "text_val_curve.csv"),
            "section": html[start:html.index("</section>", start)]}


def test_both_arms_validation_curves_are_against_characters_seen(built):
    curve = built["curve"]
    for run in built["runs"]:
        arm = run.config.get("cell_type", "rnn")
        c = curve[curve["run_id"] == run.run_id].sort_values("iter")
        at, loss = fx.val_losses(run.config)
        assert set(c["arm"]) == {arm}
        assert list(c["iter"]) == list(at) and np.allclose(c["val_loss"], loss, rtol=1e-12)
        assert np.allclose(c["chars"], at * run.config["batch"] * run.config["seq_len"], rtol=1e-12)
    assert (built["out"] / "figures" / "text_curve.png").is_file()
    assert "against characters seen" in built["section"]


def text_of(section: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", section))


def test_each_arm_has_a_learning_sentence_with_its_n(built):
    text = text_of(built["section"])
    # vanilla at chance: not learned, said plainly; LSTM at 0.4 x chance: below the bigram's 0.5 x, learned
    assert re.search(r"vanilla RNN: 0 of 1 seed learned \(95% CI 0–0\.\d+\) and 0 beat chance: .*; 1 ended at "
                     r"chance", text), text
    assert re.search(r"LSTM: 1 of 1 seed learned \(95% CI 0\.\d+–1\) and 1 beat chance: median final validation "
                     + re.escape(f"loss {format_value(0.4 * CHANCE)} nats/char, against "
                                 f"{format_value(0.5 * CHANCE)} of the bigram model (the previous character only; "
                                 f"learned below 0.9× it) and {format_value(CHANCE)} of the unigram model (chance)"),
                     text), text
    for arm, (config, _, n_params) in ARMS.items():  # the headline states each arm's size from the results
        assert f"(hidden {config['hidden']}, {n_params:,} parameters)" in text


def test_each_arms_last_sample_is_shown_once(built):
    text = built["section"]
    for name, run in zip(("vanilla RNN", "LSTM"), built["runs"]):
        assert f"{name} (seed 0): its last sample, at iteration 99" in text
    assert text.count("sample at 99: the quick brown") == 2  # the fixture's last sample, once per arm
    assert "sample at 50" not in text and "Sample from run" not in text
