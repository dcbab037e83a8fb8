"""The store's one error: it cannot be opened or cannot commit right now (HTTP 503)."""

from __future__ import annotations

from pathlib import Path

from mayu_py.errors import MayuError

_REASONS = (
    ("locked", "is locked by another process (is another mayu serve using it?)"),
    ("readonly", "is read-only"),
    ("read-only", "is read-only"),
    ("not a database", "is not an SQLite database (corrupt?); restore it from a backup"),
    ("malformed", "is corrupt; restore it from a backup"),
    ("unable to open", "cannot be opened"),
)


class StoreUnavailable(MayuError):
    """The inventory store cannot be used: corrupt, locked, read-only or unreachable."""

    status = 503

    @classmethod
    def from_error(cls, path: Path, exc: BaseException) -> StoreUnavailable:
        """One line naming the store and what is wrong with it."""
        text = str(exc)
        if isinstance(exc, PermissionError):
            reason = "is not readable and writable by this user"
        else:
            reason = next((r for key, r in _REASONS if key in text.lower()), f"failed: {text}")
        return cls(f"store {path} {reason}", {"path": str(path), "error": text[:200]})


class StoreContention(StoreUnavailable):
    """A transaction kept losing races for the same records and gave up (HTTP 503): the
    request can be retried."""

    temporary = True


class StoreTooLarge(MayuError):
    """A transaction would write more than the store accepts in one request (etcd's request
    size limit); retrying does not help."""

    status = 507
