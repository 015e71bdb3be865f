"""Every input is in a result's identity (issue: no stale result, ever): a run's hash holds the content digest of
the corpus or validation set it reads, not its path; specs on different corpora coexist in data/, results/ and
MLflow; a changed byte of a corpus reruns exactly the runs that read it; DVC sees a corpus change; a repeated sweep
adds no empty parent run; bad corpora are refused with one line before anything is written."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import pipeline.cli
from pipeline import tracking
from pipeline.errors import UserError
from pipeline.run.config import RunConfig, config_hash, flatten
from pipeline.run.sources import input_digests, run_hash
from pipeline.run.spec import load_spec
from pipeline.sweep import run_sweep
from test_tracking import empty_db, write_fake_run_folder  # noqa: F401 (empty_db is a fixture)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
if not pipeline.cli.app.registered_commands:
    pipeline.cli._register()

TEXT_A = "It was the best of times, it was the worst of times; it was the age of wisdom.\n" * 30
TEXT_B = "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.\n" * 30


def fake_execute(cfg, data_dir, run_dir, progress=None):
    """Stands in for runner.execute_run in sweep workers: a run folder in the contracted layout, made up values."""
    write_fake_run_folder(flatten(cfg), Path(run_dir))


def invoke(*args):
    return CliRunner().invoke(pipeline.cli.app, [*map(str, args)])


@pytest.fixture
def project(tmp_path, monkeypatch, empty_db):
    """A working folder with two corpora in corpora/, a fresh MLflow store and no data/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "a.txt").write_text(TEXT_A, encoding="utf-8")
    (tmp_path / "corpora" / "b.txt").write_text(TEXT_B, encoding="utf-8")
    (tmp_path / "experiments").mkdir()
    return tmp_path


def write_spec(folder: Path, name: str, base: str, grid: str = "{seed: [0]}") -> Path:
    path = folder / "experiments" / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        description: {name} for the input-identity tests
        base: {{{base}, hidden: 4, iters: 3, seq_len: 8, batch: 2, probe_len: 5}}
        profiles:
          quick:
            grid: {grid}
        """))
    return path


# ---- identity -------------------------------------------------------------------------------------------------


def test_a_run_is_identified_by_its_corpus_content_not_its_path(project):
    a, b = RunConfig(text="corpora/a.txt"), RunConfig(text="corpora/b.txt")
    data = project / "data"
    assert input_digests(a, data) == {"corpus": hashlib.sha256(TEXT_A.encode()).hexdigest()}
    assert run_hash(a, data) != run_hash(b, data)  # two corpora: two runs
    shutil.copy(project / "corpora" / "a.txt", project / "moved.txt")
    moved = dataclasses.replace(a, text="moved.txt")
    assert config_hash(moved) != config_hash(a) and run_hash(moved, data) == run_hash(a, data)  # same text: one run
    default = RunConfig(text="default")
    assert run_hash(default, data) not in {run_hash(a, data), run_hash(b, data)}


def test_a_synthetic_run_is_identified_by_its_validation_sets_content(project, monkeypatch):
    cfg = RunConfig(task="adding", seq_len=6, val_size=8)
    before = run_hash(cfg, project / "data")
    from pipeline.engine import tasks

    make = tasks.make_task
    monkeypatch.setattr(tasks, "make_task", lambda *a: dataclasses.replace(make(*a), x=make(*a).x * 2))
    assert run_hash(cfg, project / "data") != before  # a generator that changed makes other data: another run


def editing_execute(cfg, data_dir, run_dir, progress=None):
    """fake_execute that, as it computes seed 0, appends a line to the cell's corpus (an edit during the sweep)."""
    if cfg.seed == 0:
        with open(cfg.text, "a", encoding="utf-8") as f:
            f.write("An edit made while the sweep ran.\n")
    fake_execute(cfg, data_dir, run_dir)


def _sweep(root: Path, spec_path: Path):
    store = tracking.open_store(root)
    spec = load_spec(spec_path, "quick")
    return store, spec, run_sweep(spec, root / "data", root / "results", store, 1, execute=fake_execute)


