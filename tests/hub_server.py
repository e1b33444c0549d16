"""A local server that speaks enough of the Hugging Face Hub HTTP protocol for `huggingface_hub`.

Start one with `HubServer(port).start()`, point `HF_ENDPOINT` at `server.url` before
huggingface_hub is imported, and drive it from tests through the Python handle: `lfs_mode`,
`fail(...)`, `calls(...)`, `tokens`, `reset()`. Routes live in `hub_routes.py`.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.hub_store import HubError, HubStore

HUB_USER = "lorahub-tester"
HUB_TOKEN = "hf_lorahub_test_token_0123456789"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".zip")


@dataclass
class Failure:
    """An injected failure: the next `times` requests matching `pattern` get `status`."""

    pattern: str
    status: int
    times: int
    method: str | None
    code: str | None
    message: str

    def matches(self, method: str, path: str) -> bool:
        """Whether this failure applies to a request."""
        return (
            self.times > 0
            and (self.method in (None, method))
            and re.search(self.pattern, path) is not None
        )


@dataclass(frozen=True)
class Call:
    """One request the server saw: method, raw path (no query), answered status."""

    method: str
    path: str
    status: int


class HubServer:
    """The server and the test's handle on its state."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", root: Path | None = None) -> None:
        self.store = HubStore(root or Path(tempfile.mkdtemp(prefix="lorahub-hub-server-")))
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.hub = self  # type: ignore[attr-defined]
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Back to defaults: no repos, regular uploads, one known token, no failures, empty log."""
        self.store.reset()
        with self.lock:
            self.tokens: dict[str, str] = {HUB_TOKEN: HUB_USER}
            self.orgs: set[str] = set()
            self.lfs_mode = False
            self.lfs_threshold = 10_000
            self.require_write_token = True
            self.failures: list[Failure] = []
            self.log: list[Call] = []
            self.errors: list[str] = []

    def start(self) -> HubServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="hub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail(
        self,
        pattern: str,
        status: int = 503,
        times: int = 1,
        method: str | None = None,
        code: str | None = None,
        message: str = "injected failure",
    ) -> None:
        """Make the next `times` requests whose path matches regex `pattern` answer `status`."""
        with self.lock:
            self.failures.append(Failure(pattern, status, times, method, code, message))

    def calls(self, method: str | None = None, contains: str = "") -> list[Call]:
        """Requests seen so far, filtered by method and a substring of the path."""
        with self.lock:
            return [c for c in self.log if method in (None, c.method) and contains in c.path]

    def upload_mode(self, path: str, size: int) -> str:
        """`lfs` for big or weight files when `lfs_mode` is on, else `regular` (Xet cannot be spoken)."""
        if not self.lfs_mode or size == 0:
            return "regular"
        return "lfs" if size > self.lfs_threshold or path.endswith(LFS_SUFFIXES) else "regular"

    def take_failure(self, method: str, path: str) -> Failure | None:
        """Consume and return the first injected failure that applies to this request."""
        with self.lock:
            for failure in self.failures:
                if failure.matches(method, path):
                    failure.times -= 1
                    return failure
        return None

    def record(self, method: str, path: str, status: int) -> None:
        """Append to the request log."""
        with self.lock:
            self.log.append(Call(method, path, status))

    def user_for(self, authorization: str | None) -> str | None:
        """The user a bearer token belongs to; 401 for an unknown token, None without one."""
        if not authorization:
            return None
        token = authorization.removeprefix("Bearer ").strip()
        user = self.tokens.get(token)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user


class Response:
    """What a route answers: status, body bytes, headers."""

    def __init__(
        self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        """A JSON response."""
        return cls(
            status,
            json.dumps(data).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lorahub-test-hub/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet; the request log lives on the HubServer."""

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def read_body(self) -> bytes:
        """The request body, plain or chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self, method: str) -> None:
        from tests.hub_routes import route

        split = urlsplit(self.path)
        body = self.read_body() if method in ("POST", "PUT", "DELETE") else b""
        try:
            failure = self.hub.take_failure(method, split.path)
            if failure is not None:
                raise HubError(failure.status, failure.message, failure.code)
            segments = [unquote(s) for s in split.path.split("/")[1:]]
            response = route(self, method, segments, split.query, body)
        except HubError as err:
            response = _error_response(err)
        except (
            Exception
        ):  # a server bug: 418 (which no client retries); the trace stays in hub.errors
            trace = traceback.format_exc()
            self.hub.errors.append(trace)
            response = Response.json({"error": f"hub server bug: {trace.splitlines()[-1]}"}, 418)
        self.hub.record(method, split.path, response.status)
        self._send(method, response)

    def _send(self, method: str, response: Response) -> None:
        self.send_response(response.status)
        headers = {"Content-Length": str(len(response.body)), **response.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)


def _error_response(err: HubError) -> Response:
    headers = {"X-Error-Message": err.message}
    if err.code:
        headers["X-Error-Code"] = err.code
    if err.status == 503:
        headers["Retry-After"] = "0"
    return Response.json({"error": err.message, **err.extra}, err.status, headers)
