"""Bearer-token guard: every route but `/healthz` (and the static web page's own files).

The token is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from lorahub.server.errors import error_body

OPEN_PATHS = frozenset({"/healthz"})
API_PREFIXES = ("/v1", "/metrics", "/openapi.json", "/docs", "/redoc")


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if any."""
    for key, value in headers:
        if key.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (no early exit on the first differing byte)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def is_open(path: str, static_served: bool) -> bool:
    """Paths that need no token: `/healthz`, and the page's files when a page is served."""
    if path in OPEN_PATHS:
        return True
    is_api = any(path == p or path.startswith(p + "/") for p in API_PREFIXES)
    return static_served and not is_api


class TokenMiddleware:
    """A raw ASGI middleware answering 401 in the API's error shape when the token is wrong."""

    def __init__(self, app: Callable, token: str, static_served: Callable[[], bool]):
        self.app = app
        self.token = token
        self.static_served = static_served

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or is_open(scope["path"], self.static_served()):
            await self.app(scope, receive, send)
            return
        if token_matches(bearer_token(scope.get("headers", [])), self.token):
            await self.app(scope, receive, send)
            return
        body = error_body(
            401, "unauthorized", "a valid bearer token is required (Authorization: Bearer TOKEN)"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="lorahub"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
