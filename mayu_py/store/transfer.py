"""Copying a whole store: backups, restores and migrations between backends
(`mayu store backup|restore|migrate`, docs/store.md).

A store's content is a stream of records, each `{"kind": K, "data": D}` with D the record's
every field as JSON (etcd_records): machines (each followed by its pending config and its
events, which keep their `seq`), agent credentials, users (token hashes), hosts, tenants,
shared records (the replicas' CAs, private keys sealed), BMCs, BMC actions (which keep
their id) and alerts (oldest first; their `seq` is the backend's own and is left out). A
backup file is that stream as JSON lines after one header line, mode 0600 (it holds token
hashes, sealed BMC passwords and pending secret configs).

Loading is idempotent: every record is written under its own key and an event is only
added after its machine's newest, so loading the same stream twice changes nothing. A
`Summary` (count per kind, SHA-256 over the canonical stream) verifies a copy.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from mayu_py.errors import ConfigError
from mayu_py.files import replacing
from mayu_py.model import User
from mayu_py.store import Store, Tx
from mayu_py.store.etcd_records import (
    action_data,
    action_of,
    asdict,
    bmc_data,
    bmc_of,
    credential_data,
    credential_of,
    event_data,
    event_of,
    machine_data,
    machine_of,
    pending_data,
    pending_of,
)
from mayu_py.tenants import HostInfo, TenantRecord

Record = dict[str, Any]
FORMAT = "mayu-store-backup"
VERSION = 1
# One transaction carries at most this many records or bytes: under etcd's default
# --max-txn-ops (128; a machine with its indexes is ~6 operations) and its 1.5 MiB request.
BATCH_RECORDS = 15
BATCH_BYTES = 512 * 1024


def _record(kind: str, data: dict[str, Any]) -> Record:
    return {"kind": kind, "data": data}


def records(store: Store) -> Iterator[Record]:
    """Everything in `store`, in the order `load` wants it."""
    for machine in store.list_machines():
        yield _record("machine", machine_data(machine))
        pending = store.get_pending_config(machine.id)
        if pending is not None:
            yield _record("pending", pending_data(pending))
        for event in store.events(machine.id):
            yield _record("event", event_data(event, event.seq))
    for credential in store.list_agent_credentials():
        yield _record("agent", credential_data(credential))
    for user in store.list_users():
        yield _record("user", asdict(user))
    for host in store.list_hosts():
        yield _record("host", host.to_json())
    for tenant in store.list_tenants():
        yield _record("tenant", tenant.to_json())
    for name in store.shared_names():
        shared = store.get_shared(name)
        if shared is not None:
            yield _record("shared", {"name": name, "record": shared})
    for machine_id in store.bmc_ids():
        bmc = store.get_bmc(machine_id)
        if bmc is not None:
            yield _record("bmc", bmc_data(bmc))
    for action_id in store.action_ids():
        action = store.get_action(action_id)
        if action is not None:
            yield _record("action", action_data(action))
    for alert in reversed(store.alerts(store.alerts_kept)):
        yield _record("alert", event_data(alert))


_WRITERS: dict[str, Callable[[Tx, dict[str, Any]], None]] = {
    "machine": lambda tx, d: tx.put_machine(machine_of(d)),
    "pending": lambda tx, d: tx.put_pending_config(pending_of(d)),
    "event": lambda tx, d: tx.restore_event(event_of(d)),
    "agent": lambda tx, d: tx.put_agent_credential(credential_of(d)),
    "user": lambda tx, d: tx.put_user(User(**d)),
    "host": lambda tx, d: tx.put_host(HostInfo.from_json(d)),
    "tenant": lambda tx, d: tx.put_tenant(TenantRecord.from_json(d)),
    "shared": lambda tx, d: tx.put_shared(d["name"], d["record"]),
    "bmc": lambda tx, d: tx.put_bmc(bmc_of(d)),
    "action": lambda tx, d: tx.restore_action(action_of(d)),
    "alert": lambda tx, d: tx.add_alert(event_of(d)),
}


def _canonical(record: Record) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _alert_key(data: dict[str, Any]) -> str:
    return _canonical(event_data(replace(event_of(data), seq=None)))


def _batches(stream: Iterable[Record]) -> Iterator[list[Record]]:
    batch: list[Record] = []
    size = 0
    for record in stream:
        length = len(_canonical(record))
        if batch and (len(batch) >= BATCH_RECORDS or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += length
    if batch:
        yield batch


def load(store: Store, stream: Iterable[Record]) -> int:
    """Write every record into `store` (idempotent); returns how many were read. An alert
    the store already lists is not added again."""
    present = Counter(_alert_key(event_data(a)) for a in store.alerts(store.alerts_kept))
    count = 0

    def fresh(record: Record) -> bool:
        if record["kind"] not in _WRITERS:
            raise ConfigError(f"store backup: unknown record kind {record['kind']!r}")
        if record["kind"] != "alert":
            return True
        key = _alert_key(record["data"])
        if present[key] > 0:
            present[key] -= 1
            return False
        return True

    for batch in _batches(stream):
        count += len(batch)
        todo = [r for r in batch if fresh(r)]

        def txn(tx: Tx, todo: list[Record] = todo) -> None:
            for record in todo:
                _WRITERS[record["kind"]](tx, record["data"])

        if todo:
            store.atomically(txn)
    return count


@dataclass
class Summary:
    """How many records of each kind, and a SHA-256 over all of them: two stores with equal
    summaries hold the same records."""

    counts: dict[str, int] = field(default_factory=dict)
    sha256: str = ""

    @classmethod
    def of(cls, stream: Iterable[Record]) -> Summary:
        digest = hashlib.sha256()
        counts: Counter[str] = Counter()
        for record in stream:
            counts[record["kind"]] += 1
            digest.update(_canonical(record).encode() + b"\n")
        return cls(dict(sorted(counts.items())), digest.hexdigest())

    def describe(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.counts.items()) or "nothing"
        return f"{kinds}; sha256 {self.sha256}"


def migrate(source: Store, target: Store) -> Summary:
    """Copy `source` into `target` and verify the copy; ConfigError (one line) when the
    target does not then hold exactly what the source holds. A target that already holds
    it is left alone (a migration run again only verifies)."""
    expected = Summary.of(records(source))
    if Summary.of(records(target)) != expected:
        load(target, records(source))
    found = Summary.of(records(target))
    if expected != found:
        raise ConfigError(
            f"store migrate: verification failed: source has {expected.describe()}, "
            f"target has {found.describe()} (the target held other records, or the source "
            "changed meanwhile: stop the servers and run it again)"
        )
    return expected


def write_backup(store: Store, path: Path) -> Summary:
    """Write every record of `store` to `path` (replaced atomically, mode 0600)."""
    with replacing(path) as temporary, temporary.open("w") as out:
        out.write(_canonical({"format": FORMAT, "version": VERSION}) + "\n")
        summary = Summary.of(_written(records(store), out))
    return summary


def _written(stream: Iterable[Record], out: IO[str]) -> Iterator[Record]:
    for record in stream:
        out.write(_canonical(record) + "\n")
        yield record


def read_backup(path: Path) -> Iterator[Record]:
    """The records of a backup file; ConfigError (one line) for anything else."""
    try:
        with path.open() as lines:
            header = json.loads(next(lines, "null"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ConfigError(f"{path}: not a mayu store backup")
            if header.get("version") != VERSION:
                raise ConfigError(f"{path}: backup version {header.get('version')} unknown")
            for number, line in enumerate(lines, start=2):
                record = json.loads(line)
                if not isinstance(record, dict) or "kind" not in record or "data" not in record:
                    raise ConfigError(f"{path}:{number}: not a store record")
                yield record
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the backup: {exc}") from exc


def restore(store: Store, path: Path) -> Summary:
    """Load a backup file into `store`; returns the summary of what the file held."""
    load(store, read_backup(path))
    return Summary.of(read_backup(path))
