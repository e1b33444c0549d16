"""Hub commands: push (publish an adapter or mix) and pull (download and register)."""

from __future__ import annotations

from typing import Any

import click

from lorahub.cli.output import (
    Output,
    console,
    info,
    json_option,
    kv,
    open_registry,
    progress,
    table,
)


@click.command()
@click.argument("ref")
@click.option("--repo", required=True, help="The Hub repo to push to, as owner/name.")
@click.option(
    "--private",
    is_flag=True,
    help="Create the repo as private (an existing repo keeps its visibility).",
)
@click.option("--revision", help="Branch to push to (created from main if missing). Default: main.")
@click.option("-m", "--message", help="Commit message.")
@click.option(
    "--also",
    multiple=True,
    type=click.Choice(["kohya"]),
    help="Also upload the kohya file (A1111/ComfyUI).",
)
@click.option("--license", "license_", help="Card licence (default: the file's, else 'other').")
@click.option(
    "--recipe",
    is_flag=True,
    help="For a mix: push a JSON recipe of its published members, not baked weights.",
)
@click.option("--dry-run", is_flag=True, help="Show the card and the files; upload nothing.")
@json_option
def push(
    ref: str,
    repo: str,
    private: bool,
    revision: str | None,
    message: str | None,
    also: tuple[str, ...],
    license_: str | None,
    recipe: bool,
    dry_run: bool,
    out: Output,
) -> None:
    """Publish an adapter (or a mix) to the Hugging Face Hub, with a model card."""
    from lorahub.app.hub import push_adapter

    with open_registry() as reg, progress(f"push {ref}", quiet=out.json or dry_run) as advance:
        result = push_adapter(
            ref,
            repo,
            private=private,
            revision=revision,
            message=message,
            also=also,
            dry_run=dry_run,
            license=license_,
            recipe=recipe,
            progress=advance,
            registry=reg,
        )
    out.result(result.to_json(), lambda: _show_push(result))


def _show_push(result: Any) -> None:
    rows = [
        (
            f.path_in_repo,
            f.role,
            f.size,
            f.sha256[:12],
            "yes" if f.path_in_repo in result.uploaded else "",
        )
        for f in result.files
    ]
    if result.dry_run:
        console().print(result.card, markup=False, highlight=False)
        table(
            f"dry run: would push to {result.repo}@{result.revision}",
            ["file", "role", "bytes", "sha256", ""],
            rows,
        )
        return
    table(f"{result.repo}@{result.revision}", ["file", "role", "bytes", "sha256", "uploaded"], rows)
    if not result.changed:
        info(f"{result.repo} is up to date: no new commit ({result.commit_sha})")
    kv(
        f"pushed {result.ref}",
        [("repo", result.url), ("revision", result.revision), ("commit", result.commit_sha)],
    )


@click.command()
@click.argument("repo")
@click.option("--name", help="Register under this name (default: the repo's name).")
@click.option("--file", "filename", help="The weight file to pull when the repo holds several.")
@click.option("--revision", help="Branch, tag or commit (or write REPO@REV).")
@click.option("--version", help="Register as a new version of an existing name.")
@click.option("--force", is_flag=True, help="Replace an adapter registered under the same name.")
@json_option
def pull(
    repo: str,
    name: str | None,
    filename: str | None,
    revision: str | None,
    version: str | None,
    force: bool,
    out: Output,
) -> None:
    """Download an adapter from the Hub (REPO[@REV]) and register it."""
    from lorahub.app.hub import pull_adapter

    with open_registry() as reg:
        record = pull_adapter(
            repo,
            revision=revision,
            name=name,
            filename=filename,
            version=version,
            force=force,
            registry=reg,
        )
    out.result(record.to_json(), lambda: _show_pull(record))


def _show_pull(record: Any) -> None:
    kv(
        f"pulled {record.ref}",
        [
            ("path", record.path),
            ("format", record.format),
            ("base", record.base_family),
            ("rank", record.rank),
            ("trigger words", ", ".join(record.trigger_words)),
            ("sha256", record.sha256),
        ],
    )
