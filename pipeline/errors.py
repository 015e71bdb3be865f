"""The one exception a stage raises for bad user input: the CLI turns it into exit code 2 and one line."""

from __future__ import annotations

import difflib
from typing import Any, Iterable


class UserError(Exception):
    """Bad input from the user (a path, a spec, an option value). The message is the whole answer:
    it names the file or option, what is wrong, and what would be valid."""


def did_you_mean(value: Any, valid: Iterable[Any]) -> str:
    """' (did you mean 'x'?)' naming the valid value closest to a misspelt one, or '' when none is close."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
