"""`lorahub tag|untag`: tags of one adapter, or of every adapter a `--where` filter selects."""

from __future__ import annotations

from typing import Any

import click

from lorahub.cli.output import Output, json_option, open_registry, table

WHERE_HELP = "Every adapter matching these `list` filters, e.g. 'base=sdxl tag=style min-rank=8' (keys: tag, base, format, min-rank, max-rank, q, published); then every argument is a tag."


def _tag_command(add: bool) -> Any:
    verb = "tag" if add else "untag"
    about = (
        "Add tags to an adapter, or to every adapter --where selects."
        if add
        else "Remove tags from an adapter, or from every adapter --where selects."
    )

    @click.command(name=verb, help=about)
    @click.argument("args", nargs=-1, required=True, metavar="[REF] TAGS...")
    @click.option("--where", default=None, help=WHERE_HELP)
    @click.option("--dry-run", is_flag=True, help="With --where: show what would change.")
    @json_option
    def command(args: tuple[str, ...], where: str | None, dry_run: bool, out: Output) -> None:
        if where is None and len(args) < 2:
            raise click.UsageError("give REF and at least one tag (or --where FILTERS TAGS...)")
        with open_registry() as reg:
            if where is None:
                record = reg.tag(args[0], args[1:]) if add else reg.untag(args[0], args[1:])
                tags = ", ".join(record.tags) or "(no tags)"
                out.result(record.to_json(), lambda: out.info(f"{record.ref}: {tags}"))
                return
            changes = reg.bulk_tag(
                where, add=args if add else (), remove=() if add else args, dry_run=dry_run
            )
        rows = [(c.ref, ", ".join(c.before), ", ".join(c.after)) for c in changes]
        title = f"{len(changes)} adapter(s) {'would change' if dry_run else 'changed'}"
        out.result(
            [c.to_json() for c in changes],
            lambda: table(title, ["adapter", "tags before", "tags after"], rows),
        )

    return command


tag = _tag_command(add=True)
untag = _tag_command(add=False)
