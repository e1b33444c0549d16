"""The SQLite connection: WAL, busy timeout, and write transactions that take the lock first."""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

BUSY_TIMEOUT_MS = 60_000


def connect(path: Path) -> sqlite_utils.Database:
    """Open `path` with WAL, a busy timeout and foreign keys on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    db = sqlite_utils.Database(conn, execute_plugins=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    _enable_wal(db)
    conn.execute("PRAGMA synchronous=NORMAL")
    return db


def connect_readonly(path: Path) -> sqlite_utils.Database:
    """Open `path` read-only and as it is (no WAL switch, no migration); a missing file is empty.

    SQLite may create the `-wal`/`-shm` side files beside a WAL database; the database file itself
    is never written.
    """
    if not path.is_file():
        return sqlite_utils.Database(memory=True, execute_plugins=False)
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return sqlite_utils.Database(conn, execute_plugins=False)


def _enable_wal(db: sqlite_utils.Database) -> None:
    """Switch to WAL, retrying: the switch needs an exclusive lock, and SQLite answers SQLITE_BUSY
    at once (without the busy handler) while another process is creating the same new file."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if db.journal_mode != "wal":
                db.enable_wal()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One write transaction; BEGIN IMMEDIATE so concurrent writers queue instead of failing.

    Nested use becomes a savepoint, so a helper can open one without caring who called it.
    """
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield db
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def now() -> str:
    """The current UTC time as ISO 8601 with microseconds (sortable text)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def dumps(value: Any) -> str | None:
    """JSON text for a column (None stays NULL)."""
    return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def loads(text: str | None, default: Any = None) -> Any:
    """Parse a JSON column."""
    return default if text is None else json.loads(text)
