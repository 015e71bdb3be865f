"""More hostile and careless input (test_hostile.py has the rest): addresses that accept and never answer or answer
garbage, temp folders a killed run leaves, empty paths, deeply nested files, a full disk, markup in names shown on
the terminal, encodings; and the whole list run against the CLI with nothing outside the project changed.

Every command given bad input exits 2 with one `Error:` line and no traceback; servers are threads on 127.0.0.1,
and a command that could hang runs under a watchdog that fails the test rather than wait for ever."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import cluster, tracking
from pipeline.errors import UserError
from test_hostile import TINY, cli_app, one_line_refusal  # noqa: F401 (cli_app is a fixture)
from test_sweep import env  # noqa: F401 (a fixture: a project with a fresh store and the mini spec)
from test_tracking import empty_db  # noqa: F401 (a fixture)

HANG_GUARD_SECONDS = 120  # far above any bound under test: reaching it means the command hung


def finishes(fn, *args):
    """fn(*args) on a thread; fails the test (instead of hanging it) if it has not returned after HANG_GUARD_SECONDS."""
    out: list = []
    worker = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    worker.start()
    worker.join(HANG_GUARD_SECONDS)
    assert not worker.is_alive(), f"{fn.__name__} still waiting after {HANG_GUARD_SECONDS} s: it hangs"
    return out[0]


# ---- 1. a --cluster address that accepts and then stalls or sends garbage ---------------------------------------

# A Dask handshake as a scheduler sends it on accepting a connection (distributed 2026.8: an 8-byte length, a frame
# count, the frame's length, then msgpack of {compression: None, python: (3, 12, 3), pickle-protocol: 5})
DASK_GREETING = (b":\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00*\x00\x00\x00\x00\x00\x00\x00"
                 b"\x83\xabcompression\xc0\xa6python\x93\x03\x0c\x03\xafpickle-protocol\x05")
ANSWERS = {
    "silent": b"",  # accepts, never writes
    "garbage": b"\xff" * 64,  # a length of 2**64 - 1
    "http": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "greets then stalls": DASK_GREETING,  # a Dask handshake, then nothing: the client waits for its reply
}


class Listener:
    """A TCP listener on 127.0.0.1 that sends `answer` to every connection and keeps it open until closed."""

    def __init__(self, answer: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer, self.conns = answer, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.answer:
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def listener(request):
    server = Listener(ANSWERS[request.param])
    yield server
    server.close()


@pytest.mark.parametrize("listener", list(ANSWERS), indirect=True)
def test_a_cluster_address_that_stalls_or_answers_garbage_is_one_line_not_a_hang(cli_app, env, monkeypatch,
                                                                                 listener):
    monkeypatch.chdir(env)
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    address = f"tcp://127.0.0.1:{listener.port}"
    result = finishes(CliRunner().invoke, cli_app, ["sweep", "mini.yaml", "--cluster", address])
    line = one_line_refusal(result)
    assert line.startswith(f"Error: --cluster {address}: not a Dask scheduler (")
    assert line.endswith(f"give {cluster.VALID}")
    assert not (env / "results").exists()


def test_the_greeting_check_accepts_a_real_scheduler():
    distributed = pytest.importorskip("distributed")

    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=":0") as local:
        assert finishes(cluster.check_reachable, local.scheduler_address).text == local.scheduler_address


def test_connect_bounds_the_client_after_a_valid_greeting():
    """The greeting passes the check; Dask's client then waits for a reply that never comes: the thread bounds it."""
    server = Listener(DASK_GREETING)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cluster, "CONNECT_SECONDS", 1)

            def opened():
                said = r"not a Dask scheduler \(it greeted as one, then did not let a client in within 1 s\)"
                with pytest.raises(UserError, match=said):
                    with cluster.connect(f"tcp://127.0.0.1:{server.port}"):
                        pass
                return True

            assert finishes(opened)
    finally:
        server.close()


# ---- 2. temp folders a killed run leaves ------------------------------------------------------------------------


def _wait_for(predicate, what: str):
    import time

    for _ in range(HANG_GUARD_SECONDS * 10):
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {HANG_GUARD_SECONDS} s")


