"""The one output sink of the CLI: rich for people, `--json` for scripts.

A command that takes `@json_option` receives `out: Output`, whose mode `--json` set once:
`out.result(data, show)` prints `data` as JSON or calls `show()` to draw it for people, and
`out.table` / `out.kv` print as JSON in JSON mode. Library errors (LorahubError) are turned into
one line and exit 1 by the command group (`lorahub.cli.LorahubGroup`), not here.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from lorahub.registry import Registry


def console(stderr: bool = False):  # -> rich.console.Console
    """A rich console (stderr for progress and warnings, so --json stays clean on stdout)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    """Write `data` as JSON to stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_text(text: str) -> None:
    """Write `text` as is to stdout (a file's content, e.g. YAML)."""
    click.echo(text, nl=not text.endswith("\n"))


def escape(text: Any) -> str:
    """Escape free text (from other people's files) for rich markup."""
    from rich.markup import escape as rich_escape

    return rich_escape("" if text is None else str(text))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table; every cell is escaped text."""
    from rich.table import Table

    t = Table(title=title, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(escape(c) for c in row))
    console().print(t)


def kv(title: str, pairs: Sequence[tuple[str, Any]]) -> None:
    """Print key/value pairs as a two-column table."""
    from rich.table import Table

    t = Table(title=title, show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column(overflow="fold")
    for k, v in pairs:
        t.add_row(escape(k), escape(v))
    console().print(t)


def info(message: str) -> None:
    """A line for people (stderr, so stdout stays parseable)."""
    console(stderr=True).print(escape(message))


def warn(message: str) -> None:
    """A warning line on stderr."""
    console(stderr=True).print(f"[yellow]warning:[/] {escape(message)}")


@contextlib.contextmanager
def progress(
    description: str, total: float | None = None, quiet: bool = False
) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr; yields `advance(n=1, **fields)`.

    Library functions take a `progress` callback; the CLI passes the function yielded here.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if quiet or not sys.stderr.isatty():
        yield lambda *a, **k: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total, status="")

        def advance(n: float = 1, total: float | None = None, status: str | None = None) -> None:
            kwargs: dict[str, Any] = {"advance": n}
            if total is not None:
                kwargs["total"] = total
            if status is not None:
                kwargs["status"] = escape(status)
            bar.update(task, **kwargs)

        yield advance


class Output:
    """Where a command's results go: rich tables for people, or JSON on stdout (`--json`)."""

    def __init__(self, json_mode: bool = False) -> None:
        self.json = json_mode

    def result(self, data: Any, show: Callable[[], None]) -> None:
        """The command's result: `data` as JSON in JSON mode, else `show()` draws it for people."""
        if self.json:
            print_json(data)
        else:
            show()

    def table(
        self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """A table; in JSON mode a list of `{column: cell}` objects."""
        if self.json:
            print_json([dict(zip(columns, row, strict=True)) for row in rows])
        else:
            table(title, columns, rows)

    def kv(self, title: str, pairs: Sequence[tuple[str, Any]]) -> None:
        """Key/value pairs; in JSON mode one object."""
        if self.json:
            print_json(dict(pairs))
        else:
            kv(title, pairs)

    def progress(self, description: str, total: float | None = None) -> Any:
        """A progress bar on stderr, quiet in JSON mode; yields `advance(n=1, **fields)`."""
        return progress(description, total, quiet=self.json)

    @staticmethod
    def info(message: str) -> None:
        """A line for people on stderr (in both modes: stdout stays parseable)."""
        info(message)

    @staticmethod
    def warn(message: str) -> None:
        """A warning line on stderr (in both modes)."""
        warn(message)


def _output_mode(ctx: click.Context, param: click.Parameter, value: bool) -> Output:
    return Output(json_mode=value)


json_option = click.option(
    "--json", "out", is_flag=True, callback=_output_mode, help="Print JSON for scripts."
)
"""`--json`, set once: the command receives `out: Output` in the mode it selects."""


def open_registry(path: Any = None, *, migrate: bool = True) -> Registry:
    """The user's registry, for `with open_registry() as reg:` (imported here, not at --help).

    `migrate=False`: read-only and as it is, pending migrations and all (`db status`).
    """
    from lorahub.registry import Registry

    return Registry(path, migrate=migrate)
