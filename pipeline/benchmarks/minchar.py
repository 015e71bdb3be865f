"""min-char-rnn fidelity: rnngrad's text training with `windows: consecutive` against a faithful port of Karpathy's
min-char-rnn.py (2015), on the same text in the same run.

The port (`MinCharRNN`) is min-char-rnn's lossFun and main loop line for line: one window of `seq_length`
characters at a time, a Python loop per character, the loss summed over the window, every gradient entry clipped to
[-5, 5], its Adagrad (eps 1e-8), hprev carried from window to window and reset with p at the end of the text.
Only its sampling and printing are left out, and its weights come from a seeded `np.random.Generator`.

Three contenders start from the port's initial weights (0.01 N(0, 1), zero biases) on the default corpus's training
split: the port; rnngrad's trainer with batch 1 (the same algorithm: consecutive windows, state carried, elementwise
clip at 5, Adagrad lr 0.1), trained on the same number of characters; and rnngrad with `batch` parallel streams,
trained for the wall-clock time the port took. All three are scored by one function, the mean loss per character
(nats) on the held-out last 10 % of the text, read as parallel streams from h = 0.

The batch-1 comparison is of one algorithm in two float orderings, and tests/test_minchar.py checks that their
weights agree to 1e-9 over a hundred steps on a small model. On min-char-rnn's own settings the training is chaotic:
Adagrad's first steps (lr 0.1 on gradients near its epsilon) amplify a last-bit difference by about ten orders of
magnitude in tens of steps, so after a few hundred steps two runs of the port itself, one from weights changed in their
last bits (ROUNDING_NUDGE), are as far apart as two seeds. Their losses after 1 M characters then differ as two
seeds' do, so the losses alone cannot tell a faithful reimplementation from a slightly different algorithm. Two
figures can: `fidelity_port_nudged_minus_port`, the port against itself at 1 M characters (the floor any
reimplementation's difference sits on), and the lockstep figures: after LOCKSTEP_STEPS steps, while differences are
still resolvable, the relative weight distance of rnngrad (batch 1) from the port over that of the nudged port from
the port (`fidelity_lockstep_ratio`; below 1: rnngrad departs from the port less than a change in the last bits of
its initial weights does).

rnngrad reports the mean loss per character, min-char-rnn sums it over the window; with `loss_reduction:
sequence_sum` rnngrad takes the gradient of that sum (averaged over its streams), as the clip bound of 5 and
Adagrad's epsilon of 1e-8 need: on the mean's gradient, 25 times smaller, clipping would act less often and the
epsilon would shrink the steps of rarely seen characters' weights.
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from ..engine.optim import make_optimizer
from ..engine.rnn import RNN, forward, loss_and_dy
from ..engine.text import ConsecutiveWindows
from ..engine.trainer import TrainSettings, train
from ..run import corpus, datasets

SEQ_LEN = 25  # min-char-rnn's seq_length
HIDDEN = 100  # its hidden_size
LR = 0.1  # its learning_rate
CLIP = 5.0  # its elementwise bound
EVAL_STREAMS = 16  # the validation text is read as this many parallel streams from h = 0
TOLERANCE = 0.02  # nats/char: batch 1 is min-char-rnn's algorithm, so its loss should agree to this
ROUNDING_NUDGE = 1e-12  # relative change of every initial weight that measures the rounding floor
LOCKSTEP_STEPS = 20  # steps of the lockstep comparison: differences grow ~1e10-fold in this many, yet stay below 1


class MinCharRNN:
    """min-char-rnn.py's model and training loop (Karpathy 2015), ported line for line."""

    def __init__(self, ids: np.ndarray, vocab_size: int, rng: np.random.Generator, hidden: int = HIDDEN,
                 seq_length: int = SEQ_LEN, learning_rate: float = LR) -> None:
        self.data, self.vocab_size, self.hidden_size = [int(i) for i in ids], vocab_size, hidden
        self.seq_length, self.learning_rate = seq_length, learning_rate
        self.Wxh = rng.standard_normal((hidden, vocab_size)) * 0.01  # input to hidden
        self.Whh = rng.standard_normal((hidden, hidden)) * 0.01  # hidden to hidden
        self.Why = rng.standard_normal((vocab_size, hidden)) * 0.01  # hidden to output
        self.bh = np.zeros((hidden, 1))  # hidden bias
        self.by = np.zeros((vocab_size, 1))  # output bias
        self.mem = [np.zeros_like(p) for p in (self.Wxh, self.Whh, self.Why, self.bh, self.by)]
        self.n, self.p, self.hprev = 0, 0, np.zeros((hidden, 1))

    def loss_fun(self, inputs: list[int], targets: list[int], hprev: np.ndarray):
        """lossFun: forward, backward and clipping for one window; returns the loss, gradients and last state."""
        Wxh, Whh, Why, bh, by = self.Wxh, self.Whh, self.Why, self.bh, self.by
        xs, hs, ys, ps = {}, {}, {}, {}
        hs[-1] = np.copy(hprev)
        loss = 0
        for t in range(len(inputs)):
            xs[t] = np.zeros((self.vocab_size, 1))  # encode in 1-of-k representation
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)  # hidden state
            ys[t] = np.dot(Why, hs[t]) + by  # unnormalized log probabilities for next chars
            ps[t] = np.exp(ys[t]) / np.sum(np.exp(ys[t]))  # probabilities for next chars
            loss += -np.log(ps[t][targets[t], 0])  # softmax (cross-entropy loss)
        dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
        dbh, dby = np.zeros_like(bh), np.zeros_like(by)
        dhnext = np.zeros_like(hs[0])
        for t in reversed(range(len(inputs))):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1  # backprop into y
            dWhy += np.dot(dy, hs[t].T)
            dby += dy
            dh = np.dot(Why.T, dy) + dhnext  # backprop into h
            dhraw = (1 - hs[t] * hs[t]) * dh  # backprop through tanh nonlinearity
            dbh += dhraw
            dWxh += np.dot(dhraw, xs[t].T)
            dWhh += np.dot(dhraw, hs[t - 1].T)
            dhnext = np.dot(Whh.T, dhraw)
        for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
            np.clip(dparam, -5, 5, out=dparam)  # clip to mitigate exploding gradients
        return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]

    def step(self) -> float:
        """One iteration of the main loop (without sampling and printing); returns the window's summed loss."""
        if self.p + self.seq_length + 1 >= len(self.data) or self.n == 0:
            self.hprev = np.zeros((self.hidden_size, 1))  # reset RNN memory
            self.p = 0  # go from start of data
        inputs = self.data[self.p : self.p + self.seq_length]
        targets = self.data[self.p + 1 : self.p + self.seq_length + 1]
        loss, dWxh, dWhh, dWhy, dbh, dby, self.hprev = self.loss_fun(inputs, targets, self.hprev)
        params = (self.Wxh, self.Whh, self.Why, self.bh, self.by)
        for param, dparam, mem in zip(params, (dWxh, dWhh, dWhy, dbh, dby), self.mem):
            mem += dparam * dparam
            param += -self.learning_rate * dparam / np.sqrt(mem + 1e-8)  # adagrad update
        self.p += self.seq_length  # move data pointer
        self.n += 1  # iteration counter
        return float(loss)

    def as_rnn(self) -> RNN:
        """The same weights as an rnngrad model (elman, tanh: h = tanh(W_hh h + W_xh x + b_h))."""
        return RNN("elman", "tanh", 0.01, {"W_hh_0": self.Whh.copy(), "W_xh_0": self.Wxh.copy(),
                                           "b_h_0": self.bh[:, 0].copy(), "W_hy": self.Why.copy(),
                                           "b_y": self.by[:, 0].copy()})


