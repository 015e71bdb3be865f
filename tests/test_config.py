"""RunConfig validation, hashing and flattening; `train --config` files. Sweep specs: test_spec.py."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.run import config
from pipeline.engine import optim
from pipeline.run.config import (FIELDS, RunConfig, config_from_values, config_hash, describe_field, field_docs,
                                 flatten, load_config_file, markdown_table)
from pipeline.errors import UserError

# One valid value per field, different from its default: every field must change the hash.
ALTERNATIVES = dict(
    task="adding", text="corpus.txt", seq_len=50, val_size=512, data_seed=3, form="pascanu", activation="relu",
    leaky_slope=0.2, layers=2, hidden=64, init="orthogonal", gamma_w=1.5, input_scale=0.5, optimizer="adam",
    lr=0.003, weight_decay=1e-4, batch=32, iters=200, clip_mode="elementwise", clip_threshold=1.0, eval_every=20,
    samples=2, sample_len=50, probe_len=30, seed=7, omega=0.5, windows="consecutive", output_scale=0.01,
    loss_reduction="sequence_sum",
)
# The LSTM's own fields, each changed from a config with cell lstm (the vanilla ALTERNATIVES would conflict with it).
LSTM_ALTERNATIVES = dict(cell_type="lstm", forget_bias=2.0)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def in_file(values: dict) -> RunConfig:
    return config_from_values(values, lambda key: f"run.yaml: {key}")


# ---- RunConfig ------------------------------------------------------------------------------------------------


def test_defaults_are_min_char_rnn():
    cfg = RunConfig()
    assert (cfg.task, cfg.hidden, cfg.seq_len, cfg.optimizer, cfg.lr) == ("text", 100, 25, "adagrad", 0.1)
    assert (cfg.clip_mode, cfg.clip_threshold) == ("global", 5.0)


def test_every_field_carries_its_help():
    """Each field says what it means (and units) beside its default and rule: one sentence or more, which options
    and README's table show."""
    docs = field_docs()
    assert [doc.name for doc in docs] == list(FIELDS)
    for doc in docs:
        assert doc.help[:1].isupper(), doc.name
        assert doc.help.endswith(".") and len(doc.help) >= 15, doc.name
        assert doc.default == getattr(RunConfig(), doc.name) and doc.rule.kind in (int, float, str, bool), doc.name


def test_options_are_described_without_null():
    """An option cannot be given null (leaving it out is that): its description drops the null alternative."""
    assert describe_field("input_scale") == "a number >= 0 and <= 1e+06 (or null)"
    assert describe_field("input_scale", null=False) == "a number >= 0 and <= 1e+06"
    assert describe_field("text", null=False) == describe_field("text")  # a corpus has no null alternative
    assert describe_field("hidden", null=False) == describe_field("hidden") == "an integer in [1, 4096]"


def test_bool_rule_takes_only_true_or_false():
    rule = config.Bool()
    assert rule.check(True) is True and rule.check(False) is False and rule.kind is bool
    for value in (1, 0, "yes", None):
        with pytest.raises(config.Invalid, match="is not true or false; valid: true or false"):
            rule.check(value)


@pytest.mark.parametrize(
    "field, check",
    [("lr", lambda v: optim.make_optimizer("sgd", v)),
     ("weight_decay", lambda v: optim.make_optimizer("sgd", 0.1, weight_decay=v)),
     ("clip_threshold", lambda v: optim.check_clip("global", v)),
     ("clip_threshold", lambda v: optim.check_clip("elementwise", v))],
)
def test_config_and_engine_share_one_set_of_bounds(field, check):
    """A value the config accepts, the engine accepts, and the other way round: both read optim's limits."""
    limit = {"lr": optim.MAX_LR, "weight_decay": optim.MAX_WEIGHT_DECAY, "clip_threshold": optim.MAX_CLIP_THRESHOLD}
    for value in (limit[field], limit[field] / 2, 1e-3):
        in_file({field: value})
        check(value)
    for value in (limit[field] * 2, -1.0, float("inf"), float("nan")):
        with pytest.raises(UserError, match="out of range"):
            in_file({field: value})
        with pytest.raises(ValueError, match=re.escape(f"<= {limit[field]:g}")):
            check(value)


