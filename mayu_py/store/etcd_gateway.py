"""A small client of etcd's v3 JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`, the HTTP API
every etcd >= 3.4 serves beside gRPC) over keep-alive HTTP/1.1 connections (etcd_http).

Why not a library: docs/store.md (measured: etcd3gw's `requests` doubles each call's latency;
the gRPC clients on PyPI are unmaintained or young). What this adds on top of HTTP:
- several members: a call that cannot reach one member (refused, reset, timed out, or etcd
  answering "unavailable": no leader, leader changed) moves on to the next, for up to
  `unavailable_after` seconds (longer than etcd's own 7 s request timeout), then raises
  StoreUnavailable naming the cluster;
- a call that is not idempotent (a transaction that writes) is never sent twice: when its
  outcome is unknown it raises OutcomeUnknown and the caller re-reads what it wrote;
- keep-alive connections per thread and per process (safe under gunicorn's fork), TLS with a
  CA and a client certificate (etcds://).
Keys and values travel base64-encoded, revisions as strings; both are decoded here.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

from mayu_py.store.errors import StoreUnavailable
from mayu_py.store.etcd_http import Http1Connection
from mayu_py.store.url import EtcdLocation

# etcd's gRPC statuses the gateway maps to these HTTP codes are worth another member.
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# A read at a pinned revision that etcd no longer has (compacted) or does not have yet
# (a lagging member): the transaction starts over on a fresh snapshot.
_SNAPSHOT_GONE = ("required revision has been compacted", "required revision is a future")
_TOO_MANY_OPS = "too many operations in txn request"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def prefix_end(prefix: str) -> str:
    """The first key after every key starting with prefix (etcd's range_end for a prefix)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int
    more: bool
    count: int


class SnapshotGone(Exception):
    """A pinned-revision read failed (compacted, or the member lags): restart the txn."""


class OutcomeUnknown(Exception):
    """A write transaction was sent but no answer came: it may or may not have landed."""


class _NotSent(Exception):
    """The request never reached the member (safe to send elsewhere)."""


class _Unanswered(Exception):
    """The request may have reached the member, but no usable answer came back."""


def _range_body(
    key: str,
    end: str | None,
    *,
    revision: int | None = None,
    limit: int | None = None,
    descending: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if end is not None:
        body["range_end"] = b64(end)
    if revision is not None:
        body["revision"] = revision
        body["serializable"] = True  # a past revision is the same on every member
    if limit:
        body["limit"] = limit
    if descending:
        body["sort_order"] = "DESCEND"
        body["sort_target"] = "KEY"
    if keys_only:
        body["keys_only"] = True
    if count_only:
        body["count_only"] = True
    return body


def _range_result(reply: dict[str, Any], revision: int) -> RangeResult:
    kvs = [
        KeyValue(
            unb64(kv["key"]),
            base64.b64decode(kv.get("value", "")),
            int(kv.get("mod_revision", 0)),
            int(kv.get("create_revision", 0)),
        )
        for kv in reply.get("kvs", [])
    ]
    return RangeResult(kvs, revision, bool(reply.get("more")), int(reply.get("count", 0)))


class _Connections(threading.local):
    """This thread's keep-alive connection to each member, dropped after a fork."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.by_endpoint: dict[tuple[str, int], Http1Connection] = {}


class EtcdGateway:
    """Calls to the members of one etcd cluster with failover."""

    def __init__(
        self,
        location: EtcdLocation,
        request_timeout: float = 5.0,
        unavailable_after: float = 15.0,
    ) -> None:
        self.location = location
        self.request_timeout = request_timeout
        self.unavailable_after = unavailable_after
        self._tls = self._tls_context(location) if location.tls else None
        self._current = 0  # the member calls go to first; moves on failure
        self._local = _Connections()
        self.calls = 0  # requests sent, for benchmarks

    @staticmethod
    def _tls_context(location: EtcdLocation) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=location.ca_file)
            if location.cert_file and location.key_file:
                context.load_cert_chain(location.cert_file, location.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise StoreUnavailable(
                f"store {location.describe()}: cannot load TLS files: {exc}",
                {"ca": location.ca_file, "cert": location.cert_file},
            ) from exc
        return context

    @property
    def member(self) -> tuple[str, int]:
        """The member calls go to first (until it fails)."""
        return self.location.endpoints[self._current % len(self.location.endpoints)]

    # -- the key-value API ------------------------------------------------------------------

    def range(self, key: str, end: str | None = None, **options: Any) -> RangeResult:
        """Keys in [key, end) (or the one key): `revision` pins a snapshot; the first read of
        a transaction passes none and gets the current revision (linearizable)."""
        reply = self.call("/kv/range", _range_body(key, end, **options), idempotent=True)
        return _range_result(reply, int(reply["header"]["revision"]))

    def ranges(self, keys: list[str], revision: int | None) -> RangeResult:
        """Several keys in one request (a read-only transaction), at one revision."""
        ops = [{"request_range": _range_body(k, None, revision=revision)} for k in keys]
        reply = self.call("/kv/txn", {"success": ops}, idempotent=True)
        at = int(reply["header"]["revision"])
        kvs = [
            kv
            for response in reply.get("responses", [])
            for kv in _range_result(response.get("response_range", {}), at).kvs
        ]
        return RangeResult(kvs, revision or at, False, len(kvs))

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> bool:
        """One atomic transaction: True when every compare held and the ops were applied.
        OutcomeUnknown when it was sent and no answer came."""
        reply = self.call("/kv/txn", {"compare": compare, "success": success}, idempotent=False)
        return bool(reply.get("succeeded", False))  # absent from a failed txn's reply

    # -- leases (leader election) ----------------------------------------------------------

    def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease of `ttl` seconds (etcd may lengthen it to its minimum): (id, ttl)."""
        reply = self.call("/lease/grant", {"TTL": ttl}, idempotent=False)
        return int(reply["ID"]), int(reply["TTL"])

    def lease_keepalive(self, lease: int) -> int:
        """Renew a lease: its TTL in seconds from now, 0 once it has expired (or never was)."""
        reply = self.call("/lease/keepalive", {"ID": lease}, idempotent=True)
        return int(reply.get("result", {}).get("TTL", 0))

    def lease_revoke(self, lease: int) -> None:
        """End a lease now, deleting its keys; a lease that is gone already is no error."""
        try:
            self.call("/lease/revoke", {"ID": lease}, idempotent=True)
        except StoreUnavailable as exc:
            if "lease not found" not in str(exc):
                raise

    # -- transport --------------------------------------------------------------------------

    def call(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """POST to one member after another until one answers or time runs out."""
        payload = json.dumps(body).encode()
        deadline = time.monotonic() + self.unavailable_after
        members = self.location.endpoints
        failures = 0
        while True:
            index = self._current % len(members)
            try:
                return self._post(members[index], path, payload)
            except _NotSent as exc:
                last: Exception = exc
            except _Unanswered as exc:
                if not idempotent:
                    self._current = index + 1
                    raise OutcomeUnknown(str(exc)) from exc
                last = exc
            self._current = index + 1
            failures += 1
            if time.monotonic() >= deadline:
                raise StoreUnavailable(
                    f"store {self.location.describe()} is unavailable: {last}",
                    {"members": len(members), "error": str(last)[:200]},
                )
            if failures % len(members) == 0:  # every member failed once: pause, then again
                time.sleep(min(1.0, 0.05 * 2 ** (failures // len(members))))

    def _connection(self, endpoint: tuple[str, int]) -> Http1Connection:
        local = self._local
        if local.pid != os.getpid():  # inherited through fork: never share a socket
            local.by_endpoint = {}
            local.pid = os.getpid()
        conn = local.by_endpoint.get(endpoint)
        if conn is None:
            conn = Http1Connection(*endpoint, self.request_timeout, self._tls)
            local.by_endpoint[endpoint] = conn
        return conn

    def _drop(self, endpoint: tuple[str, int]) -> None:
        conn = self._local.by_endpoint.pop(endpoint, None)
        if conn is not None:
            conn.close()

    def _post(self, endpoint: tuple[str, int], path: str, payload: bytes) -> dict[str, Any]:
        conn = self._connection(endpoint)
        where = f"{endpoint[0]}:{endpoint[1]}"
        if not conn.connected:
            try:
                conn.connect()
            except ssl.SSLCertVerificationError as exc:
                self._drop(endpoint)
                raise StoreUnavailable(
                    f"store {self.location.describe()}: TLS to {where} failed: {exc}"
                ) from exc
            except OSError as exc:
                self._drop(endpoint)
                raise _NotSent(f"{where}: {exc}") from exc
        self.calls += 1
        try:
            status, data = conn.post(f"/v3{path}", payload)
        except (OSError, ValueError) as exc:
            self._drop(endpoint)
            raise _Unanswered(f"{where}: {type(exc).__name__} {exc}") from exc
        if status == 200:
            return json.loads(data)
        return self._error(where, status, data)

    def _error(self, where: str, status: int, data: bytes) -> dict[str, Any]:
        try:
            message = str(json.loads(data).get("message") or data[:200])
        except ValueError:
            message = data[:200].decode(errors="replace")
        if status in _RETRYABLE_STATUS:
            raise _Unanswered(f"{where}: HTTP {status} {message}")
        if any(text in message for text in _SNAPSHOT_GONE):
            raise SnapshotGone(message)
        if _TOO_MANY_OPS in message:
            message += " (start etcd with --max-txn-ops 1024 or more; docs/store.md)"
        raise StoreUnavailable(
            f"store {self.location.describe()}: etcd refused a request: {message}",
            {"status": status},
        )

    def close(self) -> None:
        """Close this thread's connections (a later call opens new ones)."""
        for endpoint in list(self._local.by_endpoint):
            self._drop(endpoint)
