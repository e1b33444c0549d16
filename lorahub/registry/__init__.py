"""The adapter registry: one SQLite file (sqlite-utils), schema by named migrations, WAL.

Everything a caller needs is exported here; see `Registry` for the methods.
"""

from lorahub.registry.migrations import migrations
from lorahub.registry.records import (
    LINEAGE_KINDS,
    RELATIONS,
    SOURCES,
    AdapterRecord,
    AddOptions,
    LineageEdge,
    LineageParent,
    MixRecord,
    ModelRecord,
    PublicationRecord,
    ScanItem,
    ScanReport,
    VerifyReport,
)
from lorahub.registry.registry import Registry

__all__ = [
    "LINEAGE_KINDS",
    "RELATIONS",
    "SOURCES",
    "AdapterRecord",
    "AddOptions",
    "LineageEdge",
    "LineageParent",
    "MixRecord",
    "ModelRecord",
    "PublicationRecord",
    "Registry",
    "ScanItem",
    "ScanReport",
    "VerifyReport",
    "migrations",
]
