"""Thin Typer commands, one module per stage: parse options, call pure functions, write outputs."""
