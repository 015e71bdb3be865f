"""Hostile and careless input changes nothing outside the folders given: device nodes, FIFOs and links are never
written through, the report shows data escaped, commands read files only from the project (or a --data-root),
sizes are read from headers before anything is loaded, network waits are bounded, sets of outputs are checked
whole, bad data and models are refused at the boundary, and every refusal is one line with exit code 2.

Device nodes and FIFOs are made in temp folders (the tests run as root where mknod is allowed; they skip
otherwise): no test points the store at a real /dev node."""

from __future__ import annotations

import json
from re import escape as re_escape
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline import tracking
from pipeline.errors import UserError
from test_sweep import env  # noqa: F401 (a fixture: a project with a fresh store and the mini spec)
from test_tracking import empty_db  # noqa: F401 (a fixture)

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


# ---- 2. nothing from data runs in the report; the report goes only to the sweep that planned its runs ------------

HOSTILE = 'x"><img src=x onerror=alert(1)>'


def test_the_html_escapes_section_ids_links_and_titles_made_from_data():
    from pipeline.report.document import Paragraph, RunRef, Section, SectionLink
    from pipeline.report.html import render_html

    section = Section(f"spec-{HOSTILE}", f"Sweep: {HOSTILE}",
                      [Paragraph([SectionLink(f"spec-{HOSTILE}", HOSTILE), RunRef(HOSTILE)])], [HOSTILE])
    page = render_html([section], {})
    assert "<img" not in page  # no element made from the data: every id, link and text is escaped
    assert 'id="spec-x&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"' in page
    assert 'href="#spec-x&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"' in page


@pytest.mark.parametrize("where", ["spec column", "file name"])
def test_a_results_table_with_a_hostile_spec_name_is_refused_by_analyze(cli_app, tmp_path, monkeypatch, where):
    import fixtures_runs as fx
    import pandas as pd

    results = tmp_path / "results"
    runs = fx.write_study(results, [fx.make_run("weight_norms", gamma_w=1.0, seed=0)])
    table = pd.read_parquet(results / "weight_norms.parquet")
    if where == "spec column":
        table["spec"] = HOSTILE
        table.to_parquet(results / "weight_norms.parquet", index=False)
    else:
        (results / "weight_norms.parquet").unlink()
        table.drop(columns="spec").to_parquet(results / 'x"><svg onload=alert(document.domain)>.parquet')
    monkeypatch.chdir(tmp_path)
    line = one_line_refusal(CliRunner().invoke(cli_app, ["analyze", "--results-dir", str(results), "--out",
                                                         str(tmp_path / "reports")]))
    assert "is not a valid spec name" in line
    assert not (tmp_path / "reports").exists()
    assert runs


def test_a_results_table_listing_a_null_spec_a_path_as_hash_or_a_markup_run_id_is_refused(tmp_path):
    import fixtures_runs as fx
    import pandas as pd

    from pipeline.report.analysis import load_results

    results = tmp_path / "results"
    fx.write_study(results, [fx.make_run("weight_norms", gamma_w=1.0, seed=0)])
    good = pd.read_parquet(results / "weight_norms.parquet")
    for column, value, says in [("spec", None, "is not a valid spec name"), ("spec", "..", "is not a valid spec name"),
                                ("config_hash", "../../etc", "is not a run's hash"),
                                ("run_id", '"><script>', "is not an MLflow run id")]:
        bad = good.copy()
        bad[column] = value
        bad.to_parquet(results / "weight_norms.parquet", index=False)
        with pytest.raises(UserError, match=says):
            load_results(results)


def test_the_report_is_logged_only_to_the_sweep_that_planned_exactly_the_tables_runs(env):
    from test_sweep import _sweep

    store, spec, result = _sweep(env)
    import pandas as pd

    ids = list(pd.read_parquet(env / "results" / "mini.parquet")["run_id"])
    assert tracking.sweep_parent(store, "mini", ids) == result.parent_run_id
    other = tracking.start_run(store, tracking.ensure_experiment(store, "rnngrad/train"), "someone else's")
    assert tracking.sweep_parent(store, "mini", ids[:-1]) is None  # not the set the sweep planned
    assert tracking.sweep_parent(store, "mini", ids + [other]) is None  # a run of another experiment
    assert tracking.sweep_parent(store, "mini", [other]) is None
    assert tracking.sweep_parent(store, "other", ids) is None  # another spec's name on this sweep's runs


