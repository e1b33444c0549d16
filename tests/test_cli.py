"""The CLI shell: entry points, help, and staying light (no torch for listing commands)."""

from __future__ import annotations

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
