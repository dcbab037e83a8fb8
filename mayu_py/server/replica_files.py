"""What every replica of `mayu serve` must share and a data dir alone would keep apart: the
cluster's CAs and service-account key, the server CA machines pin, and bmc.key (which seals
BMC passwords), in the shared record `replica-files`; each tenant cluster's CAs, in
`tenant-pki:<name>` (TenantService syncs it before using them). The data dir holds a copy,
a cache written from the store (at start-up for the first).

Private keys are sealed in the store with AES-256-GCM under the replica key: 32 bytes (hex)
in a 0600 file every replica is given (`store.replica_key_file`, default
<data-dir>/replica.key). The first replica on an empty store creates the key file, creates
the files (or takes those its data dir already has: an SQLite server moving to etcd keeps
its CAs) and publishes them; a replica that loses that race, or starts later, writes the
store's files over its own. Certificates are kept in the clear; each file's path is the
associated data of its sealing, so a sealed key cannot be moved to another path.

Losing the replica key loses every shared private key (docs/store.md: the disaster case).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mayu_py.config import Settings
from mayu_py.errors import ConfigError
from mayu_py.files import atomic_write
from mayu_py.pki import ClusterPKI
from mayu_py.pki.authorities import CA_NAMES
from mayu_py.pki.server_tls import load_or_create_ca, server_dir
from mayu_py.server.tokens import load_or_create_key
from mayu_py.store import Store, Tx

log = logging.getLogger(__name__)

RECORD = "replica-files"
KEY_FILE = "replica.key"
_NONCE = 12
PUBLIC_MODE, PRIVATE_MODE = 0o644, 0o600


def replica_key_path(settings: Settings) -> Path:
    configured = settings.store.replica_key_file
    return Path(configured) if configured else settings.data_path / KEY_FILE


def ca_paths(pki_dir: str) -> list[str]:
    """A cluster's CA files (ClusterPKI) under `pki_dir`, relative to the data dir."""
    ca = f"{pki_dir}/ca"
    return [f"{ca}/{name}.{ext}" for name in CA_NAMES for ext in ("crt", "key")] + [
        f"{ca}/sa.key",
        f"{ca}/sa.pub",
    ]


def shared_paths(settings: Settings) -> list[str]:
    """The level-1 files (relative to the data dir) every replica shares."""
    paths = [*ca_paths(f"pki/{settings.cluster.name}"), "bmc.key"]
    tls = settings.server.tls
    if not (tls.cert_file and tls.key_file and tls.ca_file):  # else the operator's CA
        paths += ["pki/server/ca.crt", "pki/server/ca.key"]
    return sorted(paths)


def _private(path: str) -> bool:
    return path.endswith(".key")


class ReplicaKey:
    """Seals and opens the shared private files with the replica key."""

    def __init__(self, key: bytes, origin: Path) -> None:
        self._aead = AESGCM(key)
        self.origin = origin
        self.fingerprint = hashlib.sha256(b"mayu-replica-key:" + key).hexdigest()[:16]

    @classmethod
    def load(cls, path: Path, may_create: bool) -> ReplicaKey:
        """The key in `path` (created when `may_create` and absent); ConfigError (one line)
        for a missing file the store needs, a file others can read, or a malformed one."""
        if not path.exists() and not may_create:
            raise ConfigError(
                f"the store holds the replicas' shared keys but {path} does not exist: give "
                "this replica the replica key file of the others (docs/store.md)"
            )
        try:
            key = load_or_create_key(path)
        except ValueError:
            raise ConfigError(f"{path} is not a replica key (64 hex digits)") from None
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path} is readable by others: chmod 600 {path}")
        if len(key) != 32:
            raise ConfigError(f"{path} is not a replica key (64 hex digits)")
        return cls(key, path)

    def seal(self, path: str, data: bytes) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, data, path.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, path: str, sealed: str) -> bytes:
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], path.encode())
        except InvalidTag:
            raise ConfigError(
                f"the replica key {self.origin} does not open the store's {path}: every "
                "replica needs the same replica key file (docs/store.md)"
            ) from None


