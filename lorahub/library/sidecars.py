"""Sidecar files other tools keep beside a LoRA, read into one set of facts with their source.

Read (field names from each tool's own files):
- Civitai Helper `NAME.civitai.info`: the Civitai model-version JSON (`id`, `modelId`,
  `baseModel`, `trainedWords`, `description`, `model.name`, `files[].hashes.SHA256`).
- A1111 user metadata `NAME.json` (extensions-builtin/Lora): `activation text`,
  `preferred weight`, `description`, `sd version`, `notes`, `negative text`.
- ComfyUI-Lora-Manager `NAME.metadata.json`: `sha256`, `base_model`, `modelDescription`,
  `notes`, `usage_tips` (JSON text with `strength`), `civitai` (a model-version object).
- Stability Matrix `NAME.cm-info.json` (ConnectedModelInfo): `ModelId`, `VersionId`,
  `ModelName`, `ModelDescription`, `BaseModel`, `TrainedWords`, `Hashes.SHA256`.
- Preview images `NAME.preview.(png|jpg|jpeg|webp)` and `NAME.(png|jpg|jpeg|webp)`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_SIDECAR_BYTES = 4 * 1024 * 1024  # a sidecar is a few kB; a huge one is refused, not read
KINDS = (".civitai.info", ".metadata.json", ".cm-info.json", ".json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
FIELDS = (
    "trigger_words",
    "description",
    "base_model",
    "preferred_weight",
    "civitai_model_id",
    "civitai_version_id",
    "source_url",
    "notes",
    "negative_prompt",
    "sha256",
)


@dataclass
class SidecarFacts:
    """What the sidecars of one file say: field -> (value, sidecar file name), problems, previews."""

    values: dict[str, tuple[Any, str]] = field(default_factory=dict)
    previews: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def get(self, name: str) -> Any:
        return self.values[name][0] if name in self.values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "fields": {k: {"value": v, "from": src} for k, (v, src) in sorted(self.values.items())},
            "previews": [p.name for p in self.previews],
            "problems": self.problems,
        }


def sidecar_files(adapter: Path) -> list[Path]:
    """The sidecar files beside `adapter` (regular files only), in reading order."""
    stem = adapter.name[: -len(adapter.suffix)] if adapter.suffix else adapter.name
    out = [adapter.with_name(stem + kind) for kind in KINDS]
    return [p for p in out if p.is_file()]


def preview_files(adapter: Path) -> list[Path]:
    stem = adapter.name[: -len(adapter.suffix)] if adapter.suffix else adapter.name
    names = [f"{stem}.preview{s}" for s in IMAGE_SUFFIXES] + [f"{stem}{s}" for s in IMAGE_SUFFIXES]
    return [adapter.with_name(n) for n in names if adapter.with_name(n).is_file()]


def read_sidecars(adapter: Path, sha256: str | None = None) -> SidecarFacts:
    """Every sidecar's facts; the first file to give a field wins (order of KINDS). A sidecar that
    is malformed, too big, not UTF-8 or for another file (hash mismatch) is reported, not used."""
    facts = SidecarFacts(previews=preview_files(adapter))
    for path in sidecar_files(adapter):
        try:
            data = _load(path)
            parsed = PARSERS[_kind(path)](data)
        except SidecarError as exc:
            facts.problems.append(f"{path.name}: {exc}")
            continue
        claimed = parsed.get("sha256")
        if sha256 and isinstance(claimed, str) and claimed.lower() != sha256.lower():
            facts.problems.append(
                f"{path.name}: describes another file (sha256 {claimed[:12]}…), ignored"
            )
            continue
        facts.files.append(path)
        for name, value in parsed.items():
            if value not in (None, "", []) and name not in facts.values:
                facts.values[name] = (value, path.name)
    return facts


class SidecarError(Exception):
    """A sidecar that cannot be used (said once, per file)."""


def _kind(path: Path) -> str:
    return next(k for k in KINDS if path.name.endswith(k))


def _load(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise SidecarError(f"larger than {MAX_SIDECAR_BYTES // 2**20} MiB, not read")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise SidecarError("not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise SidecarError(f"not valid JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(data, dict):
        raise SidecarError(f"a JSON {type(data).__name__}, not an object")
    return data


def _text(value: Any, limit: int = 20_000) -> str | None:
    return value.strip()[:limit] or None if isinstance(value, str) else None


def _words(value: Any) -> list[str]:
    """Trigger words from a list or a comma-separated text (A1111's activation text)."""
    items = (
        value
        if isinstance(value, list)
        else re.split(r"\s*,\s*", value)
        if isinstance(value, str)
        else []
    )
    out = []
    for w in items:
        if isinstance(w, str) and w.strip() and w.strip() not in out:
            out.append(w.strip()[:200])
    return out[:100]


def _id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 < value < 2**63:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _weight(value: Any) -> float | None:
    try:
        w = float(value)
    except (TypeError, ValueError):
        return None
    return w if math.isfinite(w) and w != 0 and abs(w) <= 10 else None  # A1111: 0 = unset


def _sha(value: Any) -> str | None:
    return (
        value.lower()
        if isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{64}", value)
        else None
    )


def _dict(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _civitai_version(data: dict[str, Any]) -> dict[str, Any]:
    """A Civitai model-version object (Civitai Helper's file, Lora-Manager's `civitai`)."""
    files = _list(data, "files")
    hashes = [_dict(f, "hashes") for f in files if isinstance(f, dict)]
    model = _dict(data, "model")
    model_id, version_id = _id(data.get("modelId")), _id(data.get("id"))
    url = (
        f"https://civitai.com/models/{model_id}"
        + (f"?modelVersionId={version_id}" if version_id else "")
        if model_id
        else None
    )
    return {
        "trigger_words": _words(data.get("trainedWords")),
        "description": _text(data.get("description")),
        "base_model": _text(data.get("baseModel"), 100),
        "civitai_model_id": model_id,
        "civitai_version_id": version_id,
        "source_url": url,
        "notes": _text(model.get("name"), 500),
        "sha256": next((_sha(h.get("SHA256")) for h in hashes if _sha(h.get("SHA256"))), None),
    }


def _a1111(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "trigger_words": _words(data.get("activation text")),
        "description": _text(data.get("description")),
        "base_model": _text(data.get("sd version"), 100)
        if data.get("sd version") != "Unknown"
        else None,
        "preferred_weight": _weight(data.get("preferred weight")),
        "notes": _text(data.get("notes")),
        "negative_prompt": _text(data.get("negative text")),
    }


def _lora_manager(data: dict[str, Any]) -> dict[str, Any]:
    civitai = _dict(data, "civitai")
    out = _civitai_version(civitai) if civitai else {}
    tips = data.get("usage_tips")
    try:
        tips = json.loads(tips) if isinstance(tips, str) else tips
    except ValueError:
        tips = None
    return {
        **out,
        "description": _text(data.get("modelDescription")) or out.get("description"),
        "base_model": _text(data.get("base_model"), 100) or out.get("base_model"),
        "notes": _text(data.get("notes")) or out.get("notes"),
        "preferred_weight": _weight(tips.get("strength")) if isinstance(tips, dict) else None,
        "sha256": _sha(data.get("sha256")) or out.get("sha256"),
    }


def _stability_matrix(data: dict[str, Any]) -> dict[str, Any]:
    hashes = _dict(data, "Hashes")
    model_id, version_id = _id(data.get("ModelId")), _id(data.get("VersionId"))
    return {
        "trigger_words": _words(data.get("TrainedWords")),
        "description": _text(data.get("ModelDescription")),
        "base_model": _text(data.get("BaseModel"), 100),
        "civitai_model_id": model_id,
        "civitai_version_id": version_id,
        "source_url": f"https://civitai.com/models/{model_id}" if model_id else None,
        "notes": _text(data.get("ModelName"), 500),
        "sha256": _sha(hashes.get("SHA256")),
    }


PARSERS = {
    ".civitai.info": _civitai_version,
    ".json": _a1111,
    ".metadata.json": _lora_manager,
    ".cm-info.json": _stability_matrix,
}


def family_of_claim(base_model: str | None) -> str | None:
    """The family a sidecar's base-model text claims (`SD 1.5`, `SDXL 1.0`, `Flux.1 D`, `SD1`)."""
    from lorahub import families

    if not base_model:
        return None
    text = base_model.lower().replace(" ", "")
    if text in ("sd1", "sd1.5", "sd1.4"):
        return "sd1"
    if text in ("sd2", "sd2.1", "sd2.0", "sd2.1768"):
        return "sd2"
    return families.from_text(text.replace("sd1.5", "sd15").replace("sdxl", "xl"))
