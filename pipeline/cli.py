"""The `rnngrad` command line: one Typer app, one command per stage.

Each command lives in its stage module; this file only registers them and turns bad input (a UserError, or a
click usage error such as an option of the wrong type) into one line on stderr and exit code 2.
"""

from __future__ import annotations

import errno
import functools
import inspect
import sys
import typing
from pathlib import Path

import typer
from typer.core import TyperCommand, TyperGroup

try:  # Typer >= 0.29 vendors its own click; its exceptions live there
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older Typer on real click
    from click import exceptions as click_exceptions

from .errors import UserError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # a full disk or quota: bad input of a kind (the folder given), not a bug


class _OneLineErrors(TyperGroup):
    """Click's own refusals (an option of the wrong type, a missing file, an unknown option or command) as one
    line on stderr, like UserError, instead of click's usage box. Living in the app, this holds for `rnngrad` and
    for typer.testing.CliRunner alike."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:  # the caller handles click's exceptions itself
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_exceptions.NoArgsIsHelpError as e:  # bare `rnngrad`: the help, exit 2
            if e.format_message().strip():  # Typer's rich help was printed as the error was made; plain help was not
                typer.echo(e.format_message())
            code = 2
        except click_exceptions.ClickException as e:  # usage errors exit 2
            ctx = getattr(e, "ctx", None)
            where = f"rnngrad {ctx.info_name}: " if ctx and ctx.info_name != "rnngrad" else ""
            typer.echo(f"Error: {where}{e.format_message()}", err=True)
            code = e.exit_code
        except typer.Abort:  # e.g. end of input at a prompt
            typer.echo("Aborted!", err=True)
            code = 1
        sys.exit(code if isinstance(code, int) else 0)

    def format_help(self, ctx, formatter):  # `rnngrad --help`: its --help shown bare too
        _bare_flags(self.get_params(ctx))
        return super().format_help(ctx, formatter)


def _bare_flags(params) -> None:
    """Typer 0.29's help shows a flag's type as `<bool>` (`--json <bool>`, even `--help <bool>`), as though it took
    a value, which it refuses: a flag is shown bare, as `--json`."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _FlagsAsFlags(TyperCommand):
    """A command whose help shows its flags bare (`_bare_flags`) and its paragraphs rewrapped (`_unwrapped`), and
    that refuses an empty path."""

    def format_help(self, ctx, formatter):
        _bare_flags(self.get_params(ctx))
        self.help = _unwrapped(self.help)
        return super().format_help(ctx, formatter)

    def parse_args(self, ctx, args):
        """An empty string given for a path (`--out ''`) is refused: as a Path it would be ".", and the command
        would write into the working folder."""
        given, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        for param in self.get_params(ctx):
            value = given.get(param.name)
            values = value if isinstance(value, (list, tuple)) else [value]
            if _takes_paths(param) and any(isinstance(v, str) and not v for v in values):
                raise click_exceptions.UsageError(_empty_path_refusal(param), ctx)
        return super().parse_args(ctx, args)


def _empty_path_refusal(param) -> str:
    if param.param_type_name != "option":  # an argument: SPEC
        return f"{(param.metavar or param.name).strip('[].').upper()} '': an empty path; give a file's path"
    example = f" such as {param.default}" if isinstance(param.default, Path) else ""
    return f"{param.opts[0]} '': an empty path; give a path{example}, or leave the option out"


def _takes_paths(param) -> bool:
    """A parameter typed Path, Optional[Path] or list[Path]."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return annotation is Path or Path in typing.get_args(annotation)


def _unwrapped(text: str | None) -> str | None:
    """A docstring's paragraphs as single lines. Typer 0.29 keeps the single line breaks of every paragraph but the
    first, so the terminal wraps the docstring's 115-column lines again and the help reads ragged; a paragraph that
    starts with a backslash-b (click's "keep as is") or whose lines are indented or itemised keeps its breaks."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    kept = [p if p.startswith("\b") or any(line[:1] in (" ", "-", "*", "$") for line in p.splitlines()[1:])
            else " ".join(line.strip() for line in p.splitlines()) for p in paragraphs]
    return "\n\n".join(kept)


app = typer.Typer(
    cls=_OneLineErrors,
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
        except OSError as e:
            if e.errno not in DISK_FULL:
                raise
            where = f" writing {e.filename}" if e.filename else ""
            typer.echo(f"Error: {e.strerror or 'no space left on the device'}{where}; outputs are replaced only "
                       "when complete, so the previous ones stand: free some space (or give an output folder on "
                       "another disk) and run the command again", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _register() -> None:
    from .stages import analyze, bench, generate, plan, report, sweep, train

    for name, fn in [
        ("generate", generate.generate_cmd),
        ("train", train.train_cmd),
        ("sweep", sweep.sweep_cmd),
        ("plan", plan.plan_cmd),
        ("analyze", analyze.analyze_cmd),
        ("report", report.report_cmd),
        ("bench", bench.bench_cmd),
    ]:
        app.command(name, cls=_FlagsAsFlags)(_user_errors_exit_2(fn))


def main() -> None:
    _register()
    app(prog_name="rnngrad")  # exits with the command's code


if __name__ == "__main__":
    sys.exit(main())
