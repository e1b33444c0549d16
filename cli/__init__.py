"""The `lorahub` command line: a thin click layer over the library.

Commands live in one module per group, listed in `COMMANDS` and imported on first use; their
help is their docstring. A command parses its options, makes ONE library call and renders
through `cli/output.py`; a `LorahubError` it lets through becomes one line and exit 1 in
`LorahubGroup.invoke`. Heavy imports stay inside the commands, so `--help` never imports torch.
"""

from __future__ import annotations

import importlib

import click

from lorahub import __version__
from lorahub.errors import LorahubError

# command name -> "module:attribute" inside the lorahub.cli package
COMMANDS: dict[str, str] = {
    "demo": "demo:demo",
    "add": "registry_cmds:add",
    "scan": "registry_cmds:scan",
    "list": "registry_cmds:list_cmd",
    "show": "registry_cmds:show",
    "tag": "tag_cmds:tag",
    "untag": "tag_cmds:untag",
    "rm": "registry_cmds:rm",
    "verify": "registry_cmds:verify",
    "db": "db_cmds:db",
    "inspect": "inspect_cmd:inspect",
    "images": "images_cmds:images",
    "train": "train_cmd:train",
    "mix": "mix_cmds:mix",
    "merge": "ops_cmds:merge",
    "resize": "ops_cmds:resize",
    "export": "ops_cmds:export",
    "extract": "ops_cmds:extract",
    "fuse": "ops_cmds:fuse",
    "generate": "generate_cmd:generate",
    "grid": "grid_cmd:grid",
    "sidecars": "sidecars_cmd:sidecars",
    "serve": "serve_cmds:serve",
    "push": "hub_cmds:push",
    "pull": "hub_cmds:pull",
}

HELP_LIMIT = 120  # a docstring's first sentence is shown whole (wrapped), not cut at the width


class LorahubGroup(click.Group):
    """The `lorahub` group: subcommands imported on first use, and the one error hook."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand; a LorahubError from it is one line on stderr and exit 1."""
        try:
            return super().invoke(ctx)
        except LorahubError as exc:
            raise click.ClickException(str(exc)) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(f"lorahub.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lorahub.cli.{module_name}":
                return None
            raise
        return getattr(module, attr, None)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """One line per command: the first sentence of its docstring."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=HELP_LIMIT)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LorahubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lorahub")
def main() -> None:
    """lorahub: train, collect, mix, serve and publish LoRA adapters."""
