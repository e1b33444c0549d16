"""Generation parameters that other tools write into images, read back as one `ImageRecipe`.

- A1111/Forge (and Civitai downloads): the `parameters` text (PNG tEXt/iTXt, or the EXIF
  UserComment of a JPEG/WebP): prompt with `<lora:NAME:W>` tags, `Negative prompt: …`, then one
  `Key: value, …` line with `Lora hashes: "name: hash, …"`.
- ComfyUI: the `prompt` chunk (the API graph: node id -> {class_type, inputs}); LoRAs are
  `LoraLoader` (strength_model, strength_clip) / `LoraLoaderModelOnly` nodes.
- lorahub: the `lorahub` chunk, the generation record itself.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lorahub.errors import BadFileError

MAX_IMAGE_TEXT = 1_000_000  # characters kept of one text chunk (a recipe is a few kB)
SETTING_RE = re.compile(r'\s*([\w][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
LORA_LOADERS = {"LoraLoader": True, "LoraLoaderModelOnly": False}  # class -> has a clip strength


@dataclass(frozen=True)
class RecipeMember:
    """One LoRA of an image's stack: the name the tool used, its hash when given, the weights."""

    name: str
    weight: float
    te_weight: float | None = None
    hash: str | None = None


@dataclass(frozen=True)
class ImageRecipe:
    """What an image says about how it was made (fields None where the image does not say)."""

    tool: str  # a1111, comfyui, lorahub
    members: list[RecipeMember] = field(default_factory=list)
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    width: int | None = None
    height: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def defaults(self) -> dict[str, Any]:
        """The generation settings worth keeping with a mix (members aside)."""
        keys = (
            "prompt",
            "negative_prompt",
            "seed",
            "steps",
            "guidance",
            "sampler",
            "width",
            "height",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) not in (None, "")}


def image_texts(path: str | os.PathLike[str]) -> dict[str, str]:
    """The text chunks of an image (PNG text, or A1111's EXIF UserComment as `parameters`)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise BadFileError(f"{path}: not a file")
    try:
        with Image.open(path) as img:
            texts = {k: v for k, v in getattr(img, "text", {}).items() if isinstance(v, str)}
            if "parameters" not in texts:
                comment = _exif_comment(img)
                if comment:
                    texts["parameters"] = comment
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise BadFileError(f"{path.name} is not a readable image: {exc}") from None
    return {k: v[:MAX_IMAGE_TEXT] for k, v in texts.items()}


def _exif_comment(img: Any) -> str | None:
    """EXIF UserComment (0x9286), as A1111 writes it into JPEG/WebP: 8-byte charset + text."""
    raw = img.getexif().get_ifd(0x8769).get(0x9286)
    if isinstance(raw, str):
        return raw or None
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None
    head, body = raw[:8], raw[8:]
    if not head.startswith(b"UNICODE"):
        return body.decode("utf-8", errors="replace").strip("\x00").strip() or None
    # piexif (A1111) writes UTF-16 big-endian; some tools little-endian: ASCII tells which
    codec = "utf-16-le" if body[:1] != b"\x00" and body[1:2] == b"\x00" else "utf-16-be"
    return body.decode(codec, errors="replace").strip("\x00").strip() or None


def read_recipe(path: str | os.PathLike[str]) -> ImageRecipe | None:
    """The recipe an image carries (lorahub's record first, then ComfyUI's graph, then A1111's
    parameters), or None when it carries none."""
    texts = image_texts(path)
    for key, parse in (("lorahub", _lorahub), ("prompt", _comfyui), ("parameters", a1111_recipe)):
        if texts.get(key):
            recipe = parse(texts[key])
            if recipe is not None:
                return recipe
    return None


def _lorahub(text: str) -> ImageRecipe | None:
    record = _json(text)
    if not isinstance(record, dict) or "prompt" not in record:
        return None
    members = [
        RecipeMember(
            str(a.get("name")), _num(a.get("weight"), 1.0), _opt(a.get("te_weight")), a.get("hash")
        )
        for a in record.get("adapters") or []
        if isinstance(a, dict) and a.get("name")
    ]
    seeds = record.get("seeds") or [record.get("seed")]
    return ImageRecipe(
        "lorahub",
        members,
        str(record["prompt"]),
        record.get("negative_prompt") or None,
        _int(seeds[0]),
        _int(record.get("steps")),
        _opt(record.get("guidance")),
        record.get("scheduler") or None,
        _int(record.get("width")),
        _int(record.get("height")),
    )


def a1111_recipe(text: str) -> ImageRecipe | None:
    """Parse A1111's `parameters` text (prompt, negative prompt, settings line)."""
    from lorahub.inference.requests import TAG_RE, tag_weights

    lines = text.strip().splitlines()
    if not lines:
        return None
    settings: dict[str, str] = {}
    if len(lines) > 1 and "Steps:" in lines[-1]:
        settings = {k.strip(): v.strip() for k, v in SETTING_RE.findall(lines.pop())}
    body = "\n".join(lines)
    prompt, _, negative = body.partition("\nNegative prompt:")
    if body.startswith("Negative prompt:"):
        prompt, negative = "", body[len("Negative prompt:") :]
    hashes = _lora_hashes(settings.get("Lora hashes", ""))
    members = []
    for m in TAG_RE.finditer(prompt):
        name = m.group(1).strip()
        try:
            weight, te = tag_weights(m.group(2), m.group(0))
        except ValueError:
            continue
        members.append(RecipeMember(name, weight, te, hashes.get(name)))
    clean = re.sub(r"\s+", " ", TAG_RE.sub(" ", prompt)).strip()
    size = re.fullmatch(r"(\d+)x(\d+)", settings.get("Size", ""))
    return ImageRecipe(
        "a1111",
        members,
        clean or None,
        negative.strip() or None,
        _int(settings.get("Seed")),
        _int(settings.get("Steps")),
        _opt(settings.get("CFG scale")),
        settings.get("Sampler"),
        _int(size.group(1)) if size else None,
        _int(size.group(2)) if size else None,
    )