def loss_per_char(model: RNN, ids: np.ndarray, streams: int = EVAL_STREAMS) -> float:
    """Mean next-character loss (nats) over `ids`, read as `streams` parallel streams from h = 0."""
    part = (len(ids) - 1) // streams
    lanes = ids[: part * streams + 1]
    index = np.arange(streams)[None, :] * part + np.arange(part)[:, None]  # (part, streams)
    with np.errstate(all="ignore"):
        y = forward(model, lanes[index]).y
        return float(loss_and_dy(y, lanes[index + 1], np.ones(index.shape), "xent")[0])


class _TimeUp(Exception):
    """The wall-clock budget of a timed training is spent."""


def _train_rnngrad(model: RNN, ids: np.ndarray, batch: int, iters: int | None, seconds: float | None) -> int:
    """rnngrad's loop on consecutive windows (min-char-rnn's settings) for `iters` steps or `seconds` of wall
    time; returns the steps taken."""
    walk, mask = ConsecutiveWindows(ids, SEQ_LEN, batch), np.ones((SEQ_LEN, batch))
    steps = iters if iters is not None else 10**9
    deadline = None if seconds is None else time.perf_counter() + seconds
    done = 0

    def next_batch() -> tuple:
        nonlocal done
        if deadline is not None and time.perf_counter() >= deadline:
            raise _TimeUp
        done += 1
        inputs, targets, carry = walk.next()
        return inputs, targets, mask, carry

    settings = TrainSettings(steps, "xent", "elementwise", CLIP, norms_every=steps, reduction="sequence_sum")
    try:
        train(model, make_optimizer("adagrad", LR), next_batch, lambda m, state: (0.0, None), settings)
    except _TimeUp:  # the model was updated in place by every step taken
        pass
    return done


