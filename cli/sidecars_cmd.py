"""`lorahub sidecars write`: A1111 sidecars beside the adapter files (thin over the library)."""

from __future__ import annotations

import click

from lorahub.cli.output import Output, json_option, open_registry, table


@click.group()
def sidecars() -> None:
    """Sidecar files for other tools (A1111/Forge `NAME.json`, `NAME.preview.png`)."""


@sidecars.command("write")
@click.argument("refs", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every registered adapter.")
@click.option("--force", is_flag=True, help="Also replace sidecars changed after lorahub's record.")
@json_option
def sidecars_write(refs: tuple[str, ...], every: bool, force: bool, out: Output) -> None:
    """Write A1111's NAME.json (description, activation text, ...) and NAME.preview.png."""
    from lorahub.library.sidecars_out import write_sidecars

    if bool(refs) == every:
        raise click.UsageError("give adapter names, or --all")
    with open_registry() as reg:
        records = reg.list_adapters() if every else [reg.get_adapter(r) for r in refs]
        done = [w for r in records for w in write_sidecars(r, reg.preview_path(r.ref), force=force)]
    rows = [(w.ref, w.path, w.action) for w in done]
    out.result(
        [w.to_json() for w in done], lambda: table("sidecars", ["adapter", "file", "result"], rows)
    )