def test_one_changed_byte_reruns_exactly_the_runs_that_read_it(project):
    path = write_spec(project, "mixed", "task: text, text: corpora/a.txt",
                      "\n              - {text: [corpora/a.txt, corpora/b.txt]}\n"
                      "              - {task: [adding], seq_len: [6], val_size: [16]}")
    store, spec, first = _sweep(project, path)
    assert len(first.ran) == 3
    hashes_before = {c: h for c, h in zip(first.ran, sorted(os.listdir(project / "results" / "mixed" / "runs")))}
    corpus = project / "corpora" / "a.txt"
    corpus.write_bytes(corpus.read_bytes().replace(b"best", b"rest", 1))  # one byte
    _, _, second = _sweep(project, path)
    assert second.ran == ["text=corpora/a.txt"] and sorted(second.skipped) == sorted(
        ["text=corpora/b.txt", "task=adding,seq_len=6,val_size=16"])
    folders = set(os.listdir(project / "results" / "mixed" / "runs"))
    assert set(hashes_before.values()) < folders and len(folders) == 4  # the old result of a.txt survives
    table = pd.read_parquet(project / "results" / "mixed.parquet")
    assert len(table) == 3 and table["config_hash"].is_unique


def test_two_sweeps_in_a_row_leave_one_parent_per_spec(project):
    path = write_spec(project, "twice", "task: text, text: corpora/b.txt")
    store, _, _ = _sweep(project, path)
    _, _, again = _sweep(project, path)
    assert again.ran == [] and again.skipped == ["seed=0"]
    runs = tracking.find_runs(store, tracking.ensure_experiment(store, "rnngrad/twice"))
    assert [r.status for r in runs if "spec_hash" in r.tags] == ["FINISHED"]


def test_specs_on_two_corpora_coexist_in_data(project):
    write_spec(project, "on_a", "task: text, text: corpora/a.txt")
    write_spec(project, "on_default", "task: text, text: default")
    (project / "params.yaml").write_text("profile: quick\nspecs: [on_a, on_default]\njobs: 0\n")
    result = invoke("generate")
    assert result.exit_code == 0, result.output
    manifest = json.loads((project / "data" / "manifest.json").read_text())
    corpora = manifest["corpora"]
    assert set(corpora) == {"corpora/a.txt", "default"}
    assert corpora["corpora/a.txt"]["sha256"] == hashlib.sha256(TEXT_A.encode()).hexdigest()
    for entry in corpora.values():
        assert (project / "data" / entry["file"]).is_file() and entry["file"] in manifest["files"]


@pytest.mark.parametrize("args", [(), ("--spec", "experiments/outside.yaml", "--out", "data/outside")],
                         ids=["params-specs", "dvc-stage"])
def test_generate_refuses_a_listed_specs_corpus_that_dvc_does_not_watch(project, args):
    """Both as `rnngrad generate` reads params.yaml and as dvc.yaml's generate@<spec> names one listed spec."""
    (project / "elsewhere.txt").write_text(TEXT_A)
    write_spec(project, "outside", "task: text, text: elsewhere.txt")
    (project / "params.yaml").write_text("profile: quick\nspecs: [outside]\njobs: 0\n")
    result = invoke("generate", *args)
    assert result.exit_code == 2 and not (project / "data").exists()
    assert result.stderr.strip().splitlines() == [
        "Error: experiments/outside.yaml: profiles.quick: cell 0 {'seed': 0}: text elsewhere.txt: lies outside "
        "corpora/, the folder dvc.yaml's stages depend on, so DVC would not see it change; move it into corpora/ "
        "and name it corpora/elsewhere.txt"]


def test_a_spec_params_yaml_does_not_list_may_read_a_corpus_elsewhere(project):
    (project / "elsewhere.txt").write_text(TEXT_A)
    write_spec(project, "outside", "task: text, text: elsewhere.txt")
    write_spec(project, "listed", "task: text, text: corpora/a.txt")
    (project / "params.yaml").write_text("profile: quick\nspecs: [listed]\njobs: 0\n")
    result = invoke("generate", "--spec", "experiments/outside.yaml")
    assert result.exit_code == 0, result.output
    assert "elsewhere.txt" in json.loads((project / "data" / "manifest.json").read_text())["corpora"]


