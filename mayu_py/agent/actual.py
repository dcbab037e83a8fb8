"""What a host runs now: owned domains and networks, foreign names, and state-dir files.

Owned means mayu's and of this host (`HostScope`): with agents of several hosts on one
libvirtd, another host's domains and networks are foreign to this one's agent."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from mayu_py.agent.libvirt_xml import FILTER_NAME, MASTER_FILTER, OBSOLETE_FILTERS
from mayu_py.agent.statedir import StateDir
from mayu_py.errors import NotFound
from mayu_py.tenants import NodeState
from mayu_py.virt.host import LibvirtHost
from mayu_py.virt.ownership import ANY_HOST, DomainMeta, HostScope


@dataclass(frozen=True)
class ActualDomain:
    name: str
    uuid: str
    tenant: str
    role: str
    spec_hash: str
    generation: int
    state: NodeState  # running | paused | shutoff | crashed
    network: str = ""  # the libvirt network it is on ("": not recorded)
    # its overlay, Ignition file and serial log are in this agent's state dir (False: e.g. an
    # agent that ran with another --state-dir defined it, and that dir may be gone)
    files_current: bool = True


@dataclass(frozen=True)
class ActualNetwork:
    name: str
    bridge: str
    gateway: str | None
    active: bool
    hosts: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class ActualState:
    """Only owned objects appear in domains/networks; foreign names are kept to avoid them."""

    domains: dict[str, ActualDomain] = field(default_factory=dict)
    networks: dict[str, ActualNetwork] = field(default_factory=dict)
    foreign_domains: frozenset[str] = frozenset()
    foreign_networks: frozenset[str] = frozenset()
    files: dict[str, frozenset[str]] = field(default_factory=dict)
    nwfilter: bool | None = None  # None: the driver has no nwfilter support
    obsolete_filters: tuple[str, ...] = ()  # defined, and named by no domain any more


def observe(host: LibvirtHost, state_dir: StateDir, scope: HostScope = ANY_HOST) -> ActualState:
    domains: dict[str, ActualDomain] = {}
    foreign_domains = set()
    for info in host.list_domains():
        if info.meta is None or not scope.domain(info.meta):
            foreign_domains.add(info.name)
            continue
        m = info.meta
        domains[info.name] = ActualDomain(
            info.name,
            info.uuid,
            m.tenant,
            m.role,
            m.spec_hash,
            m.generation,
            NodeState(info.state),
            m.network,
            _files_current(host, info.name, m, str(state_dir.tenant_dir(m.tenant))),
        )
    networks: dict[str, ActualNetwork] = {}
    foreign_networks = set()
    for net in host.list_networks():
        facts = net.facts
        if not facts.owned or not scope.network(facts):
            foreign_networks.add(facts.name)
            continue
        networks[facts.name] = ActualNetwork(
            facts.name, facts.bridge, facts.gateway, net.active, facts.hosts
        )
    return ActualState(
        domains=domains,
        networks=networks,
        foreign_domains=frozenset(foreign_domains),
        foreign_networks=frozenset(foreign_networks),
        files=state_dir.scan(),
        nwfilter=_filters(host),
        obsolete_filters=_obsolete_filters(host),
    )


def _filters(host: LibvirtHost) -> bool | None:
    """Whether both guest filters are defined (None: the driver has no nwfilter support)."""
    found = [host.has_nwfilter(FILTER_NAME), host.has_nwfilter(MASTER_FILTER)]
    return None if None in found else all(found)


def _obsolete_filters(host: LibvirtHost) -> tuple[str, ...]:
    """Earlier versions' filters still defined that no domain names (the domains are read
    only while such a filter is there)."""
    defined = [name for name in OBSOLETE_FILTERS if host.has_nwfilter(name)]
    if not defined:
        return ()
    in_use = host.nwfilters_in_use()
    return tuple(name for name in defined if name not in in_use)


def _files_current(host: LibvirtHost, name: str, meta: DomainMeta, directory: str) -> bool:
    """Are the domain's overlay, Ignition file and serial log in `directory`? Its metadata
    says so; for a domain defined before the metadata did, its disk's directory tells."""
    if meta.files_dir:
        return meta.files_dir == directory
    try:
        disk = ET.fromstring(host.domain_xml(name)).find("devices/disk/source")
    except NotFound:
        return True  # gone since it was listed: the next pass sees that
    return disk is not None and os.path.dirname(disk.get("file", "")) == directory
