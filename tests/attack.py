"""Hand-run: the hostile and careless inputs of the attack on rnngrad's CLI, each run as `python -m pipeline ...` in
a fresh project folder under a temp root, with a timeout. Prints, per case, whether it was refused cleanly (exit 2,
one `Error:` line on stderr, no traceback), then the count of clean refusals out of the cases tried, tracebacks,
hangs, and bytes written outside the project (a snapshot of /etc, /dev/null, /dev/zero and the temp root around
the project, before and after).

    python tests/attack.py            # about 3 minutes on 2 idle cores

tests/test_hostile_more.py runs the device, FIFO and link cases in process (test_the_cli_never_writes_outside_...).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

TIMEOUT = 120  # seconds: a case still running then is a hang
TINY = ["--task", "adding", "--seq-len", "10", "--hidden", "8", "--batch", "8", "--iters", "5", "--val-size", "50",
        "--probe-len", "8"]
SPEC = ("name: mini\ndescription: a tiny grid\nbase: {task: adding, seq_len: 6, hidden: 4, iters: 3}\n"
        "profiles:\n  quick:\n    grid: {gamma_w: [0.5], seed: [0]}\n")


def _listener(answer: bytes) -> int:
    """A TCP listener on 127.0.0.1 that sends `answer` (maybe nothing) to each connection and keeps it open."""
    server = socket.create_server(("127.0.0.1", 0))
    kept = []

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            kept.append(conn)
            if answer:
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def cases(project: Path) -> list[tuple[str, list[str], dict, callable]]:
    """(name, arguments, environment, setup) of every case; setup(project) prepares the folder."""

    def nothing(p: Path) -> None:
        pass

    def fifo(name: str):
        return lambda p: os.mkfifo(p / name)

    def link(name: str, target: str):
        return lambda p: (p / name).symlink_to(target)

    def text(name: str, content: str | bytes):
        def make(p: Path) -> None:
            (p / name).parent.mkdir(parents=True, exist_ok=True)
            (p / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return make

    def nested(depth: int) -> str:
        return "[" * depth + "]" * depth

    silent, garbage = _listener(b""), _listener(b"\xff" * 64)
    http = _listener(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    db = f"sqlite:///{project / 'mlflow.db'}"
    return [
        # device nodes as inputs and outputs
        ("train --config /dev/null", ["train", "--config", "/dev/null", *TINY], {}, nothing),
        ("train --config /dev/zero", ["train", "--config", "/dev/zero", *TINY], {}, nothing),
        ("train --out /dev/null", ["train", *TINY, "--out", "/dev/null"], {}, nothing),
        ("train --data-dir /dev/zero", ["train", *TINY, "--data-dir", "/dev/zero"], {}, nothing),
        ("train --text /dev/zero", ["train", "--task", "text", "--text", "/dev/zero"], {}, nothing),
        ("store sqlite:////dev/null", ["train", *TINY], {"MLFLOW_TRACKING_URI": "sqlite:////dev/null"}, nothing),
        ("sweep /dev/zero", ["sweep", "/dev/zero"], {}, nothing),
        ("sweep --results-dir /dev/null", ["sweep", "mini.yaml", "--results-dir", "/dev/null"], {}, nothing),
        ("plan --data-dir /dev/zero", ["plan", "mini.yaml", "--data-dir", "/dev/zero"], {}, nothing),
        ("plan --against /dev/zero", ["plan", "mini.yaml", "--against", "/dev/zero"], {}, nothing),
        ("generate --out /dev/null", ["generate", "--out", "/dev/null"], {}, nothing),
        ("generate --text /dev/zero", ["generate", "--text", "/dev/zero"], {}, nothing),
        ("analyze --out /dev/null", ["analyze", "--out", "/dev/null"], {}, nothing),
        ("report --analysis-dir /dev/zero", ["report", "--analysis-dir", "/dev/zero"], {}, nothing),
        # FIFOs
        ("FIFO as the spec", ["sweep", "f.yaml"], {}, fifo("f.yaml")),
        ("FIFO as --config", ["train", "--config", "f.yaml", *TINY], {}, fifo("f.yaml")),
        ("FIFO as --out", ["train", *TINY, "--out", "f"], {}, fifo("f")),
        ("FIFO as mlflow.db", ["train", *TINY], {"MLFLOW_TRACKING_URI": ""}, fifo("mlflow.db")),
        ("FIFO as data/manifest.json", ["sweep", "mini.yaml"], {},
         lambda p: ((p / "data").mkdir(), os.mkfifo(p / "data" / "manifest.json"))),
        ("FIFO as --text", ["train", "--task", "text", "--text", "f.txt"], {}, fifo("f.txt")),
        ("FIFO as a results table for plan --against", ["plan", "mini.yaml", "--against", "res"], {},
         lambda p: ((p / "res").mkdir(), os.mkfifo(p / "res" / "mini.parquet"))),
        # links to /etc
        ("link to /etc as --out", ["train", *TINY, "--out", "etc"], {}, link("etc", "/etc")),
        ("link to /etc as --results-dir", ["sweep", "mini.yaml", "--results-dir", "etc"], {}, link("etc", "/etc")),
        ("link to /etc as --data-dir", ["train", *TINY, "--data-dir", "etc"], {}, link("etc", "/etc")),
        ("link to /etc as the spec", ["sweep", "etc"], {}, link("etc", "/etc")),
        ("link to /etc/passwd as the spec", ["sweep", "p.yaml"], {}, link("p.yaml", "/etc/passwd")),
        ("link to /etc as analyze --out", ["analyze", "--out", "etc"], {}, link("etc", "/etc")),
        ("link to /etc as report --out", ["report", "--out", "etc"], {}, link("etc", "/etc")),
        ("link to /etc as generate --out", ["generate", "--out", "etc"], {}, link("etc", "/etc")),
        ("link to /etc as plan --against", ["plan", "mini.yaml", "--against", "etc"], {}, link("etc", "/etc")),
        ("link to /etc as the store", ["train", *TINY], {"MLFLOW_TRACKING_URI": ""}, link("mlflow.db", "/etc/hosts")),
        # files outside the project, escapes
        ("train --text /etc/shadow", ["train", "--task", "text", "--text", "/etc/shadow"], {}, nothing),
        ("spec named ..", ["sweep", "dots.yaml"], {}, text("dots.yaml", SPEC.replace("name: mini", "name: '..'"))),
        # empty paths
        ("train --out ''", ["train", *TINY, "--out", ""], {}, nothing),
        ("sweep --results-dir ''", ["sweep", "mini.yaml", "--results-dir", ""], {}, nothing),
        ("sweep --data-dir ''", ["sweep", "mini.yaml", "--data-dir", ""], {}, nothing),
        ("analyze --out ''", ["analyze", "--out", ""], {}, nothing),
        # addresses
        ("--cluster silent listener", ["sweep", "mini.yaml", "--cluster", f"tcp://127.0.0.1:{silent}"], {}, nothing),
        ("--cluster garbage", ["sweep", "mini.yaml", "--cluster", f"tcp://127.0.0.1:{garbage}"], {}, nothing),
        ("--cluster http server", ["sweep", "mini.yaml", "--cluster", f"tcp://127.0.0.1:{http}"], {}, nothing),
        ("tracking URI http://[::1", ["train", *TINY], {"MLFLOW_TRACKING_URI": "http://[::1"}, nothing),
        ("tracking URI ?mode=ro", ["train", *TINY], {"MLFLOW_TRACKING_URI": db + "?mode=ro"}, nothing),
        ("tracking URI :memory:", ["train", *TINY], {"MLFLOW_TRACKING_URI": "sqlite:///:memory:"}, nothing),
        ("tracking URI 300-char name", ["train", *TINY], {"MLFLOW_TRACKING_URI": f"sqlite:///{'x' * 300}.db"},
         nothing),
        # files that are not what they say
        ("spec nested 500 deep", ["sweep", "deep.yaml"], {}, text("deep.yaml", f"name: d\nbase: {nested(500)}\n")),
        ("--config nested 500 deep", ["train", "--config", "deep.yaml"], {},
         text("deep.yaml", f"hidden: {nested(500)}\n")),
        ("manifest.json []", ["sweep", "mini.yaml"], {}, text("data/manifest.json", "[]")),
        ("manifest.json a string", ["train", *TINY], {}, text("data/manifest.json", '"x"')),
        ("manifest.json nested 100000 deep", ["sweep", "mini.yaml"], {},
         text("data/manifest.json", nested(100_000))),
        ("latin-1 corpus", ["train", "--task", "text", "--text", "c.txt"], {},
         text("c.txt", "Größe und Maß ".encode("latin-1") * 100)),
        ("val set too large", ["train", "--val-size", "1000000", "--seq-len", "100000", "--task", "adding"], {},
         nothing),
        ("1-D data array", ["train", *TINY], {}, lambda p: _one_d_data(p)),
    ]


def _one_d_data(project: Path) -> None:
    import numpy as np

    (project / "data").mkdir()
    np.savez(project / "data" / "adding_T10_N50_s0.npz", x=np.zeros(5), y=np.zeros(5))


def snapshot(roots: list[Path], skip: Path) -> dict:
    """(mode, size, mtime, rdev) of every path under `roots` except `skip`'s subtree (links not followed)."""
    seen = {}
    for root in roots:
        if root.is_symlink() or not root.is_dir():
            s = os.lstat(root)
            seen[str(root)] = (s.st_mode, s.st_size, s.st_mtime_ns, s.st_rdev)
            continue
        for folder, dirs, names in os.walk(root):
            if Path(folder) == skip or skip in Path(folder).parents:
                dirs[:] = []
                continue
            for name in dirs + names:
                path = os.path.join(folder, name)
                if Path(path) == skip:
                    continue
                try:
                    s = os.lstat(path)
                except OSError:
                    continue
                size = s.st_size if not stat.S_ISDIR(s.st_mode) else 0
                seen[path] = (s.st_mode, size, s.st_mtime_ns, s.st_rdev)
    return seen


