"""Private on-disk storage for the PKI: 0700 directories and advisory file locks.

Writes go through `mayu_py.files.atomic_write`, so a reader (another gunicorn worker) sees
either the old file or the new one. Writers that must decide "issue or reuse" hold an fcntl
lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
LOCK_NAME = ".lock"


def ensure_private_dir(path: Path) -> Path:
    """Create path (and missing parents) and make sure path itself is mode 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        path.chmod(PRIVATE_DIR_MODE)
    return path


@contextmanager
def exclusive_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on directory/.lock (blocks across processes and threads)."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
