"""rnngrad: measure, bound and explain vanishing and exploding gradients in vanilla RNNs.

The Python API (README, "The Python API"): `from pipeline import load_model, log_norm_matrix, results` (or
`from rnngrad import ...`: the same objects).
"""

__version__ = "0.1.0"
__all__ = ["load_model", "log_norm_matrix"]  # and the submodule `results` (`from pipeline import results`)


def __getattr__(name: str):
    """The API's names, imported on first use: every command imports `pipeline`; `rnngrad --help` must stay quick."""
    if name == "load_model":
        from .run.files import load_model as value
    elif name == "log_norm_matrix":
        from .engine.jacobian import log_norm_matrix as value
    else:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
