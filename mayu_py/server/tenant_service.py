"""Tenant clusters and agent hosts on the server: validation, placement, status, node Ignition.

Tenants are kept as `TenantRecord`s (mayu_py.tenants.record). Placement runs in the same
transaction as every change that can affect it (tenant created or changed, host heartbeat).
A tenant's PKI directory is removed only after the transaction that purged its record
committed. A spec change that needs new VMs is rolled out one node at a time: the changed
nodes stay pinned to what they run (`TenantRecord.with_spec`) and `TenantRecord.advanced`
releases the next one whenever a node report shows the whole tenant ready
(mayu_py.tenants.rollout); hosts get the pinned nodes.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mayu_py.config import Settings
from mayu_py.errors import BadRequest, Conflict, NotFound, Unprocessable
from mayu_py.pki import ClusterPKI
from mayu_py.render import IgnitionRenderer
from mayu_py.render.addons import operator_manifests
from mayu_py.server.hosts import HostService
from mayu_py.server.metrics import ServerMetrics
from mayu_py.server.replica_files import SharedFiles, ca_paths
from mayu_py.store import Store, Tx
from mayu_py.tenants import (
    HostInfo,
    HostRegistration,
    ImageInfo,
    NodeReport,
    ReportedNode,
    TenantCluster,
    TenantNode,
    TenantRecord,
    lapsed_nodes,
    parse_tenant,
    place,
    tenant_nodes,
)
from mayu_py.tenants.ignition import admin_facts, render_tenant_node
from mayu_py.tenants.networking import TenantOptions
from mayu_py.tenants.rollout import desired_nodes
from mayu_py.tenants.validation import is_tenant_name, kept_addresses
from mayu_py.tenants.wire import OverlayPeer


def tenant_options(settings: Settings) -> TenantOptions:
    """The site's tenant settings; an operator's CNI manifest file is read (and checked) once."""
    config = settings.tenants
    manifest = operator_manifests(Path(config.cni_manifest)) if config.cni_manifest else None
    return TenantOptions(config.ingress_domain, config.ingress_port, manifest)


class TenantService:
    """The server side of level 2."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        renderer: IgnitionRenderer,
        clock: Callable[[], float] = time.time,
        metrics: ServerMetrics | None = None,
        shared: SharedFiles | None = None,
    ) -> None:
        self.settings = settings
        # A tenant's CAs are shared by the replicas through the store (replica_files).
        self.shared = shared
        self.store = store
        self.renderer = renderer
        self.clock = clock
        self.metrics = metrics or ServerMetrics()
        self.options = tenant_options(settings)

    # -- tenants ------------------------------------------------------------------------

    def create(self, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise Unprocessable("invalid TenantCluster", {"": "must be a mapping"})
        doc = {k: v for k, v in doc.items() if k != "status"}
        if not isinstance(doc.get("metadata"), dict):
            raise Unprocessable("invalid TenantCluster", {"metadata": "must be a mapping"})
        meta = dict(doc["metadata"])
        meta["generation"] = 1
        doc["metadata"] = meta
        name = meta.get("name")
        if is_tenant_name(name) and self.store.get_tenant(name) is None:
            self._forget_pki(name)  # left over by a crash between a purge and its cleanup

        def txn(tx: Tx) -> TenantRecord:
            records = tx.list_tenants()
            if any(r.name == name for r in records):
                raise Conflict("tenant exists", {"metadata.name": f"{name!r} already exists"})
            tenant = parse_tenant(doc, self._images(), [r.tenant for r in records])
            tx.put_tenant(TenantRecord(tenant))
            self.place_nodes(tx)
            return self._record(tx, tenant.name)

        return self.view(self.store.atomically(txn))

    def update_spec(self, name: str, spec_patch: Any) -> dict[str, Any]:
        """Merge a partial spec into the tenant; a change bumps metadata.generation."""
        if not isinstance(spec_patch, dict):
            raise BadRequest('body must be {"spec": {...}}')

        def txn(tx: Tx) -> TenantRecord:
            record = self._record(tx, name)
            if record.deleting:
                raise Conflict("tenant is being deleted", {"name": name})
            doc = record.tenant.model_dump(mode="json", exclude={"status"})
            spec = {**doc["spec"], **spec_patch}
            if isinstance(spec.get("network"), dict):
                spec["network"] = _kept_network(record.tenant, spec["network"])
            if spec == doc["spec"]:
                return record
            meta = {**doc["metadata"], "generation": record.tenant.metadata.generation + 1}
            others = [r.tenant for r in tx.list_tenants() if r.name != name]
            changed_doc = {**doc, "metadata": meta, "spec": spec}
            tenant = parse_tenant(changed_doc, self._images(), others, record.held_addresses)
            tx.put_tenant(self._advanced(tx, record.with_spec(tenant)))
            self.place_nodes(tx)
            return self._record(tx, name)

        return self.view(self.store.atomically(txn))

    def delete(self, name: str) -> dict[str, Any]:
        """Mark a tenant for deletion; agents remove its VMs, disks, network and secrets."""

        def txn(tx: Tx) -> TenantRecord:
            record = dataclasses.replace(self._record(tx, name), deleting=True)
            return self._store_or_purge(tx, record)

        return self.view(self._after_purge(self.store.atomically(txn)))

    def get(self, name: str) -> dict[str, Any]:
        return self.view(self._record(self.store, name))

    def list(self) -> list[dict[str, Any]]:
        hosts = self.store.list_hosts()
        return [self.view(r, hosts) for r in self.store.list_tenants()]

    def report_node(self, tenant: str, node: str, body: Any) -> dict[str, Any]:
        """An agent reports a node's observed state; deleted nodes of a deleting tenant go."""
        report = NodeReport.from_json(tenant, node, body)

        def txn(tx: Tx) -> TenantRecord:
            record = self._record(tx, tenant)
            known = {n.name for n in tenant_nodes(record.tenant)} | set(record.nodes)
            if node not in known:
                raise NotFound("no such node", {"tenant": tenant, "node": node[:64]})
            nodes = {**record.nodes, node: ReportedNode(report, self.clock())}
            updated = self._advanced(tx, dataclasses.replace(record, nodes=nodes))
            return self._store_or_purge(tx, updated)

        return self.view(self._after_purge(self.store.atomically(txn)))

    def node_ignition(self, tenant_name: str, node_name: str) -> bytes:
        """A tenant node's Ignition, with certificates from the tenant's own PKI."""
        record = self._record(self.store, tenant_name)
        pinned = record.rollout.pins.get(node_name)  # still the revision it runs
        tenant = record.rollout.revisions[pinned] if pinned is not None else record.tenant
        with self.metrics.render.labels("tenant_node").time():
            return render_tenant_node(
                tenant, node_name, self.tenant_pki(tenant.name), self.renderer, self.options
            )

    def host_of(self, tenant: str, node: str) -> str | None:
        """The host a node is placed on (None when unplaced); NotFound for an unknown tenant."""
        return self._record(self.store, tenant).assignments.get(node)

    def tenant_pki(self, name: str) -> ClusterPKI:
        directory = self._pki_dir(name)
        if self.shared is not None:
            relative = str(directory.relative_to(self.settings.data_path))
            self.shared.sync(
                _shared_name(name),
                ca_paths(relative),
                lambda: ClusterPKI.load_or_create(directory, name),
            )
        return ClusterPKI.load_or_create(directory, name)

    def admin_kubeconfig(self, name: str) -> str:
        tenant = self._record(self.store, name).tenant
        return self.tenant_pki(name).admin_kubeconfig(admin_facts(tenant, self.options))

    def drainer_kubeconfig(self, name: str, host: str) -> str:
        """The drain credential of the agent of `host` for tenant `name` (its own client
        short-lived certificate from the tenant's CA, mayu_py.pki.layout.drainer_spec and
        DRAINER_LIFETIME); NotFound unless the host carries nodes of the tenant and the tenant
        is wanted (a deleted tenant's VMs go undrained)."""
        record = self._record(self.store, name)
        if record.deleting or host not in record.assignments.values():
            raise NotFound("host carries no node of the tenant", {"tenant": name, "host": host})
        facts = admin_facts(record.tenant, self.options)
        return self.tenant_pki(name).drainer_kubeconfig(host, facts)

    # -- hosts --------------------------------------------------------------------------

    def heartbeat(self, body: Any) -> dict[str, Any]:
        host = HostInfo.seen(HostRegistration.from_json(body), self.clock())

        def txn(tx: Tx) -> None:
            before = tx.list_hosts()  # a lapse it ends is stored first, at its own time
            tx.put_host(host)
            self.place_nodes(tx, before)

        self.store.atomically(txn)
        return host.to_json()

    def list_hosts(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [h.to_json() | {"alive": h.alive(now)} for h in self.store.list_hosts()]

    def desired_for_host(self, host: str) -> list[dict[str, Any]]:
        """The host's nodes, each carrying its tenant's overlay peers: the other hosts with
        nodes of that tenant, their heartbeat underlay and their enrolled address."""
        hosts = {h.name: h for h in self.store.list_hosts()}
        desired = []
        for record in self.store.list_tenants():
            if record.deleting:
                continue
            nodes = desired_nodes(record.tenant, record.rollout)
            mine = [n for n in nodes if record.assignments.get(n.name) == host]
            if mine:
                peers = self._overlay_peers(record, nodes, host, hosts)
                desired += [dataclasses.replace(n, peers=peers).to_json() for n in mine]
        return desired

    def _overlay_peers(
        self, record: TenantRecord, nodes: list[TenantNode], host: str, hosts: dict[str, HostInfo]
    ) -> tuple[OverlayPeer, ...]:
        macs: dict[str, list[str]] = {}
        for node in nodes:
            other = record.assignments.get(node.name)
            if other is not None and other != host:
                macs.setdefault(other, []).append(node.mac)
        return tuple(
            OverlayPeer(
                host=other,
                underlay=hosts[other].underlay if other in hosts else "",
                enrolled=HostService.enrolled_underlay(self.store, other),
                macs=tuple(sorted(found)),
            )
            for other, found in sorted(macs.items())
        )

    # -- helpers ------------------------------------------------------------------------

    def view(self, record: TenantRecord, hosts: list[HostInfo] | None = None) -> dict[str, Any]:
        """The TenantCluster document with its computed status."""
        hosts = self.store.list_hosts() if hosts is None else hosts
        computed = record.status(hosts, self.clock())
        hidden = {"rollout"} if computed.rollout is None else set()
        status = computed.model_dump(mode="json", exclude=hidden)
        return record.tenant.model_dump(mode="json", exclude={"status"}) | {"status": status}

    def _advanced(self, tx: Tx, record: TenantRecord) -> TenantRecord:
        """The record with its rollout moved on, when every node is ready for the next step."""
        if not record.rollout.members or record.deleting:
            return record
        lapsed = lapsed_nodes(dict(record.assignments), tx.list_hosts(), now=self.clock())
        return record.advanced(lapsed)

    @staticmethod
    def _record(tx_or_store: Tx | Store, name: str) -> TenantRecord:
        record = tx_or_store.get_tenant(name)
        if record is None:
            raise NotFound("no such tenant", {"name": name})
        return record

    def _images(self) -> dict[str, ImageInfo]:
        return {
            name: ImageInfo(name, image.min_memory_mib)
            for name, image in self.settings.tenant_images.items()
        }

    def place_nodes(self, tx: Tx, hosts_before: list[HostInfo] | None = None) -> None:
        """Place every tenant's nodes on the known hosts and store their conditions (in the
        caller's transaction); `hosts_before`: the hosts before the caller changed them, whose
        view of the conditions is stored first."""
        now = self.clock()
        hosts = tx.list_hosts()
        records = tx.list_tenants()
        live = [r for r in records if not r.deleting]
        nodes = [n for r in live for n in tenant_nodes(r.tenant)]
        existing = {n: h for r in live for n, h in r.assignments.items()}
        placed = place(nodes, hosts, existing, now=now)
        for record in records:
            changed = record
            if hosts_before is not None:
                changed = changed.refreshed(hosts_before, now)
            if not record.deleting:
                names = {n.name for n in tenant_nodes(record.tenant)}
                wanted = {n: h for n, h in placed.items() if n in names}
                changed = dataclasses.replace(changed, assignments=wanted)
            changed = changed.refreshed(hosts, now)
            if changed != record:
                tx.put_tenant(changed)

    def _store_or_purge(self, tx: Tx, record: TenantRecord) -> TenantRecord:
        """Keep a tenant's record with its conditions, or purge it once it is `purgeable`.
        The caller removes a purged tenant's PKI after the commit (`_after_purge`)."""
        if record.purgeable:
            tx.delete_tenant(record.name)
            return record
        record = record.refreshed(tx.list_hosts(), self.clock())
        tx.put_tenant(record)
        return record

    def _after_purge(self, record: TenantRecord) -> TenantRecord:
        """After the commit: a purged tenant's PKI (its CA keys) goes too."""
        if record.purgeable:
            self._forget_pki(record.name)
        return record

    def _pki_dir(self, name: str) -> Path:
        return self._tenant_dir(name) / "pki"

    def _tenant_dir(self, name: str) -> Path:
        return self.settings.data_path / "tenants" / name

    def _forget_pki(self, name: str) -> None:
        if self.shared is not None:
            self.shared.forget(_shared_name(name))
        shutil.rmtree(self._tenant_dir(name), ignore_errors=True)


def _kept_network(tenant: TenantCluster, network: dict[str, Any]) -> dict[str, Any]:
    """A patched spec.network with what the server assigned that the patch does not name:
    the VNI and, on the same CIDR, the addresses (`kept_addresses`)."""
    kept = kept_addresses(tenant, network)
    if kept.get("vni") is None:
        kept["vni"] = tenant.spec.network.vni
    return kept


def _shared_name(tenant: str) -> str:
    """The store's shared record of a tenant's CAs."""
    return f"tenant-pki:{tenant}"
