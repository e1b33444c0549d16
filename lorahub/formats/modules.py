"""Finding the layer a canonical module name points at, in a loaded pipeline."""

from __future__ import annotations

from typing import Any

COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "transformer")


def find_layer(pipe: Any, name: str) -> Any | None:
    """The pipeline's layer for canonical `name`, or None (component or layer absent).

    Canonical text-encoder names keep CLIP's `text_model.` level, which transformers 5 removed:
    both spellings are tried.
    """
    component, _, path = name.partition(".")
    model = getattr(pipe, component, None) if component in COMPONENTS else None
    if model is None:
        return None
    for candidate in _spellings(component, path):
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    return None


def _spellings(component: str, path: str) -> list[str]:
    if not component.startswith("text_encoder"):
        return [path]
    if path.startswith("text_model."):
        return [path, path[len("text_model.") :]]
    return [path, f"text_model.{path}"]
