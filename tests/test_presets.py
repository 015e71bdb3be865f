"""`rnngrad train --preset min-char-rnn`: min-char-rnn's settings in one option, checked against the port of
min-char-rnn.py the bench trains (its constants) and a draw of its init; the preset sits under --config and the
options; it resolves to plain field values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pipeline.benchmarks import minchar
from pipeline.engine.jacobian import spectral_norm
from pipeline.errors import UserError
from pipeline.run.config import RunConfig, config_hash, read_yaml
from pipeline.run.presets import MIN_CHAR_RNN, PRESETS, differences, preset_values
from pipeline.stages.train import preset_help, resolve_config


def test_the_preset_is_the_ports_settings():
    """The bench's port of min-char-rnn.py is the reference: its window, size, rate and clip bound; its draw of
    every matrix as 0.01 N(0, 1); one stream carried; the loss summed over the window."""
    cfg = resolve_config(None, {}, "min-char-rnn")
    assert (cfg.seq_len, cfg.hidden, cfg.lr, cfg.clip_threshold) == (minchar.SEQ_LEN, minchar.HIDDEN, minchar.LR,
                                                                    minchar.CLIP)
    assert (cfg.windows, cfg.batch, cfg.loss_reduction, cfg.clip_mode, cfg.optimizer) == (
        "consecutive", 1, "sequence_sum", "elementwise", "adagrad")
    port = minchar.MinCharRNN(np.arange(50) % 7, 7, np.random.default_rng(0))
    assert cfg.input_scale == pytest.approx(port.Wxh.std(), rel=0.1)
    assert cfg.output_scale == pytest.approx(port.Why.std(), rel=0.3)  # 7 x 100 entries: a rougher estimate
    assert (cfg.cell_type, cfg.form, cfg.activation, cfg.layers, cfg.init) == ("rnn", "elman", "tanh", 1, "gaussian")


def test_the_preset_norm_of_w_hh_is_the_norm_of_min_char_rnns_draw():
    """min-char-rnn draws W_hh as 0.01 N(0, 1) (100 x 100) and keeps it; the preset rescales its draw to
    gamma_w, which must be that draw's norm to within a few per cent."""
    rng = np.random.default_rng(1)
    norms = [spectral_norm(0.01 * rng.standard_normal((minchar.HIDDEN, minchar.HIDDEN))) for _ in range(20)]
    assert MIN_CHAR_RNN["gamma_w"] == pytest.approx(np.mean(norms), rel=0.03)
    assert max(abs(n / MIN_CHAR_RNN["gamma_w"] - 1) for n in norms) < 0.06


def test_a_preset_resolves_to_the_config_of_its_options():
    """Same values, same run: the preset makes the config, and the hash, of the options it stands for."""
    as_options = {k: v for k, v in PRESETS["min-char-rnn"].items()}
    assert resolve_config(None, {}, "min-char-rnn") == resolve_config(None, as_options)
    assert config_hash(resolve_config(None, {}, "min-char-rnn")) == config_hash(RunConfig(**as_options))


def test_config_file_and_options_override_the_preset(tmp_path):
    (tmp_path / "run.yaml").write_text("hidden: 64\nbatch: 4\n")
    cfg = resolve_config(tmp_path / "run.yaml", {"batch": 8}, "min-char-rnn")
    assert (cfg.hidden, cfg.batch, cfg.windows, cfg.clip_mode) == (64, 8, "consecutive", "elementwise")


def test_an_unknown_preset_names_the_valid_ones():
    with pytest.raises(UserError, match=r"--preset: unknown preset 'min-char' \(did you mean 'min-char-rnn'\?\); "
                                        r"valid: min-char-rnn"):
        preset_values("min-char")


def test_help_lists_each_value_that_differs_from_the_defaults():
    defaults = RunConfig()
    changed = {k for k, v in PRESETS["min-char-rnn"].items() if getattr(defaults, k) != v}
    assert {d.split()[0] for d in differences("min-char-rnn")} == changed
    assert {"windows", "gamma_w", "input_scale", "output_scale", "loss_reduction", "clip_mode"} <= changed
    text = " ".join(preset_help().split())
    assert "windows consecutive (default: random)" in text and "clip_mode elementwise (default: global)" in text


def test_the_text_spec_trains_as_the_preset_but_in_parallel_streams():
    """experiments/text.yaml's vanilla arm is min-char-rnn's settings in 32 streams: every training setting it
    names is the preset's, apart from the batch."""
    base = read_yaml(Path(__file__).parents[1] / "experiments" / "text.yaml", "spec")["base"]
    shared = {k: v for k, v in base.items() if k in MIN_CHAR_RNN and k != "batch"}
    assert len(shared) >= 12
    assert shared == {k: MIN_CHAR_RNN[k] for k in shared}
    assert base["batch"] != MIN_CHAR_RNN["batch"]
    assert {f.name for f in dataclasses.fields(RunConfig)} >= set(PRESETS["min-char-rnn"])
