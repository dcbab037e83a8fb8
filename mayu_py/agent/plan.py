"""The pure heart of the agent: plan(desired, desired_networks, actual) -> [Action].

Order within a plan: the nwfilters (ours defined, an earlier version's no domain names any
more undefined), drains and deletions of domains (undesired, changed, or
defined with files other than this agent's, e.g. after a restart with another --state-dir),
network changes and deletions, orphan files, then per node: overlay, data disk (masters),
Ignition, define, start.
Only objects carrying our metadata (domains) or our name prefix and bridge (networks) are ever
the subject of an action; a foreign object with a name we want blocks that node instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from mayu_py.agent.actual import ActualState
from mayu_py.agent.desired import DesiredNetwork
from mayu_py.agent.statedir import (
    data_name,
    has_data_disk,
    ignition_name,
    node_files,
    overlay_name,
)
from mayu_py.tenants import NodeState, TenantNode
from mayu_py.virt.ownership import tenant_of_network


@dataclass(frozen=True)
class Action:
    """Base: `tenant` and `node` say whose failure this is (node None: the whole tenant)."""

    @property
    def tenant(self) -> str | None:
        return None

    @property
    def node_name(self) -> str | None:
        return None

    def describe(self) -> str:
        subject = "/".join(x for x in (self.tenant, self.node_name) if x)
        return f"{type(self).__name__} {subject}".strip()


@dataclass(frozen=True)
class EnsureFilter(Action):
    pass


@dataclass(frozen=True)
class DeleteFilter(Action):
    """An earlier version's guest filter that no domain names any more."""

    name: str

    def describe(self) -> str:
        return f"DeleteFilter {self.name}"


@dataclass(frozen=True)
class _NetworkAction(Action):
    network: DesiredNetwork

    @property
    def tenant(self) -> str | None:
        return self.network.tenant


@dataclass(frozen=True)
class CreateNetwork(_NetworkAction):
    pass


@dataclass(frozen=True)
class RecreateNetwork(_NetworkAction):
    """Its gateway address or bridge changed: destroy and define again. Not for the ingress
    address, which is in no definition: a network an earlier version defined with it (a
    second `<ip>`) is left as it is, its VMs attached (`DesiredNetwork.held`)."""


@dataclass(frozen=True)
class StartNetwork(_NetworkAction):
    pass


@dataclass(frozen=True)
class UpdateNetworkHosts(_NetworkAction):
    add: tuple[tuple[str, str, str], ...]
    remove: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class DeleteNetwork(Action):
    name: str
    owner: str

    @property
    def tenant(self) -> str | None:
        return self.owner


@dataclass(frozen=True)
class _DomainAction(Action):
    owner: str
    name: str

    @property
    def tenant(self) -> str | None:
        return self.owner

    @property
    def node_name(self) -> str | None:
        return self.name


@dataclass(frozen=True)
class DrainNode(_DomainAction):
    pass


@dataclass(frozen=True)
class DeleteDomain(_DomainAction):
    pass


@dataclass(frozen=True)
class StartDomain(_DomainAction):
    pass


@dataclass(frozen=True)
class _NodeAction(Action):
    node: TenantNode

    @property
    def tenant(self) -> str | None:
        return self.node.tenant

    @property
    def node_name(self) -> str | None:
        return self.node.name


@dataclass(frozen=True)
class CreateOverlay(_NodeAction):
    pass


@dataclass(frozen=True)
class CreateDataDisk(_NodeAction):
    """A master's persistent data disk (kept when the node is replaced)."""


@dataclass(frozen=True)
class WriteIgnition(_NodeAction):
    pass


@dataclass(frozen=True)
class DefineDomain(_NodeAction):
    pass


@dataclass(frozen=True)
class Blocked(_NodeAction):
    """A foreign object holds a name this node needs; applying it reports the conflict."""

    reason: str


@dataclass(frozen=True)
class DeleteFiles(Action):
    owner: str
    names: tuple[str, ...]

    @property
    def tenant(self) -> str | None:
        return self.owner


