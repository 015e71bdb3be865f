"""One run's configuration (`RunConfig`), its validation and hash, and the files it is read from.

Sources of values, each validated before anything runs:
  - `train --config FILE.yaml`: a flat mapping of RunConfig fields (`load_config_file`);
  - `train` options: one option per field (`config_from_values` with an option label);
  - sweep specs `experiments/<name>.yaml`: base + profile base + a grid of field values (`spec.load_spec`, which
    reads them with `read_yaml` and validates them with `check_values`).
Every problem is a `UserError` naming the file (or option), the key, and what would be valid; an unknown key names
the closest valid one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import yaml

from ..engine.activations import ACTIVATIONS
from ..engine.cells import CELLS
from ..errors import UserError, did_you_mean, shown
from ..engine.init import EXPRNN_INITS, INITS
from ..engine.lstm import FORGET_BIAS
from ..engine.optim import CLIP_MODES, MAX_CLIP_THRESHOLD, MAX_LR, MAX_WEIGHT_DECAY, OPTIMIZERS
from ..engine.rnn import FORMS
from ..engine.trainer import REDUCTIONS
from . import safeyaml
from .corpus import DEFAULT_CORPUS
from .safeyaml import MAX_YAML_BYTES

TASKS = ("adding", "temporal_order", "copy", "probe", "text")
WINDOWS = ("random", "consecutive")  # how a text run takes its training windows (run/sources.py)
MAX_SEED = 2**32 - 1  # numpy's classic seed range; larger ints would not fit the results table's int64 columns


# ---- value rules: what a field accepts, and how to say so -----------------------------------------------------


class Invalid(ValueError):
    """A value a rule rejects: `problem` says what is wrong, `valid` what would be accepted."""

    def __init__(self, problem: str, valid: str):
        super().__init__(f"{problem}; valid: {valid}")
        self.problem, self.valid = problem, valid


# Each rule also says what an option parses before the rule sees the value (`kind`), and what it accepts
# (`describe`); null=False leaves out that null is accepted, for options, which cannot be given null.


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int | None = None
    kind: ClassVar[type] = int

    def describe(self, null: bool = True) -> str:
        return f"an integer >= {self.lo}" if self.hi is None else f"an integer in [{self.lo}, {self.hi}]"

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{_short(value)} is not an integer", self.describe())
        if value < self.lo or (self.hi is not None and value > self.hi):
            raise Invalid(f"{_short(value)} is out of range", self.describe())
        return int(value)


@dataclass(frozen=True)
class Float:
    lo: float
    lo_open: bool = False  # True: value must be > lo, else >= lo
    hi: float | None = None
    optional: bool = False  # None (YAML null) allowed
    kind: ClassVar[type] = float

    def describe(self, null: bool = True) -> str:
        text = f"a number {'>' if self.lo_open else '>='} {self.lo:g}"
        text += "" if self.hi is None else f" and <= {self.hi:g}"
        return text + (" (or null)" if self.optional and null else "")

    def check(self, value: Any) -> float | None:
        if value is None and self.optional:
            return None
        number = value
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string: accept what float() accepts
            try:
                number = float(value)
            except ValueError:
                raise Invalid(f"{_short(value)} is not a number", self.describe()) from None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise Invalid(f"{_short(value)} is not a number", self.describe())
        try:
            number = float(number)
        except OverflowError:  # an integer beyond float's range (1e308)
            raise Invalid(f"{_short(value)} is out of range", self.describe()) from None
        too_low = number <= self.lo if self.lo_open else number < self.lo
        if not math.isfinite(number) or too_low or (self.hi is not None and number > self.hi):
            raise Invalid(f"{_short(value)} is out of range", self.describe())
        return number


def _short(value: Any) -> str:
    """repr(value), cut to a readable length (a YAML integer can have thousands of digits, beyond repr's limit)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"{'-' if value < 0 else ''}an integer of {value.bit_length()} bits"
    if not isinstance(value, (str, int, float, type(None))):  # a list or mapping, of any size: shortened first
        return shown(value)
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]
    kind: ClassVar[type] = str

    def describe(self, null: bool = True) -> str:
        return ", ".join(self.values)

    def check(self, value: Any) -> str:
        if value not in self.values:
            raise Invalid(f"unknown value {_short(value)}{did_you_mean(value, self.values)}", self.describe())
        return value


