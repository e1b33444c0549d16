"""`train(config) -> TrainResult`: the accelerate loop from data folder to registered adapter.

Order of work: read and check the data, prepare the run folder, load and freeze the base, add
LoRA, (resume), cache, measure the base (held-out loss, samples), train with checkpoints and
validation, measure again, write weights/loss/samples, register. Nothing is written to the
final weights path or the registry until every step has run. The loop never opens the registry:
the caller passes a `Registrar` (lorahub.app.train builds one over a `Registry`).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lorahub.errors import AlreadyExistsError, TrainingError
from lorahub.paths import lorahub_home
from lorahub.training import checkpoints as C
from lorahub.training import outputs as O
from lorahub.training.batches import Layout, build_caches, make_loader, to_batch
from lorahub.training.config import TrainConfig, TrainResult
from lorahub.training.data import (
    DataSet,
    Item,
    epoch_length,
    load_dataset,
    load_pixels,
    make_buckets,
    pick_bucket,
    plan_epoch,
    split_holdout,
    time_ids,
)
from lorahub.training.samples import before_after_grid, render_samples
from lorahub.training.setup import (
    Models,
    add_lora,
    check_base,
    load_models,
    make_accelerator,
    make_lr_scheduler,
    make_optimizer,
)
from lorahub.training.step import (
    Caches,
    adapters_off,
    encode_images,
    eval_loss,
    generator,
    scale_latents,
    training_loss,
)
from lorahub.types import check_name

Progress = Callable[..., None] | None
EVAL_IMAGES = 4


class Registrar(Protocol):
    """What the loop asks of whoever records its result (when `cfg.register`)."""

    def check(self, name: str, force: bool) -> None:
        """Raise before anything loads when `name` cannot be registered."""

    def register(
        self,
        cfg: TrainConfig,
        name: str,
        weights: Path,
        facts: dict[str, Any],
        preview: Path | None,
    ) -> Any:
        """Record the written weights; return the record."""


@dataclass
class RunState:
    """Where training stands: optimizer steps, micro-batches seen, the loss history."""

    step: int = 0
    micro: int = 0
    losses: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Run:
    """Everything the loop works with, set up once."""

    cfg: TrainConfig
    name: str
    out: Path
    data: DataSet
    accelerator: Any
    m: Models
    layout: Layout
    train_idx: list[int]
    eval_idx: list[int]
    resolution: int
    optimizer: Any = None
    lr_scheduler: Any = None
    caches: Caches | None = None
    warnings: list[str] = field(default_factory=list)
    dataset_hash: str = ""
    registrar: Registrar | None = None

    @property
    def size(self) -> tuple[int, int]:
        return (self.resolution, self.resolution)

    @property
    def main(self) -> bool:
        return bool(self.accelerator.is_main_process)


def train(
    config: TrainConfig, progress: Progress = None, registrar: Registrar | None = None
) -> TrainResult:
    """Train a LoRA as `config` says; return where everything went and how the loss moved. With
    `config.register` and a `registrar`, the adapter is registered through it."""
    started, t0 = time.time(), time.monotonic()
    run = setup_run(config, registrar if config.register else None)
    state, resumed_from = RunState(), None
    if config.resume:
        state, resumed_from = resume(run, config.resume)
    if config.cache_latents:
        run.caches = build_caches(run.m, config, run.layout, run.train_idx)
    prompts = list(config.validation_prompts) or default_prompts(run)
    eval_latents, eval_ids = eval_inputs(run)
    eval_captions = [run.data.examples[i].caption for i in run.eval_idx]
    with adapters_off(run.m):
        loss_before = eval_loss(run.m, eval_latents, eval_captions, eval_ids)
        before = sample(run, prompts, "before")
    train_steps(run, state, prompts, progress)
    run.accelerator.wait_for_everyone()
    loss_after = eval_loss(run.m, eval_latents, eval_captions, eval_ids)
    after = sample(run, prompts, "final")
    return finish(
        run, state, before, after, prompts, (loss_before, loss_after), started, t0, resumed_from
    )


def setup_run(cfg: TrainConfig, registrar: Registrar | None = None) -> Run:
    """Check data and run folder, load the base, add LoRA, build optimizer and schedule."""
    data = load_dataset(cfg.data, cfg.instance_prompt)
    check_base(cfg.base)
    name = check_name(cfg.name or run_name(data.root), "adapter name")
    out = Path(cfg.output_dir).expanduser() if cfg.output_dir else lorahub_home() / "runs" / name
    created = not out.exists()
    prepare_output_dir(out, cfg)
    try:
        if cfg.resume:
            C.find_checkpoint(out, cfg.resume)  # fail before loading anything
        if registrar is not None:
            registrar.check(name, cfg.force)
        run = load_run(cfg, data, name, out)
        run.registrar = registrar
        return run
    except BaseException:
        if created:  # a run that never started leaves no empty folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def load_run(cfg: TrainConfig, data: DataSet, name: str, out: Path) -> Run:
    """Load the base, add LoRA, build optimizer and schedule (the run folder exists)."""
    accelerator, warnings = make_accelerator(cfg, out)
    m = load_models(cfg, accelerator)
    resolution, layout_warning = fit_resolution(
        cfg.resolution or m.default_resolution, m.latent_multiple
    )
    warnings += layout_warning
    if cfg.cache_latents and not cfg.center_crop:
        warnings.append(
            "--cache-latents encodes each image once, so it uses centre crops (random crop is off)"
        )
    layout, train_idx, held = make_layout(data, cfg, resolution, m.latent_multiple)
    run = Run(
        cfg,
        name,
        out,
        data,
        accelerator,
        m,
        layout,
        train_idx,
        held or train_idx[:EVAL_IMAGES],
        resolution,
        warnings=warnings,
        dataset_hash=data.digest(),
    )
    from accelerate.utils import set_seed

    set_seed(cfg.seed)  # LoRA's gaussian init draws from the global generators
    groups = add_lora(m, cfg)
    optimizer = make_optimizer(cfg, groups)
    lr_scheduler = make_lr_scheduler(cfg, optimizer, accelerator.num_processes)
    prepared = accelerator.prepare(*[model for _, model in m.trained], optimizer, lr_scheduler)
    run.optimizer, run.lr_scheduler = prepared[-2:]
    m.unet = prepared[0]
    for (name_, _), wrapped in zip(m.trained[1:], prepared[1:-2], strict=True):
        m.text_encoders[m.text_names.index(name_)] = wrapped
    C.register_hooks(accelerator, [n for n, _ in m.trained])
    return run


def run_name(root: Path) -> str:
    """A default adapter name from the data folder's name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", root.resolve().name).strip("-.") or "lora"


