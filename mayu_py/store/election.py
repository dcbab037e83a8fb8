"""Leader election over a key held under a lease (etcd's), with fencing (docs/ha.md).

A candidate polls the key; when nobody holds it, it takes a lease of `ttl` seconds and
creates the key under it, if still absent (compare-create: one winner). The leader renews
its lease every `ttl`/3. Fencing: a leader that cannot renew (the store is unreachable, or
the lease has expired) steps down by `ttl`*2/3 after its last renewal, so whatever it runs
as leader is stopped well before the lease can expire and another candidate take over.
A leader that dies stops renewing: its key disappears when its lease expires, and a
candidate takes over within `ttl` plus one poll (at most 0.5 s): `lease_ttl` picks the TTL
that hands over within a given time. The store's own calls must give up within `ttl`/6
(`call_budget`), so no call can carry a leader past its fence.

`Election.step()` does one round and returns the seconds until the next; `run` loops until
told to stop, then resigns (ends the lease: a candidate takes over at once). Unit tests step
it with a fake clock and a fake store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from mayu_py.store.errors import StoreUnavailable
from mayu_py.store.etcd_gateway import OutcomeUnknown

log = logging.getLogger(__name__)

StoreFailure = (StoreUnavailable, OutcomeUnknown)


class LeaderKey(Protocol):
    """The store's side: the key, its holder and the lease it is held under."""

    def holder(self) -> str | None:
        """Who holds the key now (None: nobody)."""
        ...

    def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; its id."""
        ...

    def claim(self, lease: int) -> bool:
        """Create the key under `lease` unless it exists: True when this call created it."""
        ...

    def keepalive(self, lease: int) -> int:
        """Renew `lease`: its remaining seconds, 0 once it has expired."""
        ...

    def revoke(self, lease: int) -> None: ...


def lease_ttl(handover: int) -> int:
    """The lease TTL with which a dead leader is replaced within `handover` seconds: its lease
    runs out at most a TTL after its death, etcd deletes its key within 0.5 s after that, a
    candidate sees the key gone within a poll (<= 0.5 s) and starts what it runs within the
    second left."""
    return handover - 2


def call_budget(ttl: float) -> float:
    """How long one call to the store may take at most for a leader with this TTL."""
    return ttl / 6


class Election:
    """One candidate. `on_elected` starts what the leader runs (an exception there gives the
    leadership back); `on_deposed(reason)` stops it."""

    def __init__(
        self,
        key: LeaderKey,
        ttl: int,
        *,
        on_elected: Callable[[], object],
        on_deposed: Callable[[str], object],
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float | None = None,
    ) -> None:
        self.key = key
        self.ttl = ttl
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.clock = clock
        self.poll_interval = poll_interval or min(0.5, max(0.2, ttl / 10))
        self.renew_interval = ttl / 3
        self.fence_after = ttl * 2 / 3
        self.lease: int | None = None
        self.renewed = 0.0  # when the last successful renewal (or the claim) was sent

    @property
    def leading(self) -> bool:
        return self.lease is not None

    def step(self) -> float:
        """One round: try to lead, or renew the lease; the seconds until the next round."""
        return self._renew() if self.leading else self._campaign()

    def _campaign(self) -> float:
        try:
            holder = self.key.holder()
            if holder is not None:
                return self.poll_interval
            sent = self.clock()
            lease = self.key.grant(self.ttl)
            if not self.key.claim(lease):
                self.key.revoke(lease)
                return self.poll_interval
        except StoreFailure as exc:
            log.warning("leader election: store unavailable (%s)", exc)
            return self.poll_interval
        self.lease, self.renewed = lease, sent
        log.info("leader election: elected (lease %x, ttl %d s)", lease, self.ttl)
        try:
            self.on_elected()
        except Exception:
            log.exception("leader election: starting as leader failed; resigning")
            self.resign("starting as leader failed")
            return float(self.ttl)
        return self.renew_interval

    def _renew(self) -> float:
        assert self.lease is not None
        fence = self.renewed + self.fence_after
        if self.clock() < fence:
            sent = self.clock()
            try:
                remaining = self.key.keepalive(self.lease)
            except StoreFailure as exc:
                log.warning("leader election: renewal failed (%s)", exc)
                if self.clock() < fence:
                    return min(self.poll_interval, fence - self.clock())
            else:
                if remaining <= 0:
                    self._depose("the lease has expired")
                    return self.poll_interval
                self.renewed = sent
                return self.renew_interval
        self._depose("the lease could not be renewed in time (store unreachable)")
        return self.poll_interval

    def _depose(self, reason: str) -> None:
        log.warning("leader election: stepping down: %s", reason)
        self.lease = None
        self.on_deposed(reason)

    def resign(self, reason: str = "shutting down") -> None:
        """Stop leading (if leading) and end the lease, so another candidate takes over."""
        lease = self.lease
        if lease is None:
            return
        self._depose(reason)
        try:
            self.key.revoke(lease)
        except StoreFailure as exc:
            log.warning("leader election: could not end the lease (%s); it expires", exc)

    def run(self, stopping: threading.Event) -> None:
        """Step until `stopping` is set, then resign. An unexpected error resigns too: a
        leader whose loop ended would run on past its lease."""
        delay = 0.0
        while not stopping.wait(delay):
            try:
                delay = self.step()
            except Exception:
                log.exception("leader election: unexpected error; resigning")
                self.resign("unexpected error")
                delay = float(self.ttl)
        self.resign()
