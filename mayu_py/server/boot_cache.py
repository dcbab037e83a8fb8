"""Boot answers that are reads, kept for one version of the store's state.

An installed machine asking to boot from its disk gets an answer that depends on its record
only; so does a failed one waiting for its reinstall. Such answers are kept here under the
store's state version, read before the record they came from: any commit by anyone (a
reinstall, a report, a new machine) moves the version and empties the cache, so an answer is
never served from a state that has changed since. A backend with no cheap version (None)
caches nothing.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

# At most this many answers per version, then it starts over (a rack rebooting is hundreds to
# thousands; an answer holds its machine, ~1-2 KiB, so this bounds a process at ~20 MiB).
LIMIT = 10_000


class VersionedCache(Generic[V]):
    """Values by key, valid for one state version; thread-safe (one attribute swapped)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._state: tuple[Hashable, dict[Hashable, V]] = (None, {})

    def get(self, version: Hashable | None, key: Hashable) -> V | None:
        current, values = self._state
        if version is None or version != current:
            return None
        return values.get(key)

    def put(self, version: Hashable | None, key: Hashable, value: V) -> None:
        if version is None:
            return
        current, values = self._state
        if version != current or len(values) >= self._limit:
            values = {}
            self._state = (version, values)
        values[key] = value
