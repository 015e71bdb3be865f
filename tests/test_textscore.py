"""A text model scored as it was trained: the carried read of the held-out text against a loop written out by hand,
and a run's summary.json, validation and samples for each way of taking training windows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.engine.init import init_lstm, init_model
from pipeline.engine.text import decode, read_carried, sample_ids
from pipeline.run import runner
from pipeline.run.config import RunConfig
from pipeline.run.files import load_model
from pipeline.run.sources import make_source
from pipeline.run.textscore import Validation

CORPUS = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
          "want of a wife.\n") * 12
RUN = dict(task="text", seq_len=10, hidden=16, batch=2, iters=40, eval_every=20, probe_len=8, samples=2,
           sample_len=40, gamma_w=0.9, input_scale=0.3, output_scale=0.3, lr=0.1, clip_mode="elementwise")


def vanilla(V: int, n: int = 12, seed: int = 0):
    return init_model(np.random.default_rng(seed), form="elman", activation="tanh", leaky_slope=0.01, input_dim=V,
                      output_dim=V, layers=1, hidden=n, init="gaussian", gamma_w=1.3, input_scale=0.8,
                      output_scale=0.8)[0]


def carried_by_hand(model, ids: np.ndarray, h0: np.ndarray | None = None) -> tuple[float, float]:
    """min-char-rnn's forward, one character at a time from h0 (zeros if None), the state never reset: (mean -log p
    of the next character, share of argmax hits), from the model's weight arrays alone."""
    p = model.params
    Wxh, Whh, bh, Why, by = p["W_xh_0"], p["W_hh_0"], p["b_h_0"], p["W_hy"], p["b_y"]
    h, losses, hits = np.zeros(Whh.shape[0]) if h0 is None else h0, [], []
    for x, target in zip(ids[:-1], ids[1:]):
        h = np.tanh(Wxh[:, x] + Whh @ h + bh)  # Wxh times the one-hot of x is its column x
        y = Why @ h + by
        log_p = y - y.max() - np.log(np.exp(y - y.max()).sum())
        losses.append(-log_p[target])
        hits.append(int(np.argmax(y) == target))
    return float(np.mean(losses)), float(np.mean(hits))


def carried_state_by_hand(params: dict, inputs: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The state after reading `inputs` from h, one character at a time."""
    for x in inputs:
        h = np.tanh(params["W_xh_0"][:, x] + params["W_hh_0"] @ h + params["b_h_0"])
    return h


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_read_carried_is_the_one_stream_loop(chunk):
    ids = np.random.default_rng(3).integers(0, 9, size=200)
    model = vanilla(9)
    read = read_carried(model, ids, chunk=chunk)
    loss, accuracy = carried_by_hand(model, ids)
    assert read.loss == pytest.approx(loss, rel=1e-12)
    assert read.accuracy == accuracy
    np.testing.assert_allclose(read.state[0, 0], carried_state_by_hand(model.params, ids[:-1], np.zeros(12)),
                               rtol=1e-12, atol=1e-15)
    h0 = np.random.default_rng(4).uniform(-1, 1, size=(1, 1, 12))
    assert read_carried(model, ids, chunk=chunk, h0=h0).loss == pytest.approx(
        carried_by_hand(model, ids, h0[0, 0])[0], rel=1e-12)


def test_read_carried_carries_an_lstm_state_across_chunks():
    """An LSTM's state is (h, c): chunked reads must carry both, so they equal the read in one piece."""
    ids = np.random.default_rng(4).integers(0, 7, size=90)
    model = init_lstm(np.random.default_rng(5), input_dim=7, output_dim=7, layers=2, hidden=6, init="gaussian",
                      gamma_w=1.0, input_scale=0.7, output_scale=0.7, forget_bias=1.0)
    whole, chunked = read_carried(model, ids, chunk=len(ids)), read_carried(model, ids, chunk=4)
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-12)
    assert chunked.accuracy == whole.accuracy
    np.testing.assert_allclose(chunked.state, whole.state, rtol=1e-12, atol=1e-15)


