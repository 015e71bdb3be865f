"""`rnngrad generate` (not built yet)."""

from ..errors import UserError


def generate_cmd() -> None:
    """Not built yet."""
    raise UserError("rnngrad generate is not built yet")
