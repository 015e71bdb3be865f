"""Character-level text: vocabulary, encoding, train/validation split, next-character windows, reading a text with
the state carried, and sampling characters from a model.

Pure numpy, no I/O; randomness only from the `np.random.Generator` argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import Model, forward, last_state
from .rnn import loss_and_dy, one_hot

VAL_FRACTION = 0.1  # the last 10 % of the characters are held out for validation
READ_CHUNK = 4096  # characters per forward call of `read_carried`: its trace stays a few MB however long the text


def build_vocab(text: str) -> list[str]:
    """The sorted unique characters of `text`; a character's index is its id."""
    if not text:
        raise ValueError("cannot build a vocabulary from empty text")
    return sorted(set(text))


def encode(text: str, vocab: list[str]) -> np.ndarray:
    """text -> (len(text),) int64 ids under `vocab`."""
    index = {ch: i for i, ch in enumerate(vocab)}
    missing = set(text) - index.keys()
    if missing:
        raise ValueError(f"characters not in the vocabulary: {sorted(missing)[:10]!r}")
    return np.fromiter((index[ch] for ch in text), dtype=np.int64, count=len(text))


def decode(ids: np.ndarray, vocab: list[str]) -> str:
    """(n,) int ids -> the string they encode."""
    return "".join(vocab[i] for i in np.asarray(ids, dtype=np.int64).tolist())


def split_sizes(n: int, val_fraction: float = VAL_FRACTION) -> tuple[int, int]:
    """(n_train, n_val) for n characters: the validation part is the last floor(val_fraction * n)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n_val = int(np.floor(val_fraction * n))
    return n - n_val, n_val


def split_train_val(ids: np.ndarray, val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(n,) ids -> (ids_train, ids_val): the first part and the last `val_fraction` of the sequence."""
    n_train, _ = split_sizes(len(ids), val_fraction)
    return ids[:n_train], ids[n_train:]


def min_text_length(seq_len: int, val_fraction: float = VAL_FRACTION) -> int:
    """Fewest characters for which both splits hold one window of `seq_len` inputs plus its next-character target."""
    need = seq_len + 1
    n = int(np.ceil(need / val_fraction)) if val_fraction > 0.0 else need

    def short(n: int) -> bool:
        n_train, n_val = split_sizes(n, val_fraction)
        return n_train < need or (val_fraction > 0.0 and n_val < need)

    while short(n):  # ceil/floor rounding can leave a split one character short
        n += 1
    return n


