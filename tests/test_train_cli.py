"""`rnngrad train` as a user runs it (a subprocess): bad input exits 2 with one line, --json prints one object,
--config is overridden by explicit options, and the run lands in MLflow (a sqlite store in a temp folder)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from pipeline.run import config
from pipeline.run.config import FIELDS, field_docs
from pipeline.stages.train import config_options

TINY = ["--task", "adding", "--seq-len", "10", "--hidden", "8", "--batch", "8", "--iters", "20", "--val-size", "64",
        "--probe-len", "8", "--optimizer", "adam", "--lr", "0.01", "--eval-every", "10"]


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One sqlite MLflow store for the module (creating one costs seconds); nothing reaches the project."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture
def env(store_uri) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": store_uri, "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


@pytest.fixture
def invoke(tmp_path, monkeypatch, store_uri):
    """`rnngrad train ARGS` in this process (CliRunner keeps stdout and stderr apart), run from tmp_path."""
    from pipeline import cli

    if "train" not in {c.name for c in cli.app.registered_commands}:
        cli._register()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    return lambda args, **kwargs: CliRunner().invoke(cli.app, ["train", *args], **kwargs)


def train(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """`python -m pipeline train ARGS` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "pipeline", "train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)


def test_help_lists_every_config_field(invoke):
    done = invoke(["--help"])
    assert done.exit_code == 0
    for name in FIELDS:
        assert f"--{name.replace('_', '-')}" in done.stdout
    assert "--config" in done.stdout and "--json" in done.stdout
    assert "<bool>" not in done.stdout  # a flag is shown as one (Typer 0.29 showed `--json <bool>`)


def test_help_of_each_field_is_its_meaning_values_and_default(invoke):
    """Made from the config table: one line per option on a wide terminal, e.g.
    --hidden <int> Units per layer n. [an integer in [1, 4096]; default: 100]"""
    done = invoke(["--help"], env={"COLUMNS": "1000"})
    assert done.exit_code == 0
    lines = done.stdout.splitlines()
    for doc in field_docs():
        (line,) = [line for line in lines if line.strip("│ ").startswith(f"--{doc.name.replace('_', '-')} ")]
        default = "]" if doc.default is None else f"; default: {doc.default}]"
        assert f"{doc.help} [{doc.rule.describe(null=False)}{default}" in line, line
        assert "null" not in line  # an option cannot be given null: left out, the help says what happens


@dataclasses.dataclass(frozen=True)
class Toy:
    verbose: bool = config._f(False, config.Bool(), "Say more.")
    depth: int = config._f(3, config.Int(1, 9), "How deep.")


def test_options_come_from_the_table_and_a_bool_field_is_a_pair_of_flags():
    seen = []

    @config_options(field_docs(Toy))
    def command(given: dict, other: Annotated[int, typer.Option(help="Not a field.")] = 0) -> None:
        seen.append({**given, "other": other})

    app = typer.Typer()
    app.command()(command)
    runner = CliRunner()
    shown = runner.invoke(app, ["--help"], env={"COLUMNS": "300"}).stdout
    assert "--verbose" in shown and "--no-verbose" in shown and "Say more. [true or false; default: false]" in shown
    assert "How deep. [an integer in [1, 9]; default: 3]" in shown and "Not a field." in shown
    for args in (["--verbose", "--depth", "4"], ["--no-verbose", "--other", "2"], []):
        assert runner.invoke(app, args).exit_code == 0
    assert seen == [{"verbose": True, "depth": 4, "other": 0}, {"verbose": False, "other": 2}, {"other": 0}]


