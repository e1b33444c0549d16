"""PNG text chunks of a generation record, with an A1111-style "parameters" entry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lorahub.fileio import atomic_path
from lorahub.inference.pipelines import A1111_SAMPLERS


def _fmt(value: float) -> str:
    return f"{value:g}"


def a1111_parameters(record: dict[str, Any], index: int = 0) -> str:
    """The A1111 "parameters" text: prompt with <lora:> tags, negative, settings, Lora hashes."""
    tags = "".join(f" <lora:{a['name']}:{_fmt(a['weight'])}>" for a in record.get("adapters", []))
    lines = [record["prompt"] + tags]
    if record.get("negative_prompt"):
        lines.append(f"Negative prompt: {record['negative_prompt']}")
    seeds = record.get("seeds") or [record["seed"]]
    fields = [
        f"Steps: {record['steps']}",
        f"Sampler: {A1111_SAMPLERS.get(record.get('scheduler', ''), record.get('scheduler', ''))}",
        f"CFG scale: {_fmt(record['guidance'])}",
        f"Seed: {seeds[min(index, len(seeds) - 1)]}",
        f"Size: {record['width']}x{record['height']}",
        f"Model: {record['base']}",
    ]
    if record.get("clip_skip"):
        fields.append(f"Clip skip: {record['clip_skip']}")
    hashes = [f"{a['name']}: {a['hash']}" for a in record.get("adapters", []) if a.get("hash")]
    if hashes:
        fields.append(f'Lora hashes: "{", ".join(hashes)}"')
    lines.append(", ".join(fields))
    return "\n".join(lines)


def png_text(record: dict[str, Any], index: int = 0) -> dict[str, str]:
    """Every text chunk for image `index` of a record."""
    seeds = record.get("seeds") or [record["seed"]]
    adapters = [
        {k: a.get(k) for k in ("name", "weight", "te_weight", "block_weights", "hash")}
        for a in record.get("adapters", [])
    ]
    return {
        "parameters": a1111_parameters(record, index),
        "prompt": record["prompt"],
        "negative_prompt": record.get("negative_prompt", ""),
        "seed": str(seeds[min(index, len(seeds) - 1)]),
        "steps": str(record["steps"]),
        "guidance": _fmt(record["guidance"]),
        "size": f"{record['width']}x{record['height']}",
        "base": str(record["base"]),
        "scheduler": str(record.get("scheduler", "")),
        "adapters": json.dumps(adapters),
        "lorahub": json.dumps({k: v for k, v in record.items() if k != "timings"}, default=str),
    }


def png_bytes(image: Any, record: dict[str, Any], index: int = 0) -> bytes:
    """The image encoded as PNG with the record's text chunks."""
    import io

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in png_text(record, index).items():
        info.add_itxt(key, value) if not value.isascii() else info.add_text(key, value)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def output_paths(dest: str | Path, n: int) -> list[Path]:
    """`dest` itself for one image, else `STEM-000.png`, `STEM-001.png`, … beside it."""
    dest = Path(dest)
    if n == 1:
        return [dest]
    suffix = dest.suffix or ".png"
    return [dest.with_name(f"{dest.stem}-{i:03d}{suffix}") for i in range(n)]


def save_png(images: list[Any], record: dict[str, Any], dest: str | Path) -> list[Path]:
    """Write every image atomically with its text chunks; the paths written."""
    return write_pngs([png_bytes(image, record, i) for i, image in enumerate(images)], dest)


def write_pngs(pngs: list[bytes], dest: str | Path) -> list[Path]:
    """Write encoded PNGs atomically to `output_paths(dest, len(pngs))`; the paths written."""
    paths = output_paths(dest, len(pngs))
    for data, path in zip(pngs, paths, strict=True):
        with atomic_path(path, suffix=".png") as tmp:
            tmp.write_bytes(data)
            tmp.chmod(0o666 & ~_umask())  # an ordinary file's mode, not the temp file's 0600
    return paths


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