def sample_windows(ids: np.ndarray, seq_len: int, batch: int, rng: np.random.Generator,
                   vocab_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random windows for next-character prediction.

    ids (n,) int; returns xs (T, B, V) float64 one-hot of ids[s : s + T] and targets (T, B) int64 = ids[s+1 : s+T+1],
    with B start offsets s uniform on [0, n - T - 1]. Pass `vocab_size` (V) so that train and validation windows
    have the same width; by default V = max(ids) + 1.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if seq_len < 1 or batch < 1:
        raise ValueError(f"seq_len and batch must be >= 1, got {seq_len}, {batch}")
    if len(ids) < seq_len + 1:
        raise ValueError(f"{len(ids)} ids are too few for one window of {seq_len} plus a target")
    V = int(ids.max()) + 1 if vocab_size is None else int(vocab_size)
    starts = rng.integers(0, len(ids) - seq_len, size=batch)  # (B,)
    index = starts[None, :] + np.arange(seq_len)[:, None]  # (T, B)
    return one_hot(ids[index], V), ids[index + 1]


class ConsecutiveWindows:
    """min-char-rnn's walk through a text (Karpathy 2015), as `batch` parallel streams: the text is cut into `batch`
    equal parts, and every step takes the next `seq_len` characters of each part, so that a window starts where the
    previous one ended and the caller can carry each stream's hidden state across (truncated BPTT). When a window
    and its target would reach the end of a part (min-char-rnn: `p + seq_length + 1 >= len(data)`), every stream
    starts over at its part's beginning from h = 0. With batch 1 this is min-char-rnn's own sequence of windows."""

    def __init__(self, ids: np.ndarray, seq_len: int, batch: int) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if seq_len < 1 or batch < 1:
            raise ValueError(f"seq_len and batch must be >= 1, got {seq_len}, {batch}")
        part = len(ids) // batch  # characters per stream
        if part < seq_len + 2:
            raise ValueError(f"{len(ids)} ids cut into {batch} streams leave {part} per stream, fewer than one "
                             f"window of {seq_len} plus its target and min-char-rnn's spare character")
        self.seq_len, self.part = seq_len, part
        self.lanes = np.ascontiguousarray(ids[: part * batch].reshape(batch, part).T)  # (part, B): stream b is column b
        self.pos = 0

    def next(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(inputs (T, B) ids, targets (T, B) ids, carry): carry is False when the streams (re)start, where the
        hidden state must be zero, and True when each window continues its stream's previous one."""
        carry = self.pos > 0
        if self.pos + self.seq_len + 1 >= self.part:
            self.pos, carry = 0, False
        window = self.lanes[self.pos : self.pos + self.seq_len + 1]  # (T+1, B)
        self.pos += self.seq_len
        return window[:-1], window[1:], carry


@dataclass(frozen=True)
class CarriedRead:
    """A text read once with the state carried from each character to the next."""

    loss: float  # mean next-character cross-entropy (nats/char) over the len(ids) - 1 predictions
    accuracy: float  # share of those predictions whose argmax is the next character
    state: np.ndarray  # (L, 1, width): the state after the last input, ids[-2] (width n, an LSTM's 2n)


def read_carried(model: Model, ids: np.ndarray, chunk: int = READ_CHUNK, h0: np.ndarray | None = None) -> CarriedRead:
    """Score `ids` (n,) as one stream, as min-char-rnn walks its data without resetting: input ids[t] from the state
    left by ids[0..t-1], target ids[t + 1], for t = 0..n-2, starting from h0 (L, 1, width), zeros if None. The
    forward runs in chunks of `chunk` characters, each starting from the previous one's last state, which is the
    same recurrence."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2 or chunk < 1:
        raise ValueError(f"need at least 2 ids and chunk >= 1, got {len(ids)} ids and chunk {chunk}")
    h, loss_sum, correct = h0, 0.0, 0
    for start in range(0, len(ids) - 1, chunk):
        inputs = ids[start : min(start + chunk, len(ids) - 1)]  # (C,)
        targets = ids[start + 1 : start + 1 + len(inputs)]  # (C,)
        trace = forward(model, inputs[:, None], h)  # ids (C, 1): one stream
        h = last_state(trace)
        loss, _ = loss_and_dy(trace.y, targets[:, None], np.ones((len(inputs), 1)), "xent")
        loss_sum += loss * len(inputs)
        correct += int((trace.y[:, 0].argmax(axis=-1) == targets).sum())
    n = len(ids) - 1
    return CarriedRead(loss_sum / n, correct / n, h)


def sample_ids(model: Model, first_id: int, length: int, rng: np.random.Generator,
               h0: np.ndarray | None = None) -> list[int]:
    """Sample `length` ids from the model's softmax, feeding each back in, starting from `first_id` and the state
    h0 (L, 1, width), zeros if None. Stops early if the model's probabilities are not finite."""
    V, h, x, out = model.input_dim, h0, first_id, []
    for _ in range(length):
        trace = forward(model, one_hot(np.array([[x]]), V), h)  # a batch of one step of one sequence
        h = last_state(trace)  # (L, 1, n), an LSTM's (L, 1, 2n)
        z = trace.y[0, 0] - trace.y[0, 0].max()  # (V,)
        p = np.exp(z) / np.exp(z).sum()
        if not np.all(np.isfinite(p)):
            break
        x = int(rng.choice(V, p=p))
        out.append(x)
    return out
