"""rnngrad's min-char-rnn settings against the port of Karpathy's min-char-rnn.py (pipeline/benchmarks/minchar.py),
an independent implementation: one character at a time, column vectors, its own BPTT, clipping and Adagrad."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.benchmarks.minchar import MinCharRNN, _train_rnngrad, loss_per_char
from pipeline.engine.rnn import forward, loss_and_dy


def port_on(text_ids: np.ndarray, vocab: int, seed: int = 0) -> MinCharRNN:
    return MinCharRNN(text_ids, vocab, np.random.default_rng(seed), hidden=12, seq_length=7)


@pytest.fixture
def ids() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 9, size=300)


def test_batch_one_takes_min_char_rnns_steps(ids, monkeypatch):
    """Consecutive windows with the state carried, the summed loss's gradient clipped entrywise at 5 and Adagrad:
    after 100 steps (more than one pass over the text, so a reset included) the weights are the port's."""
    import pipeline.benchmarks.minchar as minchar

    monkeypatch.setattr(minchar, "SEQ_LEN", 7)
    port = port_on(ids, 9)
    ours = port.as_rnn()
    for _ in range(100):
        port.step()
    assert _train_rnngrad(ours, ids, 1, 100, None) == 100
    theirs = port.as_rnn()
    for key, value in theirs.params.items():
        np.testing.assert_allclose(ours.params[key], value, rtol=1e-9, atol=1e-12, err_msg=key)


def test_the_mean_loss_gradient_is_not_min_char_rnns(ids, monkeypatch):
    """The check above can fail: with the mean's gradient, clipping and Adagrad's epsilon act differently."""
    import pipeline.benchmarks.minchar as minchar
    from pipeline.engine import trainer

    monkeypatch.setattr(minchar, "SEQ_LEN", 7)
    original = trainer.TrainSettings
    monkeypatch.setattr(minchar, "TrainSettings", lambda *a, **k: original(*a, **{**k, "reduction": "mean"}))
    port = port_on(ids, 9)
    ours = port.as_rnn()
    for _ in range(100):
        port.step()
    _train_rnngrad(ours, ids, 1, 100, None)
    assert not np.allclose(ours.params["W_xh_0"], port.Wxh, rtol=1e-6, atol=1e-9)


def test_loss_per_char_reads_parallel_streams_from_zero_state(ids):
    model = port_on(ids, 9).as_rnn()
    part = (len(ids) - 1) // 4
    losses = [loss_and_dy(forward(model, ids[b * part : (b + 1) * part, None]).y,
                          ids[b * part + 1 : (b + 1) * part + 1, None], np.ones((part, 1)), "xent")[0]
              for b in range(4)]
    assert loss_per_char(model, ids, streams=4) == pytest.approx(np.mean(losses), rel=1e-12)


def test_in_lockstep_rnngrad_stays_closer_to_the_port_than_the_port_from_last_bit_changed_weights(ids, monkeypatch):
    """The bench's lockstep figure, on the small model: a different algorithm (the mean loss's gradient) departs
    from the port by far more than the nudged port does, the same algorithm by less."""
    import pipeline.benchmarks.minchar as minchar

    monkeypatch.setattr(minchar, "SEQ_LEN", 7)
    monkeypatch.setattr(minchar, "MinCharRNN", lambda ids, V, rng: port_on(ids, V))
    ours, twin = minchar.lockstep(ids, 9, seed=0, steps=20)
    assert 0 < twin < 1e-6 and ours < twin
    from pipeline.engine import trainer

    original = trainer.TrainSettings
    monkeypatch.setattr(minchar, "TrainSettings", lambda *a, **k: original(*a, **{**k, "reduction": "mean"}))
    other, _ = minchar.lockstep(ids, 9, seed=0, steps=20)
    assert other > 1e3 * twin
