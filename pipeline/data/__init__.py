"""Sequence data: synthetic long-range tasks and character-level text."""