# ---- 7. no stray writes: `..` as a spec, empty folder options, run folders outside results/ --------------------


def test_a_spec_named_dot_dot_is_refused_before_anything_is_written(cli_app, tmp_path, monkeypatch):
    (tmp_path / "experiments").mkdir()
    spec = tmp_path / "experiments" / "...yaml"
    spec.write_text("name: ..\nbase: {task: adding, seq_len: 5, hidden: 4, iters: 1}\n"
                    "profiles: {quick: {grid: {seed: [0]}}}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    line = one_line_refusal(CliRunner().invoke(cli_app, ["sweep", str(spec)]))
    assert "'..' is not a valid spec name" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments"]


def test_analyze_never_reads_a_run_folder_outside_the_results_folder(tmp_path):
    import fixtures_runs as fx
    import pandas as pd

    from pipeline.report.analysis import load_results, run_folder

    results = tmp_path / "results"
    (run,) = fx.write_study(results, [fx.make_run("weight_norms", gamma_w=1.0, seed=0)])
    outside = tmp_path / "elsewhere"
    (results / "weight_norms" / "runs" / run.config_hash).rename(outside)
    for given in (str(outside), "../elsewhere"):
        table = pd.read_parquet(results / "weight_norms.parquet").assign(run_dir=given)
        table.to_parquet(results / "weight_norms.parquet", index=False)
        row = load_results(results).iloc[0].to_dict()
        assert run_folder(results, row) == results / "weight_norms" / "runs" / run.config_hash  # not `outside`


# ---- 4. sizes from headers: a results table's row count is read from its footer first -----------------------


def test_a_results_table_declaring_more_rows_than_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import fixtures_runs as fx
    import pandas as pd

    from pipeline.report import artifacts
    from pipeline.report.analysis import load_results

    results = tmp_path / "results"
    fx.write_study(results, [fx.make_run("weight_norms", gamma_w=g, seed=0) for g in (0.5, 1.0, 2.0)])
    read = []
    monkeypatch.setattr(artifacts.pd, "read_parquet", lambda *a, **k: read.append(a) or pd.DataFrame())
    monkeypatch.setattr(artifacts, "RESULTS_MAX_ROWS", 2)  # the table has 3 rows: one over
    with pytest.raises(UserError, match="3 rows, more than the 2 rnngrad reads"):
        load_results(results)
    assert read == []  # refused from the footer, nothing loaded


def test_a_run_table_with_a_list_column_or_text_norms_is_a_problem_of_that_run_not_a_traceback(tmp_path):
    import pandas as pd

    from pipeline.report.analysis import read_artifact

    nested = tmp_path / "nested.parquet"
    pd.DataFrame({"t": [[1, 2]], "k": [0]}).to_parquet(nested)
    texty = tmp_path / "texty.parquet"
    pd.DataFrame({"t": ["a"], "k": [0]}).to_parquet(texty)
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"t": pd.Series([], dtype=float), "k": pd.Series([], dtype=float)}).to_parquet(empty)
    assert read_artifact(nested, ["t", "k"]) == (None, "refused (column 't' holds lists or records; rnngrad's "
                                                        "tables hold plain values)")
    assert read_artifact(texty, ["t", "k"]) == (None, "refused (column 't' holds text, not numbers)")
    assert read_artifact(empty, ["t", "k"], nonempty=True) == (None, "empty")


# ---- 6. the analysis's outputs are one set: report refuses a mix a stopped analyze left ----------------------