# ---- bad input ------------------------------------------------------------------------------------------------


def assert_refused(project: Path, spec: Path, *fragments: str) -> None:
    """Exit 2, one line naming the problem, and nothing written: no results, no MLflow run."""
    db_before = (project / "mlflow.db").read_bytes()
    result = invoke("sweep", spec, "--jobs", "1")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (project / "results").exists() and (project / "mlflow.db").read_bytes() == db_before


@pytest.mark.parametrize("content, fragment", [
    (None, "no such file"),
    (b"", "the file is empty"),
    (b" \n\t\n", "holds only whitespace"),
    (b"\x00\x01\x02\x03binary\x00" * 50, "looks binary"),
    ("caf\u00e9 cr\u00e8me\n".encode("latin-1") * 50, "not UTF-8 text"),
])
def test_a_bad_corpus_is_refused_before_anything_is_written(project, content, fragment):
    bad = project / "corpora" / "bad.txt"
    if content is not None:
        bad.write_bytes(content)
    spec = write_spec(project, "bad", "task: text, text: corpora/bad.txt")
    assert_refused(project, spec, "bad.yaml: cell seed=0: text corpora/bad.txt", fragment)


def test_a_corpus_changed_since_generate_is_refused(project):
    """Two sweeps of one study must read one version of a corpus: after `generate` recorded it, a changed file (an
    edit between two specs' sweeps of one `dvc repro`) stops the next sweep before it writes anything."""
    spec = write_spec(project, "on_b", "task: text, text: corpora/b.txt")
    assert invoke("generate", "--spec", spec).exit_code == 0
    (project / "corpora" / "b.txt").write_text(TEXT_B + "one more line\n")
    assert_refused(project, spec, "text corpora/b.txt: its content changed since `rnngrad generate` recorded it",
             "rerun `dvc repro` or `rnngrad generate`")


def test_a_corpus_edited_during_a_sweep_stops_it_before_a_result_is_filed_under_the_old_content(project):
    """The cell planned on the old text is not computed on the new one: the sweep stops with the one line a bad
    input gets, the cell that saw the change writes no folder and its run ends KILLED; the next sweep plans both
    cells on the new text."""
    spec_path = write_spec(project, "edited", "task: text, text: corpora/a.txt", "{seed: [0, 1]}")
    store, spec = tracking.open_store(project), load_spec(spec_path, "quick")
    planned = {cfg.seed: run_hash(cfg, project / "data") for cfg in spec.cells}
    with pytest.raises(UserError, match=r"text corpora/a.txt: its content changed while the sweep ran \(planned as "
                                        rf"run {planned[1]}, now [0-9a-f]{{12}}\); leave the study's inputs alone"):
        run_sweep(spec, project / "data", project / "results", store, 1, execute=editing_execute)
    runs = project / "results" / "edited" / "runs"
    assert sorted(os.listdir(runs)) == [planned[0]]  # computed before the edit: a result of the content it planned
    assert not (project / "results" / "edited.parquet").exists()
    children = [r for r in tracking.find_runs(store, tracking.ensure_experiment(store, "rnngrad/edited"))
                if "spec_hash" not in r.tags]
    assert sorted(r.status for r in children) == ["FINISHED", "KILLED"]
    again = run_sweep(spec, project / "data", project / "results", store, 1, execute=fake_execute)
    assert sorted(again.ran) == ["seed=0", "seed=1"]  # the new text is new input for both
    assert {run_hash(cfg, project / "data") for cfg in spec.cells}.isdisjoint(planned.values())


# ---- DVC, end to end -------------------------------------------------------------------------------------------


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(DVC_NO_ANALYTICS="1", PATH=f"{BIN}:{env.get('PATH', '')}")
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _parents(db: Path, experiment: str) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
                           "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'spec_hash' "
                           "WHERE e.name = ?", (experiment,)).fetchone()[0]


