"""The README's walkthrough is run, command by command, in one fresh lorahub home."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from lorahub.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough_commands() -> list[str]:
    """Every `$ lorahub ...` line inside ```console blocks of the README."""
    blocks = re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.S)
    return [
        line[2:].strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith("$ lorahub ")
    ]


def test_readme_has_two_setup_commands_first():
    text = README.read_text()
    setup = text.split("## Set-up", 1)[1]
    blocks = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)[:2]
    assert "lorahub demo" in blocks[0] and "torch==2.13.0" in blocks[0]
    assert "pytest" in blocks[1]
    assert (README.parent / ".ci" / "run").read_text().count("python -m pytest -q") == 1


def test_readme_walkthrough_runs(tmp_path, monkeypatch):
    commands = walkthrough_commands()
    assert len(commands) >= 5, "the README should show a walkthrough"
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for command in commands:
        args = shlex.split(command)[1:]
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, f"`{command}` failed:\n{result.output}"
    # what the walkthrough shows a person: the demo's grid, and purple where it asked for purple
    from PIL import Image

    from lorahub.judge import judge
    from lorahub.paths import lorahub_home

    assert Image.open(lorahub_home() / "demo" / "grid.png").size[0] >= 5 * 128
    assert judge(Image.open(tmp_path / "purple.png")).colour == "purple"
