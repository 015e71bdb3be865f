"""Sweep specs (pipeline.run.spec): loading, grid expansion, the datasets derived from the cells; the repository's
specs against params.yaml and dvc.yaml; one "did you mean" for every message; no import cycle in the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from pipeline.errors import UserError, did_you_mean
from pipeline.run.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


SPEC = """\
name: weight_norms
description: Decay of Jacobian norms against gamma_w.
base: {task: adding, seq_len: 50, hidden: 64, iters: 200, val_size: 512}
profiles:
  quick:
    base: {iters: 150}
    grid: {gamma_w: [0.5, 1.0, 2.0], seed: [0, 1]}
  full:
    grid: {gamma_w: [0.5, 1.0, 2.0, 4.0], activation: [tanh, relu]}
"""


def spec_file(tmp_path: Path, text: str = SPEC, name: str = "weight_norms") -> Path:
    return write(tmp_path / f"{name}.yaml", text)


def test_spec_grid_is_the_cartesian_product_in_order(tmp_path):
    spec = load_spec(spec_file(tmp_path), "quick")
    assert (spec.name, spec.profile) == ("weight_norms", "quick")
    assert spec.description.startswith("Decay")
    got = [(c.gamma_w, c.seed) for c in spec.cells]
    assert got == [(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1), (2.0, 0), (2.0, 1)]
    assert spec.grid[3] == {"gamma_w": 1.0, "seed": 1}
    for cell in spec.cells:  # profile base over top-level base over RunConfig defaults
        assert (cell.task, cell.hidden, cell.iters, cell.optimizer) == ("adding", 64, 150, "adagrad")
    assert [(d.task, d.T, d.count, d.seed) for d in spec.data] == [("adding", 50, 512, 0)]  # six cells, one dataset


def test_full_profile_and_empty_grid(tmp_path):
    assert len(load_spec(spec_file(tmp_path), "full").cells) == 8
    one = spec_file(tmp_path, "name: one\nbase: {task: text, text: default, iters: 5}\nprofiles: {quick: {}}\n", "one")
    spec = load_spec(one, "quick")
    assert len(spec.cells) == 1 and spec.cells[0].iters == 5
    assert [(d.task, d.path, d.seq_len) for d in spec.data] == [("text", "default", 25)]  # the embedded one, window 25


def test_a_list_of_grids_runs_each_product_in_turn(tmp_path):
    text = SPEC.replace("grid: {gamma_w: [0.5, 1.0, 2.0], seed: [0, 1]}",
                        "grid:\n      - {clip_mode: [none]}\n"
                        "      - {clip_mode: [global, elementwise], clip_threshold: [1, 10]}")
    spec = load_spec(spec_file(tmp_path, text), "quick")
    assert [(c.clip_mode, c.clip_threshold) for c in spec.cells] == [
        ("none", 5.0), ("global", 1.0), ("global", 10.0), ("elementwise", 1.0), ("elementwise", 10.0)]
    assert spec.grid[0] == {"clip_mode": "none"}
    assert spec.grid[4] == {"clip_mode": "elementwise", "clip_threshold": 10.0}


@pytest.mark.parametrize("grid, pattern", [
    ("[]", r"profiles.quick.grid: expected a mapping like .* or a non-empty list of them"),
    ("[{seed: [0]}, 3]", r"profiles.quick.grid\[1\]: expected a mapping"),
    ("[{seed: [0]}, {sed: [1]}]", r"profiles.quick.grid\[1\]: unknown key 'sed' \(did you mean 'seed'\?\)"),
    ("[{seed: [0]}, {seed: [-1]}]", r"profiles.quick.grid\[1\].seed\[0\]: -1 is out of range"),
    ("[{seed: [0, 1]}, {seed: [1]}]", r"profiles.quick.grid: cells 1 .* and 2 .* are the same run"),
])
def test_bad_list_of_grids_names_the_part(tmp_path, grid, pattern):
    path = spec_file(tmp_path, SPEC.replace("{gamma_w: [0.5, 1.0, 2.0], seed: [0, 1]}", grid))
    with pytest.raises(UserError, match=pattern):
        load_spec(path, "quick")


DERIVED = r"unknown key 'data': datasets now derive from the cells \(task, seq_len, val_size, data_seed"


@pytest.mark.parametrize(
    "old, new, pattern",
    [
        ("profiles:", "profile:", r"unknown key 'profile' \(did you mean 'profiles'\?\)"),
        ("grid: {gamma_w: [0.5, 1.0, 2.0], seed", "grids: {gamma_w: [0.5, 1.0, 2.0], seed",
         r"profiles.quick: unknown key 'grids' \(did you mean 'grid'\?\)"),
        ("seed: [0, 1]", "sed: [0, 1]", r"profiles.quick.grid: unknown key 'sed' \(did you mean 'seed'\?\)"),
        ("hidden: 64", "hiden: 64", r"base.hiden: unknown key \(did you mean 'hidden'\?\)"),
        ("hidden: 64", "hidden: -64", r"base.hidden: -64 is out of range"),
        ("[0.5, 1.0, 2.0], seed", "[0.5, -1.0, 2.0], seed", r"profiles.quick.grid.gamma_w\[1\]: -1.0 is out of range"),
        ("{iters: 150}", "{iters: -1}", r"profiles.quick.base.iters: -1 is out of range"),
        ("{iters: 150}", "{lr: 0}", r"profiles.quick.base.lr: 0 is out of range"),
        ("{iters: 150}", "{clip_threshold: -5}", r"profiles.quick.base.clip_threshold"),
        ("{iters: 150}", "{batch: 0}", r"profiles.quick.base.batch"),
        ("{iters: 150}", "{seq_len: 0}", r"profiles.quick.base.seq_len"),
        ("seed: [0, 1]", "seed: 0", r"profiles.quick.grid.seed: expected a non-empty list"),
        ("seed: [0, 1]", "seed: []", r"profiles.quick.grid.seed: expected a non-empty list"),
        ("seed: [0, 1]", "seed: [0, 0]", r"profiles.quick.grid: cells 0 .* and 1 .* are the same run"),
        ("activation: [tanh, relu]", "activation: [tanh, rellu]",
         r"profiles.full.grid.activation\[1\]: unknown value 'rellu' \(did you mean 'relu'\?\)"),
        ("    base: {iters: 150}\n", "    data: [{task: adding, T: 50, count: 512, seed: 0}]\n    base: {iters: 150}\n",
         r"profiles.quick: " + DERIVED),
        ("  full:\n", "  full:\n    data: [{task: adding, T: 50, count: 512, seed: 0}]\n",
         r"profiles.full: " + DERIVED),
        ("name: weight_norms", "name: other", r"name: 'other' differs from the file name"),
        ("description: Decay of Jacobian norms against gamma_w.", "description: [a, b]", "description"),
        ("base: {task: adding", "base: {task: [adding]", r"base.task: unknown value"),
        ("base: {task: adding", "base: {task: addition",
         r"base.task: unknown value 'addition' \(did you mean 'adding'"),
        ("  quick:\n", "  quick: 3\n  x:\n", r"profiles.quick: expected a mapping"),
        # a field of the other cell, in any profile, before anything runs
        ("seed: [0, 1]}", "seed: [0, 1], cell_type: [lstm], omega: [0.5]}",
         r"profiles.quick: cell 0 .*: omega: 0.5 is set for cell_type lstm, but omega is read by cell_type rnn"),
        ("activation: [tanh, relu]}", "activation: [tanh, relu], cell_type: [lstm]}",
         r"profiles.full: cell 1 .*: activation: 'relu' is set for cell_type lstm"),
        ("base: {task: adding", "base: {forget_bias: 0.0, task: adding",
         r"profiles.quick: cell 0 .*: forget_bias: 0.0 is set for cell_type rnn"),
        ("{iters: 150}", "{iters: 150, omega: -1}", r"profiles.quick.base.omega: -1 is out of range"),
    ],
)
def test_bad_spec_names_file_and_key(tmp_path, old, new, pattern):
    assert old in SPEC
    path = spec_file(tmp_path, SPEC.replace(old, new, 1))
    with pytest.raises(UserError, match=pattern) as err:
        load_spec(path, "quick")
    assert str(err.value).startswith(str(path))


def test_a_top_level_data_key_says_datasets_derive_from_the_cells(tmp_path):
    path = spec_file(tmp_path, SPEC.replace("profiles:\n", "data: [{task: adding, T: 50, count: 512}]\nprofiles:\n"))
    with pytest.raises(UserError, match=f"^{path}: " + DERIVED):
        load_spec(path, "quick")


def test_missing_profile_suggests_the_closest(tmp_path):
    with pytest.raises(UserError, match=r"no profile 'quik' \(did you mean 'quick'\?\); this spec has: quick, full"):
        load_spec(spec_file(tmp_path), "quik")


def test_missing_or_malformed_spec(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_spec(tmp_path / "absent.yaml", "quick")
    with pytest.raises(UserError, match="malformed YAML at line"):
        load_spec(spec_file(tmp_path, "name: x\nbase: {task: [\n", "x"), "quick")
    with pytest.raises(UserError, match="profiles: missing or empty"):
        load_spec(spec_file(tmp_path, "name: y\nbase: {}\n", "y"), "quick")


# ---- the datasets a spec's cells need ---------------------------------------------------------------------------


def test_synthetic_cells_need_one_dataset_each_in_grid_order(tmp_path):
    """long_range's shape: task x seq_len gives one dataset per cell; axes that leave (task, seq_len, val_size,
    data_seed) alone (here seed) add none; data_seed and val_size are part of the file name."""
    path = spec_file(tmp_path, "base: {val_size: 64}\nprofiles:\n  quick:\n    grid:\n"
                               "      - {task: [adding, copy], seq_len: [10, 20], seed: [0, 1]}\n"
                               "      - {task: [adding], seq_len: [10], data_seed: [3], val_size: [32, 64]}\n", "lr")
    spec = load_spec(path, "quick")
    assert [d.name for d in spec.data] == ["adding_T10_N64_s0", "adding_T20_N64_s0", "copy_T10_N64_s0",
                                           "copy_T20_N64_s0", "adding_T10_N32_s3", "adding_T10_N64_s3"]
    first = spec.data[2]
    assert first.where == f"{path}: profiles.quick: cell 4 {{'task': 'copy', 'seq_len': 10, 'seed': 0}}"


def test_text_cells_need_their_corpus_and_longest_window(tmp_path):
    """One request per corpus (a file, or `default`) with the longest window of the cells reading it; a grid
    part that trains a synthetic task needs a dataset, however long its seq_len."""
    path = spec_file(tmp_path, "base: {task: adding, seq_len: 50, text: default}\nprofiles:\n  quick:\n    grid:\n"
                               "      - {seq_len: [500]}\n      - {task: [text], seq_len: [20, 90]}\n"
                               "      - {task: [text]}\n      - {task: [text], text: [my.txt], seq_len: [30, 40]}\n",
                     "c")
    data = load_spec(path, "quick").data
    assert [(d.task, d.T, d.path, d.seq_len) for d in data] == [
        ("adding", 500, None, None), ("text", None, "default", 90), ("text", None, "my.txt", 40)]
    assert data[1].where.endswith("cell 1 {'task': 'text', 'seq_len': 20}")  # the first cell reading it


@pytest.mark.parametrize("text", ["", "text: null, "])
def test_a_text_cell_must_name_its_corpus(tmp_path, text):
    """Unset, or null, the corpus would be implicit (once: "whatever generate last wrote"); a spec says which."""
    path = spec_file(tmp_path, f"base: {{task: text, {text}iters: 5}}\nprofiles: {{quick: {{}}}}\n", "t")
    with pytest.raises(UserError, match=r"t.yaml.*(must name its corpus; add text: default|null is not a corpus)"):
        load_spec(path, "quick")


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml")))
@pytest.mark.parametrize("profile", ["quick", "full"])
def test_every_repository_spec_derives_one_dataset_per_distinct_cell_data(name, profile):
    spec = load_spec(ROOT / "experiments" / f"{name}.yaml", profile)
    synthetic = {(c.task, c.seq_len, c.val_size, c.data_seed) for c in spec.cells if c.task != "text"}
    assert {(d.task, d.T, d.count, d.seed) for d in spec.data if d.task != "text"} == synthetic
    assert len(spec.data) == len(synthetic) + (1 if any(c.task == "text" for c in spec.cells) else 0)


def test_a_spec_is_its_file_plus_its_name_in_params():
    """params.yaml's specs: list names exactly the files in experiments/, and dvc.yaml's sweep stage iterates it."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert sorted(params["specs"]) == sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert stages["sweep"]["foreach"] == stages["generate"]["foreach"] == "${specs}"
    generate, sweep = stages["generate"]["do"], stages["sweep"]["do"]
    assert [next(iter(out)) for out in generate["outs"]] == ["data/${item}"]  # one data folder per spec
    assert "--out data/${item}" in generate["cmd"] and "--data-dir data/${item}" in sweep["cmd"]
    assert {"experiments/${item}.yaml", "data/${item}"} <= set(sweep["deps"]) and "data" not in sweep["deps"]
    # a spec is a dep of its stages, not a params file: `dvc exp show` would give every key of it a column
    assert "experiments/${item}.yaml" in generate["deps"]
    assert all(isinstance(p, str) for stage in (generate, sweep) for p in stage["params"]), "a params file"


