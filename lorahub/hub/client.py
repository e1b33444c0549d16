"""The Hub client: token lookup, retries with backoff, and Hub errors reduced to one clear line.

Every call to huggingface_hub goes through `call()`, so the token never reaches a message and
transient failures (5xx, 429, dropped connections) are retried the same way everywhere.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from lorahub.errors import HubError, InvalidInputError, NotFoundError

T = TypeVar("T")

RETRY_STATUS = (408, 429, 500, 502, 503, 504)
ATTEMPTS = 4
BACKOFF_S = 0.5  # first wait; doubles each retry (tests shrink it)
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
BAD_REF_RE = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[-/.]|[/.]$|\.lock$")


def check_repo_id(repo: str) -> str:
    """Return `repo` if it looks like `owner/name`, else InvalidInputError."""
    if not REPO_ID_RE.match(repo or "") or ".." in repo or repo.endswith((".git", ".")):
        raise InvalidInputError(f"invalid Hub repo {repo!r}: use owner/name")
    return repo


def check_revision(revision: str | None) -> str | None:
    """Return `revision` (a branch, tag or commit) if git would accept it as a ref name, else InvalidInputError."""
    if revision is not None and (
        not revision or len(revision) > 255 or BAD_REF_RE.search(revision)
    ):
        raise InvalidInputError(f"invalid revision {revision!r}: use a branch, tag or commit name")
    return revision


def split_repo_revision(text: str) -> tuple[str, str | None]:
    """Parse `owner/name[@revision]`."""
    repo, at, revision = text.strip().partition("@")
    if at and not revision:
        raise InvalidInputError(f"invalid Hub reference {text!r}: empty revision after '@'")
    return check_repo_id(repo), check_revision(revision or None)


def resolve_token(token: str | None = None) -> str | None:
    """The token to use: the argument, else `HF_TOKEN`, else huggingface_hub's stored login."""
    if token:
        return token
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


def endpoint() -> str:
    """The Hub endpoint huggingface_hub talks to (`HF_ENDPOINT`)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT).rstrip("/")


def hf_api(token: str | None) -> Any:
    """An HfApi bound to the token (None: anonymous)."""
    from huggingface_hub import HfApi

    return HfApi(token=token or False)


def call(fn: Callable[[], T], what: str, *, token: str | None = None, repo: str | None = None) -> T:
    """Run one Hub request, retrying transient failures; other failures become one HubError line."""
    wait = BACKOFF_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - narrowed by is_hub_failure
            if not is_hub_failure(exc):
                raise
            if attempt < ATTEMPTS and is_transient(exc):
                time.sleep(wait)
                wait *= 2
                continue
            raise to_hub_error(exc, what, repo=repo, token=token, attempts=attempt) from None
    raise AssertionError("unreachable")


def is_hub_failure(exc: BaseException) -> bool:
    """Whether an exception comes from talking to the Hub (others are bugs and propagate)."""
    import httpx2
    from huggingface_hub import errors

    known = (
        errors.HfHubHTTPError,
        errors.OfflineModeIsEnabled,
        errors.LocalTokenNotFoundError,
        errors.EntryNotFoundError,
        errors.HFValidationError,
        httpx2.HTTPError,
        ConnectionError,
        TimeoutError,
    )
    return isinstance(exc, known) or status_of(exc) is not None


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a huggingface_hub error, if it carries a response."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is worth retrying: 5xx/429/408 answers and dropped connections."""
    import httpx2

    if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return not _is_offline(exc)
    return status_of(exc) in RETRY_STATUS


def _is_offline(exc: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    return isinstance(exc, OfflineModeIsEnabled)


def to_hub_error(
    exc: BaseException, what: str, *, repo: str | None, token: str | None, attempts: int = 1
) -> Exception:
    """One clear line for a failed Hub request (lorahub errors pass through)."""
    from lorahub.errors import LorahubError

    if isinstance(exc, LorahubError):
        return exc
    message = _describe(exc, what, repo, token, attempts)
    return redact(NotFoundError(message) if _is_missing(exc) else HubError(message), token)


def _is_missing(exc: BaseException) -> bool:
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    return isinstance(exc, (EntryNotFoundError, RevisionNotFoundError))


def _describe(
    exc: BaseException, what: str, repo: str | None, token: str | None, attempts: int
) -> str:
    """The sentence for one failure, by kind."""
    from huggingface_hub import errors

    where = f" {repo}" if repo else ""
    status = status_of(exc)
    if isinstance(exc, errors.HFValidationError):
        return f"cannot {what}: {str(exc).splitlines()[0]}"
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return f"cannot {what}: HF_HUB_OFFLINE is set"
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"cannot {what}: revision not found in Hub repo{where}"
    if isinstance(exc, errors.EntryNotFoundError):
        return f"cannot {what}: file not found in Hub repo{where}"
    if status == 401 or isinstance(exc, errors.LocalTokenNotFoundError):
        hint = (
            "the token was rejected" if token else "no token: set HF_TOKEN or run `hf auth login`"
        )
        return f"cannot {what}: not authorized on the Hub ({hint})"
    if isinstance(exc, errors.RepositoryNotFoundError) or status == 404:
        return f"cannot {what}: Hub repo{where} not found (or private and your token cannot see it)"
    if status == 403:
        return f"cannot {what}: permission denied on{where or ' the Hub'} (does your token have write access?)"
    if status in (409, 412):
        return f"cannot {what}: conflict on{where or ' the Hub'} ({_server_message(exc) or 'it changed meanwhile'})"
    if status is not None and (status >= 500 or status == 429):
        return (
            f"cannot {what}: the Hub answered {status} after {attempts} attempts; try again later"
        )
    if status is not None:
        return f"cannot {what}: the Hub answered {status} ({_server_message(exc) or 'request refused'})"
    return f"cannot {what}: cannot reach the Hub at {endpoint()} ({type(exc).__name__})"


def _server_message(exc: BaseException) -> str:
    """The server's own short message, on one line."""
    text = getattr(exc, "server_message", None) or ""
    return " ".join(str(text).split())[:200]


def redact(error: Exception, token: str | None) -> Exception:
    """Remove the token (and any hf_ token) from an error's message."""
    if isinstance(getattr(error, "message", None), str):
        error.message = scrub(error.message, token)  # type: ignore[attr-defined]
    error.args = tuple(scrub(a, token) if isinstance(a, str) else a for a in error.args)
    return error


def scrub(text: str, token: str | None) -> str:
    """`text` without the token or anything shaped like a Hub token."""
    if token:
        text = text.replace(token, "***")
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", text)
