"""The `data/` folder both ways: what `rnngrad generate` makes, how it is written, and how runs load it.

Layout (docs/internals.md, "Data on disk"): `data/<task>_T<T>_N<count>_s<seed>.npz` per synthetic validation set,
`data/text.npz` + `data/vocab.json` for the character corpus, `data/manifest.json` with hashes and baselines.
A synthetic file holds only validation sequences, `tasks.make_task(task, T, count, np.random.default_rng(seed))`,
so a missing file is rebuilt bit-identically in memory: training draws fresh sequences for every batch from the
run's own seeded stream (`sources.synthetic_source`), never from this generator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import corpus
from ..engine import tasks, text
from ..errors import UserError

TEXT_TASK = "text"
DEFAULT_TEXT_WINDOW = 25  # characters per training window when no spec or option says otherwise
DATASET_KEYS = ("x", "y", "mask")  # npz keys, in file order


# ------------------------------------------------------------------------------------------- synthetic data


@dataclass(frozen=True)
class Dataset:
    """One synthetic validation set (shapes as in `tasks`)."""

    name: str  # f"{task}_T{T}_N{count}_s{seed}"
    x: np.ndarray  # (N, S, d) float64
    y: np.ndarray  # (N, S) int64 or (N, S, o) float64
    mask: np.ndarray  # (N, S) float64
    meta: tasks.TaskMeta
    seed: int


def dataset_name(task: str, T: int, count: int, seed: int) -> str:
    """File stem of a synthetic dataset in data/."""
    return f"{task}_T{T}_N{count}_s{seed}"


def build_dataset(task: str, T: int, count: int, seed: int) -> Dataset:
    """Generate a validation set of `count` sequences in memory from `np.random.default_rng(seed)`."""
    data = tasks.make_task(task, T, count, np.random.default_rng(seed))
    return Dataset(dataset_name(task, T, count, seed), data.x, data.y, data.mask, data.meta, seed)


def dataset_arrays(ds: Dataset) -> dict[str, np.ndarray]:
    """The arrays of a dataset file, keyed and ordered by DATASET_KEYS."""
    return {key: getattr(ds, key) for key in DATASET_KEYS}


def load_dataset(data_dir: Path | str, task: str, T: int, count: int, seed: int) -> Dataset:
    """Read data/<task>_T<T>_N<count>_s<seed>.npz, or build the same arrays in memory when the file is absent."""
    if task not in tasks.TASKS:
        raise UserError(f"task {task!r}: unknown; valid: {', '.join(tasks.TASKS)}")
    name = dataset_name(task, T, count, seed)
    path = Path(data_dir) / f"{name}.npz"
    if not path.exists():
        return build_dataset(task, T, count, seed)
    meta = tasks.task_meta(task, T)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [key for key in DATASET_KEYS if key not in f.files]
            if missing:
                raise UserError(f"{path}: has no {', '.join(missing)} (a data folder of an older rnngrad); "
                                "rerun `rnngrad generate`")
            arrays = {key: f[key] for key in DATASET_KEYS}
    except UserError:
        raise
    except Exception as e:  # a truncated or foreign file: zipfile, format and pickle errors
        raise UserError(f"{path}: not a readable dataset ({type(e).__name__}); rerun `rnngrad generate`") from None
    if arrays["x"].shape[:2] != (count, meta.steps):
        raise UserError(f"{path}: holds {len(arrays['x'])} sequences of {arrays['x'].shape[1]} steps, expected "
                        f"{count} of {meta.steps}; rerun `rnngrad generate`")
    _check_shapes(path, arrays, dataset_shapes(meta, count))
    return Dataset(name, meta=meta, seed=seed, **arrays)


def dataset_shapes(meta: tasks.TaskMeta, count: int) -> dict[str, tuple[int, ...]]:
    """The shape of each array of a dataset file: x (N, S, d), y (N, S) class ids or (N, S, o), mask (N, S)."""
    y = (count, meta.steps) if meta.loss == "xent" else (count, meta.steps, meta.output_dim)
    return {"x": (count, meta.steps, meta.input_dim), "y": y, "mask": (count, meta.steps)}


def _check_shapes(path: Path, arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> None:
    """A file whose arrays have another shape or a non-numeric type would fail inside every run that reads it."""
    for key, want in shapes.items():
        a = arrays[key]
        if a.shape != want or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise UserError(f"{path}: array {key} is {a.dtype} {a.shape}, expected numbers of shape {want}; "
                            "rerun `rnngrad generate`")


# -------------------------------------------------------------------------------------------------- text


@dataclass(frozen=True)
class TextData:
    """A character corpus as ids, split into training and validation parts."""

    ids_train: np.ndarray  # (n_train,) int64
    ids_val: np.ndarray  # (n_val,) int64, the last 10 % of the text
    vocab: list[str]  # id -> character
    source: str  # file path as given, or corpus.SOURCE_NAME
    sha256: str  # of the UTF-8 text


def text_data_from_string(content: str, source: str) -> TextData:
    """Vocabulary, ids and split of a text."""
    vocab = text.build_vocab(content)
    ids_train, ids_val = text.split_train_val(text.encode(content, vocab))
    return TextData(ids_train, ids_val, vocab, source, corpus.corpus_sha256(content))


def read_text_file(path: Path, option: str = "--text") -> str:
    """Read a user's UTF-8 text file, raising UserError (naming `option` and the path) if it is not one."""
    where = f"{option} {path}"
    if not path.exists():
        raise UserError(f"{where}: no such file; give an existing UTF-8 text file")
    if not path.is_file():
        raise UserError(f"{where}: is a directory, not a file; give a UTF-8 text file")
    raw = path.read_bytes()
    if not raw:
        raise UserError(f"{where}: the file is empty; give a UTF-8 text file with some text in it")
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{where}: not UTF-8 text (invalid byte at offset {e.start}); "
                        "give a UTF-8 text file (e.g. convert it with iconv -t UTF-8)") from None
    if "\x00" in content or _control_share(content) > 0.01:
        raise UserError(f"{where}: looks binary (NUL or control characters); give a UTF-8 text file")
    return content


