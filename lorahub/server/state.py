"""What one app instance holds: settings, the engine worker, metrics, recent generations."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from lorahub import families
from lorahub.metrics import ServerMetrics
from lorahub.server.worker import EngineWorker

if TYPE_CHECKING:
    from lorahub.registry import Registry

RECENT = 20


@dataclass
class ServerState:
    """Settings and shared objects of one app (reached from a request as `state(request)`)."""

    base: str
    worker: EngineWorker
    registry_path: Path | None = None
    token: str | None = None
    static_dir: Path | None = None
    max_work: int = 0
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
    started_at: float = field(default_factory=time.time)
    _family: str | None = None

    @property
    def static_served(self) -> bool:
        """Whether the web page is served at `/` (the folder has an index.html)."""
        return self.static_dir is not None and (self.static_dir / "index.html").is_file()

    @property
    def base_family(self) -> str | None:
        """The base family adapters must be made for (None when unknown: no check)."""
        family = families.of_base_id(self.base)
        if family is None and self._family is None:
            from lorahub.inference.pipelines import base_family

            self._family = base_family(self.base) or ""
        return family or self._family or None

    def remember(self, entry: dict[str, Any]) -> None:
        """Keep a generation's summary for `/v1/status` (no images)."""
        self.recent.appendleft(entry)

    def engine_stats(self) -> dict[str, Any]:
        """The engine's counters and histograms, or {} when it has none."""
        return _call_dict(self.worker.engine, "stats")

    def engine_status(self) -> dict[str, Any]:
        """The engine's loaded bases and resident adapters, or {} when it has none."""
        return _call_dict(self.worker.engine, "status")


def _call_dict(engine: Any, method: str) -> dict[str, Any]:
    """`engine.<method>()` as a dict; a status read must never fail a request."""
    try:
        return dict(getattr(engine, method)())
    except Exception:
        return {}


def state(request: Request) -> ServerState:
    """The ServerState of the app serving `request`."""
    return request.app.state.lorahub


@contextlib.contextmanager
def open_registry(st: ServerState) -> Iterator[Registry]:
    """A registry connection for one request (SQLite connections stay in their thread)."""
    from lorahub.registry import Registry

    registry = Registry(st.registry_path)
    try:
        yield registry
    finally:
        close = getattr(registry, "close", None)
        if close is not None:
            close()


def registry_dep(request: Request) -> Iterator[Registry]:
    """FastAPI dependency: a registry for this request, closed afterwards."""
    with open_registry(state(request)) as registry:
        yield registry
