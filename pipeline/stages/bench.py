"""`rnngrad bench` (not built yet)."""

from ..errors import UserError


def bench_cmd() -> None:
    """Not built yet."""
    raise UserError("rnngrad bench is not built yet")