def test_the_readme_example_spec_derives_the_datasets_it_names(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Adding an experiment spec"):]
    example = section[section.index("```yaml\n") + 8:section.index("```\n", section.index("```yaml\n"))]
    path = spec_file(tmp_path, example, "my_spec")
    for profile, count in (("quick", 1000), ("full", 10000)):
        assert [d.name for d in load_spec(path, profile).data] == [f"adding_T30_N{count}_s0"]
        assert f"`adding_T30_N{count}_s0`" in section


# ---- messages and imports ---------------------------------------------------------------------------------------


def test_did_you_mean_names_the_closest_or_nothing():
    assert did_you_mean("tahn", ("tanh", "relu")) == " (did you mean 'tanh'?)"
    assert did_you_mean("zzzz", ("tanh", "relu")) == ""
    assert did_you_mean(3, {"quick": {}, 30: {}}) == " (did you mean '30'?)"  # YAML keys need not be strings


def _imports(path: Path, package: list[str]) -> set[str]:
    """Every pipeline module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = (package[:len(package) - node.level + 1] if node.level else []) + (node.module or "").split(".")
            target = ".".join(part for part in base if part)
            found |= {target} | {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("pipeline")}


def test_the_package_has_no_import_cycle():
    """Function-level imports count too: a cycle hidden in one is still a cycle."""
    modules = {}
    for path in (ROOT / "pipeline").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = (path, parts[:-1])
    graph = {name: _imports(path, package) & set(modules) - {name} for name, (path, package) in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(trail + [name, dep])}"
            if dep not in state:
                visit(dep, trail + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not graph["pipeline.run.datasets"] & {"pipeline.run.config", "pipeline.run.spec"}  # one spec parser