def test_alternatives_cover_every_field():
    assert set(ALTERNATIVES) | set(LSTM_ALTERNATIVES) == set(FIELDS)


@pytest.mark.parametrize(
    "key, value",
    [
        ("hidden", 0), ("hidden", -5), ("hidden", 3.5), ("hidden", "64"), ("hidden", True), ("seq_len", 0),
        ("clip_threshold", -1.0), ("clip_threshold", 0), ("gamma_w", 0), ("gamma_w", -2.0), ("lr", 0.0),
        ("lr", -0.1), ("lr", "fast"), ("lr", float("nan")), ("lr", float("inf")), ("iters", -1), ("batch", 0),
        ("layers", 0), ("probe_len", 0), ("val_size", 0), ("leaky_slope", -0.1), ("weight_decay", -1e-3),
        ("seed", -1), ("eval_every", -10), ("samples", -1), ("input_scale", -1.0), ("text", 5),
        ("gamma_w", 10**400), ("lr", -(10**400)), ("seed", 2**64), ("data_seed", 2**32), ("eval_every", 10**19),
        ("hidden", 10**400), pytest.param("seed", int("f" * 4000, 16), id="seed-16000-bits"), ("lr", 10**300),
        ("hidden", "9" * 5000),
    ],
)
def test_out_of_range_or_wrong_type_names_file_and_key(key, value):
    with pytest.raises(UserError) as err:
        in_file({key: value})
    message = str(err.value)
    assert message.startswith(f"run.yaml: {key}: ")
    assert "valid:" in message and len(message) < 150  # a 401-digit integer is not echoed whole


@pytest.mark.parametrize(
    "key, value, suggestion",
    [("activation", "tahn", "tanh"), ("task", "addng", "adding"), ("form", "elmann", "elman"),
     ("init", "orthogonl", "orthogonal"), ("optimizer", "adamm", "adam"), ("clip_mode", "globl", "global")],
)
def test_unknown_choice_suggests_the_closest(key, value, suggestion):
    pattern = f"run.yaml: {key}: unknown value '{value}' \\(did you mean '{suggestion}'\\?\\)"
    with pytest.raises(UserError, match=pattern):
        in_file({key: value})


def test_unknown_key_names_the_closest_field():
    with pytest.raises(UserError, match=r"run.yaml: hiden: unknown key \(did you mean 'hidden'\?\)"):
        in_file({"hiden": 64})
    with pytest.raises(UserError, match="valid keys: task, text"):
        in_file({"zzzzzz": 1})


def test_direct_construction_is_validated_too():
    with pytest.raises(UserError, match="RunConfig.hidden"):
        RunConfig(hidden=0)


def test_numbers_are_normalised():
    """YAML 1e-3 (no dot) is a string to PyYAML; ints in float fields become floats, so hashes agree."""
    cfg = in_file({"lr": "1e-3", "gamma_w": 2, "leaky_slope": 0})
    assert cfg.lr == 0.001 and isinstance(cfg.gamma_w, float) and isinstance(cfg.leaky_slope, float)
    assert config_hash(cfg) == config_hash(in_file({"lr": 0.001, "gamma_w": 2.0, "leaky_slope": 0.0}))


def test_hash_is_stable_across_processes():
    code = "from pipeline.run.config import RunConfig, config_hash; print(config_hash(RunConfig(hidden=64)))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert outs == {config_hash(RunConfig(hidden=64))}
    assert len(outs.pop()) == 12


@pytest.mark.parametrize("key", sorted(ALTERNATIVES))
def test_hash_changes_with_every_field(key):
    base = RunConfig()
    assert config_hash(dataclasses.replace(base, **{key: ALTERNATIVES[key]})) != config_hash(base)


def test_hash_changes_with_the_lstm_fields():
    rnn, lstm = RunConfig(), RunConfig(cell_type=LSTM_ALTERNATIVES["cell_type"])
    assert config_hash(lstm) != config_hash(rnn)
    assert config_hash(dataclasses.replace(lstm, forget_bias=LSTM_ALTERNATIVES["forget_bias"])) != config_hash(lstm)


