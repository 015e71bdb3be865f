"""pipeline.run.files: atomic writes of files and folders, strict JSON, reproducible .npz, model files; and the
public API `from pipeline import load_model, log_norm_matrix`."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from pipeline.engine.init import init_model
from pipeline.run import files


def test_write_atomic_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    files.write_atomic(path, "first é")
    files.write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    files.write_atomic(tmp_path / "sub" / "other.txt", "é")
    assert (tmp_path / "sub" / "other.txt").read_bytes() == "é".encode("utf-8")
    assert sorted(p.name for p in path.parent.iterdir()) == ["other.txt", "out.txt"]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_file(path) as f:
            f.write(b"half of the new")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_files_get_the_umasks_permissions(tmp_path):
    """Not mkstemp's 0600: run folders are shared with a group, model files included."""
    umask = os.umask(0o022)
    try:
        files.write_atomic(tmp_path / "a.txt", "x")
        files.save_model(init_model(np.random.default_rng(0), input_dim=2, output_dim=2, hidden=3)[0],
                         tmp_path / "model.npz")
    finally:
        os.umask(umask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {0o644}


def test_write_json_is_strict_and_returns_what_it_wrote(tmp_path):
    obj = {"nan": math.nan, "inf": -math.inf, "np": np.float64(1.5), "int": np.int64(3), "list": (1, "ü"), 2: None}
    written = files.write_json(tmp_path / "x.json", obj)
    assert written == {"nan": None, "inf": None, "np": 1.5, "int": 3, "list": [1, "ü"], "2": None}
    text = (tmp_path / "x.json").read_text(encoding="utf-8")
    assert json.loads(text) == written and text.endswith("}\n") and "ü" in text


def test_save_npz_is_reproducible(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    files.save_npz(tmp_path / "one.npz", arrays)
    files.save_npz(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with np.load(tmp_path / "one.npz") as z:
        assert z.files == ["a", "b"] and all(np.array_equal(z[k], v) for k, v in arrays.items())


def test_move_into_place_replaces_a_folder_only_when_asked(tmp_path):
    dest = tmp_path / "run"
    for content in ("first", "second"):
        tmp = files.temp_folder(tmp_path, "run")
        assert tmp.name.startswith(".run.") and tmp.name.endswith(".tmp")
        (tmp / "f.txt").write_text(content)
        files.move_into_place(tmp, dest)
        assert (dest / "f.txt").read_text() == content
        assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_move_into_place_puts_the_old_folder_back_when_the_new_cannot_go_in(tmp_path, monkeypatch):
    dest, tmp = tmp_path / "run", files.temp_folder(tmp_path, "run")
    dest.mkdir()
    (dest / "f.txt").write_text("old")
    real = os.replace

    def refuse_tmp(src, dst):
        if os.fspath(src) == os.fspath(tmp):
            raise PermissionError(13, "Permission denied")
        real(src, dst)

    monkeypatch.setattr(files.os, "replace", refuse_tmp)
    with pytest.raises(PermissionError):
        files.move_into_place(tmp, dest)
    assert (dest / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", tmp.name])  # no .old folder left


def test_the_public_api_recomputes_a_saved_models_jacobian_norms(tmp_path):
    """README, "The Python API": load a model file and recompute log ||dh_t/dh_k|| with the package's two names."""
    from pipeline import load_model, log_norm_matrix
    from pipeline.engine import jacobian

    rng = np.random.default_rng(0)
    model, _ = init_model(rng, input_dim=3, output_dim=2, layers=2, hidden=5, gamma_w=1.5, init="gaussian")
    files.save_model(model, tmp_path / "model_final.npz")
    xs, h0 = rng.standard_normal((7, 3)), rng.standard_normal((2, 5))  # (T, d), (L, n)
    M = log_norm_matrix(load_model(tmp_path / "model_final.npz"), xs, h0)
    assert M.shape == (8, 8) and np.isnan(M[np.triu_indices(8)]).all() and np.isfinite(M[np.tril_indices(8, -1)]).all()
    np.testing.assert_array_equal(M, jacobian.log_norm_matrix(model, xs, h0, layer=-1))


def test_importing_the_package_does_not_import_numpy():
    code = ("import sys, pipeline; assert 'numpy' not in sys.modules; pipeline.load_model; "
            "assert 'numpy' in sys.modules and 'pandas' not in sys.modules; print(sorted(pipeline.__all__))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["['load_model',", "'log_norm_matrix']"], done.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import pipeline

        pipeline.nope


def test_readme_api_example_prints_what_the_readme_says(tmp_path, monkeypatch, capsys):
    """The first code block of README's "The Python API" runs as written and prints the values the README quotes."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    quoted = re.search(r"prints `([^`]*)`", section).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == quoted
