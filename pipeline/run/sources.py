"""A task's data as one run sees it (`Source`): training minibatches, the fixed validation batch and its scoring,
the probe sequence, and the chance baselines; plus the data checks a command makes before it starts a run.

Synthetic tasks train on fresh sequences, drawn for every batch from the run's seeded batch stream, as Hochreiter &
Schmidhuber (1997) and Pascanu et al. (2013) trained: a fixed set of a few hundred sequences would be memorised
rather than solved. They validate on the fixed held-out set of data/, made by its own generator (`data_seed`),
which training never touches.

Arrays are time-major, as the engine takes them: xs (T, B, d), targets (T, B) int or (T, B, o), mask (T, B).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import datasets
from ..engine import evaluation, tasks
from ..engine.cells import Model
from ..engine.rnn import Workspace, one_hot
from ..engine.text import ConsecutiveWindows, sample_windows
from ..errors import UserError
from .config import RunConfig, config_hash
from .probe import ProbeInput

TEXT_VAL_WINDOWS = 128  # text validation: this many evenly spaced windows of the validation text
VAL_READS = {"random": "windows", "consecutive": "carried"}  # a text model's `windows` -> how it is validated


@dataclass(frozen=True)
class Source:
    """A task's data as the training loop sees it: time-major batches (T, B, ...)."""

    loss_kind: str  # "xent" | "mse"
    input_dim: int
    output_dim: int
    draw: Callable[[np.random.Generator], tuple]  # -> (xs (T,B,d) | ids (T,B), targets (T,B)|(T,B,o), mask (T,B)
    #   [, carry: the batch continues the previous one's streams, trainer.Batch])
    val: tuple  # a fixed validation batch, same layout
    probe: ProbeInput  # one validation sequence, h0 zeros
    chance_loss: float | None  # loss of a model that learned nothing (the task's baseline)
    chance_accuracy: float | None
    tolerance: float | None = None  # mse tasks: |error| below this counts as correct (adding)
    vocab: list[str] | None = None  # text only
    partial_loss: float | None = None  # loss of the best model carrying only part of what the task needs
    partial_accuracy: float | None = None
    sequence_tolerance: float | None = None  # adding: squared error below this makes a sequence right
    val_ids: np.ndarray | None = None  # text only: the held-out text (n_val,) ids, for the carried read
    val_read: str = "windows"  # how validation reads: "windows" (`val`, each from h = 0) or "carried" (`val_ids` once
    # with the state carried, run/textscore.py): a text model is scored as it was trained (VAL_READS)


def make_source(cfg: RunConfig, data_dir: Path) -> Source:
    """The source of `cfg.task`: `text_source` for text, else `synthetic_source`."""
    return text_source(cfg, data_dir) if cfg.task == "text" else synthetic_source(cfg, data_dir)


# ---- synthetic tasks ------------------------------------------------------------------------------------------


def _time_major(a: np.ndarray) -> np.ndarray:
    """(N, S, ...) -> (S, N, ...), contiguous for the per-step matmuls."""
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


def synthetic_source(cfg: RunConfig, data_dir: Path) -> Source:
    """Fresh training sequences for every batch (`tasks.make_task` on the run's batch stream); the whole held-out
    set of data/ validates; the probe is validation sequence 0."""
    ds = datasets.load_dataset(data_dir, cfg.task, cfg.seq_len, cfg.val_size, cfg.data_seed)
    meta = ds.meta

    def draw(rng: np.random.Generator) -> tuple:
        batch = tasks.make_task(cfg.task, cfg.seq_len, cfg.batch, rng)
        return _time_major(batch.x), _time_major(batch.y), _time_major(batch.mask)

    val = tuple(_time_major(a) for a in (ds.x, ds.y, ds.mask))
    steps = min(cfg.probe_len, ds.x.shape[1])
    mask = ds.mask[0, :steps].copy()  # (P,)
    if not mask.any():  # the loss sits beyond the truncated probe (or the task has none): measure from its end
        mask[-1] = 1.0
    probe = ProbeInput(ds.x[0, :steps], _zero_state(cfg), ds.y[0, :steps], mask, meta.loss)
    return Source(meta.loss, meta.input_dim, meta.output_dim, draw, val, probe, meta.chance_loss,
                  meta.chance_accuracy, meta.tolerance, partial_loss=meta.partial_loss,
                  partial_accuracy=meta.partial_accuracy, sequence_tolerance=meta.sequence_tolerance)


