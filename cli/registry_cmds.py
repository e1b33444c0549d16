"""Registry commands: add, scan, list, show, rm, verify (tag/untag: tag_cmds, db: db_cmds)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import click

from lorahub.cli.output import (
    Output,
    console,
    escape,
    json_option,
    kv,
    open_registry,
    table,
)

SORT_CHOICES = ["name", "created", "size", "rank"]
SCAN_LIST_LIMIT = 50


def human_size(n: int | None) -> str:
    """Bytes as a short human string."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _rank_text(r: Any) -> str:
    if r.rank is None:
        return ""
    return str(r.rank) if r.rank_min == r.rank_max else f"{r.rank} ({r.rank_min}-{r.rank_max})"


def _adapter_rows(records: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            r.ref,
            r.format,
            r.network_type,
            r.base_family,
            _rank_text(r),
            r.alpha,
            human_size(r.size),
            ", ".join(r.tags),
            r.autov3 or "",
        )
        for r in records
    ]


ADAPTER_COLUMNS = ["name", "format", "type", "base", "rank", "alpha", "size", "tags", "autov3"]
NARROW_DROPS = ("autov3", "alpha", "type")  # left out, in this order, where names would fold
FLEXIBLE = ("name", "tags")  # the only columns that may wrap


def adapter_table(title: str, records: list[Any], width: int | None = None) -> None:
    """The adapter table of `list`, `add` and `scan`, laid out for the terminal's width.

    Short fields never wrap; where the names would not fit whole, autov3, then alpha, then type
    are left out (the JSON and `show` keep everything); names fold only when even that is not enough.
    """
    from rich import box
    from rich.table import Table

    out = console()
    if width is not None:
        out.width = width
    rows = _adapter_rows(records)
    natural = {
        col: max([len(col), *(len(str(row[i])) for row in rows)])
        for i, col in enumerate(ADAPTER_COLUMNS)
    }
    tags_need = min(natural["tags"], 10)
    cols = list(ADAPTER_COLUMNS)

    def fixed(cols: list[str]) -> int:
        return sum(natural[c] for c in cols if c not in FLEXIBLE) + 2 * (len(cols) - 1)

    for col in NARROW_DROPS:
        if fixed(cols) + natural["name"] + tags_need <= out.width:
            break
        cols.remove(col)
    name_width = max(
        min(natural["name"], 10), min(natural["name"], out.width - fixed(cols) - tags_need)
    )
    tags_width = max(4, min(natural["tags"], out.width - fixed(cols) - name_width))
    t = Table(
        title=title,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )
    for col in cols:
        width = {"name": name_width, "tags": tags_width}.get(col, natural[col])
        t.add_column(
            col,
            width=width,
            overflow="fold",
            justify="right" if col in ("rank", "alpha", "size") else "left",
        )
    keep = [ADAPTER_COLUMNS.index(c) for c in cols]
    for row in rows:
        t.add_row(*(escape(row[i]) for i in keep))
    out.print(t)


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", help="Name to register under (default: the file name).")
@click.option("--version", "version", help="Register as a new version of an existing name.")
@click.option("--tag", "tags", multiple=True, help="Tag to attach (repeatable).")
@click.option("--description", help="Free-text description.")
@click.option(
    "--trigger",
    "triggers",
    multiple=True,
    help="Trigger word (repeatable; default: from metadata).",
)
@click.option(
    "--copy", is_flag=True, help="Copy the file into the managed store instead of referencing it."
)
@click.option("--force", is_flag=True, help="Replace an adapter of the same name and version.")
@click.option("--no-hash", is_flag=True, help="Do not hash now (verify fills hashes in later).")
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Allow .ckpt/.pt/.bin files (loaded with weights_only=True).",
)
@json_option
def add(
    path: Path,
    name: str | None,
    version: str | None,
    tags: tuple[str, ...],
    description: str | None,
    triggers: tuple[str, ...],
    copy: bool,
    force: bool,
    no_hash: bool,
    trust_pickle: bool,
    out: Output,
) -> None:
    """Register an adapter file (or every adapter in a folder)."""
    with open_registry() as reg:
        records = reg.add_path(
            path,
            name=name,
            version=version,
            tags=tags,
            copy=copy,
            force=force,
            description=description,
            trigger_words=list(triggers) or None,
            hash=not no_hash,
            trust_pickle=trust_pickle,
        )
    out.result([r.to_json() for r in records], lambda: adapter_table("added", records))


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-hash", is_flag=True, help="Read headers only; hash later with verify.")
@click.option(
    "--trust-pickle", is_flag=True, help="Also read .ckpt/.pt/.bin files (weights_only=True)."
)
@click.option(
    "--refresh-sidecars",
    is_flag=True,
    help="Re-read every sidecar (.civitai.info, A1111 .json, ...), changed or not.",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    default=None,
    help="Processes reading files in a big scan (default: the usable cores; 0 or 1: none).",
)
@json_option
def scan(
    folder: Path,
    no_hash: bool,
    trust_pickle: bool,
    refresh_sidecars: bool,
    workers: int | None,
    out: Output,
) -> None:
    """Index every adapter under a folder, incrementally, with other tools' sidecar files."""
    from lorahub.registry.prefetch import default_workers, usable_cores

    if workers is None:
        workers = default_workers(usable_cores())
    with open_registry() as reg, out.progress("scanning") as advance:
        report = reg.scan(
            folder,
            hash=not no_hash,
            trust_pickle=trust_pickle,
            progress=advance,
            refresh_sidecars=refresh_sidecars,
            workers=workers,
        )
    out.result(report.to_json(), lambda: _print_scan(out, report, no_hash))


