"""`rnngrad generate` end to end through the CLI (the datasets the specs' cells need), and pipeline.run.datasets
(loading)."""

import hashlib
import json
import math
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import pipeline.cli
from pipeline.run import datasets, files
from pipeline.stages import generate
from pipeline.engine import text as textlib
from pipeline.errors import UserError

if not pipeline.cli.app.registered_commands:
    pipeline.cli._register()

SPEC = """\
name: small
description: two tiny datasets
base: {task: adding, seq_len: 12, val_size: 20, data_seed: 1}
profiles:
  quick:
    grid:
      - {seed: [0, 1]}
      - {task: [copy], seq_len: [3], val_size: [10], data_seed: [0]}
      - {task: [text], text: [default], seq_len: [25]}
  full:
    grid: {task: [temporal_order], seq_len: [40], val_size: [10], data_seed: [2]}
"""


def invoke(*args):
    return CliRunner().invoke(pipeline.cli.app, ["generate", *map(str, args)])


def snapshot(folder: Path) -> dict:
    """{name: (bytes, mtime_ns)} of every file in folder, plus the parent's listing (no stray temp dirs)."""
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}
    return {"files": files, "siblings": sorted(p.name for p in folder.parent.iterdir())}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder (the working directory) with experiments/small.yaml and a data/ from a first run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "small.yaml").write_text(SPEC)
    result = invoke()
    assert result.exit_code == 0, result.output
    return tmp_path


