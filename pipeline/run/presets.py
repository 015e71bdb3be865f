"""Named sets of config values, one option away (`rnngrad train --preset NAME`).

A preset is applied over RunConfig's defaults and under a `--config` file and the options given, so any of its
values can still be changed. It resolves to plain field values: a run made with it has the config, and the
config_hash, of the same run made with the equivalent options.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import UserError, did_you_mean, shown
from .config import RunConfig, check_values

# Karpathy's min-char-rnn.py (2015), every setting it has: one vanilla tanh layer of 100 units over one-hot
# characters; one stream of 25-character windows walked through the text with the hidden state carried (batch 1);
# W_xh, W_hh, W_hy drawn as 0.01 N(0, 1), biases 0; the loss summed over each window; every gradient entry clipped
# to [-5, 5]; Adagrad at 0.1; 200-character samples. W_hh is drawn Gaussian and rescaled to ||W_hh||_2 = 0.2, the
# norm 0.01 N(0, 1) has at n = 100 (0.01 * 2 sqrt(100), within a few % for one draw): min-char-rnn does not rescale.
MIN_CHAR_RNN = {
    "task": "text", "seq_len": 25, "windows": "consecutive", "cell_type": "rnn", "form": "elman",
    "activation": "tanh", "layers": 1, "hidden": 100, "init": "gaussian", "gamma_w": 0.2, "input_scale": 0.01,
    "output_scale": 0.01, "optimizer": "adagrad", "lr": 0.1, "weight_decay": 0.0, "loss_reduction": "sequence_sum",
    "batch": 1, "clip_mode": "elementwise", "clip_threshold": 5.0, "omega": 0.0, "sample_len": 200,
}
# rnngrad's own measurement, not min-char-rnn's (which prints its smoothed training loss and never validates): a
# validation pass of a consecutive-window model reads the whole held-out text (tiny Shakespeare's is 111 539
# characters, about as long as a thousand training steps at batch 1), so it validates every 2000 steps, not every 100
MIN_CHAR_RNN_MEASUREMENT = {"eval_every": 2000}

PRESETS: dict[str, dict[str, Any]] = {"min-char-rnn": {**MIN_CHAR_RNN, **MIN_CHAR_RNN_MEASUREMENT}}
DESCRIPTIONS = {"min-char-rnn": "the settings of Karpathy's min-char-rnn.py (2015), W_hh drawn at the norm its "
                                "0.01 N(0, 1) has, with a validation pass every 2000 steps (each reads the whole "
                                "held-out text)"}


def preset_values(name: str, option: str = "--preset") -> dict[str, Any]:
    """The validated field values of preset `name`; UserError naming `option` for an unknown name."""
    if name not in PRESETS:
        raise UserError(f"{option}: unknown preset {shown(name)}{did_you_mean(name, tuple(PRESETS))}; "
                        f"valid: {', '.join(PRESETS)}")
    return check_values(PRESETS[name], lambda key: f"preset {name}: {key}")


def differences(name: str) -> list[str]:
    """'field value (default: X)' for each value of preset `name` that is not RunConfig's default."""
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    return [f"{key} {_shown(value)} (default: {_shown(defaults[key])})"
            for key, value in PRESETS[name].items() if defaults[key] != value]


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)
