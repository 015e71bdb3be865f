"""A model file checked at the boundary: its headers before anything is loaded (no array larger than the config
allows: a 2 MB file of deflated zeros declared a 2 GiB W_hh), then its values (real, finite numbers; settings of
the config's ranges). load_model then hands the engine only models it can compute with, and says what is wrong
with any other as the ValueError it documents.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np

from .config import RunConfig
from .headers import ArrayHeader, HeaderError, npz_headers

TEXT_KEYS = ("form", "activation", "cell")  # a model file's settings held as text; all other arrays are numbers


def _rule(name: str):
    return next(f.metadata["rule"] for f in fields(RunConfig) if f.name == name)


HIDDEN_MAX = _rule("hidden").hi  # units per layer: a W_hh_l's columns
LAYERS_MAX = _rule("layers").hi
SLOPE_RULE = _rule("leaky_slope")
# bytes of a model's arrays once loaded: an LSTM of HIDDEN_MAX units has W_ih and W_hh of 512 MiB per layer
MODEL_MAX_BYTES = 8 * 2**30


def check_model_headers(path: str) -> dict[str, ArrayHeader]:
    """Every array's dtype and shape read from the file's headers; ValueError for a file that is no .npz of plain
    arrays, holds more than MODEL_MAX_BYTES, more than LAYERS_MAX layers or a W_hh of more than HIDDEN_MAX units,
    or arrays of types a model never has (complex, records, bytes)."""
    try:
        headers = npz_headers(path, MODEL_MAX_BYTES)
    except HeaderError as e:
        raise ValueError(str(e)) from None
    layers = sum(1 for key in headers if key.startswith("W_hh_"))
    if layers > LAYERS_MAX:
        raise ValueError(f"{layers} layers, more than the {LAYERS_MAX} a model has (the config's layers)")
    for key, h in headers.items():
        if key in TEXT_KEYS:
            if h.dtype.kind != "U" or h.shape != ():
                raise ValueError(f"{key} is {h.dtype} of shape {h.shape}, expected one text value")
        elif h.dtype.names is not None or h.dtype.kind not in "fiu":
            raise ValueError(f"{key} is {h.dtype}, expected real numbers (float64)")
        if key.startswith("W_hh_") and len(h.shape) == 2 and h.shape[1] > HIDDEN_MAX:
            raise ValueError(f"{key} has {h.shape[1]:,} units, more than the {HIDDEN_MAX} a model has (the "
                             "config's hidden)")
    if "leaky_slope" in headers and headers["leaky_slope"].shape != ():
        raise ValueError(f"leaky_slope has shape {headers['leaky_slope'].shape}, expected one number")
    return headers


def check_model_values(arrays: dict[str, np.ndarray]) -> None:
    """ValueError for a NaN or infinite parameter or a leaky_slope outside the config's range: the norms and
    bounds of such a model would be meaningless numbers, not an error."""
    for key, a in arrays.items():
        if key in TEXT_KEYS:
            continue
        if not np.isfinite(a).all():
            bad = int(np.size(a) - np.isfinite(a).sum())
            raise ValueError(f"{key} holds {bad} NaN or infinite value{'s' * (bad != 1)}; a model's parameters are "
                             "finite")
    if "leaky_slope" in arrays:
        slope = float(arrays["leaky_slope"])
        if not (math.isfinite(slope) and SLOPE_RULE.lo <= slope <= SLOPE_RULE.hi):
            raise ValueError(f"leaky_slope {slope!r} is out of range; valid: {SLOPE_RULE.describe(null=False)}")
