"""The LoRA trainer: `train(TrainConfig) -> TrainResult`, and the synthetic demo data set.

Only the config is imported eagerly (no torch); `train` imports the heavy parts when called.
"""

from __future__ import annotations

from typing import Any

from lorahub.training.config import TrainConfig, TrainResult, config_from_dict, load_config_file
from lorahub.training.demo import demo_dataset

__all__ = [
    "TrainConfig",
    "TrainResult",
    "config_from_dict",
    "demo_dataset",
    "load_config_file",
    "train",
]


def train(config: TrainConfig, progress: Any = None) -> TrainResult:
    """Train a LoRA adapter as `config` says and, with `config.register`, register it in the
    default registry: the use case lorahub.app.train.train_adapter (the loop itself,
    lorahub.training.loop, never opens the registry)."""
    from lorahub.app.train import train_adapter

    return train_adapter(config, progress)
