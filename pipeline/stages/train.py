"""`rnngrad train` (not built yet)."""

from ..errors import UserError


def train_cmd() -> None:
    """Not built yet."""
    raise UserError("rnngrad train is not built yet")
