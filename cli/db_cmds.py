"""`lorahub db status|example`: the registry database's migrations and the example file."""

from __future__ import annotations

from pathlib import Path

import click

from lorahub.cli.output import Output, info, json_option, open_registry, table


@click.group()
def db() -> None:
    """Registry database maintenance."""


@db.command(name="status")
@json_option
def db_status(out: Output) -> None:
    """Show applied and pending migrations; migrates nothing."""
    with open_registry(migrate=False) as reg:
        path, rows = reg.path, reg.status()
    out.result(
        {"path": str(path), "migrations": [{"name": n, "applied": a} for n, a in rows]},
        lambda: _print_status(path, rows),
    )


def _print_status(path: Path, rows: list[tuple[str, bool]]) -> None:
    states = [(n, "applied" if a else "pending") for n, a in rows]
    table(f"migrations of {path}", ["migration", "state"], states)
    pending = sum(not a for _, a in rows)
    if pending:
        info(f"{pending} pending: applied the next time a lorahub command opens the registry")


@db.command(name="example")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("registry.db.example"),
    show_default=True,
)
@click.option(
    "--schema-only",
    is_flag=True,
    help="Only the schema, without the demo adapters (no torch needed).",
)
def db_example(output: Path, schema_only: bool) -> None:
    """Write an example registry built from the migrations and the demo adapters."""
    from lorahub.registry.example import demo_adapters, write_example

    write_example(output, example_adapters=None if schema_only else demo_adapters)
    info(f"wrote {output}")
