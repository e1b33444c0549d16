"""The ASGI middleware that counts every HTTP request into the server's metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from lorahub.metrics import ServerMetrics


class MetricsMiddleware:
    """Count every HTTP request by method, route template and final status."""

    def __init__(self, app: Callable, metrics: ServerMetrics, route_of: Callable[[dict], str]):
        self.app = app
        self.metrics = metrics
        self.route_of = route_of

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def tracking_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.count_request(
                scope.get("method", "?"), self.route_of(scope), status, seconds
            )
