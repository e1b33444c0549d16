"""Request body size limit, checked on the declared length and on the bytes actually received."""

from __future__ import annotations

from collections.abc import Callable

from lorahub.server.errors import error_body


class BodyLimitMiddleware:
    """Answer 413 (in the API's error shape) to bodies over `max_bytes` (or over the limit
    `path_limits` gives a path: an uploaded image may be larger than a JSON body)."""

    def __init__(self, app: Callable, max_bytes: int, path_limits: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.max_bytes)
        declared = _content_length(scope.get("headers", []))
        if declared is not None and declared > limit:
            await self._reject(send, limit)
            return
        seen = 0
        started = rejected = False

        async def limited_receive() -> dict:
            # The app never sees an oversize body: we answer 413 and tell it the client left.
            nonlocal seen, rejected
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not rejected:
                rejected = True
                if not started:
                    await self._reject(send, limit)
                return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if not rejected:
                raise

    async def _reject(self, send: Callable, limit: int) -> None:
        body = error_body(413, "too_large", f"request body over {limit} bytes")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
