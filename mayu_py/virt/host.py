"""Thin wrapper around one libvirt connection (Nova's Host/Guest idea), shared by agent and lab.

It opens lazily, reopens when the daemon went away ("client socket is closed", code 1) and
retries with backoff while the daemon is down (code 38), re-registers lifecycle callbacks on
each new connection, and turns every libvirtError into a MayuError at this boundary. Deletions
take an `Ownership` (default: anything mayu marked) and refuse objects outside it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import libvirt

from mayu_py.errors import Conflict, MayuError, NotFound, PeerUnavailable
from mayu_py.virt.ownership import (
    MAYU,
    NS,
    DomainMeta,
    NetworkFacts,
    Ownership,
    parse_domain_meta,
    parse_network,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_NWFILTER,
    libvirt.VIR_ERR_NO_DOMAIN_METADATA,
}
_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutoff",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
}


class LibvirtFailed(MayuError):
    """A libvirt call failed for a reason other than a missing object or a lost daemon."""

    status = 500


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: str  # running | paused | shutoff | crashed
    meta: DomainMeta | None  # None: not ours


@dataclass(frozen=True)
class NetworkInfo:
    facts: NetworkFacts
    active: bool


def _silence(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we raise them instead."""


def _is_disconnect(exc: libvirt.libvirtError) -> bool:
    """The daemon is down (code 38 on open) or dropped us ("client socket is closed")."""
    code = exc.get_error_code()
    return code == libvirt.VIR_ERR_SYSTEM_ERROR or (
        code == libvirt.VIR_ERR_INTERNAL_ERROR and "client socket is closed" in str(exc)
    )


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def translate(op: str, exc: libvirt.libvirtError) -> MayuError:
    code = exc.get_error_code()
    detail = {"op": op, "code": code}
    if code in _NOT_FOUND:
        return NotFound(f"{op}: {exc}", detail)
    if code == libvirt.VIR_ERR_OPERATION_INVALID and "already exists" in str(exc):
        return Conflict(f"{op}: {exc}", detail)
    if code == libvirt.VIR_ERR_INTERNAL_ERROR and "client socket is closed" in str(exc):
        return PeerUnavailable(f"{op}: libvirt is not reachable: {exc}", detail)
    return LibvirtFailed(f"{op}: {exc}", detail)


def start_event_loop() -> None:
    """Register libvirt's default event loop (before any open) and run it in a thread."""
    libvirt.virEventRegisterDefaultImpl()

    def loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=loop, name="libvirt-events", daemon=True).start()


