"""The CLI shell: entry points, help, and staying light (no torch for listing commands)."""

from __future__ import annotations

import re
import subprocess
import sys

from click.testing import CliRunner

from lorahub.cli import COMMANDS, main


def test_every_command_in_the_table_exists():
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, f"{name}: {result.output}"


def test_python_dash_m_and_help_do_not_import_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import lorahub\n"
        "from lorahub.cli import main\n"
        "for args in (['--help'], ['--version'], ['list', '--help'], ['generate', '--help']):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
        "heavy = [m for m in ('torch', 'diffusers', 'peft', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run(
        [sys.executable, "-m", "lorahub", "--version"], capture_output=True, text=True, check=True
    )
    assert "lorahub" in out.stdout


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2 and "No such command" in result.output


def test_help_lists_every_command_by_its_docstring():
    from lorahub.cli.registry_cmds import add

    out = CliRunner().invoke(main, ["--help"]).output
    listed = [
        line.split()[0] for line in out.split("Commands:")[1].splitlines() if line[2:3].strip()
    ]
    assert listed == sorted(COMMANDS)
    assert re.search(rf"^  add +{re.escape(add.help or '-')}$", out, re.M)  # its docstring, whole


def test_one_error_hook_and_one_output_mode(capsys):
    import json

    from lorahub.cli.output import Output

    gone = CliRunner().invoke(main, ["mix", "show", "nope", "--json"])  # a nested group's command
    assert (
        gone.exit_code == 1 and gone.output.startswith("Error: ") and "Traceback" not in gone.output
    )
    assert len(gone.output.strip().splitlines()) == 1
    Output(json_mode=True).table("t", ["a", "b"], [(1, "x"), (2, None)])
    assert json.loads(capsys.readouterr().out) == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    Output(json_mode=True).kv("t", [("k", 2)])
    assert json.loads(capsys.readouterr().out) == {"k": 2}
    Output().table("t", ["a", "b"], [(1, "x")])
    text = capsys.readouterr().out
    assert "a" in text and "x" in text and not text.lstrip().startswith("[")
