"""pipeline.cluster and `rnngrad sweep --cluster`: Dask LocalClusters on this machine, temporary sqlite stores.

The slow tests against a real scheduler, workers, PostgreSQL and `mlflow server` are in test_cluster_server.py.
"""

import io
import json
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, strategies as st
from typer.testing import CliRunner

from pipeline import cluster, tracking
from pipeline.tracking import artifacts
from pipeline.benchmarks import services
from pipeline.errors import UserError
from pipeline.run.spec import load_spec
from pipeline.sweep import run_sweep
from test_sweep import _calls, _runs, cli_app, env, fake_execute  # noqa: F401 (cli_app, env are fixtures)
from test_tracking import empty_db  # noqa: F401 (a fixture)


# Two activations, two weight norms and a clip: cells that differ in every part of a run, kept tiny.
REAL_SPEC = """\
name: pair
description: the same cells on the process pool and on Dask
base: {task: adding, seq_len: 6, val_size: 40, hidden: 4, iters: 4, batch: 4, probe_len: 6}
profiles:
  quick:
    grid: {gamma_w: [0.5, 3.0], activation: [tanh, relu]}
"""


# ---- addresses, folders, versions -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, workers", [("local:1", 1), ("local:12", 12), (" local:2 ", 2),
                                           ("tcp://127.0.0.1:8786", 0), ("tcp://sched-01.lab.example:1", 0),
                                           ("tls://10.0.0.5:8786", 0), ("tcp://[::1]:8786", 0)])
def test_valid_addresses_parse(text, workers):
    assert cluster.parse_address(text).local_workers == workers


@pytest.mark.parametrize("text", ["", "local", "local:0", "local:-1", "local:two", "127.0.0.1:8786", "tcp://host",
                                  "tcp://host:0", "tcp://host:65536", "http://host:8786", "tcp://ho st:1",
                                  "tcp://host:8786/path"])
def test_malformed_addresses_are_a_user_error_naming_what_is_valid(text):
    with pytest.raises(UserError, match=r"not a cluster address; give local:N .* tcp://HOST:PORT"):
        cluster.parse_address(text)


def test_a_port_where_nothing_listens_is_refused_at_once():
    with pytest.raises(UserError, match="no Dask scheduler answers there"):
        cluster.check_reachable(f"tcp://127.0.0.1:{services.free_port()}")


names = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)


@given(st.dictionaries(st.lists(names, min_size=1, max_size=3).map("/".join), st.binary(max_size=200),
                       max_size=6))
def test_a_packed_folder_unpacks_to_the_same_files(tmp_path_factory, contents):
    src = tmp_path_factory.mktemp("src")
    for rel, data in contents.items():
        path = src / rel
        if any(p.is_file() for p in [*path.parents][: len(Path(rel).parts) - 1]):
            continue  # a name used both as a file and as a folder
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            path.write_bytes(data)
    dest = tmp_path_factory.mktemp("dest") / "abcdef012345"
    cluster.unpack_folder(cluster.pack_folder(src), dest)
    assert _tree(dest) == _tree(src)
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temp folder left beside it


def _tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


def test_unpacking_replaces_an_existing_folder_only_when_complete(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "summary.json").write_text("old")
    (new / "summary.json").write_text("new")
    cluster.unpack_folder(cluster.pack_folder(new), old)
    assert (old / "summary.json").read_text() == "new"
    with pytest.raises(tarfile.TarError):
        cluster.unpack_folder(b"not a tar archive, long enough to be read as one" * 20, old)
    assert (old / "summary.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old"]


def test_a_returned_folder_cannot_write_outside_its_run_folder(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.TarError):
        cluster.unpack_folder(buffer.getvalue(), tmp_path / "runs" / "abcdef012345")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "runs" / "abcdef012345").exists()


def test_version_mismatch_names_the_worker_and_the_package():
    mine = cluster.versions()
    assert set(mine) >= {"rnngrad", "rnngrad code", "python", "numpy", "distributed"}
    same = {"worker tcp://a:1": dict(mine), "worker tcp://b:2": dict(mine)}
    assert cluster.version_mismatch(mine, same) is None
    other = same | {"worker tcp://b:2": mine | {"numpy": "0.0"}}
    assert cluster.version_mismatch(mine, other) == f"worker tcp://b:2 has numpy 0.0, this driver {mine['numpy']}"
    missing = {"worker tcp://a:1": {k: v for k, v in mine.items() if k != "pandas"}}
    assert "has pandas unknown" in cluster.version_mismatch(mine, missing)