@dataclass(frozen=True)
class Corpus:
    """A text corpus, named explicitly: `default` (the embedded one) or a file path. Null is refused rather than
    read as "whatever was generated last", which made a result depend on history."""

    kind: ClassVar[type] = str

    def describe(self, null: bool = True) -> str:
        return f"{DEFAULT_CORPUS} (the embedded stdlib docstrings) or a path to a UTF-8 text file"

    def check(self, value: Any) -> str:
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise Invalid(f"{'null' if value is None else _short(value)} is not a corpus", self.describe())
        return str(value)


@dataclass(frozen=True)
class Bool:
    """A switch; its option is a pair of flags, --name and --no-name."""

    kind: ClassVar[type] = bool

    def describe(self, null: bool = True) -> str:
        return "true or false"

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"{_short(value)} is not true or false", self.describe())
        return value


def _f(default: Any, rule: Any, meaning: str) -> Any:
    """A config field: its default, its rule (what it accepts) and its meaning (units, what unset means), written
    once. `rnngrad train`'s options and README's "Configuration reference" table are made from them."""
    return field(default=default, metadata={"rule": rule, "help": meaning})


# ---- the config -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run. Defaults are a min-char-rnn text run (Karpathy 2015).
    Same config, same numbers: all randomness derives from `seed` and `data_seed`."""

    # data
    task: str = _f("text", Choice(TASKS), "What to learn: a synthetic long-range task, or the next character "
                   "of a text.")
    text: str = _f(DEFAULT_CORPUS, Corpus(), "Text task: the corpus, `default` (the embedded docstrings of this "
                   "Python's standard library) or a UTF-8 file; a run is identified by the corpus's content, not its "
                   "path. A spec's text cells must name it.")
    seq_len: int = _f(25, Int(1, 100_000), "Synthetic: the task length T (copy feeds T + 20 steps); "
                      "text: the training window in characters.")
    windows: str = _f("random", Choice(WINDOWS), "Text: how training windows are taken, and so how the model is "
                      "validated. random: uniform offsets, each from h = 0, validated on 128 held-out windows from "
                      "h = 0; consecutive: min-char-rnn's walk, each of the batch's streams reads its part of the "
                      "text window after window, carrying its hidden state across them (truncated BPTT), validated "
                      "by reading the whole held-out text once with the state carried, going on from the state the "
                      "walk carries, and sampled from where that read ends. final_val_loss is that reading; "
                      "summary.json has both, val_loss_windows and val_loss_carried.")
    val_size: int = _f(1000, Int(1, 1_000_000), "Synthetic: validation sequences, a fixed held-out set; training "
                       "draws fresh sequences for every batch from the run's seed.")
    data_seed: int = _f(0, Int(0, MAX_SEED), "Synthetic: seed of the validation set's generator "
                        "(`data/<task>_T<seq_len>_N<val_size>_s<data_seed>.npz`).")
    # model
    cell_type: str = _f("rnn", Choice(CELLS), "The recurrent cell: rnn, the vanilla RNN of form and activation; lstm, "
                   "the LSTM (gates i, f, g, o in PyTorch's layout); gru, the GRU (gates r, z, n in PyTorch's "
                   "layout); exprnn, the vanilla RNN trained through W_hh = exp(A), A skew-symmetric, so that "
                   "||W_hh||_2 = 1 throughout (Lezcano-Casado & Martinez-Rubio 2019; init orthogonal or identity, "
                   "gamma_w 1). form, activation and leaky_slope are read by rnn and exprnn, omega by rnn only; the "
                   "gated cells leave them at their defaults.")
    form: str = _f("elman", Choice(FORMS), "Recurrence: elman h = phi(W h + U x + b); "
                   "pascanu h = W phi(h) + U x + b.")
    activation: str = _f("tanh", Choice(ACTIVATIONS), "The activation phi of every recurrent layer.")
    leaky_slope: float = _f(0.01, Float(0.0, hi=10.0), "The slope of leaky_relu for z < 0 (unused by "
                        "the other activations).")
    layers: int = _f(1, Int(1, 32), "Stacked recurrent layers L; layer l reads layer l-1's state.")
    hidden: int = _f(100, Int(1, 4096), "Units per layer n.")
    init: str = _f("gaussian", Choice(INITS), "How W_hh is drawn before it is scaled to gamma_w.")
    gamma_w: float = _f(1.0, Float(0.0, lo_open=True, hi=1e6), "The spectral norm ||W_hh||_2 at init, "
                        "every layer (sparse init: the spectral radius).")
    forget_bias: float = _f(FORGET_BIAS, Float(-100.0, hi=100.0), "LSTM: the forget gate's bias at init "
                            "(Jozefowicz et al. 2015); the vanilla cell has none.")
    input_scale: float | None = _f(None, Float(0.0, hi=1e6, optional=True), "Standard deviation of the W_xh "
                                   "entries. Unset: 1/sqrt(fan-in).")
    output_scale: float | None = _f(None, Float(0.0, hi=1e6, optional=True), "Standard deviation of the W_hy "
                                    "entries. Unset: 1/sqrt(hidden); min-char-rnn draws it, like W_xh, with 0.01.")
    # optimisation
    optimizer: str = _f("adagrad", Choice(OPTIMIZERS), "Update rule: plain SGD, classical momentum 0.9, "
                        "min-char-rnn's Adagrad, or Adam (betas 0.9, 0.999).")
    lr: float = _f(0.1, Float(0.0, lo_open=True, hi=MAX_LR), "Learning rate (step size).")
    weight_decay: float = _f(0.0, Float(0.0, hi=MAX_WEIGHT_DECAY), "L2 coefficient: weight_decay * p is added to "
                             "the gradient of every parameter p.")
    loss_reduction: str = _f("mean", Choice(REDUCTIONS), "The loss whose gradient training takes: the mean per "
                             "scored position (every reported loss is this), or sequence_sum, min-char-rnn's sum over "
                             "each window's positions averaged over the batch, a gradient seq_len times larger that the "
                             "clip bound and Adagrad's epsilon see as min-char-rnn's do.")
    batch: int = _f(1, Int(1, 1_000_000), "Sequences (text: windows) per step; min-char-rnn uses 1.")
    iters: int = _f(1000, Int(0, 100_000_000), "Optimisation steps; 0 probes the initial model only.")
    clip_mode: str = _f("global", Choice(CLIP_MODES), "Gradient clipping: global rescales the whole gradient "
                        "to norm clip_threshold when it is above; elementwise clamps each entry to "
                        "[-clip_threshold, clip_threshold]; none leaves it as it is.")
    clip_threshold: float = _f(5.0, Float(0.0, lo_open=True, hi=MAX_CLIP_THRESHOLD), "The global norm cap, or "
                               "the elementwise bound (unused by clip_mode none).")
    omega: float = _f(0.0, Float(0.0, hi=1e6), "Weight of Pascanu et al. (2013)'s regulariser Omega, which keeps "
                      "the backpropagated error's norm from step to step; its gradient is added before clipping. "
                      "0: off. Vanilla cell only.")
    # measurement
    eval_every: int = _f(100, Int(0, 100_000_000), "Iterations between validation passes; 0: only at the end.")
    samples: int = _f(5, Int(0, 1000), "Text: checkpoints that sample text, spread evenly, the last at the end.")
    sample_len: int = _f(200, Int(1, 100_000), "Text: characters per sample.")
    probe_len: int = _f(50, Int(1, 2000), "Steps of the Jacobian probe sequence (cut to the length of "
                        "the validation sequences).")
    seed: int = _f(0, Int(0, MAX_SEED), "Seed of the model init, the training batches (synthetic: fresh "
                   "sequences; text: window offsets) and text sampling.")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            try:
                object.__setattr__(self, f.name, f.metadata["rule"].check(getattr(self, f.name)))
            except Invalid as e:
                raise UserError(f"RunConfig.{f.name}: {e}") from None
        conflict = cell_conflict(dataclasses.asdict(self))
        if conflict:
            raise UserError(f"RunConfig.{conflict[0]}: {conflict[1]}")


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}

# Fields that only some cells read: set away from its default for another cell, the value would be silently ignored
# (or, for omega, have no meaning), so such a config is refused.
CELL_FIELDS = {"form": ("rnn", "exprnn"), "activation": ("rnn", "exprnn"), "leaky_slope": ("rnn", "exprnn"),
               "omega": ("rnn",), "forget_bias": ("lstm",)}
# Values a cell cannot take: the expRNN's W_hh = exp(A) lies in SO(n), so its norm is 1 and only inits in SO(n) exist
CELL_VALUES = {"exprnn": {"gamma_w": (1.0,), "init": EXPRNN_INITS}}


def cell_conflict(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, problem) for the first field in `values` (a full set of RunConfig values) that belongs to another
    cell and is not at its default, or that holds a value the cell cannot take (CELL_VALUES); None when the values
    agree with their cell."""
    cell = values.get("cell_type", "rnn")
    for name, owners in CELL_FIELDS.items():
        default = _DEFAULTS[name]
        if cell not in owners and name in values and values[name] != default:
            return name, (f"{values[name]!r} is set for cell_type {cell}, but {name} is read by cell_type "
                          f"{' and '.join(owners)} only; valid: {default!r} (the default) with cell_type {cell}")
    for name, allowed in CELL_VALUES.get(cell, {}).items():
        if name in values and values[name] not in allowed:
            return name, (f"{values[name]!r} is not possible for cell_type {cell} (its W_hh = exp(A) is orthogonal); "
                          f"valid: {', '.join(map(repr, allowed))}")
    return None


