"""The command line as a user meets it: help everywhere, and bad input answered in one line with exit code 2."""

import os
import re
import subprocess
import sys

import pytest

COMMANDS = ["generate", "train", "sweep", "plan", "analyze", "report", "bench"]


def rnngrad(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    done = rnngrad(command, "--help")
    assert done.returncode == 0
    assert f"rnngrad {command}" in done.stdout and len(done.stdout.splitlines()) > 5
    assert "<bool>" not in done.stdout  # a flag takes no value: shown bare


def test_the_top_level_help_shows_its_flag_bare():
    done = rnngrad("--help")
    assert done.returncode == 0 and "--help" in done.stdout and "<bool>" not in done.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--hidden", "many"], "--hidden"),
        (["train", "--no-such-option", "1"], "--no-such-option"),
        (["frobnicate"], "frobnicate"),
        (["bench", "--only", "nope"], "--only"),
        (["sweep", "missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    done = rnngrad(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_and_refusals_do_not_import_the_heavy_libraries(tmp_path):
    """`--help` and a refused option answer in well under a second: seaborn, pandas, fpdf and MLflow (~4 s of
    imports together) load only when a stage runs."""
    heavy = ("seaborn", "matplotlib", "pandas", "fpdf", "mlflow")
    for args, code, answer in ((["--help"], 0, "rnngrad"), (["report", "--help"], 0, "rnngrad report"),
                               (["train", "--hidden", "0"], 2, "Error: --hidden: 0 is out of range")):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline", *args], capture_output=True,
                              text=True, cwd=tmp_path, timeout=120)
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert "numpy" in imported or "typer" in imported  # -X importtime did list the imports
        assert not imported & set(heavy), (args, sorted(imported & set(heavy)))
        assert done.returncode == code and answer in done.stdout + done.stderr, (args, done.stderr[-500:])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_options_help_is_shown_whole(command):
    # the help is rendered as rich markup: an unescaped [word] in a help string would vanish from the screen
    import typer

    from pipeline.cli import _register, app

    if not app.registered_commands:  # main() registers them on first use
        _register()
    params = typer.main.get_command(app).commands[command].params
    helps = [" ".join(p.help.replace("\\[", "[").split()) for p in params if getattr(p, "help", None)]
    done = subprocess.run([sys.executable, "-m", "pipeline", command, "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "3000"})  # one line per option: no wrapping
    shown = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", done.stdout).split())  # FORCE_COLOR makes rich paint it
    assert helps and [h for h in helps if h not in shown] == []


def test_help_paragraphs_read_as_paragraphs_not_as_the_docstrings_lines():
    """Typer 0.29 keeps a docstring paragraph's line breaks: the terminal then breaks each 115-column line again
    and the help reads ragged. Every paragraph after the first comes out as one line for the terminal to wrap: at
    200 columns, words on two lines of the docstring ("but random" / "windows from h = 0") share a line."""
    from typer.testing import CliRunner

    from pipeline import cli

    cli._register()
    out = CliRunner().invoke(cli.app, ["train", "--help"], terminal_width=200, env={"COLUMNS": "200"}).output
    assert any("but random windows from h = 0" in line for line in out.splitlines())
    assert cli._unwrapped("a\nb\n\n\bkeep\nthis") == "a b\n\n\bkeep\nthis"  # click's \\b: kept as is
