"""One writer at a time per SQLite store file, woken by the kernel, not by a sleeping poll.

SQLite lets one connection write at a time; a connection that finds the write lock taken
sleeps in its busy handler (1, 2, 5, ... up to 100 ms between tries) and so wakes late, long
after the lock was free: with several gunicorn workers writing, that sleep is most of the
latency (docs/benchmarks.md, "Store writers"). Here every writer of this process tree first
takes an exclusive `flock` on a sidecar file next to the store; the kernel hands it to the
next waiter the moment it is released, and releases it if its holder dies. Inside it,
`BEGIN IMMEDIATE` finds SQLite's own lock free unless a foreign program (the sqlite3 shell)
holds it, which the busy timeout still bounds.

The lock is held for one transaction only; WAL checkpoints run after it is released (every
CHECKPOINT_EVERY commits of a connection), so no writer waits behind a checkpoint's fsync.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path

# A connection checkpoints the WAL after this many of its own commits (about 1000 WAL pages,
# SQLite's own default, at ~10 pages per boot transaction).
CHECKPOINT_EVERY = 100


def lock_path(store: Path) -> Path:
    """The sidecar file writers lock: `<store>-writer`."""
    return store.with_name(store.name + "-writer")


class WriterLock:
    """One thread's handle on the store's writer lock (its own open file: flock excludes
    other threads of the process too), and its commit count for checkpoints."""

    def __init__(self, store: Path) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(lock_path(store), flags, 0o600)
        self.commits = 0

    def acquire(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self, committed: bool) -> bool:
        """Release the lock; True when this connection is due for a checkpoint."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.commits += committed
        return committed and self.commits % CHECKPOINT_EVERY == 0

    def close(self) -> None:
        os.close(self._fd)


def prepare(conn: sqlite3.Connection) -> None:
    """Turn off SQLite's checkpoint inside COMMIT (it would run under the writer lock)."""
    conn.execute("PRAGMA wal_autocheckpoint=0")


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database without waiting for anyone (readers and writers go
    on; what they still use is copied by a later checkpoint)."""
    # Another process checkpointing at the same time makes this one fail: its serves both.
    with contextlib.suppress(sqlite3.OperationalError):
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