def nudged(port: MinCharRNN, seed: int) -> MinCharRNN:
    """The port with every initial weight changed in its last bits (relative ROUNDING_NUDGE)."""
    for name in ("Wxh", "Whh", "Why"):
        weights = getattr(port, name)
        weights *= 1.0 + ROUNDING_NUDGE * np.random.default_rng(seed + 1).standard_normal(weights.shape)
    return port


def relative_distance(a: RNN, b: RNN) -> float:
    """The largest relative Frobenius distance between two models' weight matrices (biases start at 0)."""
    return max(float(np.linalg.norm(a.params[k] - b.params[k]) / np.linalg.norm(b.params[k]))
               for k in ("W_xh_0", "W_hh_0", "W_hy"))


def lockstep(ids: np.ndarray, vocab_size: int, seed: int, steps: int = LOCKSTEP_STEPS) -> tuple[float, float]:
    """(rnngrad's distance from the port, the nudged port's distance from the port) after `steps` steps of
    each from the port's initial weights (rnngrad at batch 1)."""
    port = MinCharRNN(ids, vocab_size, np.random.default_rng(seed))
    twin = nudged(MinCharRNN(ids, vocab_size, np.random.default_rng(seed)), seed)
    ours = port.as_rnn()
    for _ in range(steps):
        port.step()
        twin.step()
    _train_rnngrad(ours, ids, 1, steps, None)
    reference = port.as_rnn()
    return relative_distance(ours, reference), relative_distance(twin.as_rnn(), reference)


def bench_minchar_fidelity(chars: int = 1_000_000, batch: int = 32, seed: int = 0,
                           blas_threads: int | None = 1, rounding_floor: bool = True) -> dict:
    """Validation loss (nats/char) of min-char-rnn's port after `chars` training characters, of rnngrad at batch 1
    after the same characters, and of rnngrad at `batch` streams after the port's wall-clock time; all from the
    port's initial weights on the default corpus. With `rounding_floor`, also the port against itself from initial
    weights changed in their last bits (fidelity_port_nudged_minus_port: the floor under
    fidelity_b1_minus_minchar, see the module's docstring) and the lockstep figures."""
    td = datasets.text_data_from_string(corpus.default_corpus(), corpus.SOURCE_NAME)
    V, iters = len(td.vocab), max(1, chars // SEQ_LEN)
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        port = MinCharRNN(td.ids_train, V, np.random.default_rng(seed))
        ours_b1, ours_batched = port.as_rnn(), port.as_rnn()
        start = time.perf_counter()
        for _ in range(iters):
            port.step()
        port_seconds = time.perf_counter() - start
        start = time.perf_counter()
        _train_rnngrad(ours_b1, td.ids_train, 1, iters, None)
        b1_seconds = time.perf_counter() - start
        floor, port_floor = {}, None
        if rounding_floor:
            twin = nudged(MinCharRNN(td.ids_train, V, np.random.default_rng(seed)), seed)
            for _ in range(iters):
                twin.step()
            ours_gap, twin_gap = lockstep(td.ids_train, V, seed)
            port_floor = loss_per_char(twin.as_rnn(), td.ids_val) - loss_per_char(port.as_rnn(), td.ids_val)
            floor = {"fidelity_port_nudged_minus_port": port_floor,
                     "fidelity_lockstep_steps": LOCKSTEP_STEPS,
                     "fidelity_lockstep_b1_from_port": ours_gap,
                     "fidelity_lockstep_nudged_port_from_port": twin_gap,
                     "fidelity_lockstep_ratio": ours_gap / twin_gap}
        batched_steps = _train_rnngrad(ours_batched, td.ids_train, batch, None, port_seconds)
    minchar = loss_per_char(port.as_rnn(), td.ids_val)
    b1, batched = loss_per_char(ours_b1, td.ids_val), loss_per_char(ours_batched, td.ids_val)
    return {
        "fidelity_chars": iters * SEQ_LEN,
        "fidelity_minchar_val_loss": minchar,
        "fidelity_b1_val_loss": b1,
        "fidelity_b1_minus_minchar": b1 - minchar,
        "fidelity_b1_within_tolerance": abs(b1 - minchar) <= TOLERANCE,
        "fidelity_minchar_seconds": port_seconds,
        "fidelity_b1_seconds": b1_seconds,
        "fidelity_batched_val_loss": batched,
        "fidelity_batched_minus_minchar": batched - minchar,
        "fidelity_batched_chars": batched_steps * batch * SEQ_LEN,
        "fidelity_batch": batch,
        "fidelity_chance_loss": float(np.log(V)),
        **floor,
        **({} if port_floor is None else {"fidelity_b1_within_port_floor": abs(b1 - minchar) <= abs(port_floor)}),
    }
