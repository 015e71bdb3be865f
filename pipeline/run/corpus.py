"""The default text corpus: the docstrings of the running Python's standard library, built offline.

The top-level modules and package `__init__.py` files of the stdlib directory are read in sorted order and
*parsed* with `ast`, never imported: modules with import side effects (`antigravity`, `this`) cannot run and no
network is touched. Private modules (leading underscore), GUI/test/demo packages, and files that fail to decode
or parse are skipped. Each module contributes its docstrings in source order (module, classes, functions,
methods), cleaned by `ast.get_docstring`, joined by blank lines. The result (about 0.85 MB on CPython 3.11)
depends only on the Python installation, so it is the same on every call for a given Python version; record
`corpus_sha256` and `python_version` with it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import platform
import sysconfig
from collections.abc import Iterator
from pathlib import Path

DEFAULT_CORPUS = "default"  # the `text` value that names this corpus in a config or spec
SOURCE_NAME = "stdlib-docstrings"  # how the manifest names its source
# no docstrings worth learning (easter eggs), GUI toolkits, the test suite, demos and deprecated tooling
_SKIP = frozenset({"antigravity", "this", "idlelib", "tkinter", "turtledemo", "test", "lib2to3", "ensurepip",
                   "distutils", "site-packages", "pydoc_data"})


def stdlib_dir() -> Path:
    """The directory of the running Python's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _docstrings(node: ast.AST) -> Iterator[str]:
    """Docstrings of `node` and of the classes and functions nested in it, in source order."""
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield doc
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _docstrings(child)


def module_docstrings(path: Path) -> list[str]:
    """All docstrings of one source file, or [] if it does not decode as UTF-8 or does not parse."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (UnicodeDecodeError, SyntaxError, ValueError, OSError):
        return []  # skipping an unreadable module keeps the corpus deterministic for this installation
    return list(_docstrings(tree))


def corpus_files(root: Path | None = None) -> list[Path]:
    """The stdlib files the corpus is read from: top-level modules and package `__init__.py`s, sorted by
    module name, without private modules and the GUI/test/demo packages."""
    root = stdlib_dir() if root is None else root
    files = {p.stem: p for p in root.glob("*.py")} | {p.parent.name: p for p in root.glob("*/__init__.py")}
    return [files[name] for name in sorted(files) if not name.startswith("_") and name not in _SKIP]


@functools.lru_cache(maxsize=1)
def default_corpus() -> str:
    """The corpus text (cached per process: it takes about a second to parse the stdlib)."""
    docs = [doc for path in corpus_files() for doc in module_docstrings(path)]
    if not docs:
        raise RuntimeError(f"no docstrings found under {stdlib_dir()}; pass a text file instead")
    return "\n\n".join(docs) + "\n"


def corpus_sha256(text: str) -> str:
    """SHA-256 of the UTF-8 encoding of `text` (hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def python_version() -> str:
    """The running Python's version, which fixes the default corpus."""
    return platform.python_version()