def test_the_temp_folder_of_a_killed_train_run_is_removed_by_the_next_run_and_nothing_else(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "runs"
    long_run = [sys.executable, "-m", "pipeline", "train", *TINY[:-4], "--iters", "100000", "--val-size", "50",
                "--no-track", "--out", str(out)]
    proc = subprocess.Popen(long_run, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        [left] = _wait_for(lambda: [p for p in out.glob(".*.tmp") if (p / "config.json").exists()],
                           "temp run folder")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    others = {"notes.txt": "mine\n", ".keep.12345678.tmp/a": "another program's\n",
              f".{left.name.split('.')[1]}.zz.tmp/b": "not a temp folder's name\n", "abc/d": "x\n"}
    for name, text in others.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    before = sorted(p.relative_to(out) for p in out.rglob("*") if not p.is_relative_to(left))
    result = subprocess.run([sys.executable, "-m", "pipeline", "train", *TINY, "--no-track", "--out", str(out)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert result.returncode == 0, result.stderr
    assert f"removed 1 temp folder(s) that killed runs left in {out}" in result.stderr
    assert not left.exists()
    after = {p.relative_to(out) for p in out.rglob("*")}
    assert set(before) <= after  # the rest untouched, the new run folder added
    assert {p.name for p in out.glob(".*.tmp")} == {".keep.12345678.tmp", f".{left.name.split('.')[1]}.zz.tmp"}
    assert all((out / name).read_text(encoding="utf-8") == text for name, text in others.items())


def test_a_temp_folder_another_process_is_building_is_left_alone(tmp_path):
    """The lock, not the name, says a temp folder is stale: one held by a live builder (here this process) stays."""
    from pipeline.run import files

    live = files.temp_folder(tmp_path, "0123456789ab")
    (live / "config.json").write_text("{}\n", encoding="utf-8")
    stale = tmp_path / ".0123456789ab.0badcafe.tmp"  # as a killed builder leaves one: no lock
    (stale / "probe").mkdir(parents=True)
    assert files.remove_stale_temp_folders(tmp_path, r"[0-9a-f]{12}") == [stale]
    assert (live / "config.json").exists() and not stale.exists()
    files.move_into_place(live, tmp_path / "0123456789ab")
    assert files.remove_stale_temp_folders(tmp_path, r"[0-9a-f]{12}") == []
    assert (tmp_path / "0123456789ab" / "config.json").exists()


# ---- 3. an empty path for any path option of any command --------------------------------------------------------


def _path_parameters():
    """(command, parameter) for every parameter of every command typed Path, Optional[Path] or list[Path]."""
    import typing

    import typer.main

    from pipeline import cli

    if not cli.app.registered_commands:
        cli._register()
    group = typer.main.get_command(cli.app)
    found = []
    for name, command in group.commands.items():
        for param in command.params:
            annotation = param.type_descriptor.annotation
            if annotation is Path or Path in typing.get_args(annotation):
                found.append((name, param))
    return found


PATH_PARAMETERS = _path_parameters()


def test_the_path_parameters_found_include_the_ones_the_attack_emptied():
    found = {(name, p.opts[0] if p.param_type_name == "option" else p.name) for name, p in PATH_PARAMETERS}
    assert {("train", "--out"), ("sweep", "--results-dir"), ("sweep", "--data-dir"), ("analyze", "--out"),
            ("report", "--analysis-dir"), ("generate", "--text"), ("sweep", "spec"), ("plan", "specs"),
            ("plan", "--against")} <= found
    assert len(found) == 20  # train 4, sweep 4, generate 4, plan 3, analyze 3, report 2


@pytest.mark.parametrize("command,param", PATH_PARAMETERS,
                         ids=[f"{c} {p.opts[0] if p.param_type_name == 'option' else p.name}"
                              for c, p in PATH_PARAMETERS])
def test_an_empty_path_is_refused_in_one_line_and_nothing_is_written(cli_app, tmp_path, monkeypatch, command, param):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    if param.param_type_name == "option":
        args = [command, *(["x.yaml"] if command == "sweep" else []), param.opts[0], ""]
        named = param.opts[0]
    else:
        args = [command, ""]
        named = "SPEC"
    line = one_line_refusal(CliRunner().invoke(cli_app, args))
    assert f"{named} '': an empty path; give a" in line
    assert list(tmp_path.iterdir()) == []


# ---- 4. deep nesting, a manifest that is not an object, a full disk, markup, encodings -------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [500, 100_000])
@pytest.mark.parametrize("where", ["sweep spec", "plan spec", "train --config"])
def test_yaml_nested_hundreds_of_levels_deep_is_one_line(cli_app, tmp_path, monkeypatch, where, depth):
    monkeypatch.chdir(tmp_path)
    if where == "train --config":
        Path("deep.yaml").write_text(f"hidden: {_nested(depth)}\n", encoding="utf-8")
        args = ["train", "--config", "deep.yaml", "--no-track"]
    else:
        Path("deep.yaml").write_text(f"name: deep\nbase: {_nested(depth)}\n", encoding="utf-8")
        args = [where.split()[0], "deep.yaml"]
    line = one_line_refusal(CliRunner().invoke(cli_app, args))
    assert line.startswith("Error: deep.yaml: malformed YAML at line ")
    assert "(it nests more than 64 levels deep)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.yaml"]


MANIFESTS = {"[]": "an array, not the JSON object", '"x"': "a string, not the JSON object",
             "null": "null, not the JSON object", _nested(100_000): "nested too deep to read",
             '{"files": []}': "its 'files' is not an object of entries", '{"corpora": {"default": 3}}':
             "its 'corpora' is not an object of entries", "\xe9t\xe9": "not the JSON `rnngrad generate` writes"}


@pytest.mark.parametrize("command", ["sweep", "train", "plan"])
@pytest.mark.parametrize("manifest", list(MANIFESTS), ids=["[]", "string", "null", "nested", "files list",
                                                         "corpus number", "latin-1"])
def test_a_manifest_that_is_not_generates_object_is_one_line(cli_app, env, monkeypatch, command, manifest):
    monkeypatch.chdir(env)
    (env / "data").mkdir()
    (env / "data" / "manifest.json").write_bytes(manifest.encode("latin-1" if "\xe9" in manifest else "utf-8"))
    args = {"sweep": ["sweep", "mini.yaml"], "plan": ["plan", "mini.yaml"],
            "train": ["train", *TINY, "--no-track", "--out", "runs"]}[command]
    line = one_line_refusal(CliRunner().invoke(cli_app, args))
    assert line.startswith(f"Error: data/manifest.json: {MANIFESTS[manifest]}")
    assert line.endswith("rerun `rnngrad generate` to write it again")
    assert not (env / "results").exists() and not (env / "runs").exists()


def _text_io_without_encoding(root: Path) -> list[str]:
    """Calls of read_text, write_text or a text-mode open without an explicit encoding= in the package's code."""
    import ast

    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or "encoding" in {k.arg for k in node.keywords}:
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name in ("read_text", "write_text"):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {name}")
            elif name == "open" and not (isinstance(f, ast.Attribute) and getattr(f.value, "id", "") != "Path"
                                         and not isinstance(f.value, ast.BinOp)):
                modes = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
                modes += [k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
                if not any("b" in str(m) for m in modes):
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} open")
    return found


def test_every_text_file_the_package_reads_or_writes_names_its_encoding():
    import pipeline

    assert _text_io_without_encoding(Path(pipeline.__file__).parent) == []


def test_a_text_run_with_a_non_ascii_corpus_finishes_under_an_ascii_locale(tmp_path, empty_db):
    """samples.json holds the corpus's characters; read back with the locale's encoding (ASCII under LC_ALL=C with
    Python's UTF-8 mode and locale coercion off) it failed after training and left the run FAILED."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    shutil.copy(empty_db, tmp_path / "mlflow.db")
    (tmp_path / "corpus.txt").write_text("Größe, Maß und Übermut: éàç " * 40, encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONIOENCODING": "utf-8"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's mlflow.db
    check = subprocess.run([sys.executable, "-c", "import locale; print(locale.getpreferredencoding(False))"],
                           env=env, capture_output=True, text=True)
    assert check.stdout.strip().lower() in ("ascii", "ansi_x3.4-1968"), check.stdout
    result = subprocess.run([sys.executable, "-m", "pipeline", "train", "--task", "text", "--text", "corpus.txt",
                             "--hidden", "8", "--iters", "3", "--seq-len", "10", "--samples", "2", "--json",
                             "--out", "runs"], cwd=tmp_path, env=env, capture_output=True, timeout=HANG_GUARD_SECONDS)
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    report = json.loads(result.stdout.decode("utf-8").strip().splitlines()[-1])
    assert report["outcome"] != "failed" and report["run_id"]


def test_a_latin_1_corpus_is_refused_as_documented(cli_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("corpus.txt").write_bytes("Größe, Maß und Übermut ".encode("latin-1") * 40)
    line = one_line_refusal(CliRunner().invoke(cli_app, ["train", "--task", "text", "--text", "corpus.txt",
                                                         "--no-track", "--out", "runs"]))
    assert line == ("Error: --text corpus.txt: not UTF-8 text (invalid byte at offset 2); give a UTF-8 text file "
                    "(e.g. convert it with iconv -t UTF-8)")
    assert not Path("runs").exists()


MARKUP_CORPORA = ("corpora/notes[draft].txt", "corpora/[bold red]x[/]notes.txt", "corpora/a[/x]b.txt")


def test_markup_in_a_corpus_path_is_shown_literally_by_the_sweep(cli_app, tmp_path, monkeypatch, empty_db):
    """Rich read `[draft]` as a tag (dropped from the line), `[bold red]x[/]` as style, and `[/x]` as a closing tag
    with no opening one (MarkupError after the first cell, and on every rerun)."""
    import shutil

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    for i, name in enumerate(MARKUP_CORPORA):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(f"Corpus number {i}: some words to learn from, and more words. " * 40,
                              encoding="utf-8")
    Path("mk.yaml").write_text(
        "name: mk\ndescription: markup in corpus paths\nbase: {task: text, seq_len: 5, hidden: 4, iters: 2, "
        "batch: 2, probe_len: 4, samples: 1, sample_len: 5}\nprofiles:\n  quick:\n    grid: {text: ["
        + ", ".join(f'"{name}"' for name in MARKUP_CORPORA) + "]}\n", encoding="utf-8")
    result = CliRunner().invoke(cli_app, ["sweep", "mk.yaml", "--jobs", "1"])
    assert result.exit_code == 0, (result.output, result.exception)
    for name in MARKUP_CORPORA:
        assert f"text={name}: ok" in result.stdout


class _FullDisk:
    """A file whose writes fail as on a full disk, after the first `room` bytes."""

    def __init__(self, f, room: int) -> None:
        self._f, self._room = f, room

    def write(self, data) -> int:
        import errno
        import os

        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_a_full_disk_is_one_line_and_the_previous_outputs_stand(cli_app, tmp_path, monkeypatch):
    from pipeline.run import files

    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli_app, ["generate"]).exit_code == 0  # the text corpus only: no specs here
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real_new_file = files._new_file
    monkeypatch.setattr(files, "_new_file", lambda path: (lambda tmp, f: (tmp, _FullDisk(f, 4096)))(
        *real_new_file(path)))
    result = CliRunner().invoke(cli_app, ["generate", "--seq-len", "30"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error")]  # after generate's progress
    assert line.startswith("Error: No space left on device; outputs are replaced only when complete")
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing half-written, nothing left over, the previous data/ as it was
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


# ---- 5. the CLI against device nodes, FIFOs and links to /etc: nothing outside the project changes ---------------


@pytest.mark.slow
def test_the_cli_never_writes_outside_the_project_through_a_device_a_fifo_or_a_link(tmp_path):
    """Every case of tests/attack.py that points a command at /dev/null, /dev/zero, a FIFO or a link to /etc (as an
    input, --out, the store, a data or results folder, a spec) exits 2 with one line and no traceback, within the
    timeout; and /etc, both devices and the temp root around the projects are as they were (kinds, sizes, times)."""
    import attack

    root = tmp_path / "root"
    root.mkdir()
    watched = [Path("/etc"), Path("/dev/null"), Path("/dev/zero"), tmp_path]
    hostile = [case for case in attack.cases(root)
               if "/dev/" in " ".join(case[1]) + case[0] or case[0].startswith(("FIFO", "link"))]
    assert len(hostile) == 31  # plan --against: /dev/zero, a FIFO table, a link to /etc
    before = attack.snapshot(watched, root)
    outcomes = {name: attack.run_case(root, name, args, env, setup) for name, args, env, setup in hostile}
    assert attack.bytes_changed(before, attack.snapshot(watched, root)) == 0
    assert {name: outcome for name, outcome in outcomes.items() if outcome != "clean"} == {}


@pytest.mark.parametrize("option", ["--out", "--data-dir"])
def test_train_refuses_a_linked_folder_and_writes_nothing_where_it_points(cli_app, tmp_path, monkeypatch, option):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    Path("runs").symlink_to(elsewhere)
    line = one_line_refusal(CliRunner().invoke(cli_app, ["train", *TINY, "--no-track", option, "runs/train"]))
    assert line.startswith(f"Error: {option} runs/train: runs is a symbolic link (to {elsewhere}), which rnngrad "
                           "does not read or write through")
    assert list(elsewhere.iterdir()) == [] and sorted(p.name for p in project.iterdir()) == ["runs"]


def test_train_refuses_a_validation_set_too_large_before_building_it(cli_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_refusal(CliRunner().invoke(cli_app, ["train", "--task", "adding", "--val-size", "1000000",
                                                         "--seq-len", "100000", "--no-track"]))
    assert line.startswith("Error: this run: needs about ") and "GiB of memory, above --max-memory" in line
    assert list(tmp_path.iterdir()) == []
