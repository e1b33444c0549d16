"""Register a result with its lineage: a merged / resized / converted / extracted adapter, a
fused model, a trained adapter. The ops and the trainer write files and return reports; these
functions are the only place their results meet the registry."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorahub.errors import AlreadyExistsError, NotFoundError

if TYPE_CHECKING:
    from lorahub.ops.report import OpReport
    from lorahub.registry import AdapterRecord, Registry
    from lorahub.training.config import TrainConfig
    from lorahub.types import AdapterSpec


def adapter_exists(registry: Registry, name: str) -> bool:
    """Whether `name` is a registered adapter."""
    try:
        registry.get_adapter(name)
    except NotFoundError:
        return False
    return True


def model_exists(registry: Registry, name: str) -> bool:
    """Whether `name` is a registered model."""
    try:
        registry.get_model(name)
    except NotFoundError:
        return False
    return True


def registered_parents(
    registry: Registry,
    specs: Sequence[AdapterSpec],
    report: OpReport,
    registered: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(ref, details) for each input that is a registered adapter; details hold the whole report
    (with `registered`, the name the result is registered under)."""
    out = []
    for s, given in zip(specs, report.inputs, strict=True):
        if adapter_exists(registry, s.name):
            details = {**report.to_json(), "registered": registered, "input": given}
            out.append((s.name, details))
    return out


def register_derived(
    registry: Registry,
    path: Path,
    name: str,
    *,
    source: str,
    relation: str,
    inputs: tuple[Sequence[AdapterSpec], OpReport],
    force: bool = False,
) -> str:
    """Register a merged / resized / converted file under `name`, with one lineage edge per
    registered input of `inputs` (the specs and the report); returns the new ref."""
    from lorahub.registry import LineageParent

    specs, report = inputs
    lineage = [
        LineageParent("adapter", ref, relation, details)
        for ref, details in registered_parents(registry, specs, report, registered=name)
    ]
    record = registry.add_adapter(path, name=name, source=source, lineage=lineage, force=force)
    return str(record.ref)


def register_fused(
    registry: Registry,
    specs: Sequence[AdapterSpec],
    report: OpReport,
    model: tuple[str, Path, str],
    *,
    base_family: str | None,
    force: bool = False,
) -> str:
    """Record the fused pipeline folder as model (name, folder, base) with fused-from lineage."""
    name, dest, base = model
    details = {**report.summary(), "base": base}
    record = registry.record_model(
        name, dest, details, kind="fused", base_family=base_family, force=force
    )
    for ref, d in registered_parents(registry, specs, report):
        registry.add_lineage(
            "model", record.id, "adapter", ref, "fused-from", {"input": d["input"], "base": base}
        )
    return str(record.name)


def register_extracted(
    registry: Registry,
    dest: Path,
    name: str,
    report: OpReport,
    checkpoints: dict[str, tuple[str, Path]],
    *,
    force: bool = False,
) -> str:
    """Register an extracted LoRA with extracted-from lineage to both checkpoints (role →
    (reference, local path)), recording them as models when they are not yet."""
    from lorahub.models import model_name
    from lorahub.registry import LineageParent

    summary = report.summary()
    lineage = [
        LineageParent(
            "model",
            str(registry.ensure_model(model_name(ref), path, {"source": ref}, kind=role).name),
            "extracted-from",
            {**summary, "role": role},
        )
        for role, (ref, path) in checkpoints.items()
    ]
    record = registry.add_adapter(dest, name=name, source="extracted", lineage=lineage, force=force)
    return str(record.ref)


class TrainingRegistrar:
    """What the trainer asks of the registry: is the name free (before loading anything), and
    record the finished adapter with lineage to its base model and data set."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def check(self, name: str, force: bool) -> None:
        """Fail before training, not after, when the adapter name is taken."""
        if adapter_exists(self.registry, name) and not force:
            raise AlreadyExistsError(
                f"adapter {name!r} exists (pass --force to replace it, or --name)"
            )

    def register(
        self,
        cfg: TrainConfig,
        name: str,
        weights: Path,
        facts: dict[str, Any],
        preview: Path | None,
    ) -> AdapterRecord:
        """Register the adapter with lineage to its base model and data set; preview = last sample."""
        from lorahub.models import model_name
        from lorahub.registry import LineageParent
        from lorahub.tiny import resolve_base

        base_name = model_name(cfg.base)
        source = resolve_base(cfg.base)
        self.registry.ensure_model(
            base_name,
            source if Path(source).exists() else cfg.base,
            {"base": cfg.base},
            kind="base",
            base_family=facts["base_family"],
        )
        lineage = [
            LineageParent("model", base_name, "trained-from", {"base": cfg.base}),
            LineageParent(
                "dataset",
                facts["dataset_hash"],
                "trained-from",
                {"path": str(facts["dataset_path"]), "images": facts["num_images"]},
            ),
        ]
        return self.registry.add_adapter(
            weights,
            name=name,
            source="trained",
            tags=cfg.tags,
            description=cfg.description
            or f"LoRA trained on {facts['dataset_name']} ({facts['steps']} steps)",
            trigger_words=list(cfg.trigger_words) or None,
            lineage=lineage,
            preview=preview,
            force=cfg.force,
        )