def test_the_code_fingerprint_changes_with_any_source_file(tmp_path):
    shutil.copytree(cluster.PIPELINE, tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    before = cluster.code_fingerprint(tmp_path / "pipeline")
    assert before == cluster.code_fingerprint()
    with open(tmp_path / "pipeline" / "run" / "config.py", "a") as f:
        f.write("\n")
    assert cluster.code_fingerprint(tmp_path / "pipeline") != before


# ---- sweeps on a LocalCluster ------------------------------------------------------------------------------------


def _child_runs(store, spec_name: str) -> dict:
    """{config_hash: what MLflow holds of the child run} without ids, times and the parent link."""
    c = tracking.client(store)
    _, children = _runs(store, spec_name)
    out = {}
    for child in children:
        run = c.get_run(child.run_id)
        tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.runName"}
        metrics = {k: v for k, v in run.data.metrics.items() if "seconds" not in k}
        out[child.tags["config_hash"]] = {"status": run.info.status, "params": run.data.params, "tags": tags,
                                          "metrics": metrics, "artifacts": _artifacts(store, child.run_id)}
    return out


def _artifacts(store, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for a in artifacts.list_files(store, run_id, path):
        out += _artifacts(store, run_id, a.path) if a.is_dir else [a.path]
    return sorted(out)


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["run_id"] + [c for c in table.columns if "seconds" in c]).sort_values("config_hash")


def test_a_sweep_on_local_2_gives_the_process_pools_table_and_runs_cell_for_cell(tmp_path, monkeypatch, empty_db):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tables, runs = {}, {}
    for kind in ("pool", "dask"):
        root = tmp_path / kind
        root.mkdir()
        shutil.copy(empty_db, root / "mlflow.db")
        (root / "pair.yaml").write_text(REAL_SPEC)
        spec, store = load_spec(root / "pair.yaml", "quick"), tracking.open_store(root)
        if kind == "pool":
            result = run_sweep(spec, root / "data", root / "results", store, jobs=2)
        else:
            with cluster.connect("local:2") as opened:
                assert opened.slots == 2
                result = run_sweep(spec, root / "data", root / "results", store, opened.slots,
                                   executor=opened.executor(root / "data"))
        assert (len(result.ran), result.crashed) == (4, {})
        tables[kind], runs[kind] = pd.read_parquet(result.table_path), _child_runs(store, "pair")
        assert not list((root / "results" / "pair" / "runs").glob(".*"))  # no temp folder left
    pd.testing.assert_frame_equal(_comparable(tables["dask"]), _comparable(tables["pool"]), check_like=True)
    assert runs["dask"].keys() == runs["pool"].keys() and len(runs["pool"]) == 4
    for config_hash, pool_run in runs["pool"].items():
        assert runs["dask"][config_hash] == pool_run, config_hash
    assert {r["status"] for r in runs["dask"].values()} == {"FINISHED"}


def test_a_crashing_cell_on_the_cluster_ends_failed_and_the_rest_finish(env, monkeypatch):
    monkeypatch.setenv("FAKE_CRASH_GAMMA", "1.5")
    store, spec = tracking.open_store(env), load_spec(env / "mini.yaml", "quick")
    with cluster.connect("local:2") as opened:
        result = run_sweep(spec, env / "data", env / "results", store, opened.slots, execute=fake_execute,
                           executor=opened.executor(env / "data"))
    assert result.crashed == {"gamma_w=1.5,seed=0": "RuntimeError: fake crash"}
    assert len(result.ran) == 5
    parents, children = _runs(store)
    failed = [c for c in children if c.status == "FAILED"]
    assert [c.tags["cell"] for c in failed] == ["gamma_w=1.5,seed=0"] and failed[0].tags["error"] == "RuntimeError: fake crash"
    assert sorted(c.status for c in children) == ["FAILED"] + ["FINISHED"] * 5
    assert [p.status for p in parents] == ["FAILED"]
    assert len(pd.read_parquet(result.table_path)) == 5
    # workers computed in their own folders: nothing of theirs is left in results/, and none imported mlflow
    for run_dir in (env / "results" / "mini" / "runs").iterdir():
        assert json.loads((run_dir / "worker.json").read_text())["mlflow_imported"] is False


def test_the_data_folder_reaches_the_workers(env, monkeypatch):
    """A cell reads its data where the worker unpacked it, not from the driver's path."""
    (env / "data").mkdir()
    (env / "data" / "marker.txt").write_text("shipped")
    monkeypatch.setenv("FAKE_READ_DATA", "marker.txt")
    store, spec = tracking.open_store(env), load_spec(env / "mini.yaml", "quick")
    with cluster.connect("local:1") as opened:
        result = run_sweep(spec, env / "data", env / "results", store, opened.slots, execute=data_reading_execute,
                           executor=opened.executor(env / "data"))
    assert len(result.ran) == 6
    for run_dir in (env / "results" / "mini" / "runs").iterdir():
        seen = json.loads((run_dir / "data.json").read_text())
        assert seen["text"] == "shipped" and seen["data_dir"] != str(env / "data")


def data_reading_execute(cfg, data_dir, run_dir, progress=None):
    import os

    fake_execute(cfg, data_dir, run_dir)
    text = (Path(data_dir) / os.environ["FAKE_READ_DATA"]).read_text()
    (Path(run_dir) / "data.json").write_text(json.dumps({"text": text, "data_dir": str(data_dir)}))


# ---- the CLI -----------------------------------------------------------------------------------------------------


def _refused(cli_app, root: Path, address: str) -> str:
    result = CliRunner().invoke(cli_app, ["sweep", "mini.yaml", "--cluster", address])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --cluster "), result.stderr
    assert not (root / "results").exists()
    if (root / "mlflow.db").exists():  # opened (the address was fine), but no run created
        assert tracking.find_runs(tracking.open_store(root), "0") == []
        assert tracking.client(tracking.open_store(root)).get_experiment_by_name("rnngrad/mini") is None
    return lines[0]


def test_a_malformed_or_dead_address_exits_2_before_the_store_is_opened(cli_app, env, monkeypatch):
    monkeypatch.chdir(env)
    (env / "mlflow.db").unlink()
    assert "not a cluster address" in _refused(cli_app, env, "local:0")
    assert "no Dask scheduler answers there" in _refused(cli_app, env, f"tcp://127.0.0.1:{services.free_port()}")
    assert not (env / "mlflow.db").exists()


def test_workers_with_other_versions_are_refused_before_any_run(cli_app, env, monkeypatch):
    """The refusal path; what is compared is test_version_mismatch_names_the_worker_and_the_package's, and a
    worker running another checkout is test_cluster_server's."""
    monkeypatch.chdir(env)
    seen = []
    monkeypatch.setattr(cluster, "version_mismatch", lambda mine, theirs: seen.append(theirs) or "numpy differs")
    line = _refused(cli_app, env, "local:1")
    assert line.startswith("Error: --cluster local:1: numpy differs; install the same rnngrad checkout")
    [theirs] = seen
    assert [who.split()[0] for who in sorted(theirs)] == ["the", "worker"]  # the scheduler and the one worker
    assert list(theirs.values()) == [cluster.versions()] * 2
    assert _calls(env, "start") == []


def test_the_sweep_command_runs_on_a_local_cluster(cli_app, env, monkeypatch):
    monkeypatch.chdir(env)
    (env / "pair.yaml").write_text(REAL_SPEC.replace("[0.5, 3.0], activation: [tanh, relu]", "[0.5]"))
    result = CliRunner().invoke(cli_app, ["sweep", "pair.yaml", "--cluster", "local:1"])
    assert result.exit_code == 0, result.output
    assert "pair: 1 ran, 0 already done, 0 re-logged" in result.stdout
    again = CliRunner().invoke(cli_app, ["sweep", "pair.yaml", "--cluster", "local:1"])
    assert "pair: 0 ran, 1 already done" in again.stdout


def test_a_tls_address_without_a_client_certificate_is_refused(monkeypatch):
    import dask

    with dask.config.set({"distributed.comm.tls.ca-file": None, "distributed.comm.tls.client.cert": None}):
        with pytest.raises(UserError, match="a tls:// scheduler needs this client's certificate; set DASK_"):
            with cluster.connect("tls://127.0.0.1:1"):
                pass


def test_a_server_that_wants_credentials_says_which_variables_to_set(tmp_path, monkeypatch):
    """MLflow's basic-auth app answers 401 without MLFLOW_TRACKING_USERNAME/PASSWORD (docs/cluster.md)."""
    import http.server
    import threading

    class Unauthorized(http.server.BaseHTTPRequestHandler):
        def _refuse(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _refuse

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    try:
        with pytest.raises(UserError, match=f"MLFLOW_TRACKING_URI={uri}: the server refuses this client .*401.*; "
                                            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
            tracking.open_store(tmp_path)
    finally:
        server.shutdown()
        server.server_close()


def test_the_cluster_benchmark_reports_local_1_against_local_2(tmp_path):
    from pipeline.benchmarks.cluster import bench_cluster_scaling

    (tmp_path / "pair.yaml").write_text(REAL_SPEC)
    fig = bench_cluster_scaling(tmp_path / "pair.yaml", data_dir=tmp_path / "data")
    assert fig["cluster_cells"] == 4
    assert fig["cluster_speedup"] == pytest.approx(fig["cluster_seconds_local_1"] / fig["cluster_seconds_local_2"])
    assert fig["cluster_start_seconds_local_2"] > 0


def test_a_servers_cpu_seconds_add_up_its_process_tree():
    """The bench's server_cpu_s_per_cell: CPU of the server's leader and its children (uvicorn runs as one)."""
    import subprocess
    import sys
    import time

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ntime.sleep(30)"
    leader = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, "
                               f"'-c', {burn!r}])"], start_new_session=True)
    try:
        server = services.Server("http://127.0.0.1:1", leader.pid)
        deadline = time.monotonic() + 20
        while server.cpu_seconds() < 0.4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 0.4 <= server.cpu_seconds() < 5  # the child's 0.4 s (and the two interpreters' start-up)
    finally:
        services.stop_group(leader)
    assert services.Server("http://127.0.0.1:1", leader.pid).cpu_seconds() == 0.0  # gone: nothing to add
