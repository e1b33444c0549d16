"""The `lorahub` command line: a thin click layer over the library.

Commands live in one module per group and are imported only when invoked, so `lorahub --help`
and the listing commands never import torch.
"""

from __future__ import annotations

import importlib

import click

from lorahub import __version__

# command name -> "module:attribute" inside the lorahub.cli package
COMMANDS: dict[str, str] = {
    "demo": "demo:demo",
    "add": "registry_cmds:add",
    "scan": "registry_cmds:scan",
    "list": "registry_cmds:list_cmd",
    "show": "registry_cmds:show",
    "tag": "registry_cmds:tag",
    "untag": "registry_cmds:untag",
    "rm": "registry_cmds:rm",
    "verify": "registry_cmds:verify",
    "db": "registry_cmds:db",
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
    "sidecars": "sidecars_cmd:sidecars",
    "serve": "serve_cmds:serve",
    "push": "hub_cmds:push",
    "pull": "hub_cmds:pull",
}

HELP: dict[str, str] = {
    "demo": "Build the tiny base, train example adapters and one that teaches purple, draw a grid.",
    "add": "Register an adapter file (or every adapter in a folder).",
    "scan": "Index every adapter under a folder, incrementally.",
    "list": "List registered adapters.",
    "show": "Show everything known about one adapter.",
    "tag": "Add tags to an adapter.",
    "untag": "Remove tags from an adapter.",
    "rm": "Remove an adapter from the registry (the file stays unless --delete-file).",
    "verify": "Re-hash registered files: find moved, changed or missing ones.",
    "db": "Registry database maintenance.",
    "images": "An adapter's example images (add, list, rm).",
    "inspect": "Inspect an adapter file or registered adapter without loading it whole.",
    "train": "Train a LoRA on a folder of images and captions.",
    "mix": "Named, weighted mixes of adapters.",
    "merge": "Merge adapters into one adapter file.",
    "resize": "Reduce an adapter's rank.",
    "export": "Convert an adapter to the diffusers, kohya or PEFT format.",
    "extract": "Extract a LoRA from a fine-tuned model and its base.",
    "fuse": "Fuse adapters into a full base model folder.",
    "sidecars": "Write A1111 sidecars (NAME.json, NAME.preview.png) beside adapter files.",
    "generate": "Generate images with adapters and mixes.",
    "serve": "Serve the HTTP API and the web page.",
    "push": "Publish an adapter to the Hugging Face Hub.",
    "pull": "Download an adapter from the Hugging Face Hub and register it.",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

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
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lorahub")
def main() -> None:
    """lorahub: train, collect, mix, serve and publish LoRA adapters."""
