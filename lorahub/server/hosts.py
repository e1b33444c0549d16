"""Host header guard against DNS rebinding: answer only under the names the server is served as.

A web page on another origin can point its own DNS name at 127.0.0.1 and then talk to a local
server that checks nothing; its requests still carry the page's name in `Host`. Loopback names
and the bind address are allowed by default, `--allowed-host` adds more (`*` turns the check off).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from lorahub.server.errors import error_body

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::")


def allowed_hosts(bind_host: str | None = None, extra: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names, the bind host (unless a wildcard) and `extra`, normalised."""
    hosts = {normalise(h) for h in (*LOOPBACK_HOSTS, *extra)}
    if bind_host is not None and normalise(bind_host) not in WILDCARD_BINDS:
        hosts.add(normalise(bind_host))
    return frozenset(hosts)


def normalise(host: str) -> str:
    """`Host` value without port and brackets, lower-case: `[::1]:8765` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """True for an allowed name, any loopback IP, or no Host header (not a browser)."""
    if host is None or "*" in allowed:
        return True
    name = normalise(host)
    if name in allowed:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_header(headers: list[tuple[bytes, bytes]]) -> str | None:
    for key, value in headers:
        if key.lower() == b"host":
            return value.decode("latin-1")
    return None


class HostMiddleware:
    """A raw ASGI middleware answering 421 in the API's error shape to an unknown Host."""

    def __init__(self, app: Callable, allowed: frozenset[str]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        host = _host_header(scope.get("headers", [])) if scope["type"] == "http" else None
        if host_allowed(host, self.allowed):
            await self.app(scope, receive, send)
            return
        shown = host if host is not None and len(host) <= 100 else "(too long)"
        body = error_body(
            421,
            "misdirected_request",
            f"host {shown!r} is not served here; start the server with --allowed-host NAME to add it",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