def held_out_ids(text: str) -> np.ndarray:
    """The last floor(n / 10) characters as ids of the sorted character set, written out here again."""
    vocab = sorted(set(text))
    return np.array([vocab.index(c) for c in text[len(text) - len(text) // 10:]])


def training_ids(text: str) -> np.ndarray:
    vocab = sorted(set(text))
    return np.array([vocab.index(c) for c in text[: len(text) - len(text) // 10]])


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("textscore") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def text_runs(corpus_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for windows in ("consecutive", "random"):
        cfg = RunConfig(**RUN, text=str(corpus_file), windows=windows)
        runs[windows] = (cfg, runner.execute_run(cfg, out / "data", out / windows))
    return runs


class Recorded(Validation):
    """The run's validation, recording the weights and the training streams' state of every pass."""

    def __init__(self, src):
        super().__init__(src)
        self.passes = []

    def __call__(self, model, state=None):
        self.passes.append(({k: v.copy() for k, v in model.params.items()}, None if state is None else state.copy()))
        return super().__call__(model, state)


def hand_model(params):
    return type("Weights", (), {"params": params})()


def window_of_last_stream(step: int, ids: np.ndarray, T: int, B: int) -> np.ndarray:
    """min-char-rnn's walk in the last of B streams, written out: its part of the training text, step `step`'s
    window of T inputs and their targets, T + 1 ids (the test's runs never reach the wrap)."""
    part = len(ids) // B
    lane = ids[(B - 1) * part : B * part]
    offset = (step - 1) * T
    assert offset + T + 1 < part
    return lane[offset : offset + T + 1]


def test_a_consecutive_model_is_validated_by_the_carried_read_computed_by_hand(corpus_file, tmp_path):
    """Every validation pass reads the held-out text once, written out here as a loop, from the state the training
    walk's last stream carries after the step (h = 0 before the first), itself recomputed here from the step's
    window, the state before it and the weights before the step."""
    cfg = RunConfig(**{**RUN, "iters": 12, "eval_every": 1, "samples": 0}, text=str(corpus_file),
                    windows="consecutive")
    src = make_source(cfg, tmp_path)
    validation = Recorded(src)
    log, _ = runner.train(cfg, runner.new_model(cfg, src, np.random.default_rng(0)), src, np.random.default_rng(1),
                          np.random.default_rng(2), validation=validation)
    held, train = held_out_ids(CORPUS), training_ids(CORPUS)
    assert len(validation.passes) == len(log.val) == cfg.iters + 1
    assert validation.passes[0][1] is None
    for (params, state), (i, loss, accuracy) in zip(validation.passes, log.val):
        h0 = np.zeros(cfg.hidden) if state is None else state[0, -1]
        assert loss == pytest.approx(carried_by_hand(hand_model(params), held, h0)[0], rel=1e-12), i
        assert accuracy == pytest.approx(carried_by_hand(hand_model(params), held, h0)[1], abs=1e-12), i
    for i in range(2, cfg.iters + 1):  # the state is the last stream's after step i, from the weights before it
        params, before = validation.passes[i - 1]
        h = carried_state_by_hand(params, window_of_last_stream(i, train, cfg.seq_len, cfg.batch)[:-1],
                                  before[0, -1])
        np.testing.assert_allclose(validation.passes[i][1][0, -1], h, rtol=1e-12, atol=1e-15)


def test_a_consecutive_run_reports_the_carried_read_and_the_windows_beside_it(text_runs):
    cfg, result = text_runs["consecutive"]
    s = result.summary
    assert s["outcome"] == "ok" and s["val_read"] == "carried"
    assert s["val_loss_carried"] == s["final_val_loss"] and s["val_accuracy_carried"] == s["val_accuracy"]
    assert s["val_loss_windows"] != pytest.approx(s["final_val_loss"], rel=1e-6)  # the other reading, another number
    assert s["beat_chance"] == (s["final_val_loss"] < 0.9 * s["chance_loss"])
    # at least 10 % below the bigram model, the partial baseline
    assert s["learned"] == (s["beat_chance"] and s["final_val_loss"] < 0.9 * s["partial_loss"])


def test_the_validation_curve_of_a_consecutive_model_is_the_carried_read(text_runs):
    cfg, result = text_runs["consecutive"]
    series = pd.read_parquet(result.run_dir / "series.parquet")
    val = series[series["key"] == "by_iter/val_loss"].set_index("step")["value"]
    assert list(val.index) == [0, 20, 40]
    assert val[40] == pytest.approx(result.summary["final_val_loss"], rel=1e-12)
    initial = load_model(result.run_dir / "probe" / "model_init.npz")  # before the first step: from h = 0
    assert val[0] == pytest.approx(carried_by_hand(initial, held_out_ids(CORPUS))[0], rel=1e-12)


def test_a_random_window_model_keeps_its_windows_and_reports_both(text_runs):
    cfg, result = text_runs["random"]
    s = result.summary
    assert s["val_read"] == "windows"
    assert s["final_val_loss"] == s["val_loss_windows"] and s["val_accuracy"] == s["val_accuracy_windows"]
    loss, _ = carried_by_hand(load_model(result.run_dir / "probe" / "model_final.npz"), held_out_ids(CORPUS))
    assert s["val_loss_carried"] == pytest.approx(loss, rel=1e-12)  # no walk: from h = 0


def test_a_consecutive_models_samples_continue_the_held_out_text_from_its_carried_state(corpus_file, tmp_path):
    """The run's one sample (at the end) is the one drawn with the run's sampling stream from the state carried
    through the held-out text, read on from the walk's state, and its last character; from h = 0 it is another."""
    cfg = RunConfig(**{**RUN, "samples": 1}, text=str(corpus_file), windows="consecutive")
    src = make_source(cfg, tmp_path)
    validation = Recorded(src)
    model = runner.new_model(cfg, src, np.random.default_rng(0))
    log, [sample] = runner.train(cfg, model, src, np.random.default_rng(1), np.random.default_rng(2),
                                 validation=validation)
    ids, vocab = held_out_ids(CORPUS), sorted(set(CORPUS))
    walk = validation.passes[-1][1][:, -1:]
    state = read_carried(log.model, ids, h0=walk).state

    def drawn(first_id, h0):
        return decode(np.array(sample_ids(log.model, first_id, cfg.sample_len, np.random.default_rng(2), h0)), vocab)

    assert sample["iter"] == cfg.iters and sample["text"] == drawn(int(ids[-1]), state)
    assert sample["text"] != drawn(int(ids[0]), None)


def test_validation_reads_the_held_out_text_once_per_set_of_weights(corpus_file, tmp_path):
    cfg = RunConfig(**RUN, text=str(corpus_file), windows="consecutive")
    src = make_source(cfg, tmp_path)
    model = runner.new_model(cfg, src, np.random.default_rng(0))
    validation = Validation(src)
    first = validation.carried(model)
    assert validation.carried(model) is first  # the same weights: the read is kept
    assert validation(model) == (first.loss, first.accuracy)
    state = np.full((1, cfg.batch, cfg.hidden), 0.5)
    from_walk = validation.carried(model, state)
    assert from_walk is not first and validation.carried(model, state.copy()) is from_walk
    assert from_walk.loss == pytest.approx(read_carried(model, src.val_ids, h0=state[:, -1:]).loss, rel=1e-12)
    model.params["W_hy"][0, 0] += 1e-3
    assert validation.carried(model, state) is not from_walk
    assert validation.carried(model, np.full_like(state, np.nan)).loss == pytest.approx(
        read_carried(model, src.val_ids).loss, rel=1e-12)  # a state that is not finite: from h = 0