def test_report_refuses_new_tables_beside_an_older_metrics_json(cli_app, tmp_path):
    import fixtures_runs as fx

    results, reports = tmp_path / "results", tmp_path / "reports"
    fx.write_study(results, [fx.make_run("weight_norms", gamma_w=g, seed=0) for g in (0.5, 2.0)])
    analyze = ["analyze", "--results-dir", str(results), "--out", str(reports)]
    assert CliRunner().invoke(cli_app, analyze).exit_code == 0
    older = (reports / "metrics.json").read_text(encoding="utf-8")
    more = tmp_path / "more"
    fx.write_study(more, [fx.make_run("weight_norms", gamma_w=g, seed=0) for g in (0.5, 1.0, 2.0)])
    assert CliRunner().invoke(cli_app, ["analyze", "--results-dir", str(more), "--out", str(reports)]).exit_code == 0
    assert (reports / "metrics.json").read_text(encoding="utf-8") != older
    (reports / "metrics.json").write_text(older, encoding="utf-8")  # what a SIGTERM between two writes leaves
    line = one_line_refusal(CliRunner().invoke(cli_app, ["report", "--analysis-dir", str(reports), "--out",
                                                         str(tmp_path / "out")]))
    assert "metrics.json: not the file analysis.json records" in line
    assert not (tmp_path / "out").exists()


def test_analyze_refuses_tables_that_are_a_file_before_computing_anything(cli_app, tmp_path):
    import fixtures_runs as fx

    results, reports = tmp_path / "results", tmp_path / "reports"
    fx.write_study(results, [fx.make_run("weight_norms", gamma_w=1.0, seed=0)])
    reports.mkdir()
    (reports / "tables").write_text("mine", encoding="utf-8")
    line = one_line_refusal(CliRunner().invoke(cli_app, ["analyze", "--results-dir", str(results), "--out",
                                                         str(reports)]))
    assert "is a file or a link" in line
    assert sorted(p.name for p in reports.iterdir()) == ["tables"]


# ---- 4 and 8. a model file: sizes from its headers, then real finite values, each refused as a ValueError -------


def _model_arrays() -> dict:
    import numpy as np

    from pipeline.engine.cells import model_arrays
    from pipeline.engine.init import init_model

    return model_arrays(init_model(np.random.default_rng(0), input_dim=2, output_dim=2, hidden=3)[0])


def _npy_header_only(path: Path, arrays: dict, key: str, shape: tuple) -> None:
    """An .npz whose member `key` declares `shape` (float64) but holds only its header: what a deflated bomb's
    member says before its stream is read."""
    import io
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, a in arrays.items():
            buf = io.BytesIO()
            if k == key:
                np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
            else:
                np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
            zf.writestr(f"{k}.npy", buf.getvalue())


def test_load_model_refuses_a_model_larger_than_the_config_allows_from_its_headers(tmp_path, monkeypatch):
    import numpy as np

    from pipeline import load_model

    path = tmp_path / "model.npz"
    _npy_header_only(path, _model_arrays(), "W_hh_0", (16384, 16384))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load called before the headers were read"))
    with pytest.raises(ValueError, match="W_hh_0 has 16,384 units, more than the 4096"):
        load_model(path)
    _npy_header_only(path, _model_arrays(), "W_hy", (2**20, 2**20))  # 8 TiB in one array
    with pytest.raises(ValueError, match="TiB|GiB"):
        load_model(path)


@pytest.mark.parametrize("key, value, says", [
    ("W_hh_0", lambda a: a.astype(complex), "complex128, expected real numbers"),
    ("W_hh_0", lambda a: np.where(np.eye(3) > 0, np.nan, a), "W_hh_0 holds 3 NaN or infinite values"),
    ("b_y", lambda a: a + np.inf, "b_y holds 2 NaN or infinite values"),
    ("leaky_slope", lambda a: np.float64("nan"), "leaky_slope holds 1 NaN or infinite value"),
    ("leaky_slope", lambda a: np.float64(-1e308), "leaky_slope -1e\\+308 is out of range"),
    ("leaky_slope", lambda a: np.array([0.1, 0.2]), "leaky_slope has shape \\(2,\\), expected one number"),
    ("W_xh_0", lambda a: np.zeros(a.shape, dtype=[("re", "f8"), ("im", "f8")]), "expected real numbers"),
])
def test_load_model_refuses_values_no_model_has_with_a_value_error(tmp_path, key, value, says):
    from pipeline import load_model

    arrays = _model_arrays()
    arrays[key] = value(np.asarray(arrays[key]))
    np.savez(tmp_path / "model.npz", **arrays)
    with pytest.raises(ValueError, match=says):
        load_model(tmp_path / "model.npz")


