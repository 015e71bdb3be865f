"""`rnngrad report` (not built yet)."""

from ..errors import UserError


def report_cmd() -> None:
    """Not built yet."""
    raise UserError("rnngrad report is not built yet")
