"""The train use case: run the trainer, then register its adapter with lineage (when asked)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lorahub.registry import Registry
    from lorahub.training.config import TrainConfig, TrainResult


def train_adapter(
    config: TrainConfig, progress: Any = None, registry: Registry | None = None
) -> TrainResult:
    """Train as `config` says; with `config.register`, check the name first and register the
    result in `registry` (the default registry when None, closed again afterwards)."""
    from lorahub.app.register import TrainingRegistrar
    from lorahub.registry import Registry
    from lorahub.training.loop import train

    if not config.register:
        return train(config, progress)
    if registry is not None:
        return train(config, progress, TrainingRegistrar(registry))
    with Registry() as reg:
        return train(config, progress, TrainingRegistrar(reg))