def _control_share(content: str) -> float:
    """Fraction of characters that are control characters other than whitespace."""
    controls = sum(1 for ch in content if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    return controls / max(len(content), 1)


def check_text_length(content: str, seq_len: int, where: str) -> None:
    """Both splits must hold one window of `seq_len` characters plus its target."""
    need = text.min_text_length(seq_len)
    if len(content) < need:
        raise UserError(f"{where}: {len(content)} characters is shorter than one window of {seq_len} "
                        f"(+1 target) in both the training and the last-10 % validation split; "
                        f"give at least {need} characters or a smaller --seq-len")


def load_text(data_dir: Path | str) -> TextData:
    """Read data/text.npz, data/vocab.json (and the source from data/manifest.json); without them, the default
    corpus in memory."""
    data_dir = Path(data_dir)
    if not (data_dir / "text.npz").exists():
        return text_data_from_string(corpus.default_corpus(), corpus.SOURCE_NAME)
    with np.load(data_dir / "text.npz", allow_pickle=False) as f:
        ids_train, ids_val = f["ids_train"], f["ids_val"]
    vocab = json.loads((data_dir / "vocab.json").read_text(encoding="utf-8"))
    manifest = data_dir / "manifest.json"
    info = json.loads(manifest.read_text(encoding="utf-8")).get("text", {}) if manifest.exists() else {}
    return TextData(ids_train, ids_val, vocab, info.get("source", "unknown"), info.get("sha256", ""))


# ---------------------------------------------------------------------------------------- what to generate


@dataclass(frozen=True)
class DataRequest:
    """A dataset some cells of a spec train on (`spec.Spec.data` derives these from the cells)."""

    task: str  # a synthetic task or "text"
    T: int | None = None  # synthetic: the length parameter (the cells' seq_len)
    count: int | None = None  # synthetic: validation sequences (the cells' val_size)
    seed: int | None = None  # synthetic: the validation set's generator seed (the cells' data_seed)
    path: str | None = None  # text: the cells' UTF-8 file (None: the default corpus)
    seq_len: int | None = None  # text: the longest training window, which both splits must hold
    where: str = ""  # the first cell that needs it ("<spec>: profiles.<profile>: cell <i> {...}"), for messages

    @property
    def name(self) -> str:
        """File stem in data/ (synthetic requests)."""
        return dataset_name(self.task, self.T, self.count, self.seed)
