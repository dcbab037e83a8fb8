"""Idempotent execution of plan actions against libvirt and the state directory.

Applying an action twice, or after a crash half-way through it, ends in the same state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mayu_py.agent import plan as p
from mayu_py.agent.desired import network_of
from mayu_py.agent.libvirt_xml import (
    DomainFiles,
    dhcp_host_xml,
    domain_xml,
    network_xml,
    nwfilters,
)
from mayu_py.agent.statedir import SECRET_MODE, StateDir, has_data_disk, log_name
from mayu_py.command import run
from mayu_py.errors import Conflict
from mayu_py.files import atomic_write, replacing
from mayu_py.images.base import BaseImages
from mayu_py.tenants import TenantNode
from mayu_py.virt.host import LibvirtHost
from mayu_py.virt.ownership import ANY_HOST, HostScope

log = logging.getLogger(__name__)
IgnitionFetcher = Callable[[TenantNode], bytes]
DrainHook = Callable[[str, str], "str | None"]  # (tenant, node) -> what happened, one line


def _no_drain(tenant: str, node: str) -> str:
    log.info("drain %s/%s: no drain hook configured", tenant, node)
    return "not drained: no drain hook configured"


class Applier:
    """Carries out one action at a time; every method is safe to repeat."""

    def __init__(
        self,
        host: LibvirtHost,
        state_dir: StateDir,
        images: BaseImages,
        ignition: IgnitionFetcher,
        domain_type: str,
        drain: DrainHook = _no_drain,
        scope: HostScope = ANY_HOST,
        overlay_tag: str = "",
    ) -> None:
        self.host = host
        self.scope = scope  # the host whose domains these are
        self.overlay_tag = overlay_tag  # set: tenant networks are on this host's overlay
        self.state_dir = state_dir
        self.images = images
        self.ignition = ignition
        self.domain_type = domain_type
        self.drain = drain
        self.drain_notes: dict[str, str] = {}  # node -> what its last drain did
        self._handlers: dict[type[p.Action], Callable[[Any], None]] = {
            p.EnsureFilter: self._ensure_filter,
            p.DeleteFilter: self._delete_filter,
            p.CreateNetwork: self._create_network,
            p.RecreateNetwork: self._recreate_network,
            p.StartNetwork: self._start_network,
            p.UpdateNetworkHosts: self._update_network_hosts,
            p.DeleteNetwork: self._delete_network,
            p.DrainNode: self._drain_node,
            p.DeleteDomain: self._delete_domain,
            p.StartDomain: self._start_domain,
            p.CreateOverlay: self._create_overlay,
            p.CreateDataDisk: self._create_data_disk,
            p.WriteIgnition: self._write_ignition,
            p.DefineDomain: self._define_domain,
            p.Blocked: self._blocked,
            p.DeleteFiles: self._delete_files,
            p.DeleteTenantDir: self._delete_tenant_dir,
        }

    def apply(self, action: p.Action) -> None:
        log.info("apply %s", action.describe())
        self._handlers[type(action)](action)

    def _ensure_filter(self, _a: p.EnsureFilter) -> None:
        for xml in nwfilters():
            self.host.define_nwfilter(xml)

    def _delete_filter(self, a: p.DeleteFilter) -> None:
        self.host.undefine_nwfilter(a.name)

    def _create_network(self, a: p.CreateNetwork) -> None:
        self.host.define_network(network_xml(a.network))
        self.host.start_network(a.network.name)

    def _recreate_network(self, a: p.RecreateNetwork) -> None:
        self.host.delete_network(a.network.name)
        self._create_network(p.CreateNetwork(a.network))

    def _start_network(self, a: p.StartNetwork) -> None:
        self.host.start_network(a.network.name)

    def _update_network_hosts(self, a: p.UpdateNetworkHosts) -> None:
        for mac, ip, name in a.remove:
            self.host.update_network_host(a.network.name, dhcp_host_xml(mac, ip, name), False)
        for mac, ip, name in a.add:
            self.host.update_network_host(a.network.name, dhcp_host_xml(mac, ip, name), True)

    def _delete_network(self, a: p.DeleteNetwork) -> None:
        self.host.delete_network(a.name)

    def _drain_node(self, a: p.DrainNode) -> None:
        self.drain_notes[a.name] = self.drain(a.owner, a.name) or ""

    def _delete_domain(self, a: p.DeleteDomain) -> None:
        # The serial log goes first: a node recreated under the same name must not be judged
        # ready on its old VM's MAYU-READY (e.g. by an agent restarted before it saw the new
        # boot's banner). Its qemu keeps writing to the unlinked file until it is destroyed.
        self.state_dir.delete_files(a.owner, [log_name(a.name)])
        self.host.delete_domain(a.name)

    def _start_domain(self, a: p.StartDomain) -> None:
        self.host.start_domain(a.name)

    def _create_overlay(self, a: p.CreateOverlay) -> None:
        path = self.state_dir.overlay(a.node)
        if path.exists():
            return
        image = self.images.get(a.node.image)
        self.state_dir.tenant_dir(a.node.tenant, create=True)
        with replacing(path, SECRET_MODE) as tmp:
            run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image.disk,
                 tmp, f"{a.node.disk_gib}G"]
            )  # fmt: skip

    def _create_data_disk(self, a: p.CreateDataDisk) -> None:
        """A master's persistent data disk: created once, kept across replacements."""
        path = self.state_dir.data_disk(a.node)
        if path.exists():
            return
        self.state_dir.tenant_dir(a.node.tenant, create=True)
        with replacing(path, SECRET_MODE) as tmp:
            run(["qemu-img", "create", "-q", "-f", "qcow2", tmp, f"{a.node.disk_gib}G"])

    def _write_ignition(self, a: p.WriteIgnition) -> None:
        data = self.ignition(a.node)
        self.state_dir.tenant_dir(a.node.tenant, create=True)
        atomic_write(self.state_dir.ignition(a.node), data, SECRET_MODE)

    def _define_domain(self, a: p.DefineDomain) -> None:
        node = a.node
        image = self.images.get(node.image)
        files = DomainFiles(
            kernel=image.kernel,
            initrd=image.initrd,
            cmdline=image.cmdline,
            overlay=self.state_dir.overlay(node),
            ignition=self.state_dir.ignition(node),
            log=self.state_dir.log(node),
            data=self.state_dir.data_disk(node) if has_data_disk(node) else None,
        )
        net = network_of(node, self.overlay_tag)
        self.host.define_domain(domain_xml(node, net, files, self.domain_type, self.scope.host))

    def _blocked(self, a: p.Blocked) -> None:
        raise Conflict(a.reason, {"node": a.node.name})

    def _delete_files(self, a: p.DeleteFiles) -> None:
        self.state_dir.delete_files(a.owner, list(a.names))

    def _delete_tenant_dir(self, a: p.DeleteTenantDir) -> None:
        self.state_dir.delete_tenant(a.owner)
