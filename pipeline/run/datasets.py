"""The `data/` folder both ways: what `rnngrad generate` makes, how it is written, and how runs load it.

Layout (docs/internals.md, "Data on disk"): `data/<task>_T<T>_N<count>_s<seed>.npz` per synthetic validation set,
`data/text_<sha12>.npz` + `data/text_<sha12>.vocab.json` per character corpus (several coexist, each named by its
content), `data/manifest.json` with hashes, baselines and, under `corpora`, the digest of every corpus by the name
the specs give it (a path or `default`). A run reads its corpus from its source and checks it against that record.
A synthetic file holds only validation sequences, `tasks.make_task(task, T, count, np.random.default_rng(seed))`,
so a missing file is rebuilt bit-identically in memory: training draws fresh sequences for every batch from the
run's own seeded stream (`sources.synthetic_source`), never from this generator.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import corpus
from ..engine import tasks, text
from ..errors import UserError
from .headers import HeaderError, npz_headers

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


def dataset_digest(ds: Dataset) -> str:
    """sha256 of a dataset's arrays (dtype, shape and bytes of each, in DATASET_KEYS order): its identity, the same
    whether it was read from data/ or built in memory, and different when the generator's output changes."""
    digest = hashlib.sha256()
    for key, a in dataset_arrays(ds).items():
        a = np.ascontiguousarray(a)
        digest.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


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
        headers = npz_headers(path)  # shapes and types before anything is decompressed
    except HeaderError as e:
        raise UserError(f"{path}: {e}; rerun `rnngrad generate`") from None
    missing = [key for key in DATASET_KEYS if key not in headers]
    if missing:
        raise UserError(f"{path}: has no {', '.join(missing)} (a data folder of an older rnngrad); "
                        "rerun `rnngrad generate`")
    x = headers["x"].shape
    if len(x) == 3 and x[:2] != (count, meta.steps):
        raise UserError(f"{path}: holds {x[0]} sequences of {x[1]} steps, expected {count} of {meta.steps}; "
                        "rerun `rnngrad generate`")
    _check_shapes(path, headers, dataset_shapes(meta, count))
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in DATASET_KEYS}
    except Exception as e:  # a truncated or foreign file: zipfile and format errors
        raise UserError(f"{path}: not a readable dataset ({type(e).__name__}); rerun `rnngrad generate`") from None
    for key, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise UserError(f"{path}: array {key} holds NaN or infinite values; rerun `rnngrad generate`")
    return Dataset(name, meta=meta, seed=seed, **arrays)


def dataset_shapes(meta: tasks.TaskMeta, count: int) -> dict[str, tuple[int, ...]]:
    """The shape of each array of a dataset file: x (N, S, d), y (N, S) class ids or (N, S, o), mask (N, S)."""
    y = (count, meta.steps) if meta.loss == "xent" else (count, meta.steps, meta.output_dim)
    return {"x": (count, meta.steps, meta.input_dim), "y": y, "mask": (count, meta.steps)}


def _check_shapes(path: Path, arrays: Mapping[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    """A file whose arrays (or their headers: anything with dtype and shape) have another shape or a type other
    than real numbers would fail inside every run that reads it."""
    for key, want in shapes.items():
        a = arrays[key]
        if tuple(a.shape) != want or a.dtype.names is not None or a.dtype.kind not in "fiub":
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
    sha256: str  # of the UTF-8 text: the corpus's identity


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
    if not content.strip():
        raise UserError(f"{where}: holds only whitespace; give a UTF-8 text file with some text in it")
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


def read_corpus(name: str, option: str = "text") -> tuple[str, str]:
    """(content, source) of the corpus a `text` value names: `default`, the embedded one, else a UTF-8 file
    (UserError naming `option` if it is missing, a folder, empty, binary or not UTF-8)."""
    if name == corpus.DEFAULT_CORPUS:
        return corpus.default_corpus(), corpus.SOURCE_NAME
    return read_text_file(Path(name), option), name


def text_file_stem(sha256: str) -> str:
    """The stem of a corpus's files in data/: named by content, so corpora of several specs coexist."""
    return f"text_{sha256[:12]}"


def recorded_corpora(data_dir: Path | str) -> dict[str, dict]:
    """data/manifest.json's `corpora`: {name (a path or `default`): {sha256, source, chars, ...}}; {} without it."""
    from .paths import read_manifest

    entries = read_manifest(Path(data_dir)).get("corpora", {})
    return entries if isinstance(entries, dict) else {}


def check_recorded(td: TextData, name: str, data_dir: Path | str, option: str = "text") -> None:
    """UserError if `rnngrad generate` recorded a different text under `name` in data/: the file changed during
    a study (or since data/ was made), and the runs of one study would read two versions of it."""
    entry = recorded_corpora(data_dir).get(name)
    if entry and entry.get("sha256") != td.sha256:
        raise UserError(f"{option} {name}: its content changed since `rnngrad generate` recorded it in "
                        f"{Path(data_dir) / 'manifest.json'} (sha256 {str(entry.get('sha256'))[:12]} then, "
                        f"{td.sha256[:12]} now); rerun `dvc repro` or `rnngrad generate` so every run reads one version")


def load_text(data_dir: Path | str, sha256: str) -> TextData:
    """The encoded copy of a corpus in data/ (`text_<sha12>.npz` and `.vocab.json`), by its digest."""
    stem, data_dir = text_file_stem(sha256), Path(data_dir)
    try:
        npz_headers(data_dir / f"{stem}.npz")
    except HeaderError as e:
        raise UserError(f"{data_dir / f'{stem}.npz'}: {e}; rerun `rnngrad generate`") from None
    with np.load(data_dir / f"{stem}.npz", allow_pickle=False) as f:
        ids_train, ids_val = f["ids_train"], f["ids_val"]
    vocab = json.loads((data_dir / f"{stem}.vocab.json").read_text(encoding="utf-8"))
    source = next((e.get("source", "") for e in recorded_corpora(data_dir).values() if e.get("sha256") == sha256), "")
    return TextData(ids_train, ids_val, vocab, source, sha256)


# ---------------------------------------------------------------------------------------- what to generate


@dataclass(frozen=True)
class DataRequest:
    """A dataset some cells of a spec train on (`spec.Spec.data` derives these from the cells)."""

    task: str  # a synthetic task or "text"
    T: int | None = None  # synthetic: the length parameter (the cells' seq_len)
    count: int | None = None  # synthetic: validation sequences (the cells' val_size)
    seed: int | None = None  # synthetic: the validation set's generator seed (the cells' data_seed)
    path: str | None = None  # text: the cells' corpus, a file path or `default` (corpus.DEFAULT_CORPUS)
    seq_len: int | None = None  # text: the longest training window, which both splits must hold
    where: str = ""  # the first cell that needs it ("<spec>: profiles.<profile>: cell <i> {...}"), for messages

    @property
    def name(self) -> str:
        """File stem in data/ (synthetic requests)."""
        return dataset_name(self.task, self.T, self.count, self.seed)
