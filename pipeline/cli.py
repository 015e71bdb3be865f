"""The `rnngrad` command line: one Typer app, one command per stage.

Each command lives in its stage module; this file only registers them and turns UserError into exit code 2.
"""

from __future__ import annotations

import functools
import sys

import typer

from .errors import UserError

app = typer.Typer(
    name="rnngrad",
    help="Measure, bound and explain vanishing and exploding gradients in vanilla RNNs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _user_errors_exit_2(fn):
    """Bad input: one line on stderr, exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"Error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _register() -> None:
    from .stages import analyze, bench, generate, report, sweep, train

    for name, fn in [
        ("generate", generate.generate_cmd),
        ("train", train.train_cmd),
        ("sweep", sweep.sweep_cmd),
        ("analyze", analyze.analyze_cmd),
        ("report", report.report_cmd),
        ("bench", bench.bench_cmd),
    ]:
        app.command(name)(_user_errors_exit_2(fn))


def main() -> None:
    _register()
    app(prog_name="rnngrad")


if __name__ == "__main__":
    sys.exit(main())