# ---- text -----------------------------------------------------------------------------------------------------


def load_text_data(cfg: RunConfig, data_dir: Path, option: str = "text") -> datasets.TextData:
    """The corpus `cfg.text` names, read from its source: the embedded default or the file, never "whatever data/
    holds". UserError (naming `option`) for a file that is missing, a folder, empty, binary or not UTF-8, and for a
    text other than the one `rnngrad generate` recorded under that name in data/ (it changed during the study)."""
    td = datasets.text_data_from_string(*datasets.read_corpus(cfg.text, option))
    datasets.check_recorded(td, cfg.text, data_dir, option)
    return td


def input_digests(cfg: RunConfig, data_dir: Path, cache: dict | None = None,
                  label: Callable[[str], str] = str) -> dict[str, str]:
    """{what: sha256} of every input the run reads, for its identity (`config.config_hash(cfg, inputs)`): a text
    run's corpus (its UTF-8 text), a synthetic run's validation set (its arrays; training batches are drawn from
    the seed). `cache` keeps them across the cells of a sweep; `label(field)` names a field in messages."""
    cache = {} if cache is None else cache
    if cfg.task == "text":
        key: tuple = ("text", cfg.text)
        if key not in cache:
            cache[key] = _corpus_inputs(load_text_data(cfg, Path(data_dir), label("text")))
    else:
        key = (cfg.task, cfg.seq_len, cfg.val_size, cfg.data_seed)
        if key not in cache:
            cache[key] = _dataset_inputs(datasets.load_dataset(data_dir, *key))
    return cache[key]


def _corpus_inputs(td: datasets.TextData) -> dict[str, str]:
    return {"corpus": td.sha256}


def _dataset_inputs(ds: datasets.Dataset) -> dict[str, str]:
    return {"dataset": datasets.dataset_digest(ds)}


def run_hash(cfg: RunConfig, data_dir: Path, cache: dict | None = None) -> str:
    """The run's identity: its config with the content digest of every input it reads."""
    return config_hash(cfg, input_digests(cfg, data_dir, cache))


def check_windows(td: datasets.TextData, seq_len: int, where: str = "seq_len") -> None:
    """Both splits of the text must hold one window of seq_len characters and its target."""
    for name, ids in (("training", td.ids_train), ("validation", td.ids_val)):
        if len(ids) < seq_len + 1:
            raise UserError(f"{where}: {seq_len} needs {seq_len + 1} characters, the {name} text has {len(ids)}; "
                            "give a smaller value or a longer text")


def check_streams(td: datasets.TextData, cfg: RunConfig, where: str = "batch") -> None:
    """Consecutive windows cut the training text into `batch` streams, each of which must hold one window, its
    target and min-char-rnn's spare character."""
    part = len(td.ids_train) // cfg.batch
    if cfg.windows == "consecutive" and part < cfg.seq_len + 2:
        raise UserError(f"{where}: {cfg.batch} streams of consecutive windows leave {part} training characters "
                        f"each, fewer than a window of {cfg.seq_len} + 2; give a smaller batch or seq_len")