# ---- 4, 8, 9. a data file: its headers read first, then real finite values; one line, never a traceback ---------


def _dataset_file(data: Path, change=None, key="x", header_shape=None) -> None:
    from pipeline.run import datasets

    ds = datasets.build_dataset("adding", 10, 50, 0)
    arrays = {k: np.asarray(v) for k, v in datasets.dataset_arrays(ds).items()}
    data.mkdir(exist_ok=True)
    path = data / f"{datasets.dataset_name('adding', 10, 50, 0)}.npz"
    if header_shape is not None:
        _npy_header_only(path, arrays, key, header_shape)
        return
    arrays[key] = change(arrays[key])
    np.savez(path, **arrays)


@pytest.mark.parametrize("case, says", [
    ("bomb", "its arrays would take 74.5 GiB, more than the 4 GiB"),
    ("1-D", "array x is float64 (50,), expected numbers of shape (50, 10, 2)"),
    ("NaN", "array x holds NaN or infinite values"),
    ("complex", "array x is complex128 (50, 10, 2), expected numbers"),
])
def test_a_data_file_is_checked_from_its_headers_then_for_finite_real_values(tmp_path, monkeypatch, case, says):
    from pipeline.run import datasets

    data = tmp_path / "data"
    if case == "bomb":
        _dataset_file(data, header_shape=(10**6, 10**4, 1))
        monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load called before the headers were read"))
    else:
        change = {"1-D": lambda x: x[:, 0, 0].copy(), "NaN": lambda x: np.where(x == x.max(), np.nan, x),
                  "complex": lambda x: x.astype(complex)}[case]
        _dataset_file(data, change)
    with pytest.raises(UserError, match=re_escape(says)):
        datasets.load_dataset(data, "adding", 10, 50, 0)


def test_a_fifo_named_like_a_data_file_is_refused_without_blocking(tmp_path):
    from pipeline.run import datasets

    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / f"{datasets.dataset_name('adding', 10, 50, 0)}.npz")
    with pytest.raises(UserError, match="not a regular file"):
        datasets.load_dataset(data, "adding", 10, 50, 0)


# ---- 3. train reads a corpus only from the project or a --data-root, as a sweep does --------------------------


@pytest.mark.parametrize("via", ["option", "config"])
def test_train_refuses_a_corpus_outside_the_project_before_reading_it(cli_app, tmp_path, monkeypatch, via):
    project, secret = tmp_path / "project", tmp_path / "secret" / "creds.txt"
    project.mkdir()
    secret.parent.mkdir()
    secret.write_text("password=hunter2\n" * 50, encoding="utf-8")
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    args = ["train", "--task", "text", "--iters", "1", "--hidden", "4"]
    if via == "config":
        (project / "cfg.yaml").write_text(f"task: text\ntext: {secret}\n", encoding="utf-8")
        args += ["--config", str(project / "cfg.yaml")]
    else:
        args += ["--text", str(secret)]
    line = one_line_refusal(CliRunner().invoke(cli_app, args))
    assert "outside the project" in line and "--data-root" in line
    assert sorted(p.name for p in project.iterdir()) == (["cfg.yaml"] if via == "config" else [])


@pytest.mark.parametrize("in_the_way", ["report.html", "report.pdf", "figures"])
def test_report_refuses_an_output_in_the_way_before_drawing_anything(cli_app, tmp_path, in_the_way):
    import fixtures_runs as fx

    results, reports, out = tmp_path / "results", tmp_path / "reports", tmp_path / "out"
    fx.write_study(results, [fx.make_run("weight_norms", gamma_w=g, seed=0) for g in (0.5, 2.0)])
    assert CliRunner().invoke(cli_app, ["analyze", "--results-dir", str(results), "--out", str(reports)]).exit_code == 0
    out.mkdir()
    if in_the_way == "figures":
        (out / "figures").write_text("mine", encoding="utf-8")
    else:
        (out / in_the_way).mkdir()
    line = one_line_refusal(CliRunner().invoke(cli_app, ["report", "--analysis-dir", str(reports), "--out",
                                                         str(out)]))
    assert f"{out / in_the_way} is in the way" in line
    assert [p.name for p in out.iterdir()] == [in_the_way]
