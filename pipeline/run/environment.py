"""The numerical environment a run computed in, as summary.json's `environment`, and its one-line form.

A run's numbers are bit-reproducible with the same code, data, seed and environment, not across machines: the BLAS
(numpy's OpenBLAS, built DYNAMIC_ARCH) picks its kernels by CPU, another kernel sums in another order, and
training amplifies the last bits. So each run records where it was computed: the Python, numpy and scipy versions,
the BLAS libraries threadpoolctl finds loaded (numpy's first), the machine and the CPU model. It is a record, never
part of the run's identity (config_hash): a study resumed on another machine still skips its finished cells.
Gathering never fails a run: what cannot be read is None.
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
CPUINFO_BYTES = 64 * 1024  # the first processor's block, where the first `model name` is, is about 1 KB
CPU_CHARS = 200  # a model name is about 50 characters; the rest of a longer one says nothing more
LINE_CHARS = 300  # the one-line form is cut there: it is a tag and a table cell
NOT_RECORDED = "not recorded"  # the one-line form of a run folder written before runs recorded their environment
BLAS_NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}  # threadpoolctl's internal_api, as people write it


def gather() -> dict:
    """{python, numpy, scipy, blas, machine, cpu} of this process. Called inside the run, where numpy's BLAS is
    loaded: `blas` lists what threadpoolctl finds then ({library, internal_api, version, architecture}; numpy's
    first, the one the engine computes with; scipy's too once an expRNN run has loaded it)."""
    import numpy as np

    return {"python": _guarded(platform.python_version), "numpy": np.__version__,
            "scipy": _guarded(lambda: _version("scipy")), "blas": _guarded(_blas) or [],
            "machine": _guarded(platform.machine), "cpu": _guarded(_cpu_model)}


def describe(environment) -> str:
    """The environment in one line, as the results table, MLflow and the report show it, e.g.
    "numpy 2.4.6, OpenBLAS 0.3.31 SkylakeX, x86_64 Intel(R) Xeon(R) Processor, Python 3.11.7" (numpy's BLAS
    only); NOT_RECORDED for a summary without one (written before runs recorded it, or not a dict)."""
    if not isinstance(environment, dict):
        return NOT_RECORDED
    blas = environment.get("blas")
    first = blas[0] if isinstance(blas, list) and blas and isinstance(blas[0], dict) else {}
    api = first.get("internal_api")
    api = BLAS_NAMES.get(api, api) if isinstance(api, str) else None  # a summary handed over may hold anything
    parts = [_words("numpy", environment.get("numpy")) if environment.get("numpy") else "",
             _words(api, first.get("version"), first.get("architecture")) if api else "",
             _words(environment.get("machine"), environment.get("cpu")),
             _words("Python", environment.get("python")) if environment.get("python") else ""]
    line = ", ".join(p for p in parts if p) or NOT_RECORDED
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 1] + "…"


def _words(*values) -> str:
    return " ".join(str(v) for v in values if v not in (None, ""))


def _guarded(read):
    """read(), or None when it fails: a missing detail of the machine must not fail the run it describes."""
    try:
        return read() or None
    except Exception:
        return None


def _version(package: str) -> str | None:
    """An installed package's version from its metadata, without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _blas() -> list[dict]:
    """The BLAS libraries loaded in this process, numpy's first: {library (the package that ships it, from its
    folder: numpy.libs -> numpy), internal_api, version, architecture}."""
    from threadpoolctl import threadpool_info

    found = [{"library": _owner(i.get("filepath")), "internal_api": i.get("internal_api"),
              "version": i.get("version"), "architecture": i.get("architecture")}
             for i in threadpool_info() if i.get("user_api") == "blas"]
    return sorted(found, key=lambda b: b["library"] != "numpy")  # stable: the others in threadpoolctl's order


def _owner(filepath) -> str | None:
    """The package whose wheel ships a library (its folder numpy.libs, scipy.libs or numpy/...); else the library's
    file name (a system BLAS). Never the whole path, which names the user's folders."""
    if not filepath:
        return None
    path = Path(filepath)
    for part in reversed(path.parent.parts):
        if part.endswith(".libs"):
            return part[:-len(".libs")]
        if part in ("numpy", "scipy"):
            return part
    return path.name


def _cpu_model() -> str | None:
    """The first `model name` of /proc/cpuinfo (Linux x86; at most CPUINFO_BYTES read), else platform.processor()."""
    try:
        with open(CPUINFO, "rb") as f:
            text = f.read(CPUINFO_BYTES).decode("utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return value.strip()[:CPU_CHARS]
    return platform.processor()[:CPU_CHARS] or None
