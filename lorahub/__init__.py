"""lorahub: train, collect, mix, serve and publish LoRA adapters for Stable Diffusion models.

Importing this package must never import torch: heavy libraries are imported inside the
functions that need them, so the CLI answers listing commands in well under a second.
"""

__version__ = "0.1.0"

from lorahub.errors import LorahubError  # noqa: E402

__all__ = ["LorahubError", "__version__"]