def _lora_hashes(value: str) -> dict[str, str]:
    """`"name: hash, name2: hash2"` -> {name: hash}."""
    out = {}
    for part in value.strip('"').split(","):
        name, sep, digest = part.rpartition(":")
        if sep and name.strip() and re.fullmatch(r"[0-9a-fA-F]{8,64}", digest.strip()):
            out[name.strip()] = digest.strip().lower()
    return out


def _comfyui(text: str) -> ImageRecipe | None:
    graph = _json(text)
    if not isinstance(graph, dict) or not graph:
        return None
    nodes = {
        k: v for k, v in graph.items() if isinstance(v, dict) and isinstance(v.get("inputs"), dict)
    }
    members = []
    for node in nodes.values():
        clip = LORA_LOADERS.get(str(node.get("class_type")))
        inputs = node["inputs"]
        if clip is None or not isinstance(inputs.get("lora_name"), str):
            continue
        name = Path(inputs["lora_name"].replace("\\", "/")).stem
        te = _opt(inputs.get("strength_clip")) if clip else 0.0
        members.append(RecipeMember(name, _num(inputs.get("strength_model"), 1.0), te))
    sampler: dict[str, Any] = next(
        (n["inputs"] for n in nodes.values() if "KSampler" in str(n.get("class_type"))), {}
    )
    prompt, negative = (
        _comfy_text(nodes, sampler.get("positive")),
        _comfy_text(nodes, sampler.get("negative")),
    )
    latent: dict[str, Any] = next(
        (n["inputs"] for n in nodes.values() if n.get("class_type") == "EmptyLatentImage"), {}
    )
    if not members and prompt is None:
        return None
    return ImageRecipe(
        "comfyui",
        members,
        prompt,
        negative,
        _int(sampler.get("seed", sampler.get("noise_seed"))),
        _int(sampler.get("steps")),
        _opt(sampler.get("cfg")),
        sampler.get("sampler_name"),
        _int(latent.get("width")),
        _int(latent.get("height")),
    )


def _comfy_text(nodes: dict[str, Any], link: Any) -> str | None:
    """The text of the CLIPTextEncode node a sampler input links to (`[node_id, slot]`)."""
    if not (isinstance(link, list) and link and str(link[0]) in nodes):
        return None
    text = nodes[str(link[0])]["inputs"].get("text")
    return text if isinstance(text, str) else None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _num(value: Any, default: float) -> float:
    v = _opt(value)
    return default if v is None else v


def _opt(value: Any) -> float | None:
    import math

    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None
