"""Optimistic transactions over etcd, the engine under `EtcdStore.atomically`.

A transaction reads at one snapshot: its first read is linearizable and pins the revision
etcd answered with; every later read asks for that revision (served by any member from its
MVCC history), so the function sees one consistent state. Writes are buffered (and visible
to later reads of the same transaction). `commit` sends one etcd txn that compares the
mod_revision of every key read with the revision it had (0: absent) and of every checked
range with "nothing newer than the snapshot", and applies the writes only if all hold.

Values are JSON envelopes `{"t": TXID, "d": DATA}`: when a commit's answer is lost (member
died, timeout) the keys it wrote are re-read, and the transaction id in them says whether it
landed. Deletes of whole ranges (event retention) are split around keys the same
transaction writes, because etcd refuses a txn whose put falls inside its own delete range.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mayu_py.store.errors import StoreTooLarge
from mayu_py.store.etcd_gateway import EtcdGateway, KeyValue, OutcomeUnknown, b64

# etcd refuses requests over --max-request-bytes (1.5 MiB by default); values travel inside
# the txn request, so a transaction's keys and values stay under this.
MAX_REQUEST_BYTES = 1_400_000
# etcd's --max-txn-ops is 128 by default; reads of many keys are cut into requests this big.
READ_BATCH = 100
PAGE = 500


@dataclass(frozen=True)
class Entry:
    """A key a scan found: its data (None when scanned keys-only or written in this
    transaction but not committed yet) and the revision that created it."""

    key: str
    data: Any
    create_revision: int = 0


@dataclass(frozen=True)
class _Seen:
    data: Any
    mod_revision: int


def encode(txid: str, data: Any) -> bytes:
    return json.dumps({"t": txid, "d": data}, separators=(",", ":"), sort_keys=True).encode()


def decode(raw: bytes) -> tuple[str, Any]:
    envelope = json.loads(raw)
    return envelope["t"], envelope["d"]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _inside(key: str, ranges: Iterable[tuple[str, str]]) -> bool:
    return any(start <= key < end for start, end in ranges)


def _merged(ranges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _split(ranges: list[tuple[str, str]], keys: Iterable[str]) -> list[tuple[str, str]]:
    """The ranges with each of `keys` cut out."""
    for key in sorted(keys):
        cut: list[tuple[str, str]] = []
        for start, end in ranges:
            if start <= key < end:
                cut += [r for r in ((start, key), (key + "\0", end)) if r[0] < r[1]]
            else:
                cut.append((start, end))
        ranges = cut
    return ranges


class OptimisticTxn:
    """Snapshot reads, buffered writes and one compare-and-commit."""

    def __init__(self, gateway: EtcdGateway) -> None:
        self.gateway = gateway
        self.txid = uuid.uuid4().hex[:16]
        self.revision: int | None = None
        self._seen: dict[str, _Seen] = {}
        self._checked: list[tuple[str, str]] = []
        self._puts: dict[str, Any] = {}
        self._deletes: set[str] = set()
        self._deleted_ranges: list[tuple[str, str]] = []
        self._hooks: list[Callable[[], None]] = []

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        return self.get_many([key])[key]

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The data of each key (None: absent), read at the snapshot in as few requests as
        possible; each key read joins the commit's compares."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._seen and not self._wrote(k)]
        for chunk in _chunks(missing, READ_BATCH):
            if len(chunk) == 1:
                result = self.gateway.range(chunk[0], revision=self.revision)
            else:
                result = self.gateway.ranges(chunk, self.revision)
            self._pin(result.revision)
            found = {kv.key: kv for kv in result.kvs}
            for key in chunk:
                kv = found.get(key)
                seen = _Seen(decode(kv.value)[1], kv.mod_revision) if kv else _Seen(None, 0)
                self._seen[key] = seen
        return {key: self._current(key) for key in keys}

    def scan(
        self,
        start: str,
        end: str,
        *,
        limit: int | None = None,
        descending: bool = False,
        keys_only: bool = False,
        checked: bool = False,
    ) -> list[Entry]:
        """Keys in [start, end) at the snapshot, with this transaction's writes applied,
        in key order (or reversed), at most `limit`. A `checked` scan makes the commit fail
        when a key in the range was created or changed meanwhile (deletions are not seen)."""
        extra = sum(1 for k in self._deletes if start <= k < end)
        fetched = self._fetch_range(
            start, end, (limit + extra) if limit else None, descending, keys_only
        )
        if checked:
            self._checked.append((start, end))
        entries = {
            kv.key: Entry(kv.key, None if keys_only else decode(kv.value)[1], kv.create_revision)
            for kv in fetched
            if not self._wrote(kv.key)
        }
        for key, data in self._puts.items():
            if start <= key < end:
                entries[key] = Entry(key, None if keys_only else data)
        ordered = [entries[k] for k in sorted(entries, reverse=descending)]
        return ordered[:limit] if limit else ordered

    def count(self, start: str, end: str) -> int:
        """How many keys [start, end) held at the snapshot (not checked at commit), plus the
        keys this transaction put there (taken as new: an index of records created once)."""
        result = self.gateway.range(start, end, revision=self.revision, count_only=True)
        self._pin(result.revision)
        return result.count + sum(1 for key in self._puts if start <= key < end)

    def _fetch_range(
        self, start: str, end: str, limit: int | None, descending: bool, keys_only: bool
    ) -> list[KeyValue]:
        if limit or descending:
            result = self.gateway.range(
                start,
                end,
                revision=self.revision,
                limit=limit,
                descending=descending,
                keys_only=keys_only,
            )
            self._pin(result.revision)
            return result.kvs
        found: list[KeyValue] = []
        while True:  # page through a long range, all pages at the same revision
            result = self.gateway.range(
                start, end, revision=self.revision, limit=PAGE, keys_only=keys_only
            )
            self._pin(result.revision)
            found += result.kvs
            if not result.more or not result.kvs:
                return found
            start = result.kvs[-1].key + "\0"

    def _pin(self, revision: int) -> None:
        if self.revision is None:
            self.revision = revision

    def _wrote(self, key: str) -> bool:
        return key in self._puts or key in self._deletes or _inside(key, self._deleted_ranges)

    def _current(self, key: str) -> Any:
        if key in self._puts:
            return self._puts[key]
        if key in self._deletes or _inside(key, self._deleted_ranges):
            return None
        return self._seen[key].data

    # -- writes -----------------------------------------------------------------------------

    def put(self, key: str, data: Any) -> None:
        self._deletes.discard(key)
        self._puts[key] = data

    def delete(self, key: str) -> None:
        self._puts.pop(key, None)
        self._deletes.add(key)

    def delete_range(self, start: str, end: str) -> None:
        for key in [k for k in self._puts if start <= k < end]:
            del self._puts[key]
        self._deletes = {k for k in self._deletes if not start <= k < end}
        self._deleted_ranges.append((start, end))

    def before_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` once, just before the commit is built (e.g. trimming a capped list)."""
        if hook not in self._hooks:
            self._hooks.append(hook)

    @property
    def writes(self) -> bool:
        return bool(self._puts or self._deletes or self._deleted_ranges)

    # -- commit -----------------------------------------------------------------------------

    def commit(self) -> bool:
        """Apply the writes if nothing read changed: True when applied, False on conflict."""
        for hook in self._hooks:
            hook()
        if not self.writes:
            return True
        compare = [
            {"key": b64(k), "target": "MOD", "result": "EQUAL", "mod_revision": seen.mod_revision}
            for k, seen in self._seen.items()
        ]
        compare += [
            {
                "key": b64(start),
                "range_end": b64(end),
                "target": "MOD",
                "result": "LESS",
                "mod_revision": (self.revision or 0) + 1,
            }
            for start, end in self._checked
        ]
        try:
            return self.gateway.txn(compare, self._operations())
        except OutcomeUnknown:
            return self._landed()

    def _operations(self) -> list[dict[str, Any]]:
        ranges = _split(_merged(self._deleted_ranges), self._puts)
        ops: list[dict[str, Any]] = []
        size = 0
        for key, data in sorted(self._puts.items()):
            value = encode(self.txid, data)
            size += len(key) + len(value)
            encoded = base64.b64encode(value).decode()
            ops.append({"request_put": {"key": b64(key), "value": encoded}})
        if size > MAX_REQUEST_BYTES:
            raise StoreTooLarge(
                f"a store transaction of {size} bytes exceeds etcd's request limit",
                {"bytes": size, "limit": MAX_REQUEST_BYTES, "keys": len(self._puts)},
            )
        ops += [
            {"request_delete_range": {"key": b64(key)}}
            for key in sorted(self._deletes)
            if not _inside(key, ranges)
        ]
        ops += [
            {"request_delete_range": {"key": b64(start), "range_end": b64(end)}}
            for start, end in ranges
        ]
        return ops

    def _landed(self) -> bool:
        """After an unanswered commit: did it land? Re-read (on any member, fresh) what it
        wrote: a value carrying this transaction's id says yes."""
        keys = sorted(self._puts) or sorted(self._deletes)
        found: dict[str, bytes] = {}
        for chunk in _chunks(keys, READ_BATCH):
            result = self.gateway.ranges(chunk, None)
            found.update({kv.key: kv.value for kv in result.kvs})
        if self._puts:
            return any(decode(raw)[0] == self.txid for raw in found.values())
        return not found  # only deletes: landed when the keys are gone (deletes are idempotent)