def _under(root: str, path: str) -> str:
    """`path` relative to `root` when it lies below it."""
    return os.path.relpath(path, root) if path.startswith(root.rstrip(os.sep) + os.sep) else path


def _print_scan(out: Output, report: Any, no_hash: bool) -> None:
    counts = [
        (k, len(getattr(report, k)))
        for k in (
            "new",
            "changed",
            "unchanged",
            "moved",
            "missing",
            "skipped",
            "errors",
            "sidecars",
        )
    ]
    table(
        f"scan of {report.root}",
        ["result", "files"],
        [*counts, ("duplicate groups", len(report.duplicates))],
    )
    kinds: tuple[str, ...] = ("new", "changed", "moved", "missing", "errors", "skipped", "sidecars")
    if len(report.new) > SCAN_LIST_LIMIT:  # a first scan of a big folder: the counts say enough
        kinds = kinds[1:]
    rel = functools.partial(_under, report.root)  # the title names the root: paths below it
    rows = [
        (k, i.name or "", rel(i.path), i.detail or "") for k in kinds for i in getattr(report, k)
    ]
    rows += [
        ("duplicate", i.name or "", rel(i.path), f"tensor hash {i.detail}")
        for g in report.duplicates
        for i in g
    ]
    if rows:
        table(None, ["", "name", "path", "detail"], rows)
    if no_hash:
        out.info(
            "hashes were not computed (--no-hash): duplicates and moves are found once files are hashed (lorahub verify)"
        )


@click.command(name="list")
@click.option(
    "--tag", "tags", multiple=True, help="Only adapters with this tag (repeatable: all must match)."
)
@click.option("--base", help="Base family (sd1, sd2, sdxl, flux, tiny-sd1, tiny-sdxl, unknown).")
@click.option("--format", "fmt", help="File format (diffusers, kohya, peft, lycoris, ...).")
@click.option("--min-rank", type=int, help="Smallest (most common) rank.")
@click.option("--max-rank", type=int, help="Largest (most common) rank.")
@click.option(
    "-q", "--search", help="Full-text search over names, descriptions, tags and trigger words."
)
@click.option("--sort", type=click.Choice(SORT_CHOICES), default="name", show_default=True)
@click.option(
    "--published/--unpublished",
    "published",
    default=None,
    help="Only adapters pushed (or never pushed) to the Hub.",
)
@click.option("-n", "--limit", type=int, help="At most this many rows.")
@json_option
def list_cmd(
    tags: tuple[str, ...],
    base: str | None,
    fmt: str | None,
    min_rank: int | None,
    max_rank: int | None,
    search: str | None,
    sort: str,
    published: bool | None,
    limit: int | None,
    out: Output,
) -> None:
    """List registered adapters."""
    with open_registry() as reg:
        records = reg.list_adapters(
            tags=tags,
            base=base,
            format=fmt,
            min_rank=min_rank,
            max_rank=max_rank,
            search=search,
            sort=sort,
            published=published,
            limit=limit,
        )
    out.result(
        [r.to_json() for r in records], lambda: adapter_table(f"{len(records)} adapter(s)", records)
    )


@click.command()
@click.argument("ref")
@json_option
def show(ref: str, out: Output) -> None:
    """Show everything known about one adapter."""
    with open_registry() as reg:
        record = reg.get_adapter(ref)
        edges = reg.lineage(record.ref)
    data = {**record.to_json(), "lineage": [e.to_json() for e in edges]}
    out.result(data, lambda: _show_adapter(record, edges))


