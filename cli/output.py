"""The one output sink of the CLI: rich for people, `--json` for scripts, one error path.

Every command renders through here; library errors (LorahubError) become ClickException,
so a user sees one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click

from lorahub.errors import LorahubError

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def console(stderr: bool = False):  # -> rich.console.Console
    """A rich console (stderr for progress and warnings, so --json stays clean on stdout)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def handle_errors(func: F) -> F:
    """Turn LorahubError into a one-line ClickException (exit 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LorahubError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


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
