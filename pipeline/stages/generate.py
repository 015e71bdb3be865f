"""`rnngrad generate`: make data/ with exactly the validation sets the cells of the sweep specs use, and a text corpus.

The specs are read by `run.spec.load_spec`, the parser `rnngrad sweep` uses, so the data made is the data the
cells load.

Everything is validated before anything is written; the new folder is built next to the target and swapped in
only when every file is complete, so a failed or rejected run leaves an existing data/ untouched.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from .. import __version__
from ..run import datasets
from ..run import corpus, files
from ..run.config import as_mapping, read_yaml
from ..run.paths import check_output_folder, option_label
from ..run.spec import MAX_CELLS, check_max_cells, check_spec_reads, load_spec
from ..engine import tasks
from ..errors import UserError, did_you_mean

PROFILES = ("quick", "full")
MAX_DATASET_BYTES = 2 * 1024**3  # refuse a dataset whose arrays exceed 2 GiB in memory
# Where the specs of params.yaml keep their corpus files: dvc.yaml's generate stage depends on this folder, so an
# edited corpus reruns generate, then the sweeps, then exactly the runs that read it (their hashes hold its digest).
CORPORA_DIR = Path("corpora")


def _spec_paths(spec: list[Path] | None, params: Path = Path("params.yaml"),
                experiments: Path = Path("experiments")) -> list[Path]:
    """The --spec files; else the names of params.yaml's `specs:` list (the sweeps `dvc repro` runs), as
    experiments/<name>.yaml; else every experiments/*.yaml (sorted)."""
    if spec:
        return list(spec)
    names = _listed_specs(params, experiments)
    return sorted(experiments.glob("*.yaml")) if names is None else [experiments / f"{n}.yaml" for n in names]


def _listed_specs(params: Path, experiments: Path) -> list[str] | None:
    """params.yaml's `specs:` names, each with its experiments/<name>.yaml; None without the file or the key."""
    if not params.exists():
        return None
    raw = as_mapping(read_yaml(params, "params.yaml of DVC parameters"), str(params), "{profile: quick, specs: [...]}")
    if raw.get("specs") is None:
        return None
    names, where = raw["specs"], f"{params}: specs"
    if not isinstance(names, list) or not names:
        raise UserError(f"{where}: expected a non-empty list of spec names like [weight_norms, depth], got {names!r}")
    have = sorted(p.stem for p in experiments.glob("*.yaml"))
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise UserError(f"{where}[{i}]: {name!r} is not a spec name; give the stem of a file in {experiments}/, "
                            f"one of: {', '.join(have) or 'none (the folder has no specs)'}")
        if not (experiments / f"{name}.yaml").is_file():
            raise UserError(f"{where}[{i}]: no spec {experiments}/{name}.yaml{did_you_mean(name, have)}; "
                            f"add the file or give one of: {', '.join(have) or 'none (the folder has no specs)'}")
        if name in names[:i]:
            raise UserError(f"{where}[{i}]: {name!r} is listed twice; list each spec once")
    return names


def _requests(spec_paths: list[Path], profile: str, max_cells: int = MAX_CELLS) -> list[datasets.DataRequest]:
    """The datasets the cells of `profile` use, across the specs, each once, in first-seen order. Every spec
    is validated whole (all its profiles), as `rnngrad sweep` would."""
    requests: dict[tuple, datasets.DataRequest] = {}
    for path in spec_paths:
        for req in load_spec(path, profile, max_cells).data:
            requests.setdefault((req.task, req.T, req.count, req.seed, req.path, req.seq_len), req)
    return list(requests.values())


def _check_options(profile: str, seq_len: int | None, out: Path) -> None:
    """Reject option values before reading anything else."""
    check_output_folder(out, option_label("--out", out))  # a file in the way, read-only, a name too long
    if profile not in PROFILES:
        raise UserError(f"--profile {profile!r}: unknown profile; valid: {', '.join(PROFILES)}")
    if seq_len is not None and seq_len < 1:
        raise UserError(f"--seq-len {seq_len}: must be >= 1 (characters per training window)")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise UserError(f"--out {out}: is the working folder or one above it; give a subfolder such as data")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is a file; give a folder path such as data")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise UserError(f"--out {out}: a non-empty folder not made by rnngrad generate (no manifest.json) would be "
                        "replaced as a whole; give a new or former data folder")


def _check_sizes(requests: list[datasets.DataRequest]) -> None:
    """Refuse datasets too large to hold in memory."""
    for req in requests:
        meta = tasks.task_meta(req.task, req.T)
        nbytes = 8 * req.count * meta.steps * (meta.input_dim + (meta.output_dim if meta.loss == "mse" else 1) + 1)
        if nbytes > MAX_DATASET_BYTES:
            raise UserError(f"{req.where}: {req.name} needs {nbytes / 1024**3:.1f} GiB; "
                            f"lower seq_len or val_size to stay under {MAX_DATASET_BYTES / 1024**3:.0f} GiB")


@dataclass(frozen=True)
class CorpusChoice:
    """One corpus data/ records: named as the specs name it, read and validated."""

    name: str  # a path as the specs give it, or `default`
    content: str
    source: str  # the path, or corpus.SOURCE_NAME


def _choose_corpora(text: Path | None, requests: list[datasets.DataRequest], seq_len: int | None,
                    watched: Path | None, default: bool = True) -> list[CorpusChoice]:
    """Every corpus the specs' text cells name, plus --text, plus (`default`) the default one (`rnngrad train`'s),
    each read and checked to hold its longest window. `watched`: the folder DVC's stages depend on (the specs are
    params.yaml's); a spec's corpus file outside it is refused, since DVC would not see it change."""
    windows: dict[str, tuple[int, str]] = {}
    if default:
        windows[corpus.DEFAULT_CORPUS] = (datasets.DEFAULT_TEXT_WINDOW, "the default corpus")
    for r in requests:
        if r.task == datasets.TEXT_TASK:
            option = f"{r.where}: text"
            if watched is not None and r.path != corpus.DEFAULT_CORPUS:
                _check_watched(Path(r.path), watched, option)
            windows[r.path] = (max(r.seq_len, windows.get(r.path, (0, ""))[0]), option)
    if text is not None:
        windows[str(text)] = (max(datasets.DEFAULT_TEXT_WINDOW, windows.get(str(text), (0, ""))[0]), "--text")
    chosen = []
    for name, (window, option) in windows.items():
        content, source = datasets.read_corpus(name, option)
        where = option if name == corpus.DEFAULT_CORPUS else f"{option} {name}"
        datasets.check_text_length(content, seq_len or window, where)
        chosen.append(CorpusChoice(name, content, source))
    return chosen


def _watched_folder(spec: list[Path] | None, params: Path = Path("params.yaml"),
                    experiments: Path = Path("experiments")) -> Path | None:
    """corpora/ when every spec read is one that params.yaml's `specs:` names (DVC's generate stages make their
    data), else None: a spec outside that list may read its corpus from anywhere in the project."""
    listed = _listed_specs(params, experiments)
    if not listed:
        return None
    known = {(experiments / f"{name}.yaml").resolve() for name in listed}
    return CORPORA_DIR if not spec or all(p.resolve() in known for p in spec) else None


def _check_watched(path: Path, watched: Path, option: str) -> None:
    """A spec's corpus must lie in the folder DVC's generate stage depends on, or editing it would go unnoticed."""
    if not path.resolve().is_relative_to(watched.resolve()):
        raise UserError(f"{option} {path}: lies outside {watched}/, the folder dvc.yaml's stages depend on, so DVC "
                        f"would not see it change; move it into {watched}/ and name it {watched}/{path.name}")


def _file_entry(path: Path) -> dict:
    """{sha256, bytes} of a written file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def _write_json(path: Path, obj: object) -> None:
    """Stable JSON: sorted keys, two-space indent, trailing newline."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_dataset(req: datasets.DataRequest, folder: Path) -> dict:
    """Generate one synthetic validation set into folder; return its manifest entry."""
    ds = datasets.build_dataset(req.task, req.T, req.count, req.seed)
    files.save_npz(folder / f"{ds.name}.npz", datasets.dataset_arrays(ds))
    m = ds.meta
    return {"task": m.task, "T": m.T, "steps": m.steps, "count": req.count, "seed": req.seed, "loss": m.loss,
            "input_dim": m.input_dim, "output_dim": m.output_dim, "chance_loss": m.chance_loss,
            "chance_accuracy": m.chance_accuracy, "baselines": m.baselines, "tolerance": m.tolerance}


def _write_corpus(choice: CorpusChoice, folder: Path) -> dict:
    """text_<sha12>.npz and .vocab.json into folder; return the manifest's `corpora` entry."""
    td = datasets.text_data_from_string(choice.content, choice.source)
    stem = datasets.text_file_stem(td.sha256)
    files.save_npz(folder / f"{stem}.npz", {"ids_train": td.ids_train, "ids_val": td.ids_val})
    _write_json(folder / f"{stem}.vocab.json", td.vocab)
    entry = {"source": choice.source, "sha256": td.sha256, "file": f"{stem}.npz", "chars": len(choice.content),
             "vocab_size": len(td.vocab), "train_chars": len(td.ids_train), "val_chars": len(td.ids_val)}
    if choice.name == corpus.DEFAULT_CORPUS:
        entry["python_version"] = corpus.python_version()  # the default corpus is this Python's docstrings
    return entry


def _build_folder(folder: Path, requests: list, corpora: list[CorpusChoice], header: dict) -> None:
    """Write every file of data/ into folder, then the manifest with their hashes."""
    synthetic = [r for r in requests if r.task != datasets.TEXT_TASK]
    manifest = {**header, "datasets": {}, "corpora": {}, "files": {}}
    with typer.progressbar(synthetic + corpora, label="generating", file=sys.stderr) as jobs:
        for job in jobs:
            if isinstance(job, CorpusChoice):
                manifest["corpora"][job.name] = _write_corpus(job, folder)
            else:
                manifest["datasets"][job.name] = _write_dataset(job, folder)
    manifest["files"] = {p.name: _file_entry(p) for p in sorted(folder.iterdir())}
    _write_json(folder / "manifest.json", manifest)


def generate_cmd(
    spec: Annotated[list[Path] | None, typer.Option(
        "--spec", help="Sweep spec whose cells' datasets to make; repeat for several. Default: the specs named in "
        "params.yaml's specs: list (experiments/<name>.yaml), else every experiments/*.yaml (none: the text corpus "
        "only).")] = None,
    profile: Annotated[str, typer.Option(help="Whose cells' datasets to make: quick or full.")] = "quick",
    text: Annotated[Path | None, typer.Option(
        help="Also record this UTF-8 text file. Always recorded: every corpus the specs' text cells name (`text:`) "
        "and (see --default-corpus) the default one, the docstrings of this Python's standard library (about 0.8 MB)."
        )] = None,
    out: Annotated[Path, typer.Option(help="Output folder; replaced as a whole once every file is written.")]
    = Path("data"),
    seq_len: Annotated[int | None, typer.Option(
        help="Text window (characters) that the training and validation splits must each hold. "
        "Default: the specs' longest text seq_len, else 25.")] = None,
    max_cells: Annotated[int, typer.Option(help="Refuse a spec whose grid has more cells than this, as "
                                           "`rnngrad sweep --max-cells` does.")] = MAX_CELLS,
    data_root: Annotated[list[Path] | None, typer.Option(
        help="A folder outside the project whose files the specs may read; repeat for several (as for `rnngrad "
        "sweep`).")] = None,
    default_corpus: Annotated[bool, typer.Option(
        help="Also record the default corpus when no text cell names it. dvc.yaml's per-spec folders "
        "(data/<spec>/) leave it out: only a spec whose cells read it needs it.")] = True,
) -> None:
    """Generate data/: the synthetic validation sets of the specs' cells
    (<task>_T<seq_len>_N<val_size>_s<data_seed>.npz; training draws fresh batches), every corpus they name and
    the default one (text_<sha12>.npz, text_<sha12>.vocab.json) and manifest.json with every file's sha256, each
    corpus's digest by name, the seeds and the analytic baselines. dvc.yaml makes one such folder per spec,
    data/<spec>/, so adding or removing a spec leaves the other specs' data, and their sweeps, as they were.

    The same inputs give byte-identical files. Example: `rnngrad generate --profile quick` (a few seconds).
    """
    start = time.perf_counter()
    _check_options(profile, seq_len, out)
    check_max_cells(max_cells)
    spec_paths = _spec_paths(spec)
    requests = _requests(spec_paths, profile, max_cells)
    check_spec_reads(requests, data_root)  # before a spec's text file is read
    _check_sizes([r for r in requests if r.task != datasets.TEXT_TASK])
    corpora = _choose_corpora(text, requests, seq_len, _watched_folder(spec), default_corpus)
    if not spec_paths and default_corpus:
        typer.echo("no experiments/*.yaml and no --spec: writing the text corpus only", err=True)
    header = {"profile": profile, "specs": [str(p) for p in spec_paths],
              "generator": {"rnngrad": __version__, "numpy": np.__version__, "python": corpus.python_version()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    files.remove_stale_temp_folders(out.parent, re.escape(out.name))  # what a killed generate left
    tmp = files.temp_folder(out.parent, out.name)
    try:
        _build_folder(tmp, requests, corpora, header)
        files.move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = sum(r.task != datasets.TEXT_TASK for r in requests)
    texts = "".join(f"{', ' if i else ': '}{c.source} ({len(c.content)} chars)" for i, c in enumerate(corpora))
    typer.echo(f"wrote {out}/: {n} datasets + {len(corpora)} corpora{texts} in {time.perf_counter() - start:.1f} s")
