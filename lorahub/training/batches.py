"""From planned items to UNet inputs: pixel loading (in loader workers), encoding, caching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorahub.training.config import TrainConfig
from lorahub.training.data import DataSet, Item, load_pixels, time_ids
from lorahub.training.setup import Models
from lorahub.training.step import Batch, Caches, encode_images, encode_text

CACHE_CHUNK = 8


@dataclass
class Layout:
    """Where each example goes: its bucket, and whether crops are centred."""

    data: DataSet
    buckets: list[tuple[int, int]]  # per example index
    center: bool


class PlannedBatches:
    """A map-style data set over an epoch's planned batches (one element = one whole batch)."""

    def __init__(self, layout: Layout, batches: list[list[Item]], pixels: bool):
        self.layout, self.batches, self.pixels = layout, batches, pixels

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> dict[str, Any]:
        import torch

        lay, items = self.layout, self.batches[k]
        out: dict[str, Any] = {
            "items": items,
            "captions": [
                "" if it.drop_caption else lay.data.examples[it.index].caption for it in items
            ],
            "time_ids": torch.tensor(
                [time_ids(lay.data, it, lay.buckets[it.index], lay.center) for it in items]
            ),
        }
        if self.pixels:
            out["pixels"] = torch.stack(
                [load_pixels(lay.data, it, lay.buckets[it.index], lay.center) for it in items]
            )
        return out


def make_loader(layout: Layout, batches: list[list[Item]], cfg: TrainConfig, cached: bool) -> Any:
    """Iterate planned batches, loading pixels in `dataloader_workers` processes when needed."""
    if cached:
        source = PlannedBatches(layout, batches, pixels=False)
        return (source[k] for k in range(len(source)))
    from torch.utils.data import DataLoader

    return DataLoader(
        PlannedBatches(layout, batches, pixels=True),
        batch_size=None,
        shuffle=False,
        num_workers=cfg.dataloader_workers,
        persistent_workers=False,
    )


def to_batch(m: Models, raw: dict[str, Any], caches: Caches | None, train_text: bool) -> Batch:
    """Encode (or look up) a loaded batch's latent distribution and text conditioning."""
    import torch

    items: list[Item] = raw["items"]
    if caches is not None and caches.latents:
        mean = torch.stack([caches.latents[(it.index, it.flip)][0] for it in items])
        std = torch.stack([caches.latents[(it.index, it.flip)][1] for it in items])
    else:
        with torch.no_grad():
            mean, std = encode_images(m, raw["pixels"])
    if caches is not None and caches.text:
        hidden = torch.stack([caches.text[c][0] for c in raw["captions"]])
        pooled = torch.stack([caches.text[c][1] for c in raw["captions"]]) if m.is_sdxl else None
    else:
        with torch.set_grad_enabled(train_text):
            hidden, pooled = encode_text(m, raw["captions"])
    return Batch(mean, std, hidden, pooled, raw["time_ids"] if m.is_sdxl else None)


def build_caches(m: Models, cfg: TrainConfig, layout: Layout, indices: list[int]) -> Caches:
    """Encode every training image (both flips when flipping) and, with a frozen text encoder,
    every caption plus the empty one, so that steps never call the VAE or text encoder."""
    import torch

    caches = Caches()
    flips = (False, True) if cfg.random_flip else (False,)
    keys = [(i, f) for i in indices for f in flips]
    by_bucket: dict[tuple[int, int], list[tuple[int, bool]]] = {}
    for key in keys:
        by_bucket.setdefault(layout.buckets[key[0]], []).append(key)
    with torch.no_grad():
        for bucket, group in sorted(by_bucket.items()):
            for k in range(0, len(group), CACHE_CHUNK):
                chunk = group[k : k + CACHE_CHUNK]
                pixels = torch.stack(
                    [load_pixels(layout.data, Item(i, f), bucket, True) for i, f in chunk]
                )
                mean, std = encode_images(m, pixels)
                for j, key in enumerate(chunk):
                    caches.latents[key] = (mean[j], std[j])
        if not cfg.train_text_encoder:
            captions = sorted({layout.data.examples[i].caption for i in indices} | {""})
            for k in range(0, len(captions), CACHE_CHUNK):
                texts = captions[k : k + CACHE_CHUNK]
                hidden, pooled = encode_text(m, texts)
                for j, caption in enumerate(texts):
                    caches.text[caption] = (hidden[j], pooled[j] if pooled is not None else None)
    return caches
