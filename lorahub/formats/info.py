"""`AdapterInfo`: everything `inspect` learns about an adapter file from its header."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lorahub import families
from lorahub.formats.header import FileHashes

FORMATS = ("diffusers", "diffusers-attnproc", "peft", "kohya", "lycoris", "cloneofsimo", "unknown")
NETWORK_TYPES = ("lora", "locon", "loha", "lokr", "dora", "unknown")
BASE_FAMILIES = (*families.ids(), families.UNKNOWN)


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter file is: format, network type, base family (with evidence), ranks, metadata."""

    path: str
    size: int
    mtime: float
    format: str
    network_type: str
    base_family: str
    base_evidence: list[str] = field(default_factory=list)
    base_conflict: str | None = None
    components: list[str] = field(default_factory=list)
    rank: int | None = None
    rank_min: int | None = None
    rank_max: int | None = None
    rank_summary: dict[str, int] = field(default_factory=dict)
    alpha: float | None = None
    dtype: str | None = None
    param_count: int = 0
    module_count: int = 0
    targets: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    trigger_words: list[str] = field(default_factory=list)
    key_patterns: list[str] = field(default_factory=list)
    header_bytes: int = 0
    tensor_file: str | None = None
    component_summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    hashes: FileHashes | None = None

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape of `inspect --json` (see docs/json.md)."""
        data = asdict(self)
        data["hashes"] = self.hashes.to_json() if self.hashes else None
        return data
