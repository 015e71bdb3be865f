"""Training throughput in characters per second, against Karpathy's min-char-rnn timed in the same run.

Settings (issue 2): character level, vocabulary 65, hidden 100, windows of 25 characters, float64, Adagrad with
lr 0.1, a random id stream. Ours trains batches of 32 windows with global-norm clipping at 5, fed either token
ids (what text training uses: the first layer gathers columns of W_xh) or dense one-hot vectors (the same
arithmetic as torch.nn.RNN on one-hot input). The baseline is a faithful port of min-char-rnn's lossFun (one
window at a time, a Python loop per character, clipping every entry to [-5, 5], its own Adagrad).
chars/s = windows per step * 25 * steps / seconds of wall-clock time.

A fourth contender times only the matrix products of our step (`_GemmFloor`): the ceiling for any numpy
float64 trainer of these settings, reported as a multiple of min-char-rnn.

The four are timed in alternating rounds, so all see the same machine load; each figure is the median round.
BLAS runs on `blas_threads` threads (1 by default) while timing: on a machine shared with other jobs, OpenBLAS's
spinning threads made a step 10-20 times slower and the figures unrepeatable; the baseline's tiny matrix-vector
products never use a second thread anyway.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ..engine.init import init_model
from ..engine.optim import make_optimizer
from ..engine.rnn import Workspace
from ..engine.trainer import train_step
from .minchar import MinCharRNN

VOCAB = 65  # characters in the vocabulary (tiny-shakespeare's size)
HIDDEN = 100  # hidden units
SEQ_LEN = 25  # characters per window (min-char-rnn's seq_length)
BATCH = 32  # windows per step for ours; min-char-rnn trains one at a time
LR = 0.1  # Adagrad learning rate, both
CLIP = 5.0  # ours: global-norm threshold; min-char-rnn: elementwise bound
STREAM_LEN = 200_000  # characters of random text


class _PipelineTrainer:
    """Batched training with pipeline.engine.trainer, windows taken from BATCH evenly spaced lanes of the stream."""

    def __init__(self, ids: np.ndarray, rng: np.random.Generator, one_hot: bool) -> None:
        self.model, _ = init_model(rng, input_dim=VOCAB, output_dim=VOCAB, hidden=HIDDEN)
        self.feed_one_hot = one_hot  # True: xs (T, B, V) one-hot floats; False: xs (T, B) token ids
        self.optimizer = make_optimizer("adagrad", LR)
        self.workspace = Workspace()
        self.lanes = ids[: len(ids) // BATCH * BATCH].reshape(BATCH, -1).T  # (N / B, B): one column per lane
        self.one_hot = np.eye(VOCAB)
        self.mask = np.ones((SEQ_LEN, BATCH))
        self.pos, self.h = 0, None

    def step(self) -> None:
        """One training step on the next window of every lane, carrying the state like min-char-rnn's hprev."""
        if self.pos + SEQ_LEN + 1 > self.lanes.shape[0]:
            self.pos, self.h = 0, None
        window = self.lanes[self.pos : self.pos + SEQ_LEN + 1]  # (T+1, B) ids
        xs = self.one_hot[window[:-1]] if self.feed_one_hot else window[:-1]  # (T, B, V) or (T, B)
        stats = train_step(
            self.model, self.optimizer, xs, window[1:], self.mask, "xent", "global", CLIP, self.h, self.workspace
        )
        self.pos, self.h = self.pos + SEQ_LEN, stats.h_last


