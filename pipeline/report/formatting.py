"""How the report writes a number: every rule in one place, shared by the HTML and the PDF.

- A measured value prints at SHOWN_DIGITS (3) significant digits: metrics.json stores 4 (reductions.round_metric),
  the report shows what a median of a few runs, with the spread it has, can carry ("10^-5.357" times for a median
  of 3 runs claimed a precision of 0.1%). Counts and numbers of 1,000 or more print whole, with thousands
  separators ("8,502"); a huge or tiny one in exponent form ("6.93e+102"). A figure's legend, title or label
  writes that exponent as its log axes tick it, "6.93×10¹⁰²" (format_label), and a caption naming a label so too.
- A setting of the sweep (an lr, a gamma_w, a clip threshold: CONFIG) prints as the config has it, as metrics.json
  stores it: it is an input, not a measurement, and its label elsewhere ("unclipped, lr 0.2955") must match.
- A number of decades, a log10 (an exponent of 10 or a gap in decades), prints to DECADE_DECIMALS (2) decimals,
  no more than SHOWN_DIGITS digits and at least one significant digit: its absolute precision is what matters,
  0.01 decades is a factor 1.023.
- A share (a rate k/n, the ends of its Wilson interval) prints at 2 significant digits: more would claim a
  precision that a handful of runs cannot have. Interval ends round outwards (the low end down, the high end up),
  so the printed interval contains the computed one. A rate is written as its count, "2 of 3 (95% CI 0.2–0.94)":
  the count is the estimate and says its n.
- A log rate log(gamma_W gamma_phi) within RATE_ROUNDING of 0 is rounding of an exact 1 (the regimes call it
  "bounded"), so it prints as 0, not 4.441e-16.
"""

from __future__ import annotations

import math
from typing import Any

from ..run.probe import RATE_ROUNDING
from .reductions import format_metric, round_metric, with_separators

SHARE_DIGITS = 2  # significant digits of a share and of its interval's ends
SHOWN_DIGITS = 3  # significant digits of a measured value in the report (metrics.json keeps reductions.SIG_DIGITS)
DECADE_DECIMALS = 2  # decimals of a number of decades (a log10)
DECADES = ("decades", "log10", "chain", "_minus_top")  # a key or column whose dotted parts contain "decades", or
# whose last part starts with "log10" or "chain" (the depth chain's log10 norms and bounds) or ends with
# "_minus_top" (the input layer against the top, in log10), is a number of decades
NOISE_FLOORS = {prefix: RATE_ROUNDING for prefix in ("log_rate", "slope", "lyapunov", "median_abs_slope",
                                                     "product_to_stepnorm")}  # a column (or metrics.json key's
# last part) starting with the name: |value| below the floor is rounding noise around an exact 0 (a linear RNN's
# slope and lambda_1 at gamma_W = 1, an orthogonal W_hh's product -> step-norm gap)
STYLES = ("value", "share", "share_low", "share_high", "log_rate", "decades", "config")
CONFIG = ("lr", "gamma_w", "clip_threshold", "threshold", "best_threshold")  # columns and keys' last parts that
# hold a setting of the sweep
SHARES = ("rate", "success_rate", "accurate_rate", "learned_fraction")  # columns and keys' last parts that hold a
# share k/n (other names ending in "rate", as meanfield_rate, are nats per step)


def format_value(x: Any) -> str:
    """A measured value as the report shows it: SHOWN_DIGITS significant digits, whole counts as they are; "n/a"
    when absent. 0.2289 -> "0.229", 1.805 -> "1.81", 8502.4 -> "8,500", 6.935e102 -> "6.94e+102"."""
    v = round_metric(x)
    if v is None:
        return "n/a"
    # a count, though a column with a gap made it float; judged on x itself, for metrics.json's 4 digits make a
    # measured 8502.4 whole
    if isinstance(v, int) or (float(x).is_integer() and abs(v) < 1e6):
        return f"{int(v):,}"
    text = f"{v:.{SHOWN_DIGITS}g}"
    if "e+" in text and abs(float(text)) < 1e6:  # 1.23e+03: written out, 1,230
        text = f"{float(text):.0f}"
    return with_separators(text)


SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def format_label(x: Any) -> str:
    """A measured value as a figure's legend or label shows it: format_value's digits, an exponent written as a
    power of ten beside axes ticked 10^k: 6.935e102 -> "6.93×10¹⁰²", 2.362e-07 -> "2.36×10⁻⁷", 0.229 -> "0.229"."""
    text = format_value(x)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa}×10{str(int(exponent)).translate(SUPERSCRIPTS)}"


def format_decades(x: Any) -> str:
    """A number of decades (a log10) to DECADE_DECIMALS decimals and at most SHOWN_DIGITS digits, or to its first
    significant digit when smaller: -5.357 -> "-5.36", 15.32 -> "15.3", 0.002565 -> "0.003"; "n/a" when absent."""
    v = round_metric(x)
    if v is None:
        return "n/a"
    v = float(v)
    if abs(v) >= 1e4:
        return format_value(v)
    if v == 0 or abs(v) >= 10.0 ** -DECADE_DECIMALS:  # and no more than SHOWN_DIGITS digits: 15.32 -> "15.3"
        whole = math.floor(math.log10(abs(v))) + 1 if v else 1
        text = f"{v:.{max(0, min(DECADE_DECIMALS, SHOWN_DIGITS - whole))}f}"
        text = text.rstrip("0").rstrip(".") if "." in text else text
    else:  # its first significant digit: 0.003, 4e-16
        text = f"{v:.1g}"
    return "0" if text in ("-0", "0") else text