@pytest.mark.slow
def test_the_newcomers_text_spec_on_its_own_corpus_beside_the_built_in_one(tmp_path):
    """README's path: a new spec on a new corpus in corpora/, then `dvc repro`, beside the built-in text spec (here
    a tiny copy): both results in the report and in MLflow; a changed byte of the corpus is seen by `dvc status`
    and reruns only its run; the untouched spec's data is the same, so its sweep does not run. Adding a spec, or
    removing one, makes only its own stages and analyze stale."""
    shutil.copytree(ROOT / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))  # deps
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "mine.txt").write_text(TEXT_A, encoding="utf-8")
    (tmp_path / "experiments").mkdir()
    write_spec(tmp_path, "mine", "task: text, text: corpora/mine.txt")
    write_spec(tmp_path, "text", "task: text, text: default, windows: consecutive")
    (tmp_path / "params.yaml").write_text("profile: quick\nspecs: [mine, text]\njobs: 1\ncluster: \"\"\n")
    run(["git", "init", "-q"], tmp_path)

    first = run(["dvc", "repro"], tmp_path)
    lines = [line for line in first.stdout.splitlines() if line.strip()]
    at = max(i for i, line in enumerate(lines) if line.startswith("Report: "))  # the report stage ends on these,
    assert lines[at].endswith("reports/report.html") and lines[at + 1].startswith("Runs (each experiment's runs")
    assert any(line.strip().startswith("rnngrad/mine: http") and "workflowType=machine_learning" in line
               for line in lines[at:])
    assert not [line for line in lines[at:] if line.startswith("Running stage")]  # the last stage's last lines
    mine, text = (pd.read_parquet(tmp_path / "results" / f"{s}.parquet") for s in ("mine", "text"))
    assert set(mine["config_hash"]).isdisjoint(text["config_hash"])
    html = (tmp_path / "reports" / "report.html").read_text(encoding="utf-8")
    assert "mine for the input-identity tests" in html and "text for the input-identity tests" in html
    db = tmp_path / "mlflow.db"
    assert (_parents(db, "rnngrad/mine"), _parents(db, "rnngrad/text")) == (1, 1)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], tmp_path).stdout

    corpus = tmp_path / "corpora" / "mine.txt"
    corpus.write_bytes(corpus.read_bytes().replace(b"best", b"rest", 1))
    status = run(["dvc", "status"], tmp_path).stdout
    assert "generate@mine:" in status and "modified:           corpora" in status, status

    second = run(["dvc", "repro"], tmp_path).stdout
    assert "mine: 1 ran, 0 already done" in second, second
    assert "Stage 'sweep@text' didn't change, skipping" in second, second  # data/text/ holds the same bytes
    assert len(os.listdir(tmp_path / "results" / "mine" / "runs")) == 2  # both versions' results survive
    assert (_parents(db, "rnngrad/mine"), _parents(db, "rnngrad/text")) == (2, 1)  # work for mine only

    write_spec(tmp_path, "third", "task: adding")
    (tmp_path / "params.yaml").write_text("profile: quick\nspecs: [mine, text, third]\njobs: 1\ncluster: \"\"\n")
    assert stale(run(["dvc", "status"], tmp_path).stdout) == {"generate@third", "sweep@third", "analyze"}
    (tmp_path / "params.yaml").write_text("profile: quick\nspecs: [mine]\njobs: 1\ncluster: \"\"\n")
    assert stale(run(["dvc", "status"], tmp_path).stdout) == {"analyze"}


def stale(status: str) -> set[str]:
    """The stages `dvc status` lists: its unindented `<stage>:` lines."""
    return {line[:-1] for line in status.splitlines() if line.endswith(":") and not line[0].isspace()}


def test_too_many_streams_for_the_corpus_are_refused(project):
    """Consecutive windows cut the training text into `batch` streams; each must hold a window and its target."""
    spec = write_spec(project, "streams", "task: text, text: corpora/a.txt, windows: consecutive")
    spec.write_text(spec.read_text().replace("batch: 2", "batch: 400"))
    assert_refused(project, spec, "cell seed=0: batch: 400 streams of consecutive windows leave 5 training characters each")
