"""`lorahub train`: TrainConfig fields as kebab-case flags (or a TOML/YAML file), one library call."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from lorahub.cli.output import Output, escape, info, json_option, kv, warn
from lorahub.training.config import FIELDS, TrainConfig, config_from_dict, load_config_file

SPECIAL = {"resume"}  # fields whose option is written by hand below


def _base_type(annotation: Any) -> str:
    """The plain type name of a field annotation such as 'int | None'."""
    return str(annotation).replace(" | None", "").replace("None | ", "").strip()


def _field_option(f: dataclasses.Field) -> Callable[[Any], Any]:
    """A click option for one TrainConfig field (default None, so a config file can fill it)."""
    flag = "--" + f.name.replace("_", "-")
    help_text = f.metadata.get("help", "")
    kind = _base_type(f.type)
    if kind == "bool":
        state = "on" if f.default else "off"
        return click.option(
            f"{flag}/--no-{flag[2:]}", f.name, default=None, help=f"{help_text} [default: {state}]"
        )
    if kind.startswith("tuple"):
        sep = f.metadata.get("sep", ",")
        return click.option(
            flag, f.name, multiple=True, help=f"{help_text} Repeat or separate with '{sep}'."
        )
    click_type: Any = {"int": int, "float": float}.get(kind, str)
    default = f.default if f.default is not None else "none"
    return click.option(
        flag, f.name, type=click_type, default=None, help=f"{help_text} [default: {default}]"
    )


def _with_config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for f in reversed(list(FIELDS.values())):
        if f.name not in SPECIAL:
            func = _field_option(f)(func)
    return func


def build_config(
    config_file: str | None, options: dict[str, Any], resume: str | None
) -> TrainConfig:
    """Defaults, then the config file, then the flags given on the command line."""
    data = load_config_file(config_file) if config_file else {}
    given = {k: v for k, v in options.items() if v is not None and v != ()}
    for name, value in list(given.items()):
        sep = FIELDS[name].metadata.get("sep")
        if sep and isinstance(value, tuple):
            given[name] = [part for v in value for part in str(v).split(sep) if part.strip()]
    if resume:
        given["resume"] = resume
    return config_from_dict({**data, **given})


@contextlib.contextmanager
def step_progress(quiet: bool) -> Iterator[Callable[..., None]]:
    """A rich bar on stderr (step N/M, loss, it/s, ETA) fed by the trainer's progress callback."""
    if quiet or not sys.stderr.isatty():
        yield lambda *a, **k: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from lorahub.cli.output import console

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} it/s" if speed else "-- it/s")

    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        SpeedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console(stderr=True)) as bar:
        task = bar.add_task("train", total=None, status="loading")

        def advance(n: float = 1, total: float | None = None, status: str | None = None) -> None:
            bar.update(
                task, advance=n, total=total, **({"status": escape(status)} if status else {})
            )

        yield advance


def render(result: Any, holdout: int = 0) -> None:
    """A short human summary of a finished run."""
    for line in result.warnings:
        warn(line)
    # Without --holdout the loss is measured on (up to four) training images.
    eval_label = "held-out loss" if holdout else "eval loss (train images)"
    pairs = [
        ("weights", result.weights_path),
        ("adapter", result.record.ref if result.record is not None else "(not registered)"),
        ("steps", f"{result.steps} ({result.epochs} epochs, {result.seconds:.1f} s)"),
        ("final loss", f"{result.final_loss:.4f}"),
        (eval_label, f"{result.heldout_loss_before:.4f} -> {result.heldout_loss_after:.4f}"),
        ("loss curve", result.loss_plot or result.loss_csv),
        ("before/after", result.before_after or "-"),
    ]
    kv("trained", pairs)


@click.command(name="train")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="TOML or YAML file of options."
)
@click.option(
    "--resume",
    "resume",
    is_flag=False,
    flag_value="latest",
    default=None,
    help="Continue from `latest` (the default value) or a checkpoint folder.",
)
@_with_config_options
@json_option
def train(config_file: str | None, resume: str | None, out: Output, **options: Any) -> None:
    """Train a LoRA on a folder of images and captions (flags = TrainConfig fields)."""
    from lorahub.app.train import train_adapter as run_training

    cfg = build_config(config_file, options, resume)
    if not out.json:
        info(f"training {cfg.name or '(name from data folder)'} on {cfg.data} from {cfg.base}")
    with step_progress(quiet=False) as advance:
        result = run_training(cfg, progress=advance)
    out.result(result.to_json(), lambda: render(result, cfg.holdout))