@dataclass(frozen=True)
class DeleteTenantDir(Action):
    owner: str

    @property
    def tenant(self) -> str | None:
        return self.owner


_RESTARTABLE = {NodeState.SHUTOFF, NodeState.CRASHED}


def _network_actions(
    desired_networks: list[DesiredNetwork], actual: ActualState
) -> tuple[list[Action], set[str]]:
    actions: list[Action] = []
    blocked: set[str] = set()
    for net in desired_networks:
        if net.name in actual.foreign_networks:
            blocked.add(net.tenant)
            continue
        have = actual.networks.get(net.name)
        if have is None:
            actions.append(CreateNetwork(net))
            continue
        if (have.bridge, have.gateway) != (net.bridge, net.host_address):
            actions.append(RecreateNetwork(net))
            continue
        if not have.active:
            actions.append(StartNetwork(net))
        want, got = set(net.hosts), set(have.hosts)
        if want != got:
            actions.append(
                UpdateNetworkHosts(net, tuple(sorted(want - got)), tuple(sorted(got - want)))
            )
    wanted = {n.name for n in desired_networks}
    for name in sorted(actual.networks):
        if name not in wanted:
            actions.append(DeleteNetwork(name, tenant_of_network(name)))
    return actions, blocked


def plan(
    desired: list[TenantNode], desired_networks: list[DesiredNetwork], actual: ActualState
) -> list[Action]:
    """The actions that take `actual` to `desired`; empty when they already agree. A domain
    on another network than its tenant's (the host moved to or from an overlay) is replaced."""
    by_name = {n.name: n for n in desired}
    network = {n.tenant: n.name for n in desired_networks}
    tenants = {n.tenant for n in desired}
    actions: list[Action] = []
    if desired and actual.nwfilter is False:
        actions.append(EnsureFilter())
    actions += [DeleteFilter(name) for name in actual.obsolete_filters]

    gone: set[str] = set()
    for name, dom in sorted(actual.domains.items()):
        want = by_name.get(name)
        if (
            want is not None
            and (want.tenant, want.spec_hash, want.uuid)
            == (dom.tenant, dom.spec_hash, dom.uuid.lower())
            and dom.files_current
            and dom.network in ("", network.get(want.tenant))
        ):
            continue
        if dom.tenant in tenants:
            actions.append(DrainNode(dom.tenant, name))
        actions.append(DeleteDomain(dom.tenant, name))
        gone.add(name)

    network_actions, blocked_tenants = _network_actions(desired_networks, actual)
    actions += network_actions

    for tenant, names in sorted(actual.files.items()):
        if tenant not in tenants:
            actions.append(DeleteTenantDir(tenant))
            continue
        keep: set[str] = set()
        for node in desired:
            if node.tenant == tenant:
                keep |= node_files(node)
        extra = tuple(sorted(names - keep))
        if extra:
            actions.append(DeleteFiles(tenant, extra))

    for node in sorted(desired, key=lambda n: (n.tenant, n.name)):
        actions += _node_actions(node, actual, gone, blocked_tenants)
    return actions


def _node_actions(
    node: TenantNode, actual: ActualState, gone: set[str], blocked_tenants: set[str]
) -> list[Action]:
    if node.name in actual.foreign_domains:
        return [Blocked(node, f"a domain named {node.name} exists that mayu does not manage")]
    if node.tenant in blocked_tenants:
        return [Blocked(node, f"a network named for tenant {node.tenant} is not this host's")]
    dom = None if node.name in gone else actual.domains.get(node.name)
    if dom is not None and dom.state not in _RESTARTABLE:
        return []
    files = actual.files.get(node.tenant, frozenset())
    actions: list[Action] = []
    if overlay_name(node) not in files:
        actions.append(CreateOverlay(node))
    if has_data_disk(node) and data_name(node) not in files:
        actions.append(CreateDataDisk(node))
    if ignition_name(node) not in files:
        actions.append(WriteIgnition(node))
    if dom is None:
        actions.append(DefineDomain(node))
    actions.append(StartDomain(node.tenant, node.name))
    return actions
