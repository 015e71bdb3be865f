"""Character-level text helpers and the default stdlib-docstring corpus."""

import ast
import inspect
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from pipeline.run import corpus
from pipeline.engine import text


def test_vocab_is_sorted_unique_characters():
    assert text.build_vocab("hello, world") == [" ", ",", "d", "e", "h", "l", "o", "r", "w"]
    with pytest.raises(ValueError):
        text.build_vocab("")


def test_encode_decode_round_trip_with_unicode():
    s = "naïve café — ∂x/∂t\n\ttabs"
    vocab = text.build_vocab(s)
    ids = text.encode(s, vocab)
    assert ids.dtype == np.int64 and ids.shape == (len(s),)
    assert [vocab[i] for i in ids] == list(s)
    assert text.decode(ids, vocab) == s
    with pytest.raises(ValueError, match="not in the vocabulary"):
        text.encode("xyz", vocab)


def test_split_keeps_last_ten_percent_for_validation():
    ids = np.arange(1000)
    train, val = text.split_train_val(ids)
    assert np.array_equal(train, np.arange(900)) and np.array_equal(val, np.arange(900, 1000))
    train, val = text.split_train_val(np.arange(19))  # floor(1.9) = 1
    assert len(train) == 18 and len(val) == 1


def test_min_text_length_gives_one_window_in_each_split():
    # 10 % of n must hold seq_len + 1 = 26 characters: n >= 260, and 259 is one short
    assert text.min_text_length(25) == 260
    assert text.split_sizes(259)[1] == 25
    assert text.min_text_length(1) == 20


def test_windows_are_next_character_pairs():
    n, T, B = 40, 7, 2000
    ids = np.arange(n)  # id = position, so a window reveals its start
    xs, targets = text.sample_windows(ids, T, B, np.random.default_rng(0), vocab_size=n)
    assert xs.shape == (T, B, n) and targets.shape == (T, B) and targets.dtype == np.int64
    assert np.all(xs.sum(-1) == 1)
    inputs = xs.argmax(-1)  # (T, B)
    starts = inputs[0]
    assert np.array_equal(inputs, starts[None, :] + np.arange(T)[:, None])
    assert np.array_equal(targets, inputs + 1)
    assert set(starts) == set(range(n - T))  # every start 0 .. n - T - 1 occurs, the last target is ids[-1]


def test_windows_deterministic_and_too_short_raises():
    ids = np.array([0, 1, 2, 1, 0, 2, 2, 1])
    a = text.sample_windows(ids, 3, 5, np.random.default_rng(3))
    b = text.sample_windows(ids, 3, 5, np.random.default_rng(3))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert a[0].shape == (3, 5, 3)
    text.sample_windows(ids, 7, 1, np.random.default_rng(0))  # exactly one window fits
    with pytest.raises(ValueError, match="too few"):
        text.sample_windows(ids, 8, 1, np.random.default_rng(0))


def test_sampling_follows_the_models_softmax():
    """A model whose readout ignores its state and always favours id (x + 1) mod V walks the vocabulary; a model
    with non-finite probabilities stops at once; the same generator gives the same ids."""
    from pipeline.engine.init import init_model

    V = 5
    model, _ = init_model(np.random.default_rng(0), input_dim=V, output_dim=V, hidden=V, init="identity")
    model.params["W_xh_0"], model.params["W_hh_0"] = 20.0 * np.eye(V), np.zeros((V, V))  # h_t ~ one_hot(x_t)
    model.params["W_hy"], model.params["b_y"] = 40.0 * np.roll(np.eye(V), 1, axis=0), np.zeros(V)
    assert text.sample_ids(model, 2, 8, np.random.default_rng(1)) == [3, 4, 0, 1, 2, 3, 4, 0]
    random = init_model(np.random.default_rng(2), input_dim=V, output_dim=V, hidden=4)[0]
    runs = [text.sample_ids(random, 0, 30, np.random.default_rng(7)) for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 30 and set(runs[0]) <= set(range(V))
    random.params["b_y"][0] = np.nan
    assert text.sample_ids(random, 0, 30, np.random.default_rng(7)) == []


# ---------------------------------------------------------------------------------------------------- corpus


def test_default_corpus_is_deterministic_and_sized():
    a = corpus.default_corpus.__wrapped__()  # bypass the cache: really rebuild it
    assert a == corpus.default_corpus()
    assert 200_000 < len(a.encode("utf-8")) < 2_000_000
    assert corpus.corpus_sha256(a) == __import__("hashlib").sha256(a.encode()).hexdigest()
    assert corpus.python_version() == ".".join(map(str, sys.version_info[:3]))


def test_corpus_holds_real_stdlib_docstrings():
    import json as json_module
    import textwrap

    content = corpus.default_corpus()
    for obj in (textwrap, textwrap.dedent, json_module.dumps):  # independent reference: the imported objects
        assert inspect.cleandoc(obj.__doc__) in content
    abc_src = Path(sysconfig.get_paths()["stdlib"], "abc.py").read_text()
    assert content.startswith(ast.get_docstring(ast.parse(abc_src)))  # sorted walk: abc.py comes first


def test_corpus_build_imports_nothing():
    code = ("import sys; before = set(sys.modules); from pipeline.run import corpus; corpus.default_corpus(); "
            "import json; print(json.dumps(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    new = set(json.loads(out))
    assert not new & {"antigravity", "this", "idlelib", "tkinter", "turtle", "webbrowser"}
    assert not {m for m in new if m.startswith(("email", "http", "smtplib", "asyncio"))}


def minchar_pointer_walk(ids, seq_len: int, steps: int):
    """min-char-rnn.py's loop, literally: `if p+seq_length+1 >= len(data) or n == 0: hprev = 0; p = 0`."""
    p, out = 0, []
    for n in range(steps):
        reset = p + seq_len + 1 >= len(ids) or n == 0
        if reset:
            p = 0
        out.append((list(ids[p : p + seq_len]), list(ids[p + 1 : p + seq_len + 1]), not reset))
        p += seq_len
    return out


@pytest.mark.parametrize("n, seq_len", [(100, 7), (27, 25), (60, 1)])
def test_consecutive_windows_with_one_stream_are_min_char_rnns(n, seq_len):
    ids = np.random.default_rng(n).integers(0, 9, size=n)
    walk = text.ConsecutiveWindows(ids, seq_len, 1)
    for inputs, targets, carry in minchar_pointer_walk(ids, seq_len, 40):
        xs, ys, c = walk.next()
        assert (xs[:, 0].tolist(), ys[:, 0].tolist(), c) == (inputs, targets, carry)


def test_consecutive_windows_of_parallel_streams_each_walk_their_own_part():
    ids, B, T = np.arange(1003), 4, 10
    walk, part = text.ConsecutiveWindows(ids, T, B), 1003 // 4
    for inputs, _, carry in minchar_pointer_walk(np.arange(part), T, 60):
        xs, ys, c = walk.next()
        assert c == carry and (ys == xs + 1).all()
        for b in range(B):
            assert xs[:, b].tolist() == [b * part + i for i in inputs]  # stream b: its part, min-char-rnn's walk
    with pytest.raises(ValueError, match="fewer than one window"):
        text.ConsecutiveWindows(np.arange(40), 10, 4)  # 10 per stream < 10 + 2
