"""Fidelity reports: how exact a merge, resize, export or fuse was, module by module."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModuleReport:
    """One module's result: ranks in and out, ‖target‖, ‖result − target‖ and their ratio."""

    name: str
    rank_in: int
    rank_out: int
    target_norm: float
    error_norm: float

    @property
    def rel_error(self) -> float:
        """‖ΔW_result − ΔW_target‖ / ‖ΔW_target‖ (0 for a zero target)."""
        return self.error_norm / self.target_norm if self.target_norm > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rank_in": self.rank_in,
            "rank_out": self.rank_out,
            "target_norm": self.target_norm,
            "error_norm": self.error_norm,
            "rel_error": self.rel_error,
        }


@dataclass
class OpReport:
    """The fidelity report of one operation (merge, resize, export, fuse)."""

    operation: str
    method: str | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    output: str | None = None
    rank: int | None = None
    energy: float | None = None
    density: float | None = None
    seed: int | None = None
    modules: list[ModuleReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float | None = None
    registered: str | None = None

    def add(self, module: ModuleReport) -> None:
        """Record one module's result."""
        self.modules.append(module)

    @property
    def overall_error(self) -> float:
        """√Σ‖error‖² / √Σ‖target‖² over all modules: the whole adapter's relative error."""
        err = math.sqrt(sum(m.error_norm**2 for m in self.modules))
        tgt = math.sqrt(sum(m.target_norm**2 for m in self.modules))
        return err / tgt if tgt > 0 else 0.0

    @property
    def max_error(self) -> float:
        """The worst module's relative error."""
        return max((m.rel_error for m in self.modules), default=0.0)

    @property
    def rank_out(self) -> tuple[int, int]:
        """(min, max) output rank over modules."""
        ranks = [m.rank_out for m in self.modules] or [0]
        return min(ranks), max(ranks)

    def summary(self) -> dict[str, Any]:
        """The report without per-module rows (what lineage details store next to the modules)."""
        lo, hi = self.rank_out
        return {
            "operation": self.operation,
            "method": self.method,
            "inputs": self.inputs,
            "output": self.output,
            "rank": self.rank,
            "energy": self.energy,
            "density": self.density,
            "seed": self.seed,
            "module_count": len(self.modules),
            "rank_out_min": lo,
            "rank_out_max": hi,
            "overall_rel_error": self.overall_error,
            "max_rel_error": self.max_error,
            "warnings": self.warnings,
            "seconds": self.seconds,
            "registered": self.registered,
        }

    def to_json(self) -> dict[str, Any]:
        """The full report: summary plus one row per module."""
        return {**self.summary(), "modules": [m.to_json() for m in self.modules]}
