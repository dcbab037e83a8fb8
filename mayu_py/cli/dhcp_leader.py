"""Full DHCP with the store on etcd (several replicas): only the elected leader runs dnsmasq,
and the leases live in the store (docs/ha.md).

Each replica is a candidate (store.election). The one elected writes dnsmasq's lease file
from the store's leases, then starts dnsmasq under a fence (it dies with this process) with
a lease script journalling every lease change, which a thread copies into the store every
0.1 s. A replica that loses the leadership (lease expired, store unreachable) stops dnsmasq
and removes its lease file; one that shuts down also copies the last changes and ends its
lease, so another replica takes over at once. With SQLite (one replica) none of this runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from mayu_py.config import Settings
from mayu_py.dhcp import DnsmasqSupervisor, LeaseBook
from mayu_py.dhcp.lease_journal import LeaseJournal, write_lease_script
from mayu_py.dhcp.leases import LeaseChange, lease_file_text
from mayu_py.dhcp.service import dhcp_dir, lease_file, start_supervised_dnsmasq
from mayu_py.files import atomic_write
from mayu_py.server.metrics import ServerMetrics
from mayu_py.store.election import Election, StoreFailure, call_budget, lease_ttl
from mayu_py.store.etcd_dhcp import EtcdDhcpLeases, EtcdLeaderKey
from mayu_py.store.etcd_gateway import EtcdGateway
from mayu_py.store.etcd_keys import KeyLayout
from mayu_py.store.url import EtcdLocation, parse_store_url

log = logging.getLogger(__name__)

COPY_INTERVAL_S = 0.1


def etcd_location(settings: Settings) -> EtcdLocation | None:
    """The etcd cluster the store is on, or None (SQLite)."""
    if not settings.store.url:
        return None
    location = parse_store_url(settings.store.url, settings.store)
    return location if isinstance(location, EtcdLocation) else None


def store_leases(settings: Settings, location: EtcdLocation) -> EtcdDhcpLeases:
    gateway = EtcdGateway(
        location, settings.store.request_timeout_seconds, settings.store.unavailable_after_seconds
    )
    return EtcdDhcpLeases(gateway, KeyLayout(location.prefix))


def lease_lookup(settings: Settings) -> Callable[[str], str | None] | None:
    """Full DHCP: the address leased to a MAC, for binding boot tokens. On etcd the store's
    leases (any replica may be asked), else (or when the store has none yet: the leader's
    copy lags by up to COPY_INTERVAL_S) this replica's lease file; None unless full."""
    if settings.dhcp.mode != "full":
        return None
    local = LeaseBook(lease_file(settings.data_path)).address_of
    location = etcd_location(settings)
    if location is None:
        return local
    leases = store_leases(settings, location)
    return lambda mac: leases.address_of(mac) or local(mac)


class DhcpLeader:
    """This replica's candidacy for full DHCP, and dnsmasq while it leads."""

    def __init__(self, settings: Settings, location: EtcdLocation, metrics: ServerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.leases = store_leases(settings, location)
        ttl = lease_ttl(settings.dhcp.leader_ttl_seconds)
        budget = call_budget(ttl)
        identity = f"{socket.gethostname()} {settings.server.listen} pid {os.getpid()}"
        key = EtcdLeaderKey(
            EtcdGateway(location, budget, budget), KeyLayout(location.prefix), identity
        )
        self.election = Election(key, ttl, on_elected=self._elected, on_deposed=self._deposed)
        workdir = dhcp_dir(settings.data_path)
        self.journal = LeaseJournal(workdir / "lease-changes")
        self.script = workdir / "lease-script"
        self.supervisor: DnsmasqSupervisor | None = None
        self._pending: list[LeaseChange] = []
        self._lock = threading.Lock()  # one copy at a time (copier thread, resigning)
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self.election.run, args=(self._stopping,), name="dhcp-leader"),
            threading.Thread(target=self._copy_loop, name="dhcp-lease-copier"),
        ]

    def start(self) -> DhcpLeader:
        """Stand as a candidate; a lease file left by an earlier term (a killed serve) goes:
        the store's leases are the ones that count until this replica leads."""
        self.script.parent.mkdir(parents=True, exist_ok=True)
        lease_file(self.settings.data_path).unlink(missing_ok=True)
        write_lease_script(self.script, self.journal.path)
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        return self

    def stop(self) -> None:
        """Stop leading (dnsmasq stopped, last changes copied, the lease ended)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=30)

    # -- the election's callbacks (on the dhcp-leader thread) -------------------------------

    def _elected(self) -> None:
        started = time.monotonic()
        leases = self.leases.all()
        atomic_write(
            lease_file(self.settings.data_path), lease_file_text(leases, time.time()), 0o644
        )
        with self._lock:  # this term's journal starts empty
            self.journal.reset()
            self._pending = []
        self.supervisor = start_supervised_dnsmasq(
            self.settings,
            self.settings.data_path,
            self.metrics.dnsmasq_restarts.inc,
            lease_script=self.script,
            die_with_parent=True,
        )
        self.metrics.dhcp_leader.set(1)
        self.metrics.dhcp_leadership_changes.labels("elected").inc()
        log.info(
            "full DHCP leader: dnsmasq started with %d lease(s) from the store in %.2f s",
            len(leases),
            time.monotonic() - started,
        )

    def _deposed(self, reason: str) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        if reason == "shutting down":
            self._copy()
        lease_file(self.settings.data_path).unlink(missing_ok=True)
        self.metrics.dhcp_leader.set(0)
        self.metrics.dhcp_leadership_changes.labels("deposed").inc()
        log.warning("full DHCP: no longer the leader (%s); dnsmasq stopped", reason)

    # -- lease changes into the store -------------------------------------------------------

    def _copy_loop(self) -> None:
        while not self._stopping.wait(COPY_INTERVAL_S):
            if self.supervisor is not None:
                self._copy()

    def _copy(self) -> None:
        with self._lock:
            self._pending += self.journal.read_new()
            if not self._pending:
                return
            try:
                self.leases.record(self._pending)
            except StoreFailure as exc:
                log.warning("DHCP lease changes not copied to the store yet: %s", exc)
                return
            self._pending = []