class LibvirtHost:
    """One reconnecting libvirt connection plus the handful of operations the agent needs."""

    def __init__(
        self,
        uri: str,
        *,
        attempts: int = 6,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.uri = uri
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._conn: libvirt.virConnect | None = None
        self.reconnects = 0  # lost connections replaced by a new one (the agent's metrics)
        self._lifecycle: list[Callable[[str, int], None]] = []
        libvirt.registerErrorHandler(_silence, None)

    # -- connection -------------------------------------------------------------------------
    def _open(self) -> libvirt.virConnect:
        delay = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                if not _is_disconnect(exc):
                    raise translate(f"open {self.uri}", exc) from exc
                if attempt == self._attempts:
                    raise PeerUnavailable(
                        f"libvirt {self.uri} not reachable after {attempt} attempts: {exc}",
                        {"uri": self.uri, "code": exc.get_error_code()},
                    ) from exc
                log.warning("libvirt %s not reachable (%s); retry in %.1fs", self.uri, exc, delay)
                self._sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._register_callbacks(conn)
            return conn
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _register_callbacks(self, conn: libvirt.virConnect) -> None:
        if not self._lifecycle:
            return
        with contextlib.suppress(libvirt.libvirtError):  # test:// has no keepalive
            conn.setKeepAlive(5, 3)

        def on_event(_c: object, dom: libvirt.virDomain, event: int, _d: int, _o: object) -> None:
            for callback in self._lifecycle:
                callback(dom.name(), event)

        try:
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_event, None)
        except libvirt.libvirtError as exc:  # no event loop registered (start_event_loop)
            log.warning("no libvirt lifecycle events (%s); relying on periodic resync", exc)

    def connection(self) -> libvirt.virConnect:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    def call(self, op: str, fn: Callable[[libvirt.virConnect], T]) -> T:
        """Run fn on the connection; reopen once if the daemon dropped it."""
        for attempt in (1, 2):
            conn = self.connection()
            try:
                return fn(conn)
            except libvirt.libvirtError as exc:
                if attempt == 1 and not _alive(conn):
                    log.warning("libvirt connection lost during %s: %s; reconnecting", op, exc)
                    self._conn = None
                    self.reconnects += 1
                    continue
                raise translate(op, exc) from exc
        raise PeerUnavailable(f"{op}: libvirt connection lost twice")

    def on_lifecycle(self, callback: Callable[[str, int], None]) -> None:
        """Call callback(domain name, event) on every lifecycle event, across reconnects."""
        self._lifecycle.append(callback)
        if self._conn is not None:
            self.call("register events", self._register_callbacks)

    # -- queries ----------------------------------------------------------------------------
    def capacity(self) -> tuple[int, int]:
        """(cpus, memory MiB) of this host."""
        info = self.call("getInfo", lambda c: c.getInfo())
        return int(info[2]), int(info[1])

    def domain_types(self) -> set[str]:
        caps = self.call("getCapabilities", lambda c: c.getCapabilities())
        return {t for t in ("kvm", "qemu") if f"<domain type='{t}'" in caps}

    def list_domains(self, ns: str = NS) -> list[DomainInfo]:
        """Every domain; `meta` is read from our element in namespace `ns`."""

        def collect(conn: libvirt.virConnect) -> list[DomainInfo]:
            result = []
            for dom in conn.listAllDomains():
                state, reason = dom.state()
                name = _STATES.get(state, "unknown")
                if state == libvirt.VIR_DOMAIN_SHUTOFF and (
                    reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED
                ):
                    name = "crashed"
                result.append(DomainInfo(dom.name(), dom.UUIDString(), name, _meta(dom, ns)))
            return result

        return self.call("listAllDomains", collect)

    def list_networks(self) -> list[NetworkInfo]:
        def collect(conn: libvirt.virConnect) -> list[NetworkInfo]:
            return [
                NetworkInfo(parse_network(net.XMLDesc(0)), bool(net.isActive()))
                for net in conn.listAllNetworks()
            ]

        return self.call("listAllNetworks", collect)

    def has_nwfilter(self, name: str) -> bool | None:
        """True/False; None when the driver has no nwfilter support (test://)."""

        def lookup(conn: libvirt.virConnect) -> bool | None:
            try:
                conn.nwfilterLookupByName(name)
                return True
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                    return None
                if exc.get_error_code() == libvirt.VIR_ERR_NO_NWFILTER:
                    return False
                raise

        return self.call(f"nwfilterLookupByName {name}", lookup)

    def nwfilters_in_use(self) -> set[str]:
        """The filters any domain's interfaces name (every domain: another host's agent on
        this libvirtd, or an earlier version's, may have defined it)."""

        def collect(conn: libvirt.virConnect) -> set[str]:
            names = set()
            for dom in conn.listAllDomains():
                for ref in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/interface/filterref"):
                    names.add(ref.get("filter", ""))
            return names

        return self.call("filters in use", collect)

    def domain_meta(self, name: str) -> DomainMeta | None:
        return self.call(f"metadata {name}", lambda c: _meta(c.lookupByName(name)))

    def is_active(self, name: str) -> bool:
        """True while the domain runs; False when it is shut off or gone."""

        def active(conn: libvirt.virConnect) -> bool:
            try:
                return bool(conn.lookupByName(name).isActive())
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return False
                raise

        return self.call(f"isActive {name}", active)

    def domain_xml(self, name: str) -> str:
        return self.call(f"XMLDesc {name}", lambda c: c.lookupByName(name).XMLDesc(0))

    # -- changes ----------------------------------------------------------------------------
    def define_nwfilter(self, xml: str) -> None:
        self.call("nwfilterDefineXML", lambda c: c.nwfilterDefineXML(xml))

    def undefine_nwfilter(self, name: str) -> None:
        """Undefine a filter; a missing one is fine (libvirt refuses one a running domain
        uses)."""

        def undefine(conn: libvirt.virConnect) -> None:
            try:
                conn.nwfilterLookupByName(name).undefine()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_NWFILTER:
                    raise

        self.call(f"undefine nwfilter {name}", undefine)

    def define_domain(self, xml: str) -> None:
        self.call("defineXML", lambda c: c.defineXML(xml))

    def start_domain(self, name: str) -> None:
        def start(conn: libvirt.virConnect) -> None:
            dom = conn.lookupByName(name)
            if not dom.isActive():
                dom.create()

        self.call(f"start {name}", start)

    def delete_domain(self, name: str, owner: Ownership = MAYU) -> None:
        """Destroy and undefine a domain of owner's; a missing one is fine, any other refused."""

        def delete(conn: libvirt.virConnect) -> None:
            try:
                dom = conn.lookupByName(name)
                if not owner.owns_domain(_meta(dom, owner.ns)):
                    raise Conflict(f"domain {name} is not {owner.name}; not deleting it")
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent() and "<nvram" in dom.XMLDesc(0):  # UEFI: its variables too
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                elif dom.isPersistent():
                    dom.undefine()
            except libvirt.libvirtError as exc:
                # NO_DOMAIN: gone already, or vanished half-way (a transient guest): done
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise

        self.call(f"delete domain {name}", delete)

    def define_network(self, xml: str) -> None:
        self.call("networkDefineXML", lambda c: c.networkDefineXML(xml))

    def start_network(self, name: str) -> None:
        def start(conn: libvirt.virConnect) -> None:
            net = conn.networkLookupByName(name)
            if not net.isActive():
                net.create()
            net.setAutostart(True)

        self.call(f"start network {name}", start)

    def update_network_host(self, name: str, host_xml: str, add: bool) -> None:
        """Add or remove one DHCP reservation, live and in the persistent config."""

        def update(conn: libvirt.virConnect) -> None:
            net = conn.networkLookupByName(name)
            flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
            if net.isActive():
                flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
            command = (
                libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST
                if add
                else libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE
            )
            net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, host_xml, flags)

        self.call(f"update network {name}", update)

    def delete_network(self, name: str, owner: Ownership = MAYU) -> None:
        """Destroy and undefine a network of owner's; missing is fine, any other refused."""

        def delete(conn: libvirt.virConnect) -> None:
            try:
                net = conn.networkLookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                    return
                raise
            if not owner.owns_network(parse_network(net.XMLDesc(0))):
                raise Conflict(f"network {name} is not {owner.name}; not deleting it")
            if net.isActive():
                net.destroy()
            net.undefine()

        self.call(f"delete network {name}", delete)

    def boot_transient(self, xml: str) -> libvirt.virDomain:
        return self.call("createXML", lambda c: c.createXML(xml, 0))


def _meta(dom: libvirt.virDomain, ns: str = NS) -> DomainMeta | None:
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ns)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise
    return parse_domain_meta(text)