def check_data(cfg: RunConfig, data_dir: Path, label: Callable[[str], str] = str,
               texts: dict | None = None) -> None:
    """UserError for data the run could not use, for a command to refuse before it opens a store or starts a run: a
    synthetic task's data/ file that does not read or has the wrong shapes, a text task's file (missing, a folder,
    empty, not UTF-8) or a seq_len longer than a split of its text. `label(field)` says where a field came from
    (e.g. "--seq-len"); `texts` keeps loaded texts (and checked datasets) across the cells of a sweep."""
    texts = {} if texts is None else texts
    if cfg.task != "text":  # the validation set in data/ (if there) must be readable and of the task's shapes
        key = (cfg.task, cfg.seq_len, cfg.val_size, cfg.data_seed)
        if key not in texts:
            path = Path(data_dir) / f"{datasets.dataset_name(*key)}.npz"
            if path.exists():
                datasets.load_dataset(data_dir, *key)
            texts[key] = True
        return
    if cfg.text not in texts:
        texts[cfg.text] = load_text_data(cfg, Path(data_dir), label("text"))
    check_windows(texts[cfg.text], cfg.seq_len, label("seq_len"))
    check_streams(texts[cfg.text], cfg, label("batch"))


def text_source(cfg: RunConfig, data_dir: Path) -> Source:
    """Training windows of the next-character task, random or consecutive (`cfg.windows`: min-char-rnn's walk with
    the state carried); validation as the model was trained: fixed, evenly spaced windows from h = 0, or the whole
    held-out text read once with the state carried (`val_read`)."""
    td = load_text_data(cfg, data_dir)
    V, T = len(td.vocab), cfg.seq_len
    check_windows(td, T)
    check_streams(td, cfg)
    draw = consecutive_draw(td, cfg) if cfg.windows == "consecutive" else random_draw(td, cfg)
    starts = np.unique(np.linspace(0, len(td.ids_val) - T - 1, TEXT_VAL_WINDOWS).astype(np.int64))  # (B,)
    index = starts[None, :] + np.arange(T)[:, None]  # (T, B)
    val = (one_hot(td.ids_val[index], V), td.ids_val[index + 1], np.ones(index.shape))
    steps = min(cfg.probe_len, len(td.ids_val) - 1)
    probe = ProbeInput(one_hot(td.ids_val[:steps], V), _zero_state(cfg), td.ids_val[1 : steps + 1],
                       np.ones(steps), "xent")
    chance_loss, chance_accuracy = unigram_chance(td.ids_train, V)
    partial_loss, partial_accuracy = bigram_partial(td.ids_train, V)
    return Source("xent", V, V, draw, val, probe, chance_loss, chance_accuracy, vocab=list(td.vocab),
                  val_ids=td.ids_val, val_read=VAL_READS[cfg.windows], partial_loss=partial_loss,
                  partial_accuracy=partial_accuracy)


def random_draw(td: datasets.TextData, cfg: RunConfig) -> Callable[[np.random.Generator], tuple]:
    """Batches of `cfg.batch` windows at uniform offsets of the training text, one-hot, each from h = 0."""
    mask = np.ones((cfg.seq_len, cfg.batch))

    def draw(rng: np.random.Generator) -> tuple:
        xs, targets = sample_windows(td.ids_train, cfg.seq_len, cfg.batch, rng, vocab_size=len(td.vocab))
        return xs, targets, mask

    return draw


def consecutive_draw(td: datasets.TextData, cfg: RunConfig) -> Callable[[np.random.Generator], tuple]:
    """min-char-rnn's walk in `cfg.batch` streams (`text.ConsecutiveWindows`): token ids, and whether each batch
    continues the previous one's streams, so the trainer carries their states. It needs no randomness."""
    walk, mask = ConsecutiveWindows(td.ids_train, cfg.seq_len, cfg.batch), np.ones((cfg.seq_len, cfg.batch))

    def draw(rng: np.random.Generator) -> tuple:
        inputs, targets, carry = walk.next()
        return inputs, targets, mask, carry

    return draw


def unigram_chance(ids: np.ndarray, vocab_size: int) -> tuple[float, float]:
    """(loss, accuracy) of the best model that ignores the past: predict the training characters' frequencies p.
    Its cross-entropy is their entropy -sum p ln p (nats), and its argmax, the most frequent character, is right
    with probability max p. (The uniform guess, ln V and 1/V, is a far lower bar: any LM beats it in a few steps.)"""
    counts = np.bincount(ids, minlength=vocab_size).astype(np.float64)  # (V,)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum()), float(p.max())


