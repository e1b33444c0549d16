"""Atomic file writes: every file lorahub writes is complete or absent."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lorahub.errors import StorageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _ordinary_mode(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create 0600/0700; give the result the mode a plain open() would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success rename it over `dest` (atomic on POSIX)."""
    dest = Path(dest)
    created = make_parents(dest)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent
        )
    except OSError as exc:
        remove_empty(created)
        raise storage_error(exc, dest) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        _ordinary_mode(tmp_path)
        os.replace(tmp_path, dest)
    except Exception as exc:
        tmp_path.unlink(missing_ok=True)
        remove_empty(created)
        if is_disk_error(exc):
            raise storage_error(exc, dest) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def make_parents(dest: Path) -> list[Path]:
    """Create `dest`'s missing parent folders; returns those created, deepest last."""
    missing = []
    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_empty(missing[::-1])
        raise storage_error(exc, dest) from None
    return missing[::-1]


def remove_empty(folders: list[Path]) -> None:
    """Remove folders this write created, deepest first, where they are still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


DISK_WORDS = ("No space left", "Disk quota", "File too large", "Read-only file system", "IoError")


def is_disk_error(exc: BaseException) -> bool:
    """An OSError, or a safetensors write error wrapping one (it raises its own type)."""
    return isinstance(exc, OSError) or any(w in str(exc) for w in DISK_WORDS)


def storage_error(exc: BaseException, dest: Path) -> StorageError:
    """One line for a failed write, naming the file and the system's reason."""
    reason = getattr(exc, "strerror", None) or next(
        (w for w in DISK_WORDS if w in str(exc)), type(exc).__name__
    )
    return StorageError(f"cannot write {dest}: {reason}; nothing was written")


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `dest` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy `src` to `dest` atomically (a reader never sees a half-copied file)."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside `dest`; on success it replaces `dest` in one rename."""
    dest = Path(dest)
    created = make_parents(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        try:
            yield tmp
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            remove_empty(created)
            if is_disk_error(exc):
                raise storage_error(exc, dest) from None
            raise
        _ordinary_mode(tmp, directory=True)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