def _entry(key: ReplicaKey, path: str, data: bytes) -> dict[str, Any]:
    if _private(path):
        return {"sealed": key.seal(path, data)}
    return {"data": base64.b64encode(data).decode()}


def _content(key: ReplicaKey, path: str, entry: dict[str, Any]) -> bytes:
    if "sealed" in entry:
        return key.open(path, entry["sealed"])
    return base64.b64decode(entry["data"])


def _create_locally(settings: Settings) -> None:
    """Create whatever shared file the data dir lacks (a first replica, or a new kind)."""
    data = settings.data_path
    ClusterPKI.load_or_create(data / "pki" / settings.cluster.name, settings.cluster.name)
    load_or_create_key(data / "bmc.key")
    if "pki/server/ca.key" in shared_paths(settings):
        load_or_create_ca(server_dir(data))


class SharedFiles:
    """Files of one data dir that every replica shares through shared records of the store
    (the level-1 set above, and each tenant cluster's CAs)."""

    def __init__(self, store: Store, data_path: Path, key: ReplicaKey) -> None:
        self.store = store
        self.data_path = data_path
        self.key = key

    def sync(self, name: str, paths: list[str], create: Callable[[], object]) -> None:
        """Make the data dir hold record `name`'s files, publishing ours (made by `create`
        when missing) for those of `paths` the record lacks (idempotent)."""
        record = self.store.get_shared(name)
        if record is not None and record.get("key") != self.key.fingerprint:
            raise ConfigError(
                f"the replica key {self.key.origin} is not the one the store's shared keys are "
                "sealed with: every replica needs the same replica key file (docs/store.md)"
            )
        missing = sorted(set(paths) - set((record or {}).get("files", {})))
        if missing:
            create()
            self._publish(name, missing)
            record = self.store.get_shared(name)
            assert record is not None
        changed = self._write_locally(record["files"])
        if changed:
            log.info("took the replicas' shared files from the store: %s", ", ".join(changed))

    def forget(self, name: str) -> None:
        self.store.atomically(lambda tx: tx.delete_shared(name))

    def _publish(self, name: str, missing: list[str]) -> None:
        """Add our copy of the files the record lacks; files another replica added first
        win."""
        key = self.key
        ours = {path: _entry(key, path, (self.data_path / path).read_bytes()) for path in missing}

        def txn(tx: Tx) -> None:
            record = tx.get_shared(name) or {"files": {}, "key": key.fingerprint}
            added = {p: e for p, e in ours.items() if p not in record["files"]}
            if added:
                tx.put_shared(name, record | {"files": record["files"] | added})

        self.store.atomically(txn)

    def _write_locally(self, files: dict[str, Any]) -> list[str]:
        """Write the store's files over the data dir's copy; returns the paths that changed."""
        changed = []
        for path, entry in sorted(files.items()):
            content = _content(self.key, path, entry)
            target = self.data_path / path
            if not target.exists() or target.read_bytes() != content:
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                atomic_write(target, content, PRIVATE_MODE if _private(path) else PUBLIC_MODE)
                changed.append(path)
        return changed


def shared_files(store: Store, settings: Settings) -> SharedFiles:
    """The shared files of this replica's data dir, with its replica key (created when the
    store holds no shared files yet)."""
    may_create = store.get_shared(RECORD) is None
    key = ReplicaKey.load(replica_key_path(settings), may_create=may_create)
    return SharedFiles(store, settings.data_path, key)


def sync_replica_files(store: Store, settings: Settings) -> None:
    """Make the data dir hold the level-1 shared files (run at every start-up before the PKI
    is loaded)."""
    shared = shared_files(store, settings)
    shared.sync(RECORD, shared_paths(settings), lambda: _create_locally(settings))
