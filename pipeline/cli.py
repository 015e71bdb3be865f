"""The `rnngrad` command line: one Typer app, one command per stage.

Each command lives in its stage module; this file only registers them and turns UserError into exit code 2.
"""

from __future__ import annotations

import functools
import sys

import typer

try:  # Typer >= 0.29 vendors its own click; its exceptions live there
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older Typer on real click
    from click import exceptions as click_exceptions

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
    try:
        code = app(prog_name="rnngrad", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as e:  # bare `rnngrad`: the help, as click would show it
        typer.echo(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(2)
    except click_exceptions.UsageError as e:  # a bad option value or type: one line, exit 2, like UserError
        where = f"rnngrad {e.ctx.info_name}: " if e.ctx and e.ctx.info_name != "rnngrad" else ""
        typer.echo(f"Error: {where}{e.format_message()}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    sys.exit(main())
