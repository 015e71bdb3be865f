"""The one exception a stage raises for bad user input: the CLI turns it into exit code 2 and one line."""

from __future__ import annotations

import difflib
import reprlib
from typing import Any, Iterable

# repr for messages: a few elements per container, two levels deep, short strings; so its cost is bounded however
# large the value (a YAML list can hold a hundred thousand elements)
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxlong, _REPR.maxother = 2, 40, 40, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4


class UserError(Exception):
    """Bad input from the user (a path, a spec, an option value). The message is the whole answer:
    it names the file or option, what is wrong, and what would be valid."""


def did_you_mean(value: Any, valid: Iterable[Any]) -> str:
    """' (did you mean 'x'?)' naming the valid value closest to a misspelt one, or '' when none is close."""
    small_number = isinstance(value, float) or (isinstance(value, int) and value.bit_length() <= 128)
    if not (isinstance(value, str) and len(value) <= 200 or small_number):  # a list, a page of text: nothing is close
        return ""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def shown(value: Any, limit: int = 80) -> str:
    """repr(value) shortened *before* it is formatted, for a message: at most `limit` characters, in a time that
    does not grow with the value (containers show their first elements, integers of thousands of digits their
    size)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"{'-' if value < 0 else ''}an integer of {value.bit_length()} bits"
    text = _REPR.repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def clip(text: str, limit: int = 120) -> str:
    """A text (a path, say) cut to `limit` characters for a message."""
    return text if len(text) <= limit else f"{text[:limit - 3]}..."
