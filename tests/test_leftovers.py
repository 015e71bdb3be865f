"""What killed commands leave, and the next command clearing it: the .old folder of a run killed between the two
renames of a folder swap (its result put back, never deleted), the temp files of single-file writes, and `train`
stopped by SIGTERM or Ctrl-C. Leftovers are planted as a killed process leaves them, beside look-alikes that are
not ours to touch (a live writer's, a link, a FIFO, another name), and one swap is cut by a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.run import files
from pipeline.run.leftovers import clear_killed_writes
from test_hostile import TINY, cli_app  # noqa: F401 (cli_app is a fixture)
from test_hostile_more import HANG_GUARD_SECONDS, _wait_for
from test_sweep import _sweep, env  # noqa: F401 (env is a fixture)
from test_tracking import empty_db  # noqa: F401 (a fixture)

H, OTHER_H = "0123456789ab", "ba9876543210"  # run folder names (a config_hash's form)


def tree(root: Path) -> dict[str, bytes | str]:
    """{relative path: bytes of a file, "dir", or "-> target" of a link} of everything under `root`."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            found[rel] = "dir"
        elif path.is_file():
            found[rel] = path.read_bytes()
        else:
            found[rel] = "special"
    return found


def run_folder(folder: Path, text: str) -> Path:
    (folder / "probe").mkdir(parents=True)
    (folder / "summary.json").write_text(f'{{"outcome": "ok", "note": "{text}"}}\n', encoding="utf-8")
    (folder / "probe" / "jacobian.parquet").write_bytes(text.encode() * 100)
    return folder