@dataclass(frozen=True)
class FieldDoc:
    """A config field as options and tables show it."""

    name: str
    default: Any  # None: unset (`help` says what that means)
    help: str  # what the field means, in which units
    rule: Any  # Int, Float, Choice, Corpus or Bool: accepted values (`describe`), option type (`kind`)


def field_docs(cls: type = RunConfig) -> tuple[FieldDoc, ...]:
    """The fields of a dataclass made with `_f` (RunConfig), in declaration order."""
    return tuple(FieldDoc(f.name, f.default, f.metadata["help"], f.metadata["rule"]) for f in dataclasses.fields(cls))


FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
_RULES = {f.name: f.metadata["rule"] for f in dataclasses.fields(RunConfig)}


def describe_field(name: str, null: bool = True) -> str:
    """What values the field accepts, e.g. 'an integer >= 1'; null=False leaves out null (for options)."""
    return _RULES[name].describe(null)


def markdown_table() -> str:
    """README's "Configuration reference" table, one row per RunConfig field; tests/test_config.py keeps README
    equal to it. Print it: python -c "from pipeline.run.config import markdown_table as t; print(t(), end='')"."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")  # a bare | would end the cell

    rows = ["| field | meaning | default | valid |", "|---|---|---|---|"]
    for doc in field_docs():
        default = "null" if doc.default is None else doc.default
        rows.append(f"| `{doc.name}` | {cell(doc.help)} | `{default}` | {cell(doc.rule.describe())} |")
    return "\n".join(rows) + "\n"


# Fields that once were valid, and what replaced them: the refusal says so instead of only naming the closest key.
RETIRED_FIELDS = {"train_size": "it is now val_size (validation sequences only; training draws fresh batches)"}


def closest_key_hint(key: Any, valid: tuple[str, ...]) -> str:
    """': <what replaced it>' for a retired field, ' (did you mean X?)' for a misspelt key, else a list of the
    valid keys."""
    if key in RETIRED_FIELDS:
        return f": {RETIRED_FIELDS[key]}"
    return did_you_mean(key, valid) or f"; valid keys: {', '.join(valid)}"


def check_values(values: Mapping[str, Any], label: Callable[[str], str]) -> dict[str, Any]:
    """Validate a partial mapping of RunConfig fields; returns the normalised values (ints as float where due).

    `label(key)` says where a key came from, e.g. "spec.yaml: base.hidden" or "--hidden".
    """
    out = {}
    for key, value in values.items():
        if key not in _RULES:
            raise UserError(f"{label(key)}: unknown key{closest_key_hint(key, FIELDS)}")
        try:
            out[key] = _RULES[key].check(value)
        except Invalid as e:
            raise UserError(f"{label(key)}: {e}") from None
    return out


def config_from_values(values: Mapping[str, Any], label: Callable[[str], str],
                       base: RunConfig | None = None) -> RunConfig:
    """`base` (default RunConfig()) with `values` validated and applied; a field of the other cell (`cell_conflict`)
    is refused with `label` naming it."""
    checked = check_values(values, label)
    conflict = cell_conflict({**dataclasses.asdict(base or RunConfig()), **checked})
    if conflict:
        raise UserError(f"{label(conflict[0])}: {conflict[1]}")
    return dataclasses.replace(base or RunConfig(), **checked)


def config_hash(cfg: RunConfig, inputs: Mapping[str, str] | None = None) -> str:
    """Short, stable id: the first 12 hex digits of sha256 of canonical JSON.

    With `inputs` ({what: sha256} of every dataset and corpus the run reads, `run.sources.input_digests`) it is
    the run's identity, the name of its folder and its MLflow tag: the data enter by content, so a corpus enters
    by its digest and not by its path (the `text` field is left out), and a changed byte of it is a new run.
    Without, it identifies the config alone (e.g. to find duplicate cells in a spec)."""
    identity: dict[str, Any] = dataclasses.asdict(cfg)
    if inputs is not None:
        identity = {**identity, "text": None, "inputs": dict(inputs)}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def flatten(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as one flat {field: value} mapping (MLflow params, results table columns)."""
    return dataclasses.asdict(cfg)


