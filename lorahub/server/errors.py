"""One error shape for every failure: `{"error": {"code", "message"}}` with a fitting status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lorahub.app.work import WorkLimitError
from lorahub.errors import (
    AlreadyExistsError,
    BadFileError,
    CapacityError,
    HubError,
    IncompatibleError,
    InvalidInputError,
    LorahubError,
    NotFoundError,
    StorageError,
    TrainingError,
    UnsupportedError,
    UntrustedFileError,
)

log = logging.getLogger("lorahub.server")

HTTP_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    421: "misdirected_request",
    429: "queue_full",
    507: "insufficient_storage",
}


class QueueFullError(CapacityError):
    """The generation queue is full: retry after `retry_after` seconds."""

    code = "queue_full"

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class ClientGoneError(LorahubError):
    """The client disconnected before its queued request started: it is dropped, never run."""

    code = "client_closed_request"


STATUS: dict[type[LorahubError], int] = {
    LorahubError: 400,
    InvalidInputError: 400,
    TrainingError: 400,
    NotFoundError: 404,
    AlreadyExistsError: 409,
    BadFileError: 422,
    UntrustedFileError: 422,
    IncompatibleError: 422,
    UnsupportedError: 422,
    WorkLimitError: 422,
    QueueFullError: 429,
    ClientGoneError: 499,
    HubError: 502,
    CapacityError: 503,
    StorageError: 507,
}
"""The one table from error class to HTTP status; a class not listed takes its nearest parent's."""


def http_status(exc: LorahubError) -> int:
    """The HTTP status of a library error: its class's entry in STATUS, else its nearest parent's."""
    return next(STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error body every route returns."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def error_body(status: int, code: str, message: str) -> bytes:
    """The same body as bytes, for the raw ASGI middlewares."""
    import json

    return json.dumps({"error": {"code": code, "message": message}}).encode()


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line from pydantic's errors: `body.steps: Input should be ...; body.width: ...`."""
    parts = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            parts.append(f"request body is not valid JSON: {detail}".rstrip(": "))
            continue
        where = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{where}: {msg}" if where else msg)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def _lorahub_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LorahubError)
    headers = None
    if isinstance(exc, CapacityError):
        headers = {"Retry-After": str(getattr(exc, "retry_after", 1))}
    return error_response(http_status(exc), exc.code, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        shown = ctype or "none"
        message = (
            f"the request body must be JSON: send Content-Type: application/json (got {shown})"
        )
        return error_response(415, "unsupported_media_type", message)
    return error_response(422, "invalid_input", validation_message(errors))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception kind to the one error shape."""
    app.add_exception_handler(LorahubError, _lorahub_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