@pytest.mark.parametrize("values, field, owner", [
    ({"cell_type": "lstm", "omega": 0.5}, "omega", "rnn"),
    ({"cell_type": "exprnn", "init": "orthogonal", "omega": 0.5}, "omega", "rnn"),
    ({"cell_type": "lstm", "activation": "relu"}, "activation", "rnn and exprnn"),
    ({"cell_type": "gru", "form": "pascanu"}, "form", "rnn and exprnn"),
    ({"cell_type": "lstm", "leaky_slope": 0.3}, "leaky_slope", "rnn and exprnn"),
    ({"forget_bias": 2.0}, "forget_bias", "lstm"),
    ({"cell_type": "gru", "forget_bias": 2.0}, "forget_bias", "lstm"),
])
def test_a_field_of_the_other_cell_is_named(values, field, owner):
    """Set away from its default for the cell that does not read it, a field would be silently ignored: refused,
    naming the field, the cell that reads it and the valid value."""
    with pytest.raises(UserError, match=rf"^run.yaml: {field}: .* is set for cell_type \w+, but {field} is read by "
                                        rf"cell_type {owner} only; valid: .* \(the default\)"):
        in_file(values)
    with pytest.raises(UserError, match=rf"^RunConfig.{field}: "):
        RunConfig(**values)


@pytest.mark.parametrize("values, field, valid", [
    ({"cell_type": "exprnn", "init": "orthogonal", "gamma_w": 0.9}, "gamma_w", "1.0"),
    ({"cell_type": "exprnn"}, "init", "'orthogonal', 'identity'"),  # the default init, gaussian, is not in SO(n)
    ({"cell_type": "exprnn", "init": "sparse"}, "init", "'orthogonal', 'identity'"),
])
def test_a_value_the_exprnn_cannot_take_is_named(values, field, valid):
    with pytest.raises(UserError, match=rf"^run.yaml: {field}: .* is not possible for cell_type exprnn \(its W_hh = "
                                        rf"exp\(A\) is orthogonal\); valid: {valid}$"):
        in_file(values)
    assert RunConfig(cell_type="exprnn", init="identity", activation="relu").cell_type == "exprnn"


def test_omega_below_zero_is_named():
    with pytest.raises(UserError, match=r"^run.yaml: omega: -0.1 is out of range; valid: a number >= 0"):
        in_file({"omega": -0.1})


def test_flatten_has_every_field_and_is_json():
    flat = flatten(in_file(ALTERNATIVES))
    assert list(flat) == list(FIELDS)
    assert json.loads(json.dumps(flat)) == flat
    assert flat["hidden"] == 64 and flat["text"] == "corpus.txt"


# ---- train --config FILE.yaml ---------------------------------------------------------------------------------


def test_config_file_returns_only_its_keys(tmp_path):
    path = write(tmp_path / "run.yaml", "task: adding\nhidden: 64\nlr: 1e-3\n")
    assert load_config_file(path) == {"task": "adding", "hidden": 64, "lr": 0.001}


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("hidden: [1, 2\n", r"malformed YAML at line \d+"),
        ("- hidden: 3\n", "expected a mapping"),
        ("hidden: 0\n", r"hidden: 0 is out of range"),
        ("hiddden: 4\n", "did you mean 'hidden'"),
    ],
)
def test_bad_config_file_names_the_file(tmp_path, text, pattern):
    path = write(tmp_path / "run.yaml", text)
    with pytest.raises(UserError, match=pattern) as err:
        load_config_file(path)
    assert str(err.value).startswith(str(path))


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_config_file(tmp_path / "nope.yaml")


def test_the_readme_config_table_is_the_generated_one():
    """README's "Configuration reference" table is markdown_table()'s output, verbatim (regenerate it with the
    command in markdown_table's docstring)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Configuration reference\n"):]
    section = section[:section.index("\n## ")]
    table = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))
    assert table == markdown_table()


def test_markdown_table_has_a_row_per_field():
    rows = markdown_table().splitlines()
    assert rows[0] == "| field | meaning | default | valid |" and len(rows) == 2 + len(FIELDS)
    assert rows[2].startswith("| `task` | What to learn")
    assert rows[2].endswith(f"| `text` | {describe_field('task')} |")
    gamma = next(row for row in rows if row.startswith("| `gamma_w` |"))
    assert gamma.startswith("| `gamma_w` | The spectral norm \\|\\|W_hh\\|\\|_2 at init")  # a bare | splits cells
    assert "| `null` | a number >= 0 and <= 1e+06 (or null) |" in markdown_table()  # input_scale