@pytest.mark.parametrize(
    "args, files, expected",
    [
        (["--hidden", "-5"], {}, "--hidden: -5 is out of range"),
        (["--lr", "0"], {}, "--lr: 0.0 is out of range"),
        (["--clip-threshold", "-1"], {}, "--clip-threshold"),
        (["--gamma-w", "0"], {}, "--gamma-w"),
        (["--activation", "tahn"], {}, "--activation: unknown value 'tahn' (did you mean 'tanh'?)"),
        (["--task", "addng"], {}, "did you mean 'adding'?"),
        (["--config", "missing.yaml"], {}, "Invalid value for '--config': file 'missing.yaml' does not exist."),
        (["--config", "."], {}, "Invalid value for '--config': file '.' is a directory."),
        (["--config", "bad.yaml"], {"bad.yaml": "hiden: 4\n"}, "bad.yaml: hiden: unknown key (did you mean 'hidden'?)"),
        (["--config", "bad.yaml"], {"bad.yaml": "hidden: [4\n"}, "bad.yaml: malformed YAML"),
        (["--config", "bad.yaml"], {"bad.yaml": "iters: -3\n"}, "bad.yaml: iters: -3 is out of range"),
        (["--data-dir", "afile"], {"afile": "x"}, "--data-dir afile: is a file"),
        (["--out", "afile/runs"], {"afile": "x"}, "--out afile/runs: afile is a file"),
        (["--task", "text", "--text", "nope.txt"], {}, "--text nope.txt: no such file"),
        (["--task", "text", "--text", "."], {}, "--text .: is a directory"),
        (["--task", "text", "--text", "short.txt", "--seq-len", "5"], {"short.txt": "abcdefghij" * 4},
         "--seq-len: 5 needs 6 characters, the validation text has 4"),
        (["--task", "text", "--seq-len", "100000", "--data-dir", "none"], {}, "--seq-len: 100000 needs 100001"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, invoke, args, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    done = invoke(args)
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "results").exists()


def test_unusable_tracking_uri_is_bad_input(tmp_path, invoke, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    done = invoke(TINY)
    assert done.exit_code == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "MLFLOW_TRACKING_URI" in done.stderr and not (tmp_path / "results").exists()


def test_data_and_folder_problems_leave_no_store_behind(tmp_path, invoke, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the embedded store: it would be tmp_path/mlflow.db
    (tmp_path / "short.txt").write_text("abc")
    done = invoke(["--task", "text", "--text", "short.txt", "--hidden", "4", "--iters", "3"])
    assert done.exit_code == 2 and len(done.stderr.strip().splitlines()) == 1 and "--seq-len: 25" in done.stderr
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    done = invoke(TINY + ["--out", "dangling/runs"])
    assert done.exit_code == 2 and "--out dangling/runs: dangling is a broken symbolic link" in done.stderr
    (tmp_path / "dangling").unlink()
    monkeypatch.setattr("pipeline.run.paths.os.access", lambda path, mode: False)  # as a read-only file system says
    done = invoke(TINY + ["--out", "runs"])
    assert done.exit_code == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--out runs: . is not writable" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.txt"]


def test_a_run_folder_that_cannot_be_made_is_bad_input(invoke, monkeypatch):
    def refuse(parent, name):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pipeline.run.files.temp_folder", refuse)  # as root, os.access cannot say it beforehand
    done = invoke(TINY + ["--out", "runs"])
    assert done.exit_code == 2 and done.stderr.strip().splitlines() == [
        "Error: --out runs: cannot write the run folder there (Permission denied)"], done.stderr


def test_option_of_the_wrong_type_exits_2(invoke):
    done = invoke(["--hidden", "many"])  # parsed by click before our validation
    assert done.exit_code == 2 and "--hidden" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_json_run_is_logged_to_mlflow(tmp_path, env, monkeypatch):
    done = train([*TINY, "--json"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[-1])
    assert set(report) == {"run_id", "outcome", "final_train_loss", "final_val_loss", "val_accuracy", "seconds",
                           "run_dir"}
    assert report["outcome"] == "ok" and report["seconds"] > 0
    assert all(isinstance(report[k], float) for k in ("final_train_loss", "final_val_loss", "val_accuracy"))
    (run_dir,) = (tmp_path / "runs" / "train").iterdir()  # outside results/, which the study's stages read
    assert not (tmp_path / "results").exists() and Path(report["run_dir"]) == Path("runs/train") / run_dir.name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["final_val_loss"] == summary["final_val_loss"] and run_dir.name == summary["config_hash"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    from pipeline import tracking

    store = tracking.open_store(tmp_path)
    finished = tracking.finished_runs(store, tracking.ensure_experiment(store, "rnngrad/train"))
    assert finished[run_dir.name] == report["run_id"]


def test_options_override_the_config_file(tmp_path, invoke):
    (tmp_path / "run.yaml").write_text("task: adding\nhidden: 6\niters: 5\nseq_len: 10\nval_size: 64\n"
                                       "probe_len: 5\nbatch: 4\n")
    done = invoke(["--config", "run.yaml", "--hidden", "7", "--out", "elsewhere"])
    assert done.exit_code == 0, done.stderr
    (run_dir,) = (tmp_path / "elsewhere").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["hidden"], config["iters"], config["task"], config["batch"]) == (7, 5, "adding", 4)
    assert config["optimizer"] == "adagrad"  # neither file nor option: the default
    assert "run folder:" in done.stdout and "mlflow ui" in done.stdout


def test_a_text_run_prints_its_first_and_last_sample_and_json_names_its_folder(tmp_path, invoke):
    (tmp_path / "tiny.txt").write_text("abcabd abcabd abcabe\n" * 40, encoding="utf-8")
    args = ["--task", "text", "--text", "tiny.txt", "--seq-len", "8", "--hidden", "6", "--iters", "6", "--batch", "2",
            "--samples", "3", "--sample-len", "12", "--probe-len", "5", "--windows", "consecutive"]
    done = invoke(args)
    assert done.exit_code == 0, done.stderr
    (run_dir,) = (tmp_path / "runs" / "train").iterdir()
    samples = json.loads((run_dir / "samples.json").read_text())
    assert [s["iter"] for s in samples] == [2, 4, 6]
    shown = [line for line in done.stdout.splitlines() if line.startswith("sample at iteration")]
    assert shown == ["sample at iteration 2:", "sample at iteration 6:"]  # the first and the last
    assert f"    {samples[-1]['text'].splitlines()[0]}" in done.stdout.splitlines()
    report = json.loads(invoke([*args, "--json"]).stdout.strip().splitlines()[-1])
    assert report["run_dir"] == str(Path("runs/train") / run_dir.name) and report["samples"] == [samples[0], samples[-1]]


@pytest.mark.parametrize("cell", [["--cell-type", "gru"], ["--cell-type", "exprnn", "--init", "orthogonal"]])
def test_the_gru_and_the_exprnn_train_and_are_probed_like_any_cell(invoke, tmp_path, cell):
    done = invoke([*TINY, *cell, "--json", "--out", str(tmp_path / "runs")])
    assert done.exit_code == 0, done.output
    run_dir = Path(json.loads(done.stdout.strip().splitlines()[-1])["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["outcome"] == "ok" and summary["violations_init"] == summary["violations_final"] == 0
    assert summary["spot_mismatches_init"] == summary["spot_mismatches_final"] == 0
    if cell[1] == "exprnn":  # its W_hh stays orthogonal, and its global bound is gamma_phi^(t-k) = 1
        assert abs(summary["gamma_w_final"] - 1) < 1e-12 and abs(summary["log_rate_init"]) < 1e-12
    else:  # a gated cell: no gamma_W gamma_phi bound
        assert summary["log_rate_init"] is None and summary["gamma_phi"] is None


def test_an_exprnn_with_the_default_gaussian_init_is_refused_in_one_line(invoke):
    done = invoke([*TINY, "--cell-type", "exprnn"])
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "'gaussian' is not possible for cell_type exprnn" in lines[0], done.stderr
    assert "valid: 'orthogonal', 'identity'" in lines[0]