def _show_adapter(record: Any, edges: list[Any]) -> None:
    kv(record.ref, _show_pairs(record))
    if record.summary:
        kv("training / metadata summary", [(k, _text(v)) for k, v in record.summary.items()])
    if edges:
        rows = [
            (
                e.relation,
                f"{e.parent_kind} {e.parent_label or e.parent_id}",
                f"{e.child_kind} {e.child_label or e.child_id}",
                _brief(e.details),
            )
            for e in edges
        ]
        table("lineage", ["relation", "parent", "child", "details"], rows)
    if record.publications:
        table(
            "publications",
            ["repo", "revision", "commit", "url"],
            [(p.repo, p.revision, p.commit_sha or "", p.url or "") for p in record.publications],
        )


def _brief(details: Any, limit: int = 10) -> str:
    """Lineage details for people: scalar facts, nested ones dotted; lists counted (`--json` has all)."""
    if not isinstance(details, dict):
        return _text(details)
    parts: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        elif isinstance(value, list):
            parts.append(f"{prefix[:-1]}: {len(value)} item(s)")
        elif value is not None:
            parts.append(
                f"{prefix[:-1]}={value:.4g}"
                if isinstance(value, float)
                else f"{prefix[:-1]}={value}"
            )

    walk("", details)
    key_facts = ("method", "rank", "error", "weight", "relation", "base", "steps", "repo")
    parts.sort(key=lambda p: not any(k in p.split("=")[0] for k in key_facts))  # stable
    more = f"; … {len(parts) - limit} more (--json)" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _show_pairs(r: Any) -> list[tuple[str, Any]]:
    rank = "" if r.rank is None else f"{_rank_text(r)}; modules per rank {_text(r.rank_summary)}"
    base = r.base_family + (f" (conflict: {r.base_conflict})" if r.base_conflict else "")
    return [
        ("path", r.path),
        ("size", f"{human_size(r.size)} ({r.size} bytes)"),
        ("sha256", r.sha256 or "(not hashed yet)"),
        ("AutoV2", r.autov2 or ""),
        ("tensor sha256", r.tensor_sha256 or ""),
        ("AutoV3", r.autov3 or ""),
        ("format", r.format),
        ("network", r.network_type),
        ("base", base),
        ("base evidence", "; ".join(r.base_evidence)),
        ("components", ", ".join(r.components)),
        ("rank", rank),
        ("alpha", "" if r.alpha is None else r.alpha),
        ("dtype", r.dtype or ""),
        ("parameters", f"{r.param_count:,}" if r.param_count is not None else ""),
        ("modules", r.module_count),
        ("targets", ", ".join(r.targets)),
        ("trigger words", ", ".join(r.trigger_words)),
        ("description", r.description or ""),
        ("source", r.source + (" (managed copy)" if r.managed else "")),
        ("tags", ", ".join(r.tags)),
        ("metadata keys", len(r.metadata or {})),
        ("preview", r.preview or ""),
        ("created", r.created_at),
        ("updated", r.updated_at),
    ]


@click.command()
@click.argument("ref")
@click.option(
    "--delete-file", is_flag=True, help="Also delete the adapter file (never done otherwise)."
)
@json_option
def rm(ref: str, delete_file: bool, out: Output) -> None:
    """Remove an adapter from the registry (the file stays unless --delete-file)."""
    with open_registry() as reg:
        record = reg.remove_adapter(ref, delete_file=delete_file)
    kept = f" and deleted {record.path}" if delete_file else f" (file kept: {record.path})"
    out.result(
        {"removed": record.ref, "path": record.path, "file_deleted": delete_file},
        lambda: out.info(f"removed {record.ref}{kept}"),
    )


@click.command()
@json_option
def verify(out: Output) -> None:
    """Re-hash registered files: find moved, changed or missing ones."""
    with open_registry() as reg, out.progress("verifying") as advance:
        report = reg.verify(progress=advance)
    out.result(report.to_json(), lambda: _print_verify(out, report))


def _print_verify(out: Output, report: Any) -> None:
    table(
        "verify",
        ["result", "files"],
        [(k, len(getattr(report, k))) for k in ("ok", "changed", "missing", "moved", "errors")],
    )
    rows = [
        (k, i.name or "", i.path, i.detail or "")
        for k in ("changed", "missing", "moved", "errors")
        for i in getattr(report, k)
    ]
    if rows:
        table(None, ["", "name", "path", "detail"], rows)
    if report.changed or report.missing or report.errors:
        out.warn("some files changed or are missing: rescan their folder, or rm the records")