def held(folder: Path) -> int:
    """Make `folder` and hold an flock on it, as a live writer does; returns the fd that holds it."""
    import fcntl

    folder.mkdir(parents=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def train(cli, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["train", *TINY, "--no-track", "--out", str(out), *extra])


# ---- .old folders of a killed folder swap -------------------------------------------------------------------------


def test_a_killed_swaps_previous_run_folder_is_put_back_and_its_leftovers_removed_by_the_next_train(
        cli_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    # killed between the renames: the previous folder only in .old/, the new complete one still in its temp folder
    run_folder(out / f".{H}.k3_x9q0a.old" / H, "previous")  # named as tempfile.mkdtemp named .old folders
    run_folder(out / f".{H}.0badcafe.tmp", "new")
    # killed after the swap, while deleting the .old folder: the new folder in place, part of the old one aside
    run_folder(out / OTHER_H, "in place")
    (out / f".{OTHER_H}.5ca1ab1e.old" / OTHER_H / "probe").mkdir(parents=True)
    (out / f".{OTHER_H}.0ddba11a.old").mkdir()  # killed right after making the .old folder
    # look-alikes: a live swap's (locked by this process), a link to a folder elsewhere, a file, another program's
    elsewhere = run_folder(tmp_path / "elsewhere" / "abcdef012345", "not ours")
    live = out / ".fedcba987654.0ff1ce00.old"
    fd = held(live)
    run_folder(live / "fedcba987654", "a live swap's")
    (out / ".abcdef012345.feedf00d.old").symlink_to(elsewhere.parent, target_is_directory=True)
    (out / ".abcdef012345.cafef00d.old").write_text("a file\n", encoding="utf-8")
    run_folder(out / ".notes.0badf00d.old" / "notes", "another program's")
    previous = tree(out / f".{H}.k3_x9q0a.old" / H)
    in_place, outside = tree(out / OTHER_H), tree(tmp_path / "elsewhere")
    kept = {p: tree(out / p) for p in (live.name, ".notes.0badf00d.old")}
    try:
        result = train(cli_app, out)
        assert result.exit_code == 0, result.output
        assert f"put back {out / H}, which a run killed while replacing it had moved aside" in result.stderr
        assert f"removed 4 temp folder(s) that killed runs left in {out}" in result.stderr
        assert tree(out / H) == previous and tree(out / OTHER_H) == in_place
        assert tree(tmp_path / "elsewhere") == outside and not (out / "abcdef012345").exists()
        assert {p: tree(out / p) for p in kept} == kept
        assert (out / ".abcdef012345.feedf00d.old").is_symlink()
        assert (out / ".abcdef012345.cafef00d.old").read_text(encoding="utf-8") == "a file\n"
        assert not [p for p in out.iterdir() if p.name.startswith((f".{H}.", f".{OTHER_H}."))]
    finally:
        os.close(fd)


KILL_BETWEEN_THE_RENAMES = """
import os, signal, sys
from pipeline import cli

real_replace = os.replace

def replace(src, dst):
    real_replace(src, dst)
    if os.path.basename(os.path.dirname(dst)).endswith(".old"):  # the previous run folder is now aside
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
sys.argv = ["rnngrad", *sys.argv[1:]]
cli.main()
"""


def test_a_train_sigkilled_between_the_swaps_renames_loses_nothing(tmp_path):
    out = tmp_path / "runs"
    command = ["train", *TINY, "--no-track", "--out", str(out)]
    first = subprocess.run([sys.executable, "-m", "pipeline", *command], cwd=tmp_path, capture_output=True,
                           text=True, timeout=HANG_GUARD_SECONDS)
    assert first.returncode == 0, first.stderr
    [run_dir] = list(out.iterdir())
    previous = tree(run_dir)
    killed = subprocess.run([sys.executable, "-c", KILL_BETWEEN_THE_RENAMES, *command], cwd=tmp_path,
                            capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [aside] = list(out.glob(f".{run_dir.name}.*.old"))
    assert not run_dir.exists() and tree(aside / run_dir.name) == previous and list(out.glob(".*.tmp"))
    again = subprocess.run([sys.executable, "-m", "pipeline", *command[:-2], "--seed", "7", "--out", str(out)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert again.returncode == 0, again.stderr
    assert f"put back {run_dir}" in again.stderr
    assert tree(run_dir) == previous
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert len(list(out.iterdir())) == 2  # the put back folder and the seed-7 run


def test_a_live_or_foreign_old_folder_is_not_cleared(tmp_path):
    """The API under the command: only unlocked real folders of the names asked for."""
    live = tmp_path / f".{H}.0ff1ce00.old"
    fd = held(live)
    run_folder(live / H, "live")
    try:
        assert clear_killed_writes(tmp_path, r"[0-9a-f]{12}").removed == []
        assert tree(live / H)
    finally:
        os.close(fd)
    cleared = clear_killed_writes(tmp_path, r"[0-9a-f]{12}")
    assert cleared.restored == [tmp_path / H] and cleared.removed == [live]
    assert (tmp_path / H / "summary.json").is_file()


# ---- temp files of single-file writes -----------------------------------------------------------------------------


def plant_temp_files(folder: Path, name: str) -> tuple[list[Path], dict[str, bytes | str], int]:
    """Beside `name`: two unlocked temp files (killed writers'), and look-alikes that must stay: a locked one (a
    live writer's), a link to a file elsewhere, a FIFO, other names. Returns (stale, snapshot of the rest, the
    live one's fd)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    stale = [folder / f".{name}.0badcafe.tmp", folder / f".{name}.k3_x9q0a.tmp"]
    for path in stale:
        path.write_bytes(b"half of a file")
    live = folder / f".{name}.5ca1ab1e.tmp"
    live.write_bytes(b"being written")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    secret = folder.parent / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("not ours\n", encoding="utf-8")
    (folder / f".{name}.feedf00d.tmp").symlink_to(secret)
    os.mkfifo(folder / f".{name}.f1f0f1f0.tmp")
    for other in (f".other.{name}.0badcafe.tmp", f".{name}.0badcafe.tmp.keep", f"{name}.0badcafe.tmp",
                  f".{name}.0badcafe.old"):
        (folder / other).write_text("someone else's\n", encoding="utf-8")
    (folder / f".{name}.d1d1d1d1.tmp").mkdir()
    rest = {k: v for k, v in tree(folder).items() if k not in {p.name for p in stale}}
    return stale, rest, fd


def test_a_write_removes_the_temp_files_killed_writers_of_that_file_left_and_nothing_else(tmp_path):
    folder = tmp_path / "out"
    stale, rest, fd = plant_temp_files(folder, "summary.json")
    try:
        files.write_json(folder / "summary.json", {"a": 1})
        after = tree(folder)
        assert after.pop("summary.json") == b'{\n  "a": 1\n}\n'
        assert after == rest and not any(p.exists() for p in stale)
        assert (tmp_path / "elsewhere" / "secret.txt").read_text(encoding="utf-8") == "not ours\n"
    finally:
        os.close(fd)


def test_a_sweep_removes_the_temp_files_a_killed_sweep_left_beside_its_results_table(env):
    stale, rest, fd = plant_temp_files(env / "results", "mini.parquet")
    try:
        _sweep(env)
        after = tree(env / "results")
        assert after["mini.parquet"][:4] == b"PAR1"
        assert not any(p.exists() for p in stale)
        assert {k: v for k, v in after.items() if k in rest} == rest
        assert (env / "elsewhere" / "secret.txt").read_text(encoding="utf-8") == "not ours\n"
    finally:
        os.close(fd)


# ---- train stopped by SIGTERM or Ctrl-C ---------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_train_stopped_by_a_signal_mid_training_exits_clean_with_one_line(tmp_path, sig):
    out = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", *TINY, "--no-track", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert done.returncode == 0, done.stderr
    before = tree(out)
    long_run = [sys.executable, "-m", "pipeline", "train", *TINY[:-4], "--iters", "100000", "--val-size", "50",
                "--no-track", "--out", str(out)]
    proc = subprocess.Popen(long_run, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        [building] = _wait_for(lambda: [p for p in out.glob(".*.tmp") if (p / "config.json").exists()],
                               "temp run folder")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=HANG_GUARD_SECONDS)
    finally:
        proc.kill()
        proc.wait()
    name = signal.Signals(sig).name
    run_dir = out / building.name.split(".")[1]
    assert proc.returncode == 128 + sig, stderr
    assert stderr.strip().splitlines() == [f"stopped by {name}: the run did not finish; {run_dir} was not written "
                                           "(a previous run's folder there stands)"]
    assert stdout == ""
    assert tree(out) == before  # the temp folder gone, nothing half-written, the earlier run untouched
