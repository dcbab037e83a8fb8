"""Private on-disk storage for the PKI: 0700 directories, atomic writes, advisory file locks.

Every write goes to a temporary file in the target directory and is moved into place with
os.replace, so a reader (another gunicorn worker) sees either the old file or the new one,
never half of one. Writers that must decide "issue or reuse" hold an fcntl lock.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
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


def atomic_write(path: Path, text: str, mode: int) -> None:
    """Write text to path with the given mode, replacing any old file atomically."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
