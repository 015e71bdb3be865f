"""`rnngrad analyze` (not built yet)."""

from ..errors import UserError


def analyze_cmd() -> None:
    """Not built yet."""
    raise UserError("rnngrad analyze is not built yet")