class _MinCharRNN(MinCharRNN):
    """Karpathy's min-char-rnn (2015) training loop (`minchar.MinCharRNN`, ported line for line) at these settings."""

    def __init__(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        super().__init__(ids, VOCAB, rng, hidden=HIDDEN, seq_length=SEQ_LEN, learning_rate=LR)


class _GemmFloor:
    """Only the matrix products of one batched training step, into preallocated arrays: a lower bound on any
    float64 numpy step's time (the elementwise work, the id gathers, clipping and Adagrad all come on top), so
    its chars/s is a ceiling no numpy trainer reaches on this machine.

    Per step (S windows-steps of B lanes, H hidden, V outputs): S recurrent products forward and S backward
    (B x H @ H x H), the readout, its input gradient and its weight gradient over all S*B positions
    (S*B x H @ H x V and back), and dW_hh over all positions (H x S*B @ S*B x H): ~40 million multiply-adds."""

    def __init__(self, rng: np.random.Generator) -> None:
        n = SEQ_LEN * BATCH
        self.W_hh, self.W_hy = rng.standard_normal((HIDDEN, HIDDEN)), rng.standard_normal((VOCAB, HIDDEN))
        self.hs, self.das = rng.standard_normal((SEQ_LEN, BATCH, HIDDEN)), rng.standard_normal((SEQ_LEN, BATCH, HIDDEN))
        self.dy, self.logits = rng.standard_normal((n, VOCAB)), np.empty((n, VOCAB))
        self.dh, self.dW_hh, self.dW_hy = np.empty((n, HIDDEN)), np.empty((HIDDEN, HIDDEN)), np.empty((VOCAB, HIDDEN))
        self.out = np.empty((BATCH, HIDDEN))

    def step(self) -> None:
        hs, das = self.hs, self.das
        for t in range(SEQ_LEN):  # forward recurrence
            np.matmul(hs[t], self.W_hh.T, out=self.out)
        np.matmul(hs.reshape(-1, HIDDEN), self.W_hy.T, out=self.logits)  # readout
        np.matmul(self.dy, self.W_hy, out=self.dh)  # dE/dh from the readout
        np.matmul(self.dy.T, hs.reshape(-1, HIDDEN), out=self.dW_hy)
        for t in reversed(range(SEQ_LEN)):  # backward recurrence
            np.matmul(das[t], self.W_hh, out=self.out)
        np.matmul(das.reshape(-1, HIDDEN).T, hs.reshape(-1, HIDDEN), out=self.dW_hh)


def _chars_per_second(step: Callable[[], None], chars_per_step: int, seconds: float) -> float:
    """Run `step` for about `seconds` of wall-clock time; return characters trained per second."""
    steps, start = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return chars_per_step * steps / elapsed


def _median_rates(seed: int, seconds: float, rounds: int) -> dict[str, float]:
    """Median chars/s of each contender over `rounds` rounds that take turns."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, size=STREAM_LEN)  # random text: any fixed id stream serves for speed
    contenders = {  # name: (step function, characters per step)
        "train_chars_per_s": (_PipelineTrainer(ids, rng, one_hot=False).step, BATCH * SEQ_LEN),
        "train_onehot_chars_per_s": (_PipelineTrainer(ids, rng, one_hot=True).step, BATCH * SEQ_LEN),
        "minchar_chars_per_s": (_MinCharRNN(ids, rng).step, SEQ_LEN),
        "gemm_floor_chars_per_s": (_GemmFloor(rng).step, BATCH * SEQ_LEN),
    }
    for step, _ in contenders.values():
        step()  # warm-up: first-touch allocations, BLAS initialisation
    per_round = seconds / (len(contenders) * rounds)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (step, chars) in contenders.items():
            rates[name].append(_chars_per_second(step, chars, per_round))
    return {name: statistics.median(r) for name, r in rates.items()}


def bench_train_throughput(
    seed: int = 0, seconds: float = 8.0, rounds: int = 3, blas_threads: int | None = 1
) -> dict[str, float]:
    """Characters per second of our batched trainer and of min-char-rnn, timed in the same run.

    `seconds` is the total timed budget, split evenly over `rounds` rounds in which the contenders take turns.
    `blas_threads` caps BLAS threads while timing (None: leave BLAS as it is).
    Returns train_chars_per_s (token ids), train_onehot_chars_per_s, minchar_chars_per_s, speedup_vs_minchar,
    speedup_onehot_vs_minchar, gemm_floor_chars_per_s (the step's matrix products alone: a ceiling),
    gemm_floor_vs_minchar, train_vs_gemm_floor, and the settings used.
    """
    if not seconds > 0 or rounds < 1:
        raise ValueError(f"seconds must be > 0 and rounds >= 1, got seconds={seconds!r}, rounds={rounds!r}")
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        rates = _median_rates(seed, seconds, rounds)
    minchar = rates["minchar_chars_per_s"]
    return {
        **rates,
        "speedup_vs_minchar": rates["train_chars_per_s"] / minchar,
        "speedup_onehot_vs_minchar": rates["train_onehot_chars_per_s"] / minchar,
        "gemm_floor_vs_minchar": rates["gemm_floor_chars_per_s"] / minchar,  # no numpy float64 trainer beats this
        "train_vs_gemm_floor": rates["train_chars_per_s"] / rates["gemm_floor_chars_per_s"],
        "batch": BATCH,
        "seq_len": SEQ_LEN,
        "hidden": HIDDEN,
        "vocab": VOCAB,
        "seconds": float(seconds),
        "rounds": rounds,
        "blas_threads": 0 if blas_threads is None else blas_threads,  # 0: BLAS's own default
    }
