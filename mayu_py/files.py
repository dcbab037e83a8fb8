"""Files written whole or not at all, and file digests: the one home for both.

A write goes to a temporary file beside the target (same filesystem), named
`.<target name>.<random>.tmp` and created mode 0600; it gets its final mode, is fsynced and
moved into place with os.replace, so a reader (another process, another gunicorn worker)
sees either the old file or the new one, never half of one. A failure removes the temporary
file; a kill -9 may leave one, which `temp_target` recognises.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK = 1 << 20
TMP_SUFFIX = ".tmp"


@contextmanager
def replacing(path: Path | str, mode: int = 0o600) -> Iterator[Path]:
    """Yield a temporary path beside `path` to fill (by any means, e.g. an external
    command); when the block ends without an error it gets `mode`, is fsynced and replaces
    `path`. On an error it is removed and `path` is untouched."""
    target = Path(path)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, mode)
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write(path: Path | str, data: bytes | str, mode: int = 0o600) -> None:
    """Replace path with data (text is written as UTF-8) and the given mode, atomically."""
    with replacing(path, mode) as temporary:
        temporary.write_bytes(data.encode() if isinstance(data, str) else data)


def atomic_copy(source: Path | str, path: Path | str, mode: int = 0o600) -> None:
    """Replace path with a copy of source (a link is followed) and the given mode, atomically."""
    with replacing(path, mode) as temporary, open(source, "rb") as src, temporary.open("wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def temp_target(name: str) -> str | None:
    """The target's name when `name` is one of our temporary files (left by a kill -9)."""
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    target, _, rest = name[1 : -len(TMP_SUFFIX)].rpartition(".")
    return target if target and rest else None


def file_digest(path: Path | str, algorithm: str = "sha256") -> str:
    """The hex digest of a file's contents, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