def bytes_changed(before: dict, after: dict) -> int:
    """Bytes in files added, removed or changed between two snapshots (at least 1 for any change)."""
    total = 0
    for path in set(before) | set(after):
        if before.get(path) != after.get(path):
            sizes = [v[1] for v in (before.get(path), after.get(path)) if v]
            total += max(max(sizes, default=0), 1)
    return total


def run_case(root: Path, name: str, args: list[str], env: dict, setup) -> str:
    """'clean', 'traceback', 'hang' or 'other' (a wrong exit code or not one line) for one case."""
    project = Path(tempfile.mkdtemp(dir=root, prefix="project-"))
    (project / "mini.yaml").write_text(SPEC, encoding="utf-8")
    setup(project)
    environ = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", **env}
    if not environ["MLFLOW_TRACKING_URI"]:
        environ.pop("MLFLOW_TRACKING_URI")
    try:
        result = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=project, env=environ,
                                capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "hang"
    if "Traceback" in result.stderr or "Traceback" in result.stdout:
        return "traceback"
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    if result.returncode == 2 and len(errors) == 1:
        return "clean"
    return f"other (exit {result.returncode}: {(errors or result.stderr.splitlines() or [''])[-1][:100]})"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="rnngrad-attack-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        watched = [Path("/etc"), Path("/dev/null"), Path("/dev/zero"), Path(tmp)]
        before = snapshot(watched, root)
        outcomes = {}
        for name, args, env, setup in cases(root):
            outcomes[name] = run_case(root, name, args, env, setup)
            print(f"{outcomes[name]:<10} {name}", flush=True)
        written = bytes_changed(before, snapshot(watched, root))
    counts = {kind: sum(o.startswith(kind) for o in outcomes.values()) for kind in ("clean", "traceback", "hang")}
    print(f"clean refusals: {counts['clean']} of {len(outcomes)} cases; tracebacks: {counts['traceback']}; "
          f"hangs: {counts['hang']}; bytes written outside the project folders: {written}")
    return 0 if counts["clean"] == len(outcomes) and not written else 1


if __name__ == "__main__":
    sys.exit(main())
