"""`rnngrad generate`: make data/ from the sweep specs' data sections and a text corpus.

Everything is validated before anything is written; the new folder is built next to the target and swapped in
only when every file is complete, so a failed or rejected run leaves an existing data/ untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from .. import __version__
from ..run import datasets
from ..run import corpus
from ..engine import tasks
from ..errors import UserError

PROFILES = ("quick", "full")
MAX_DATASET_BYTES = 2 * 1024**3  # refuse a dataset whose arrays exceed 2 GiB in memory


def _spec_paths(spec: list[Path] | None) -> list[Path]:
    """The --spec files, or every experiments/*.yaml (sorted) when none are given."""
    return list(spec) if spec else sorted(Path("experiments").glob("*.yaml"))


def _check_options(profile: str, seed: int, seq_len: int | None, out: Path) -> None:
    """Reject option values before reading anything else."""
    if profile not in PROFILES:
        raise UserError(f"--profile {profile!r}: unknown profile; valid: {', '.join(PROFILES)}")
    if seed < 0:
        raise UserError(f"--seed {seed}: must be >= 0")
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
            raise UserError(f"{req.spec}: {req.name} needs {nbytes / 1024**3:.1f} GiB; "
                            f"lower T or count to stay under {MAX_DATASET_BYTES / 1024**3:.0f} GiB")


def _choose_text(text: Path | None, requests: list[datasets.DataRequest], seq_len: int | None) -> tuple[str, str]:
    """(content, source) of the corpus, validated: --text, else a spec's text path, else the stdlib docstrings."""
    text_reqs = [r for r in requests if r.task == datasets.TEXT_TASK]
    window = seq_len or max([r.seq_len for r in text_reqs if r.seq_len] or [datasets.DEFAULT_TEXT_WINDOW])
    spec_paths = sorted({r.path for r in text_reqs if r.path})
    if text is None and len(spec_paths) > 1:
        raise UserError(f"specs ask for several text files ({', '.join(spec_paths)}); data/ holds one text: "
                        "make them agree or pass --text")
    if text is not None:
        content, source, where = datasets.read_text_file(text, "--text"), str(text), f"--text {text}"
    elif spec_paths:
        where = next(r.spec for r in text_reqs if r.path == spec_paths[0]) + f".path {spec_paths[0]}"
        content, source = datasets.read_text_file(Path(spec_paths[0]), where), spec_paths[0]
    else:
        content, source, where = corpus.default_corpus(), corpus.SOURCE_NAME, "the default corpus"
    datasets.check_text_length(content, window, where)
    return content, source


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
    """Generate one synthetic dataset into folder; return its manifest entry."""
    ds = datasets.build_dataset(req.task, req.T, req.count, req.seed)
    datasets.save_npz(folder / f"{ds.name}.npz", datasets.dataset_arrays(ds))
    m = ds.meta
    return {"task": m.task, "T": m.T, "steps": m.steps, "count": req.count, "train": len(ds.x_train),
            "val": len(ds.x_val), "seed": req.seed, "loss": m.loss, "input_dim": m.input_dim,
            "output_dim": m.output_dim, "baselines": m.baselines, "tolerance": m.tolerance}


def _write_text(content: str, source: str, folder: Path) -> dict:
    """text.npz and vocab.json into folder; return the manifest's text entry."""
    td = datasets.text_data_from_string(content, source)
    datasets.save_npz(folder / "text.npz", {"ids_train": td.ids_train, "ids_val": td.ids_val})
    _write_json(folder / "vocab.json", td.vocab)
    return {"source": source, "sha256": td.sha256, "python_version": corpus.python_version(), "chars": len(content),
            "vocab_size": len(td.vocab), "train_chars": len(td.ids_train), "val_chars": len(td.ids_val)}


def _build_folder(folder: Path, requests: list, content: str, source: str, header: dict) -> None:
    """Write every file of data/ into folder, then the manifest with their hashes."""
    synthetic = [r for r in requests if r.task != datasets.TEXT_TASK]
    manifest = {**header, "datasets": {}, "files": {}}
    with typer.progressbar(synthetic + ["text"], label="generating", file=sys.stderr) as jobs:
        for job in jobs:
            if job == "text":
                manifest["text"] = _write_text(content, source, folder)
            else:
                manifest["datasets"][job.name] = _write_dataset(job, folder)
    manifest["files"] = {p.name: _file_entry(p) for p in sorted(folder.iterdir())}
    _write_json(folder / "manifest.json", manifest)


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Replace out by tmp: rename the old folder aside, rename tmp in, then delete the old one."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old / out.name, out)  # put the previous data/ back
        raise
    shutil.rmtree(old)


def generate_cmd(
    spec: Annotated[list[Path] | None, typer.Option(
        "--spec", help="Sweep spec whose profiles.<profile>.data lists the datasets to make; repeat for several. "
        "Default: every experiments/*.yaml (none: the text corpus only).")] = None,
    profile: Annotated[str, typer.Option(help="Which profile's data list to make: quick or full.")] = "quick",
    text: Annotated[Path | None, typer.Option(
        help="A UTF-8 text file for the character-level task. Default: a spec's {task: text, path: ...}, "
        "else the docstrings of this Python's standard library (about 0.8 MB).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder; replaced as a whole once every file is written.")]
    = Path("data"),
    seed: Annotated[int, typer.Option(help="Seed for data entries that give none.")] = 0,
    seq_len: Annotated[int | None, typer.Option(
        help="Text window (characters) that the training and validation splits must each hold. "
        "Default: the specs' longest text seq_len, else 25.")] = None,
) -> None:
    """Generate data/: synthetic sequences (adding, temporal_order, copy, probe), the character corpus
    (text.npz, vocab.json) and manifest.json with every file's sha256, the seeds and the analytic baselines.

    The same inputs give byte-identical files. Example: `rnngrad generate --profile quick` (a few seconds).
    """
    start = time.perf_counter()
    _check_options(profile, seed, seq_len, out)
    spec_paths = _spec_paths(spec)
    requests = datasets.data_requests_from_specs(spec_paths, profile, seed)
    _check_sizes([r for r in requests if r.task != datasets.TEXT_TASK])
    content, source = _choose_text(text, requests, seq_len)
    if not spec_paths:
        typer.echo("no experiments/*.yaml and no --spec: writing the text corpus only", err=True)
    header = {"profile": profile, "specs": [str(p) for p in spec_paths],
              "generator": {"rnngrad": __version__, "numpy": np.__version__, "python": corpus.python_version()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; data/ is an ordinary folder
    try:
        _build_folder(tmp, requests, content, source, header)
        _swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = sum(r.task != datasets.TEXT_TASK for r in requests)
    typer.echo(f"wrote {out}/: {n} datasets + text ({len(content)} chars from {source}) "
               f"in {time.perf_counter() - start:.1f} s")
