"""rnngrad under its distribution's name: `import rnngrad` is `import pipeline` (the package the code lives in),
so `from rnngrad import load_model, log_norm_matrix, results` and `from pipeline import ...` give the same objects.
"""

import importlib

import pipeline

__version__ = pipeline.__version__
__all__ = [*pipeline.__all__, "results"]


def __getattr__(name: str):
    if name == "results":
        return importlib.import_module("pipeline.results")
    return getattr(pipeline, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