def config_from_json(path: Path | str) -> RunConfig:
    """Read a run folder's config.json back (written by the runner from `flatten`)."""
    path = Path(path)
    return config_from_values(json.loads(path.read_text(encoding="utf-8")), lambda k: f"{path}: {k}")


# ---- YAML files -----------------------------------------------------------------------------------------------


def read_yaml(path: Path | str, what: str) -> Any:
    """Parse a YAML file, or UserError naming the file (missing, unreadable, malformed)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file; give an existing {what}")
    if not path.is_file():
        raise UserError(f"{path}: no such file; give an existing {what}")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise UserError(f"{path}: {size} bytes; a {what} is at most {MAX_YAML_BYTES // 1024} KiB")
        return safeyaml.load(path.read_text(encoding="utf-8"))  # aliases bounded, duplicate keys refused
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise UserError(f"{path}: malformed YAML{where} ({problem}); give a valid {what}") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits, which Python will not convert
        raise UserError(f"{path}: a value YAML cannot read ({str(e).split(';')[0]}); give a valid {what}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the file ({e.strerror or e}); give a readable {what}") from None


def as_mapping(value: Any, where: str, example: str) -> dict:
    """`value` if it is a mapping (None counts as empty), else UserError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping like {example}, got {type(value).__name__} {_short(value)}")
    return value


def load_config_file(path: Path | str) -> dict[str, Any]:
    """The validated field values of a `train --config FILE.yaml` (a flat mapping of RunConfig fields).

    Returns only the keys the file sets, so that options given on the command line can override them.
    """
    path = Path(path)
    raw = as_mapping(read_yaml(path, "YAML mapping of RunConfig fields"), str(path), "{task: adding, hidden: 64}")
    return check_values(raw, lambda key: f"{path}: {key}")
