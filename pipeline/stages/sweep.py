"""`rnngrad sweep` (not built yet)."""

from ..errors import UserError


def sweep_cmd() -> None:
    """Not built yet."""
    raise UserError("rnngrad sweep is not built yet")
