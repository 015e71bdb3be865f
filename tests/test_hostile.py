"""Hostile and careless input changes nothing outside the folders given: device nodes, FIFOs and links are never
written through, the report shows data escaped, commands read files only from the project (or a --data-root),
sizes are read from headers before anything is loaded, network waits are bounded, sets of outputs are checked
whole, bad data and models are refused at the boundary, and every refusal is one line with exit code 2.

Device nodes and FIFOs are made in temp folders (the tests run as root where mknod is allowed; they skip
otherwise): no test points the store at a real /dev node."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import tracking
from pipeline.errors import UserError

TINY = ["--task", "adding", "--seq-len", "10", "--hidden", "8", "--batch", "8", "--iters", "5", "--val-size", "50",
        "--probe-len", "8"]


@pytest.fixture(scope="module")
def cli_app():
    from pipeline import cli

    if not cli.app.registered_commands:
        cli._register()
    return cli.app


def one_line_refusal(result) -> str:
    """The refusal's one line; fails unless the command exited 2 with exactly one `Error:` line on stderr."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def make_device(path: Path) -> os.stat_result:
    """A character device node at `path` (the same device as /dev/null); skips where mknod is not allowed."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    return os.lstat(path)


def unchanged(path: Path, before: os.stat_result) -> bool:
    after = os.lstat(path)
    return (after.st_mode, after.st_ino, after.st_rdev, after.st_size) == \
        (before.st_mode, before.st_ino, before.st_rdev, before.st_size)


# ---- 1. the store never replaces a device node, FIFO or link ---------------------------------------------------


@pytest.mark.parametrize("kind", ["device", "fifo", "link to a file outside", "socket"])
def test_the_store_refuses_a_device_fifo_socket_or_link_and_leaves_it_as_it_was(tmp_path, monkeypatch, kind):
    import socket

    db = tmp_path / "x"
    outside = tmp_path / "outside.txt"
    if kind == "device":
        make_device(db)
    elif kind == "fifo":
        os.mkfifo(db)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(db))
    else:
        outside.write_text("someone else's file\n", encoding="utf-8")
        db.symlink_to(outside)
    before = os.lstat(db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    with pytest.raises(UserError, match="not a regular file"):
        tracking.open_store(tmp_path)
    assert unchanged(db, before)
    assert [p.name for p in tmp_path.iterdir() if p.name != "outside.txt"] == ["x"]  # no temp store left either
    if kind.startswith("link"):
        assert outside.read_text(encoding="utf-8") == "someone else's file\n"


def test_a_fifo_named_mlflow_db_in_the_project_is_refused_not_replaced(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    os.mkfifo(tmp_path / "mlflow.db")
    with pytest.raises(UserError, match="mlflow.db: is a FIFO, not a regular file"):
        tracking.open_store(tmp_path)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "mlflow.db").st_mode)


def test_a_link_beside_the_database_where_sqlite_keeps_its_log_is_refused(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    (tmp_path / "mlflow.db-wal").symlink_to(target)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UserError, match="mlflow.db-wal: is a symbolic link"):
        tracking.open_store(tmp_path)
    assert target.read_bytes() == b""


def test_dev_null_is_refused_as_a_store_by_looking_at_it_only():
    from pipeline.tracking.uri import check_store_file, parse_tracking_uri

    parsed = parse_tracking_uri("sqlite:////dev/null", Path.cwd())
    with pytest.raises(UserError, match="/dev/null: is a character device, not a regular file"):
        check_store_file(parsed.path)


def test_train_with_the_store_on_a_device_node_exits_2_and_the_node_stays(cli_app, tmp_path, monkeypatch):
    device = tmp_path / "x"
    before = make_device(device)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{device}")
    line = one_line_refusal(CliRunner().invoke(cli_app, ["train", *TINY]))
    assert "is a character device, not a regular file" in line
    assert unchanged(device, before)
    assert not (tmp_path / "runs").exists()  # refused before the run


# ---- the tracking URI: one strict parser --------------------------------------------------------------------


@pytest.mark.parametrize("uri, says", [
    ("sqlite:///x.db?mode=ro", "a query or fragment"),
    ("sqlite:///:memory:", "does not name a database file"),
    ("sqlite:///", "does not name a database file"),
    ("sqlite://relative.db", "sqlite:/// followed by the file's path"),
    ("http://[::1", "not a URL"),
    ("http://127.0.0.1:99999", "not a URL"),
    ("http://", "no host name"),
    ("http://exa mple.org", "no host name, or a space"),
    ("sqlite:///x%00.db", "does not name a database file"),
    ("http://127.0.0.1:5000/a\nb", "control character"),
    ("http://" + "a" * 300 + ":5000", "longer than DNS allows"),
    ("sqlite:///" + "d" * 300 + ".db", "a name of 303 bytes"),
    ("file:///tmp/mlruns", "not a store rnngrad can use"),
    ("./mlruns", "not a store rnngrad can use"),
    ("databricks", "not a store rnngrad can use"),
    ("mysql://u@h/db", "not a store rnngrad can use"),
    ("postgresql://", "names a host and a database"),
    ("x" * 3000, "more than the 2048"),
])
def test_a_tracking_uri_other_than_a_file_a_server_or_postgresql_is_one_line(tmp_path, monkeypatch, uri, says):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(UserError, match="MLFLOW_TRACKING_URI") as raised:
        tracking.open_store(tmp_path)
    message = str(raised.value)
    assert says in message and "\n" not in message and len(message) < 600
    assert list(tmp_path.iterdir()) == []  # no `:memory:` file, no `.x.db`


@pytest.mark.parametrize("uri", ["sqlite:///x\x00.db", "http://127.0.0.1:5000/\x00"])
def test_a_nul_byte_in_a_tracking_uri_is_one_line(tmp_path, uri):
    from pipeline.tracking.uri import parse_tracking_uri

    with pytest.raises(UserError, match="control character"):
        parse_tracking_uri(uri, tmp_path)


@pytest.mark.parametrize("uri, kind", [
    ("sqlite:////abs/mlflow.db", "sqlite"), ("sqlite:///rel/mlflow.db", "sqlite"), ("", "sqlite"),
    ("http://127.0.0.1:5000", "server"), ("https://mlflow.example.org/", "server"),
    ("postgresql://me@db.example.org:5432/mlflow", "postgresql"), ("postgresql+psycopg2://me@h/db", "postgresql"),
])
def test_the_parser_accepts_a_file_path_a_server_and_postgresql(tmp_path, uri, kind):
    from pipeline.tracking.uri import parse_tracking_uri

    parsed = parse_tracking_uri(uri, tmp_path)
    assert parsed.kind == kind
    if kind == "sqlite":
        assert parsed.path.is_absolute() and parsed.uri == f"sqlite:///{parsed.path}"
