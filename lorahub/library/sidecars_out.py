"""Sidecars out: A1111's `NAME.json` user metadata and `NAME.preview.png` beside each adapter
file, so A1111/Forge (and ComfyUI extensions that read them) show what was curated in lorahub."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorahub import families
from lorahub.fileio import atomic_path

A1111_VERSIONS = {  # A1111's `sd version` choices
    f.id: f.a1111_version for f in families.FAMILIES.values() if f.a1111_version
}


@dataclass(frozen=True)
class SidecarWrite:
    """One file `sidecars write` considered: what happened to it, and why."""

    ref: str
    path: str
    action: str  # written, unchanged, kept (newer than the record; --force replaces it)

    def to_json(self) -> dict[str, str]:
        return {"ref": self.ref, "path": self.path, "action": self.action}


def a1111_user_metadata(record: Any) -> dict[str, Any]:
    """The A1111 user-metadata object for a record (the keys A1111's Lora editor writes)."""
    facts = (record.sidecar or {}).get("fields", {})
    weight = facts.get("preferred_weight", {}).get("value")
    return {
        "description": record.description or "",
        "sd version": A1111_VERSIONS.get(record.base_family, "Unknown"),
        "activation text": ", ".join(record.trigger_words),
        "preferred weight": weight if isinstance(weight, int | float) else 0,
        "negative text": facts.get("negative_prompt", {}).get("value") or "",
        "notes": facts.get("notes", {}).get("value") or "",
    }


def write_sidecars(record: Any, preview: Path | None, *, force: bool = False) -> list[SidecarWrite]:
    """Write `STEM.json` (and `STEM.preview.png` from `preview`) beside the record's file."""
    file = Path(record.path)
    stem = file.name[: -len(file.suffix)] if file.suffix else file.name
    out = [_write(record, file.with_name(f"{stem}.json"), _json_bytes(record), force)]
    if preview is not None and preview.is_file():
        out.append(
            _write(record, file.with_name(f"{stem}.preview.png"), _png_bytes(preview), force)
        )
    return out


def _json_bytes(record: Any) -> bytes:
    return (json.dumps(a1111_user_metadata(record), indent=4, ensure_ascii=False) + "\n").encode()


def _png_bytes(image: Path) -> bytes:
    import io

    from PIL import Image

    if image.suffix.lower() == ".png":
        return image.read_bytes()
    with Image.open(image) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()


def _write(record: Any, dest: Path, data: bytes, force: bool) -> SidecarWrite:
    """Write unless the same bytes are there, or a file changed after lorahub's record was."""
    if dest.is_file():
        if dest.read_bytes() == data:
            return SidecarWrite(record.ref, str(dest), "unchanged")
        updated = datetime.datetime.fromisoformat(record.updated_at).timestamp()
        if dest.stat().st_mtime > updated and not force:
            return SidecarWrite(record.ref, str(dest), "kept")
    with atomic_path(dest, suffix=dest.suffix) as tmp:
        tmp.write_bytes(data)
    return SidecarWrite(record.ref, str(dest), "written")
