"""LorahubError and its children: the one-line messages users see.

The library raises these; the CLI turns them into one line and exit 1, and the HTTP server into
`{"error": {"code", "message"}}` with the status its table (`lorahub.server.errors`) gives the class.
`code` is the machine-readable name of the kind of failure, the same everywhere.
"""

from __future__ import annotations


class LorahubError(Exception):
    """Base class of every error lorahub reports to a user."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFoundError(LorahubError):
    """An adapter, mix, model or file that does not exist."""

    code = "not_found"


class AlreadyExistsError(LorahubError):
    """A name that is taken (pass --force or --version)."""

    code = "already_exists"


class InvalidInputError(LorahubError):
    """Malformed user input: a bad name, weight, option or request body."""

    code = "invalid_input"


class BadFileError(LorahubError):
    """A file that cannot be read as an adapter: truncated, corrupt, not safetensors."""

    code = "bad_file"


class UntrustedFileError(LorahubError):
    """A pickle file refused because the user did not pass --trust-pickle."""

    code = "untrusted_file"


class IncompatibleError(LorahubError):
    """Adapters that do not fit together or do not fit a base (wrong family, shapes)."""

    code = "incompatible"


class UnsupportedError(LorahubError):
    """An operation that cannot handle this network type or format."""

    code = "unsupported"


class StorageError(LorahubError):
    """A write that failed on the disk (full, quota, read-only, too big): nothing was left behind."""

    code = "insufficient_storage"


class CapacityError(LorahubError):
    """A request that needs more than the engine's caches or queue can hold."""

    code = "capacity"


class TrainingError(LorahubError):
    """A training run that cannot start or continue (bad data folder, bad resume point)."""

    code = "training"


class HubError(LorahubError):
    """A Hugging Face Hub failure, reduced to one clear line (never containing a token)."""

    code = "hub"
