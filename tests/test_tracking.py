"""pipeline.tracking against a real (temporary) sqlite store: what a run folder becomes in MLflow.

mlflow is imported only inside tests: test_sweep's worker processes import this module for
`write_fake_run_folder` and must not pay for (or depend on) mlflow.
"""

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import tracking
from pipeline.tracking import artifacts
from pipeline.errors import UserError

PROBE_FILES = ("model_init.npz", "model_final.npz", "inputs.npy", "h0.npy", "jacobian.parquet")
CONFIG = {"task": "adding", "text": None, "seq_len": 6, "hidden": 4, "gamma_w": 1.5, "lr": 0.003, "layers": 2}


def write_fake_run_folder(config: dict, run_dir: Path, iters: int = 20, outcome: str = "ok", text: bool = False) -> None:
    """A run folder with the layout of docs/internals.md (values made up), built beside and renamed into place."""
    T, run_dir = int(config.get("seq_len", 6)), Path(run_dir)
    tmp = run_dir.with_name(f".{run_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left half-written by a worker that was killed mid-write
    (tmp / "probe").mkdir(parents=True)
    (tmp / "figures").mkdir()
    (tmp / "config.json").write_text(json.dumps(config))
    summary = {"outcome": outcome, "diverged_at": None, "iters_done": iters, "seconds": 0.01,
               "final_train_loss": 0.5, "val_accuracy": 0.25, "gamma_w_init": float(config.get("gamma_w", 1.0)),
               "slope_init": np.log(float(config.get("gamma_w", 1.0))), "predicted_regime": "unconstrained",
               "learned": outcome == "ok",
               "observed_regime": "exploding", "violations_init": 0, "lyapunov_final": float("nan"),
               "layers": [{"layer": 0, "slope_init": -0.1}, {"layer": 1, "slope_init": 0.2}]}
    (tmp / "summary.json").write_text(json.dumps(summary))
    (tmp / "history.csv").write_text("iter,loss\n" + "".join(f"{i},{1.0 / (i + 1)}\n" for i in range(iters)))
    lags = np.arange(1, T + 1)
    series = [("by_lag/log10_norm_init", lags, -0.1 * lags), ("by_lag/log10_bound_global_init", lags, 0.2 * lags),
              ("by_k/log10_dE_dh", np.arange(T + 1), np.zeros(T + 1)),
              ("by_iter/train_loss", np.arange(iters), 1.0 / (1 + np.arange(iters)))]
    pd.DataFrame({"key": np.concatenate([[k] * len(s) for k, s, _ in series]),
                  "step": np.concatenate([s for _, s, _ in series]).astype("int64"),
                  "value": np.concatenate([v for _, _, v in series]).astype(float)}).to_parquet(tmp / "series.parquet")
    np.savez(tmp / "probe" / "model_init.npz", W_hh_0=np.eye(2))
    np.savez(tmp / "probe" / "model_final.npz", W_hh_0=np.eye(2))
    np.save(tmp / "probe" / "inputs.npy", np.zeros((T, 2)))
    np.save(tmp / "probe" / "h0.npy", np.zeros((1, 2)))
    pd.DataFrame({"when": ["init"], "layer": [0], "t": [1], "k": [0], "lag": [1], "log_norm": [0.0],
                  "log_bound_product": [0.0], "log_bound_global": [0.0]}).to_parquet(tmp / "probe" / "jacobian.parquet")
    (tmp / "figures" / "jacobian_heatmap.png").write_bytes(b"\x89PNG\r\n\x1a\n fake")
    if text:
        (tmp / "samples.json").write_text(json.dumps([{"iter": 0, "text": "abc"}, {"iter": 10, "text": "hello"}]))
    os.replace(tmp, run_dir)


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory) -> Path:
    """A freshly migrated mlflow.db to copy: creating one costs seconds, copying it milliseconds."""
    root = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracking.open_store(root)
    with sqlite3.connect(root / "mlflow.db") as con:  # WAL mode: fold the log into the file, so a copy is whole
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root / "mlflow.db"


@pytest.fixture
def store(tmp_path, monkeypatch, empty_db):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    return tracking.open_store(tmp_path)