def test_generate_writes_contracted_files(project):
    data = project / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    names = {"adding_T12_N20_s1", "copy_T3_N10_s0"}  # the adding cells differ in seed only: one dataset
    assert set(manifest["datasets"]) == names
    stem = datasets.text_file_stem(manifest["corpora"]["default"]["sha256"])  # the spec's text cell: text: default
    assert set(manifest["files"]) == {f"{n}.npz" for n in names} | {f"{stem}.npz", f"{stem}.vocab.json"}
    for name, entry in manifest["files"].items():
        raw = (data / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    adding = manifest["datasets"]["adding_T12_N20_s1"]
    assert adding["baselines"]["mse_predict_half"] == pytest.approx(1 / 24)
    assert (adding["loss"], adding["input_dim"], adding["output_dim"], adding["seed"]) == ("mse", 2, 1, 1)
    assert (adding["chance_loss"], adding["chance_accuracy"]) == pytest.approx((1 / 24, 0.16 - 0.16**2 / 4))
    copy = manifest["datasets"]["copy_T3_N10_s0"]
    assert (copy["chance_loss"], copy["chance_accuracy"]) == pytest.approx((math.log(8), 1 / 8))
    assert list(manifest["corpora"]) == ["default"]
    assert manifest["corpora"]["default"]["source"] == "stdlib-docstrings"
    assert manifest["corpora"]["default"]["python_version"]
    with np.load(data / "adding_T12_N20_s1.npz") as f:  # validation sequences only: training draws fresh batches
        assert sorted(f.files) == ["mask", "x", "y"]
        assert f["x"].shape == (20, 12, 2) and f["y"].shape == (20, 12, 1) and f["mask"].shape == (20, 12)
    with np.load(data / "copy_T3_N10_s0.npz") as f:
        assert f["y"].dtype == np.int64 and f["x"].shape == (10, 23, 10)


def test_rerun_is_byte_identical(project, monkeypatch):
    before = snapshot(project / "data")["files"]
    later = time.time() + 3 * 86400  # three days on: zip entries must not carry the clock
    monkeypatch.setattr(time, "time", lambda: later)
    assert invoke().exit_code == 0
    after = snapshot(project / "data")["files"]
    assert {k: v[0] for k, v in before.items()} == {k: v[0] for k, v in after.items()}


def test_loading_from_disk_equals_building_in_memory(project, tmp_path):
    on_disk = datasets.load_dataset(project / "data", "adding", 12, 20, 1)
    in_memory = datasets.load_dataset(tmp_path / "nowhere", "adding", 12, 20, 1)
    for key in datasets.DATASET_KEYS:
        assert np.array_equal(getattr(on_disk, key), getattr(in_memory, key))
    assert on_disk.meta == in_memory.meta and on_disk.meta.loss == "mse"


def test_a_dataset_file_of_the_former_train_and_validation_layout_is_refused(tmp_path):
    """Files with x_train/x_val keys predate fresh training batches: the run says to regenerate, not a KeyError."""
    old = {k: np.zeros((1, 12, 2)) for k in ("x_train", "y_train", "mask_train", "x_val", "y_val", "mask_val")}
    np.savez(tmp_path / "adding_T12_N20_s1.npz", **old)
    with pytest.raises(UserError, match=r"adding_T12_N20_s1.npz: has no x, y, mask .*rerun `rnngrad generate`"):
        datasets.load_dataset(tmp_path, "adding", 12, 20, 1)


def test_profile_full_and_explicit_spec(project):
    assert invoke("--profile", "full", "--out", "data_full").exit_code == 0
    manifest = json.loads((project / "data_full" / "manifest.json").read_text())
    assert list(manifest["datasets"]) == ["temporal_order_T40_N10_s2"]


def test_no_default_corpus_records_only_the_corpora_the_cells_read(project):
    """dvc.yaml's per-spec folders: a spec without text cells gets no corpus; one whose cells read the default gets
    it all the same."""
    synthetic = project / "experiments" / "synthetic.yaml"
    synthetic.write_text(SPEC.replace("name: small", "name: synthetic")
                         .replace("      - {task: [text], text: [default], seq_len: [25]}\n", ""))
    assert "task: [text]" not in synthetic.read_text()
    said = {}
    for spec, out in (("synthetic", "data/synthetic"), ("small", "data/small")):
        result = invoke("--spec", f"experiments/{spec}.yaml", "--out", out, "--no-default-corpus")
        assert result.exit_code == 0, result.output
        said[spec] = result.stdout
    assert said["synthetic"].startswith("wrote data/synthetic/: 2 datasets + 0 corpora in ")
    assert said["small"].startswith("wrote data/small/: 2 datasets + 1 corpora: stdlib-docstrings (")
    bare = json.loads((project / "data" / "synthetic" / "manifest.json").read_text())
    assert bare["corpora"] == {} and not any(n.startswith("text_") for n in bare["files"])
    assert set(bare["datasets"]) == {"adding_T12_N20_s1", "copy_T3_N10_s0"}
    small = json.loads((project / "data" / "small" / "manifest.json").read_text())
    assert list(small["corpora"]) == ["default"]


def test_no_specs_writes_text_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke()
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    stem = datasets.text_file_stem(manifest["corpora"]["default"]["sha256"])  # the default corpus, `train`'s
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["manifest.json", f"{stem}.npz",
                                                                     f"{stem}.vocab.json"]


def real_text_file(folder: Path) -> Path:
    """A few hundred KB of real text a user might bring: Python's LICENSE and stdlib sources."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts = [p.read_text(encoding="utf-8") for p in [stdlib / "LICENSE.txt"] if p.exists()]
    for name in ("argparse.py", "textwrap.py", "difflib.py", "inspect.py", "typing.py", "statistics.py"):
        parts.append((stdlib / name).read_text(encoding="utf-8"))
    path = folder / "my corpus.txt"
    path.write_text("\n".join(parts), encoding="utf-8")
    assert path.stat().st_size > 300_000
    return path


def test_new_user_text_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = real_text_file(tmp_path)
    result = invoke("--text", path)
    assert result.exit_code == 0, result.output
    content = path.read_text(encoding="utf-8")
    sha = hashlib.sha256(content.encode()).hexdigest()
    entry = json.loads((tmp_path / "data" / "manifest.json").read_text())["corpora"][str(path)]
    assert entry["sha256"] == sha and entry["chars"] == len(content)
    vocab = json.loads((tmp_path / "data" / f"text_{sha[:12]}.vocab.json").read_text())
    assert vocab == sorted(set(content))
    td = datasets.load_text(tmp_path / "data", sha)
    assert td.vocab == vocab and td.source == str(path)
    assert len(td.ids_val) == len(content) // 10  # the last 10 %
    assert "".join(vocab[i] for i in np.concatenate([td.ids_train, td.ids_val])) == content
    xs, targets = textlib.sample_windows(td.ids_train, 25, 4, np.random.default_rng(0), len(vocab))
    chars = "".join(vocab[i] for i in xs[:, 0].argmax(-1)) + vocab[targets[-1, 0]]
    assert chars in content and "".join(vocab[i] for i in targets[:, 0]) == chars[1:]


# ------------------------------------------------------------------------------------------ bad input


def expect_rejected(project, args, *fragments):
    """Exit code 2, one line naming the problem, no traceback, and data/ byte- and mtime-identical."""
    before = snapshot(project / "data")
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message
    assert snapshot(project / "data") == before


def test_missing_text_file(project):
    expect_rejected(project, ["--text", "nope.txt"], "--text nope.txt", "no such file")


def test_text_is_a_directory(project):
    expect_rejected(project, ["--text", "experiments"], "is a directory")


def test_empty_text_file(project):
    (project / "empty.txt").write_text("")
    expect_rejected(project, ["--text", "empty.txt"], "empty.txt", "empty")


def test_non_utf8_text_file(project):
    (project / "latin1.txt").write_bytes("café crème brûlée ".encode("latin-1") * 100)
    expect_rejected(project, ["--text", "latin1.txt"], "not UTF-8", "offset 3")


def test_binary_text_file(project):
    (project / "blob.bin").write_bytes(bytes(range(0, 128)) * 50)  # valid UTF-8, but NULs and control codes
    expect_rejected(project, ["--text", "blob.bin"], "looks binary")


def test_text_shorter_than_a_window(project):
    (project / "short.txt").write_text("x" * 259)  # 10 % of 259 = 25 < 25 + 1
    expect_rejected(project, ["--text", "short.txt"], "259 characters", "at least 260", "--seq-len")
    assert invoke("--text", "short.txt", "--seq-len", "24", "--out", "ok").exit_code == 0  # 25 chars of val fit


@pytest.mark.parametrize("T", [0, -5])
def test_non_positive_length_in_spec(project, T):
    bad = project / "bad.yaml"
    bad.write_text(f"base: {{task: adding, seq_len: {T}, val_size: 8}}\nprofiles:\n  quick: {{}}\n")
    expect_rejected(project, ["--spec", bad], "bad.yaml", "base.seq_len", "out of range", "integer in [1, 100000]")


def test_unknown_task_in_spec(project):
    bad = project / "bad.yaml"
    bad.write_text("base: {task: addition, seq_len: 5, val_size: 8}\nprofiles:\n  quick: {}\n")
    expect_rejected(project, ["--spec", bad], "bad.yaml", "unknown value 'addition'", "did you mean 'adding'")


def test_dataset_too_large_for_memory(project):
    bad = project / "bad.yaml"
    bad.write_text("base: {task: adding, seq_len: 100000, val_size: 1000000}\nprofiles:\n  quick: {}\n")
    expect_rejected(project, ["--spec", bad], "bad.yaml: profiles.quick: cell 0 {}: adding_T100000_N1000000_s0 needs",
                    "GiB", "lower seq_len or val_size")


def test_missing_text_file_of_a_text_cell(project):
    bad = project / "bad.yaml"
    bad.write_text("base: {task: text, text: nope.txt}\nprofiles:\n  quick: {}\n")
    expect_rejected(project, ["--spec", bad], "bad.yaml: profiles.quick: cell 0 {}: text nope.txt: no such file")


def test_malformed_specs(project):
    cases = {"profiles: [unclosed\n": "malformed YAML at line 2",
             "seed: " + "1" * 5000 + "\n": "a value YAML cannot read",
             "- just\n- a list\n": "expected a mapping",
             "profiles:\n  full: {}\n": "no profile 'quick'",
             "profiles:\n  quick:\n    grid: {task: [copy], val_sise: [8]}\n": "did you mean 'val_size'",
             "profiles:\n  quick:\n    grid: {task: [copy], train_size: [8]}\n": "it is now val_size",
             "profiles:\n  quick:\n    data: [{task: copy, T: 5}]\n": "datasets now derive from the cells"}
    for i, (content, fragment) in enumerate(cases.items()):
        (project / f"bad{i}.yaml").write_text(content)
        expect_rejected(project, ["--spec", f"bad{i}.yaml"], f"bad{i}.yaml", fragment)
    expect_rejected(project, ["--spec", "missing.yaml"], "missing.yaml", "no such file")
    expect_rejected(project, ["--spec", "."], ".", "is a folder, not a file")


def test_bad_options(project):
    expect_rejected(project, ["--profile", "fast"], "--profile 'fast'", "quick, full")
    expect_rejected(project, ["--seq-len", "0"], "--seq-len 0")
    expect_rejected(project, ["--out", "experiments"], "--out experiments", "not made by rnngrad generate")
    expect_rejected(project, ["--out", "."], "working folder")


def test_failure_while_writing_leaves_data_untouched(project, monkeypatch):
    before = snapshot(project / "data")
    calls = []

    def fail_on_second(path, arrays):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(path, arrays)

    original = files.save_npz
    monkeypatch.setattr(files, "save_npz", fail_on_second)
    result = invoke()
    assert result.exit_code != 0 and isinstance(result.exception, OSError)
    assert snapshot(project / "data") == before


def test_requests_are_the_cells_data_across_specs_each_once(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(SPEC.replace("name: small", "name: a"))
    b.write_text("base: {task: text, text: default, seq_len: 50}\nprofiles:\n  quick:\n    grid:\n      - {seq_len: [10, 80]}\n"
                 "      - {task: [adding], seq_len: [12], val_size: [20], data_seed: [1, 7]}\n")
    reqs = generate._requests([a, b], "quick")
    assert [(r.task, r.T, r.count, r.seed) for r in reqs if r.task != "text"] == [
        ("adding", 12, 20, 1), ("copy", 3, 10, 0), ("adding", 12, 20, 7)]
    assert sorted(r.seq_len for r in reqs if r.task == "text") == [25, 80]  # a's text cell's window, b's longest
    with pytest.raises(UserError, match=r"a.yaml: profiles: no profile 'huge'"):
        generate._requests([a], "huge")


def test_text_window_is_the_longest_text_cell(project):
    spec = project / "c.yaml"
    spec.write_text("base: {task: adding, seq_len: 50, text: short.txt}\nprofiles:\n  quick:\n    grid:\n"
                    "      - {seq_len: [5000]}\n      - {task: [text], seq_len: [20, 90]}\n      - {task: [text]}\n")
    (project / "short.txt").write_text("x" * 500)  # 10 % of 500 = 50 holds 20 + 1, not 90 + 1 (adding 5000: no window)
    expect_rejected(project, ["--spec", spec], "c.yaml: profiles.quick: cell 1", "text short.txt: 500 characters",
                    "window of 90", "at least 910")
    assert invoke("--spec", spec, "--seq-len", "49", "--out", "ok").exit_code == 0


# ------------------------------------------------------------------------------ which specs: params.yaml


def test_params_specs_choose_the_specs(project):
    (project / "experiments" / "other.yaml").write_text(SPEC.replace("name: small", "name: other")
                                                       .replace("data_seed: 1}", "data_seed: 5}"))
    assert invoke("--out", "all").exit_code == 0  # no params.yaml: every experiments/*.yaml
    assert "adding_T12_N20_s5" in json.loads((project / "all" / "manifest.json").read_text())["datasets"]
    (project / "params.yaml").write_text("profile: quick\nspecs: [small]\njobs: 0\n")
    result = invoke("--out", "listed")
    assert result.exit_code == 0, result.output
    manifest = json.loads((project / "listed" / "manifest.json").read_text())
    assert set(manifest["datasets"]) == {"adding_T12_N20_s1", "copy_T3_N10_s0"}
    assert manifest["specs"] == [str(Path("experiments") / "small.yaml")]
    (project / "params.yaml").write_text("profile: quick\n")  # no specs key: every experiments/*.yaml again
    assert generate._spec_paths(None) == [Path("experiments/other.yaml"), Path("experiments/small.yaml")]
    assert generate._spec_paths([Path("x.yaml")]) == [Path("x.yaml")]  # --spec wins


@pytest.mark.parametrize("content, fragments", [
    ("specs: [smal]\n", ["params.yaml: specs[0]: no spec experiments/smal.yaml (did you mean 'small'?)", "small"]),
    ("specs: [small, small]\n", ["params.yaml: specs[1]: 'small' is listed twice"]),
    ("specs: small\n", ["params.yaml: specs: expected a non-empty list of spec names"]),
    ("specs: []\n", ["params.yaml: specs: expected a non-empty list"]),
    ("specs: [[small]]\n", ["params.yaml: specs[0]: ['small'] is not a spec name", "one of: small"]),
    ("- specs\n", ["params.yaml: expected a mapping"]),
    ("specs: [unclosed\n", ["params.yaml: malformed YAML"]),
])
def test_bad_params_specs(project, content, fragments):
    (project / "params.yaml").write_text(content)
    expect_rejected(project, [], *fragments)