def fit_resolution(resolution: int, multiple: int) -> tuple[int, list[str]]:
    """Round the resolution down to what the base's UNet accepts."""
    fitted = max(multiple, resolution // multiple * multiple)
    if fitted != resolution:
        return fitted, [f"resolution {resolution} is not a multiple of {multiple}: using {fitted}"]
    return fitted, []


def prepare_output_dir(out: Path, cfg: TrainConfig) -> None:
    """Refuse to overwrite a finished run or silently restart one with checkpoints."""
    if cfg.resume:
        if (out / O.WEIGHTS_NAME).exists() and not cfg.force:
            raise TrainingError(
                f"{out} holds a finished run (its {O.WEIGHTS_NAME}): nothing to resume; "
                "train anew with --force, or under another --name"
            )
        return
    if (out / O.WEIGHTS_NAME).exists() and not cfg.force:
        raise AlreadyExistsError(
            f"{out} already holds a trained adapter (pass --force or another --name)"
        )
    if C.list_checkpoints(out) and not cfg.force:
        raise TrainingError(
            f"{out} has checkpoints: pass --resume latest to continue, or --force to restart"
        )
    if cfg.force:
        for stale in ("checkpoints", "samples"):
            shutil.rmtree(out / stale, ignore_errors=True)
        for stale in (O.WEIGHTS_NAME, "loss.csv", "loss.png"):
            (out / stale).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def make_layout(
    data: DataSet, cfg: TrainConfig, resolution: int, multiple: int
) -> tuple[Layout, list[int], list[int]]:
    """Buckets per example, and the training / held-out split."""
    choices = make_buckets(resolution, multiple) if cfg.bucketing else [(resolution, resolution)]
    buckets = [pick_bucket(ex.size, choices) for ex in data.examples]
    train_idx, held = split_holdout(len(data.examples), cfg.holdout, cfg.seed)
    return Layout(data, buckets, center=cfg.center_crop or cfg.cache_latents), train_idx, held


def fingerprint(run: Run) -> dict[str, Any]:
    """The settings a checkpoint must share with the run that continues it."""
    values = {k: v for k, v in run.cfg.to_json().items() if k not in C.FREE_KEYS}
    values["resolution"] = run.resolution
    values["dataset_hash"] = run.dataset_hash
    return values


def resume(run: Run, where: str) -> tuple[RunState, int]:
    """Load the checkpoint `where` names; return the state to continue from."""
    ckpt = C.find_checkpoint(run.out, where)
    saved = C.read_state(ckpt)
    C.check_compatible(saved.get("fingerprint", {}), fingerprint(run), ckpt)
    run.accelerator.load_state(str(ckpt))
    state = RunState(
        step=int(saved["step"]), micro=int(saved["micro_step"]), losses=saved["losses"]
    )
    return state, state.step


def default_prompts(run: Run) -> list[str]:
    """Up to two distinct captions, held-out ones first."""
    seen: list[str] = []
    for i in [*run.eval_idx, *run.train_idx]:
        caption = run.data.examples[i].caption
        if caption not in seen:
            seen.append(caption)
    return seen[:2]


def eval_inputs(run: Run) -> tuple[Any, Any]:
    """Latents (distribution means, centre crop, no flip) and time ids of the evaluation images."""
    import torch

    items = [Item(i) for i in run.eval_idx]
    with torch.no_grad():
        pixels = torch.stack([load_pixels(run.data, it, run.size, True) for it in items])
        mean, _ = encode_images(run.m, pixels)
    ids = (
        torch.tensor([time_ids(run.data, it, run.size, True) for it in items])
        if run.m.is_sdxl
        else None
    )
    return scale_latents(run.m, mean).float(), ids


def sample(run: Run, prompts: list[str], label: str) -> list[Path]:
    """Validation images into samples/<label>/ (main process only)."""
    if not run.main or not prompts:
        return []
    return render_samples(run.m, run.cfg, prompts, run.out / "samples" / label, run.size)


def local_batches(run: Run, epoch: int) -> list[list[Item]]:
    """This process's share of the epoch's batches (equal for every process)."""
    cfg, acc = run.cfg, run.accelerator
    batches = plan_epoch(
        run.layout.buckets,
        run.train_idx,
        cfg.batch_size,
        cfg.seed,
        epoch,
        flip=cfg.random_flip,
        caption_dropout=cfg.caption_dropout,
    )
    usable = len(batches) // acc.num_processes * acc.num_processes
    return batches[:usable][acc.process_index :: acc.num_processes]


def train_steps(run: Run, state: RunState, prompts: list[str], progress: Progress) -> None:
    """Optimizer steps until max_train_steps, with checkpoints and validation on the way."""
    import torch

    cfg, acc, m = run.cfg, run.accelerator, run.m
    per_epoch = epoch_length(run.layout.buckets, run.train_idx, cfg.batch_size) // acc.num_processes
    if per_epoch == 0:
        raise TrainingError(
            f"{len(run.train_idx)} images are too few for {acc.num_processes} processes"
        )
    wrapped = [m.unet, *[m.text_encoders[m.text_names.index(n)] for n, _ in m.trained[1:]]]
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    cached = run.caches is not None and bool(run.caches.latents)
    if progress is not None and state.step:
        progress(n=state.step, total=cfg.max_train_steps, status="resumed")
    pending: list[Any] = []
    while state.step < cfg.max_train_steps:
        epoch, offset = divmod(state.micro, per_epoch)
        for raw in make_loader(run.layout, local_batches(run, epoch)[offset:], cfg, cached):
            with acc.accumulate(*wrapped):
                gen = generator(cfg.seed, state.micro, acc.process_index, acc.device)
                loss = training_loss(
                    m, cfg, to_batch(m, raw, run.caches, cfg.train_text_encoder), gen
                )
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm > 0:
                    acc.clip_grad_norm_(params, cfg.max_grad_norm)
                run.optimizer.step()
                run.lr_scheduler.step()
                run.optimizer.zero_grad(set_to_none=True)
            state.micro += 1
            pending.append(loss.detach())
            if not acc.sync_gradients:
                continue
            state.step += 1
            value = float(acc.reduce(torch.stack(pending).mean(), reduction="mean").item())
            pending.clear()
            lr = float(run.lr_scheduler.get_last_lr()[0])
            state.losses.append({"step": state.step, "epoch": epoch, "loss": value, "lr": lr})
            after_step(run, state, prompts)
            if progress is not None:
                progress(n=1, total=cfg.max_train_steps, status=f"loss {value:.4f}")
            if state.step >= cfg.max_train_steps:
                break


def after_step(run: Run, state: RunState, prompts: list[str]) -> None:
    """Checkpoint and sample when their step comes (never on the last step: finish does that)."""
    cfg = run.cfg
    last = state.step >= cfg.max_train_steps
    if cfg.checkpointing_steps and state.step % cfg.checkpointing_steps == 0 and not last:
        save_checkpoint(run, state)
    if cfg.validation_steps and state.step % cfg.validation_steps == 0 and not last:
        sample(run, prompts, f"step-{state.step:08d}")


def save_checkpoint(run: Run, state: RunState) -> Path:
    """A complete, resumable checkpoint of this step (the main process writes the JSON)."""
    per_epoch = max(1, epoch_length(run.layout.buckets, run.train_idx, run.cfg.batch_size))
    payload = {
        "step": state.step,
        "epoch": state.micro // per_epoch,
        "micro_step": state.micro,
        "seed": run.cfg.seed,
        "rng": {
            "scheme": "torch.Generator per micro-step, seeded from (seed, micro_step, process)",
            "next_micro_step": state.micro,
        },
        "fingerprint": fingerprint(run),
        "losses": state.losses,
        "saved_at": time.time(),
    }
    return C.save_checkpoint(run.accelerator, run.out, payload, run.cfg.checkpoints_total_limit)


def finish(
    run: Run,
    state: RunState,
    before: list[Path],
    after: list[Path],
    prompts: list[str],
    losses: tuple[float, float],
    started: float,
    t0: float,
    resumed_from: int | None,
) -> TrainResult:
    """Write loss files, the grid and the weights, then register (weights removed if that fails).

    Only the main process writes; the others return the same paths."""
    out, cfg = run.out, run.cfg
    grid_path = out / "samples" / "before_after.png"
    csv_path, plot_path = out / "loss.csv", out / "loss.png"
    facts = run_facts(run, state, started)
    weights = out / O.WEIGHTS_NAME
    record = None
    if run.main:
        if after:
            before_after_grid(before, after, prompts, grid_path)
        O.write_loss_csv(state.losses, csv_path)
        if state.losses:
            O.plot_loss(state.losses, plot_path, run.name)
        O.save_weights(run.m, run.accelerator, weights, O.training_metadata(cfg, run.m, facts))
        try:
            if run.registrar is not None:
                preview = after[-1] if after else None
                record = run.registrar.register(cfg, run.name, weights, facts, preview)
        except BaseException:
            weights.unlink(missing_ok=True)
            raise
    grid = grid_path if prompts else None
    plot = plot_path if state.losses else None
    run.accelerator.wait_for_everyone()
    return TrainResult(
        weights_path=weights,
        output_dir=out,
        record=record,
        final_loss=state.losses[-1]["loss"] if state.losses else float("nan"),
        heldout_loss_before=losses[0],
        heldout_loss_after=losses[1],
        steps=state.step,
        epochs=facts["epochs"],
        samples=after,
        before_after=grid,
        loss_csv=csv_path,
        loss_plot=plot,
        seconds=time.monotonic() - t0,
        resumed_from=resumed_from,
        dataset_hash=facts["dataset_hash"],
        warnings=run.warnings,
    )


def run_facts(run: Run, state: RunState, started: float) -> dict[str, Any]:
    """Facts about the run for metadata and lineage."""
    per_epoch = max(1, epoch_length(run.layout.buckets, run.train_idx, run.cfg.batch_size))
    family = O.family(run.m, run.cfg.base)
    return {
        "name": run.name,
        "steps": state.step,
        "epochs": -(-state.micro // per_epoch),
        "num_images": len(run.train_idx),
        "resolution": run.size,
        "mixed_precision": run.accelerator.mixed_precision,
        "dataset_hash": run.dataset_hash,
        "dataset_name": run.data.root.name,
        "dataset_path": run.data.root.resolve(),
        "tag_frequency": run.data.tag_frequency(),
        "base_family": family,
        "started_at": started,
    }