def test_open_store_creates_absolute_sqlite_store_and_artifact_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tracking.open_store(tmp_path)
    assert store.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert (tmp_path / "mlflow.db").is_file()  # created now, before any worker could race to create it
    assert store.artifact_root == (tmp_path.resolve() / "mlartifacts").as_uri()
    assert store.ui_command() == (f"mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve()}/mlflow.db "
                                  f"--artifacts-destination {tmp_path.resolve()}/mlartifacts")
    with sqlite3.connect(tmp_path / "mlflow.db") as con:  # readers never block the sweep's writes
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_store_file_that_is_not_sqlite_is_a_user_error_and_left_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow.db").write_text("my notes, not a database\n" * 100)
    with pytest.raises(UserError, match=r"mlflow.db: not an SQLite database .*MLFLOW_TRACKING_URI"):
        tracking.open_store(tmp_path)
    assert (tmp_path / "mlflow.db").read_text() == "my notes, not a database\n" * 100


def test_a_store_locked_by_another_writer_is_a_user_error_that_says_so(tmp_path, monkeypatch, empty_db):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr("pipeline.tracking.store.STORE_LOCK_SECONDS", 0.1)
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        con.execute("PRAGMA journal_mode=DELETE")
    holder = sqlite3.connect(tmp_path / "mlflow.db")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(UserError, match=r"mlflow.db: cannot write the MLflow store \(database is locked\); check "
                                            "that no other process holds it"):
            tracking.open_store(tmp_path)
    finally:
        holder.close()


def test_open_store_honours_a_relative_sqlite_uri_as_absolute(tmp_path, monkeypatch, empty_db):
    (tmp_path / "sub").mkdir()
    shutil.copy(empty_db, tmp_path / "sub" / "elsewhere.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///sub/elsewhere.db")
    store = tracking.open_store(tmp_path / "ignored")
    assert store.tracking_uri == f"sqlite:///{tmp_path.resolve()}/sub/elsewhere.db"
    assert store.artifact_root == (tmp_path.resolve() / "sub" / "mlartifacts").as_uri()
    assert not (tmp_path / "ignored").exists()


def test_file_store_uri_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    with pytest.raises(UserError, match="MLFLOW_TRACKING_URI.*sqlite"):
        tracking.open_store(tmp_path)