def bigram_partial(ids: np.ndarray, vocab_size: int) -> tuple[float, float]:
    """(loss, accuracy) of the best model that reads only the previous character: predict the training text's
    frequencies of each character after each character. Its cross-entropy is the conditional entropy
    H(next | previous) = -sum p(a, c) ln p(c | a) (nats), and its argmax is right with probability
    sum_a max_c p(a, c): the text's partial baseline, as the unigram entropy is its chance."""
    pairs = np.bincount(ids[:-1] * vocab_size + ids[1:], minlength=vocab_size * vocab_size).astype(np.float64)
    joint = pairs.reshape(vocab_size, vocab_size) / pairs.sum()  # (V, V): p(a, c)
    row = joint.sum(axis=1, keepdims=True)  # (V, 1): p(a)
    seen = joint > 0
    conditional = np.where(seen, joint / np.where(row > 0, row, 1.0), 1.0)
    return float(-(joint[seen] * np.log(conditional[seen])).sum()), float(joint.max(axis=1).sum())


def _zero_state(cfg: RunConfig) -> np.ndarray:
    """The probe's initial state: zeros (L, n), an LSTM's (L, 2n) (h and c)."""
    return np.zeros((cfg.layers, cfg.hidden * (2 if cfg.cell_type == "lstm" else 1)))


# ---- scoring --------------------------------------------------------------------------------------------------


def scores_positions(src: Source) -> bool:
    """Whether the task has a loss at all (the probe task's sequences only drive the Jacobian probes)."""
    return bool((np.asarray(src.val[2]) > 0).any())


def evaluate(model: Model, src: Source) -> tuple[float | None, float | None]:
    """(validation loss, task success rate) of `model` on the fixed validation batch; (None, None) for a task
    that scores no position (the probe task: its sequences only drive the Jacobian probes). The batch goes through
    the model in chunks (`engine.evaluation`): the numbers of one pass over all of it, in bounded memory."""
    xs, targets, mask = src.val
    if not scores_positions(src):
        return None, None  # not a loss of 0
    chunk = evaluation.validation_chunk(model, mask.shape[1], mask.shape[0])
    return evaluation.evaluate_in_chunks(model, xs, targets, mask, src.loss_kind, src.tolerance, chunk)


def sequences_right(model: Model, src: Source) -> float | None:
    """Share of the held-out sequences `model` answers right by the papers' bar (`tasks.sequences_right`); None for
    text (a stream, not sequences) and for a task that scores nothing."""
    xs, targets, mask = src.val
    if src.vocab is not None or not scores_positions(src):
        return None
    chunk = evaluation.validation_chunk(model, mask.shape[1], mask.shape[0])  # in bounded memory, as `evaluate`
    right = scored = 0
    workspace = Workspace()  # the chunks' readouts as the validation pass computes them, in reused buffers
    for start in range(0, mask.shape[1], chunk):
        part = slice(start, start + chunk)
        share = tasks.sequences_right(evaluation.readout(model, xs[:, part], workspace), targets[:, part],
                                      mask[:, part], src.loss_kind, src.sequence_tolerance)
        n = int((mask[:, part] > 0).any(axis=0).sum())
        if share is None and n:
            return None  # no criterion (an mse task without a threshold)
        right, scored = right + round((share or 0.0) * n), scored + n
    return right / scored if scored else None


def task_accuracy(y: np.ndarray, targets: np.ndarray, mask: np.ndarray, kind: str,
                  tolerance: float | None) -> float | None:
    """Share of masked positions answered correctly: argmax = class (xent), or every |error| < tolerance (mse).
    None when there is no criterion (an mse task without tolerance) or no masked position."""
    return evaluation.success_rate(evaluation.position_correct(y, targets, kind, tolerance), mask)