def round_share(x: float, direction: str = "nearest") -> float:
    """x at SHARE_DIGITS significant digits, rounded down, up or to the nearest."""
    if x == 0 or not math.isfinite(x):
        return x
    scale = 10.0 ** (SHARE_DIGITS - 1 - math.floor(math.log10(abs(x))))
    step = {"down": math.floor, "up": math.ceil, "nearest": round}[direction]
    scaled = x * scale
    snapped = round(scaled)  # 0.94 * 100 is 93.99999999999999: a float product a hair off an integer is that integer
    return (snapped if abs(scaled - snapped) < 1e-9 else step(scaled)) / scale


def format_share(x: Any, direction: str = "nearest") -> str:
    """A share (0..1) at SHARE_DIGITS significant digits: 0.2077 -> "0.21", 1.0 -> "1"; "n/a" when absent."""
    v = round_metric(x)
    if v is None:
        return "n/a"
    return f"{round_share(float(v), direction):.{SHARE_DIGITS}g}"


def noise_floor(name: str) -> float | None:
    """The rounding-noise floor of a column or key named `name` (its last dotted part), if it has one."""
    last = name.rsplit(".", 1)[-1]
    return next((floor for prefix, floor in NOISE_FLOORS.items() if last.startswith(prefix)), None)


def format_log_rate(x: Any) -> str:
    """A log(gamma_W gamma_phi): 0 when within RATE_ROUNDING of 0, else as a measured value."""
    v = round_metric(x)
    if v is not None and abs(v) < RATE_ROUNDING:
        return "0"
    return format_value(x)


def format_styled(x: Any, style: str = "value") -> str:
    """A number in one of STYLES: "value" (3 significant digits), "share" (2 significant digits), "share_low" /
    "share_high" (an interval's end, rounded outwards), "log_rate" (noise shown as 0), "decades" (2 decimals),
    "config" (a setting, as metrics.json stores it)."""
    if style == "value":
        return format_value(x)
    if style == "log_rate":
        return format_log_rate(x)
    if style == "decades":
        return format_decades(x)
    if style == "config":
        return format_metric(x)
    if style in ("share", "share_low", "share_high"):
        return format_share(x, {"share": "nearest", "share_low": "down", "share_high": "up"}[style])
    raise ValueError(f"unknown number style {style!r} (one of {', '.join(STYLES)})")


def style_of(name: str) -> str:
    """The style a table column or a metrics.json key gets by its name: a Wilson interval's ends ("low", "high")
    and a rate are shares; a log rate has its noise floor; a log10 is a number of decades (DECADES); every other
    number is a measured value."""
    last = name.rsplit(".", 1)[-1]
    if noise_floor(name) is not None:
        return "log_rate"
    if is_decades(name):
        return "decades"
    if last in CONFIG:
        return "config"
    if last in SHARES:
        return "share"
    if last.endswith("_low") or last == "low":
        return "share_low"
    if last.endswith("_high") or last == "high":
        return "share_high"
    return "value"


def is_decades(name: str) -> bool:
    """Whether a key or column named `name` holds a number of decades (DECADES)."""
    parts = name.split(".")
    return (any("decades" in p for p in parts) or parts[-1].startswith(("log10", "chain"))
            or parts[-1].endswith("_minus_top"))


def format_count_rate(k: Any, n: Any, low: Any, high: Any) -> str:
    """A rate as its count and Wilson interval: "2 of 3 (95% CI 0.2–0.94)"; "k of 0" has no interval."""
    count = f"{format_metric(k)} of {format_metric(n)}"
    if round_metric(low) is None or round_metric(high) is None:
        return count
    return f"{count} (95% CI {format_share(low, 'down')}–{format_share(high, 'up')})"


def shown_within(text: str, value: float, style: str) -> bool:
    """Whether `text` is `value` printed in `style` (for tests and checks: the HTML's numbers against
    metrics.json): within the rounding the style allows, on the side an interval's end rounds to."""
    if text == "n/a":
        return round_metric(value) is None
    shown = float(text.replace(",", ""))
    if style == "log_rate" and abs(value) < RATE_ROUNDING:
        return shown == 0
    if style in ("value", "log_rate"):
        return text == format_value(value)
    if style == "config":
        return shown == round_metric(value)
    if style == "decades":
        return text == format_decades(value)
    unit = 10.0 ** (math.floor(math.log10(abs(value))) - SHARE_DIGITS + 1) if value else 0.0
    if style == "share_low":
        return value - unit <= shown <= value
    if style == "share_high":
        return value <= shown <= value + unit
    return abs(shown - value) <= unit / 2 + 1e-12