def test_a_server_url_where_nothing_listens_is_a_user_error_at_once(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(UserError, match=f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port}: no server answers"):
        tracking.open_store(tmp_path)


def test_a_server_that_is_not_mlflow_is_a_user_error(tmp_path, monkeypatch):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)  # GET only
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    try:
        with pytest.raises(UserError, match=f"MLFLOW_TRACKING_URI={uri}: the server answers, but not as an MLflow") \
                as e:
            tracking.open_store(tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_a_file_where_the_artifact_folder_goes_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlartifacts").write_text("not a folder")
    with pytest.raises(UserError, match="mlartifacts: is a file"):
        tracking.open_store(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlartifacts"]  # no mlflow.db created


def test_default_project_root_escapes_dvc_exp_temp_workspaces(tmp_path):
    assert tracking.default_project_root(tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12") == tmp_path / "repo"
    assert tracking.default_project_root(tmp_path / "repo") == tmp_path / "repo"


def _logged_run(store, tmp_path, **folder_kw):
    exp = tracking.ensure_experiment(store, "rnngrad/test")
    run_id = tracking.start_run(store, exp, "gamma_w=1.5", tags={"cell": "gamma_w=1.5"})
    write_fake_run_folder(CONFIG, tmp_path / "runs" / "abc123", **folder_kw)
    tracking.log_run_folder(store, run_id, tmp_path / "runs" / "abc123", tags={"spec": "test"})
    tracking.end_run(store, run_id, "FINISHED")
    return tracking.client(store).get_run(run_id)


def test_log_run_folder_params_tags_and_scalar_metrics(store, tmp_path):
    run = _logged_run(store, tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"task": "adding", "seq_len": "6", "hidden": "4", "gamma_w": "1.5",
                               "lr": "0.003", "layers": "2"}  # no corpus on a synthetic run
    config = json.loads((tmp_path / "runs" / "abc123" / "config.json").read_text())
    assert config["text"] is None  # config.json keeps every field
    tags = run.data.tags
    assert (tags["config_hash"], tags["outcome"], tags["spec"], tags["cell"]) == ("abc123", "ok", "test", "gamma_w=1.5")
    assert (tags["predicted_regime"], tags["observed_regime_init"]) == ("unconstrained", "exploding")
    assert "observed_regime_final" not in tags  # the fake folder has no slope_final: no label to give
    m = {k.removeprefix("summary/"): v for k, v in run.data.metrics.items() if k.startswith("summary/")}
    assert m["gamma_w_init"] == 1.5 and m["iters_done"] == 20 and m["violations_init"] == 0
    assert np.isclose(m["slope_init"], np.log(1.5), rtol=1e-3) and np.isnan(m["lyapunov_final"])
    assert m["slope_init"] == float(f"{np.log(1.5):.4g}")  # four significant digits: a legible table column
    assert "diverged_at" not in m  # null is not a number
    assert m["learned"] == 1.0  # a bool is a 0/1 metric: filterable in the MLflow UI
    assert not [k for k in run.data.metrics if "/" not in k]  # every key names its axis or says it is a summary


def test_step_metrics_have_steps_along_lags_and_layers(store, tmp_path):
    run = _logged_run(store, tmp_path, iters=1500)  # > 1000 points: log_batch must split it into requests
    c = tracking.client(store)
    decay = c.get_metric_history(run.info.run_id, "by_lag/log10_norm_init")
    assert sorted((p.step, round(p.value, 9)) for p in decay) == [(lag, round(-0.1 * lag, 9)) for lag in range(1, 7)]
    losses = {p.step: p.value for p in c.get_metric_history(run.info.run_id, "by_iter/train_loss")}
    assert len(losses) == 1500 and losses[2] == 0.3333 and losses[1499] == 0.0006667  # rounded as shown
    on_disk = pd.read_parquet(tmp_path / "runs" / "abc123" / "series.parquet").set_index(["key", "step"])["value"]
    assert on_disk["by_iter/train_loss", 2] == 1.0 / 3.0  # the folder keeps every digit
    layers = c.get_metric_history(run.info.run_id, "by_layer/slope_init")
    assert sorted((p.step, p.value) for p in layers) == [(0, -0.1), (1, 0.2)]


def test_a_single_layer_logs_no_layers_keys_that_repeat_the_top_level_ones(store, tmp_path):
    run_dir = tmp_path / "runs" / "abc123"
    write_fake_run_folder(CONFIG, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "layers": [{"layer": 0, "slope_init": -0.1}]}))
    run_id = tracking.start_run(store, tracking.ensure_experiment(store, "rnngrad/test"), "one layer")
    tracking.log_run_folder(store, run_id, run_dir)
    metrics = tracking.client(store).get_run(run_id).data.metrics
    assert "summary/slope_init" in metrics and not [k for k in metrics if k.startswith("by_layer/")]


def test_artifacts_hold_the_whole_folder_with_probe_under_probe(store, tmp_path):
    run = _logged_run(store, tmp_path, text=True)
    run_id = run.info.run_id
    top = {a.path for a in artifacts.list_files(store, run_id)}
    assert {"config.json", "summary.json", "series.parquet", "history.csv", "samples.json", "samples.txt",
            "probe", "figures"} <= top
    assert {a.path for a in artifacts.list_files(store, run_id, "probe")} == {f"probe/{f}" for f in PROBE_FILES}
    assert [a.path for a in artifacts.list_files(store, run_id, "figures")] == ["figures/jacobian_heatmap.png"]
    # named relative to the artifact root `mlflow ui --artifacts-destination` is given: the study folder can move
    assert run.info.artifact_uri == f"mlflow-artifacts:/rnngrad/test/{run_id}/artifacts"
    on_disk = tmp_path / "mlartifacts" / "rnngrad" / "test" / run_id / "artifacts"
    assert (on_disk / "figures" / "jacobian_heatmap.png").read_bytes().startswith(b"\x89PNG")
    local = artifacts.download(store, run_id, "samples.txt", tmp_path)
    assert "hello" in local.read_text()


def test_everything_goes_through_one_log_batch_and_no_log_metric(store, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    calls = {"log_batch": 0, "log_metric": 0, "log_param": 0}
    for name in calls:
        original = getattr(MlflowClient, name)

        def spy(self, *a, _name=name, _original=original, **kw):
            calls[_name] += 1
            return _original(self, *a, **kw)

        monkeypatch.setattr(MlflowClient, name, spy)
    run = _logged_run(store, tmp_path, iters=300)
    assert calls == {"log_batch": 1, "log_metric": 0, "log_param": 0}
    assert len(tracking.client(store).get_metric_history(run.info.run_id, "by_iter/train_loss")) == 300


def test_finished_runs_and_end_stale_runs(store):
    exp = tracking.ensure_experiment(store, "rnngrad/test")
    assert tracking.ensure_experiment(store, "rnngrad/test") == exp
    done = tracking.start_run(store, exp, "a", tags={"config_hash": "h1"})
    tracking.end_run(store, done, "FINISHED")
    failed = tracking.start_run(store, exp, "b", tags={"config_hash": "h2"})
    tracking.end_run(store, failed, "FAILED")
    parent = tracking.start_run(store, exp, "sweep")
    stale = tracking.start_run(store, exp, "c", parent_run_id=parent, tags={"config_hash": "h3"})
    assert tracking.finished_runs(store, exp) == {"h1": done}
    assert tracking.end_stale_runs(store, exp) == 2
    statuses = {r.run_id: r.status for r in tracking.find_runs(store, exp)}
    assert statuses == {done: "FINISHED", failed: "FAILED", parent: "KILLED", stale: "KILLED"}
    assert tracking.find_runs(store, exp, "tags.config_hash = 'h3'")[0].tags["mlflow.parentRunId"] == parent
    assert tracking.end_stale_runs(store, exp) == 0
    with pytest.raises(ValueError, match="status"):
        tracking.end_run(store, done, "DONE")


@pytest.mark.parametrize("error, status", [(KeyboardInterrupt, "KILLED"), (OSError, "FAILED")])
def test_log_folder_and_end_never_leaves_a_run_running(store, tmp_path, monkeypatch, error, status):
    write_fake_run_folder(CONFIG, tmp_path / "runs" / "abc123")
    run_id = tracking.start_run(store, tracking.ensure_experiment(store, "rnngrad/test"), "x")

    def broken(*args, **kwargs):
        raise error("interrupted mid-logging")

    with monkeypatch.context() as m, pytest.raises(error):
        m.setattr("pipeline.tracking.runs.log_run_folder", broken)
        tracking.log_folder_and_end(store, run_id, tmp_path / "runs" / "abc123")
    assert tracking.client(store).get_run(run_id).info.status == status
    run_id = tracking.start_run(store, tracking.ensure_experiment(store, "rnngrad/test"), "y")
    tracking.log_folder_and_end(store, run_id, tmp_path / "runs" / "abc123")
    run = tracking.client(store).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "ok"


# ---- what the MLflow UI shows ------------------------------------------------------------------------------------


def test_short_run_names_keep_only_the_axes_that_vary_and_join_a_threshold_to_its_mode():
    grid = [{"clip_mode": "none", "seed": 0}] + [
        {"clip_mode": m, "clip_threshold": t, "seed": s} for m in ("global", "elementwise") for t in (0.1, 100.0)
        for s in (0, 1)]
    names = tracking.short_run_names(grid)
    assert names[:3] == ["no clip s0", "global·0.1 s0", "global·0.1 s1"]
    assert names[-1] == "elem·100 s1"
    assert len(set(names)) == len(grid)  # every cell told apart
    assert tracking.short_run_names([{"task": "adding", "seq_len": 10, "seed": 0},
                                     {"task": "copy", "seq_len": 40, "seed": 0}]) == ["adding T=10", "copy T=40"]
    assert tracking.short_run_names([{}]) == ["base"]  # nothing to name it by


def test_an_arm_that_leaves_an_axis_to_the_base_and_a_single_cell_are_named_by_what_they_are():
    arms = [{"seed": 0}, {"seed": 0, "cell_type": "lstm", "hidden": 44}]  # experiments/text.yaml's two arms
    configs = [{"cell_type": "rnn", "hidden": 100, "seed": 0}, {"cell_type": "lstm", "hidden": 44, "seed": 0}]
    assert tracking.short_run_names(arms, configs) == ["rnn n=100", "lstm n=44"]
    assert tracking.short_run_names([{"seed": 0}], configs[:1]) == ["rnn s0"]  # one cell: its arm, its values
    assert tracking.short_run_names([{"gamma_w": 3.0, "init": "orthogonal"}]) == ["γW=3 orth"]


def test_the_text_specs_runs_are_named_by_their_arms():
    from pipeline.run.spec import load_spec
    from pipeline.sweep import plan_cells

    spec = load_spec(Path(__file__).parents[1] / "experiments" / "text.yaml", "full")
    labels = [c.label for c in plan_cells(spec, Path("results"))]
    assert labels == ["rnn n=100 s0", "rnn n=100 s1", "rnn n=100 s2", "lstm n=44 s0", "lstm n=44 s1", "lstm n=44 s2"]


def test_links_open_the_runs_table_of_the_store_that_was_used(tmp_path):
    embedded = tracking.Store(f"sqlite:///{tmp_path}/mlflow.db", None)
    server = tracking.Store("http://mlflow.example:8080/", None)
    assert tracking.experiment_link(embedded, "3") == \
        "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    assert tracking.run_link(server, "3", "abc") == \
        "http://mlflow.example:8080/#/experiments/3/runs/abc?workflowType=machine_learning"
    lines = tracking.link_lines(embedded, [("rnngrad/x", "3", "abc")])
    assert lines[0].endswith("#/experiments/3?workflowType=machine_learning") and "runs/abc" in lines[1]
    assert lines[-1].endswith(embedded.ui_command())


def test_an_experiment_is_described_and_opens_on_its_runs_and_the_empty_default_is_hidden(store):
    c = tracking.client(store)
    assert c.get_experiment("0").lifecycle_stage == "active"  # MLflow made it with the store
    exp = tracking.ensure_experiment(store, "rnngrad/test")
    tracking.describe_experiment(store, exp, "How   gamma_W\n sets the regime.")
    tags = c.get_experiment(exp).tags
    assert tags["mlflow.note.content"] == "How gamma_W sets the regime."
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    tracking.hide_empty_default_experiment(store)
    assert c.get_experiment("0").lifecycle_stage == "deleted"
    assert [e.name for e in c.search_experiments()] == ["rnngrad/test"]


def test_a_default_experiment_with_runs_is_left_alone(store):
    c = tracking.client(store)
    c.create_run("0")
    tracking.hide_empty_default_experiment(store)
    assert c.get_experiment("0").lifecycle_stage == "active"


def test_datasets_are_logged_as_run_inputs(store):
    run_id = tracking.start_run(store, tracking.ensure_experiment(store, "rnngrad/test"), "r")
    ref = tracking.DatasetRef("adding_T30_N1000_s0", "7a44b3d0a7c0", "/data/adding_T30_N1000_s0.npz",
                              {"task": "adding", "T": 30, "count": 1000, "seed": 0})
    tracking.log_datasets(store, run_id, [ref])
    inputs = tracking.client(store).get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("adding_T30_N1000_s0", "7a44b3d0a7c0")]
    assert json.loads(inputs[0].dataset.profile) == {"task": "adding", "T": 30, "count": 1000, "seed": 0}
    assert [(t.key, t.value) for t in inputs[0].tags] == [("mlflow.data.context", "validation")]


def test_the_summary_table_is_replaced_not_appended_and_marked_a_table(store, tmp_path):
    run_id = tracking.start_run(store, tracking.ensure_experiment(store, "rnngrad/test"), "sweep")
    tracking.log_summary_table(store, run_id, pd.DataFrame({"run": ["a", "b"], "outcome": ["ok", "diverged"]}))
    tracking.log_summary_table(store, run_id, pd.DataFrame({"run": ["a", "b", "c"], "outcome": ["ok"] * 3}))
    c = tracking.client(store)
    table = json.loads(artifacts.download(store, run_id, tracking.SUMMARY_TABLE, tmp_path).read_text())
    assert table["columns"] == ["run", "outcome"] and [r[0] for r in table["data"]] == ["a", "b", "c"]
    logged = json.loads(c.get_run(run_id).data.tags["mlflow.loggedArtifacts"])
    assert logged == [{"path": tracking.SUMMARY_TABLE, "type": "table"}]


@pytest.mark.parametrize("slope_final, regime", [(-0.5, "vanishing"), (0.0, "neutral"), (0.3, "exploding")])
def test_the_regime_after_training_is_named_apart_from_the_initial_one(slope_final, regime):
    tags = tracking.regime_tags({"observed_regime": "exploding", "slope_init": 0.4, "slope_final": slope_final})
    assert tags == {"observed_regime_init": "exploding", "observed_regime_final": regime}


def test_summary_numbers_round_to_four_significant_digits():
    assert tracking.round_significant(1.903456e-9) == 1.903e-9
    assert tracking.round_significant(-123456.0) == -123500.0
    assert np.isnan(tracking.round_significant(float("nan"))) and tracking.round_significant(0.0) == 0.0


def test_modules_mlflow_probes_on_every_request_fail_at_once_when_absent_and_stay_when_installed(monkeypatch):
    import sys

    from pipeline.tracking.connection import _skip_absent_modules

    monkeypatch.delitem(sys.modules, "rnngrad_no_such_module", raising=False)
    monkeypatch.delitem(sys.modules, "json", raising=False)  # installed: imported again as usual, never blocked
    _skip_absent_modules(("rnngrad_no_such_module", "json"))
    assert sys.modules["rnngrad_no_such_module"] is None and "json" not in sys.modules
    with pytest.raises(ImportError):
        import rnngrad_no_such_module  # noqa: F401
    import json  # noqa: F401

    monkeypatch.delitem(sys.modules, "rnngrad_no_such_module")


# ---- a portable store --------------------------------------------------------------------------------------------


def _store_of_an_earlier_rnngrad(root: Path, empty_db: Path) -> tuple[str, str]:
    """A store laid out as rnngrad made them before the artifact proxy: absolute file URIs into root/mlartifacts,
    plus an experiment of someone else's with its own location. Returns (rnngrad's run id, the other location)."""
    from mlflow import MlflowClient

    root.mkdir(parents=True)
    shutil.copy(empty_db, root / "mlflow.db")
    c = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = c.create_experiment("rnngrad/old", artifact_location=(root / "mlartifacts" / "rnngrad" / "old").as_uri())
    run_id = c.create_run(exp, run_name="γW=3").info.run_id
    (root / "decay.png").write_bytes(b"\x89PNG old")
    c.log_artifact(run_id, str(root / "decay.png"), "figures")
    other = (root / "elsewhere").as_uri()
    c.create_experiment("theirs", artifact_location=other)
    return run_id, other


def test_a_store_of_an_earlier_rnngrad_moved_elsewhere_opens_with_its_artifacts(tmp_path, monkeypatch, empty_db):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_id, other = _store_of_an_earlier_rnngrad(tmp_path / "before", empty_db)
    shutil.move(tmp_path / "before", tmp_path / "after")  # the old absolute URIs now point nowhere
    store = tracking.open_store(tmp_path / "after")
    c = tracking.client(store)
    assert c.get_experiment_by_name("rnngrad/old").artifact_location == "mlflow-artifacts:/rnngrad/old"
    assert c.get_run(run_id).info.artifact_uri == f"mlflow-artifacts:/rnngrad/old/{run_id}/artifacts"
    assert c.get_experiment_by_name("theirs").artifact_location == other  # not rnngrad's layout: left alone
    assert [a.path for a in artifacts.list_files(store, run_id, "figures")] == ["figures/decay.png"]
    tracking.open_store(tmp_path / "after")  # a second opening finds nothing to rewrite
    assert c.get_run(run_id).info.artifact_uri == f"mlflow-artifacts:/rnngrad/old/{run_id}/artifacts"


def test_an_artifact_location_that_leaves_the_artifact_folder_is_refused(store):
    hostile = tracking.Store(store.tracking_uri, store.artifact_root)
    with pytest.raises(UserError, match=r"leaves .*mlartifacts"):
        artifacts.run_folder(hostile, "mlflow-artifacts:/rnngrad/../../etc/artifacts")
    assert artifacts.run_folder(hostile, "mlflow-artifacts:/rnngrad/x/abc/artifacts") == \
        store.artifacts_folder / "rnngrad" / "x" / "abc" / "artifacts"
    assert artifacts.run_folder(tracking.Store("http://127.0.0.1:5000", None), "mlflow-artifacts:/x") is None


def test_a_run_logs_the_config_fields_that_apply_to_it():
    from pipeline.run.config import RunConfig, applicable, flatten

    synthetic = flatten(RunConfig(task="adding", seq_len=10, clip_mode="none"))
    shown = applicable(synthetic)
    assert not {"text", "windows", "samples", "sample_len", "clip_threshold", "forget_bias", "leaky_slope"} & set(shown)
    assert {"val_size", "data_seed", "activation", "gamma_w", "seed"} <= set(shown)
    text = applicable(flatten(RunConfig(task="text", cell_type="lstm", clip_mode="global")))
    assert {"text", "windows", "samples", "clip_threshold", "forget_bias"} <= set(text)
    assert not {"val_size", "data_seed", "form", "activation", "leaky_slope"} & set(text)
    assert "leaky_slope" in applicable(flatten(RunConfig(activation="leaky_relu")))
    assert len(shown) < len(synthetic) and all(synthetic[k] == v for k, v in shown.items())
