"""Tenant clusters and agent hosts on the server: validation, placement, status, node Ignition.

A stored tenant record is {"doc": TenantCluster without status, "assignments": {node: host},
"nodes": {node: reported status}, "deleting": bool}. Placement runs in the same transaction
as every change that can affect it (tenant created or changed, host heartbeat).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mayu_py.config import Settings
from mayu_py.errors import BadRequest, NotFound, Unprocessable
from mayu_py.nodeconfig import render_tenant_node
from mayu_py.pki import ClusterFacts, ClusterPKI
from mayu_py.render import IgnitionRenderer
from mayu_py.store import Store, Tx
from mayu_py.tenant import (
    HostInfo,
    ImageInfo,
    TenantCluster,
    desired_node_json,
    lapsed_nodes,
    parse_tenant,
    place,
    tenant_nodes,
)

NODE_STATES = (
    "pending",
    "defined",
    "running",
    "ready",
    "shutoff",
    "crashed",
    "paused",
    "failed",
    "deleted",
)


def _hosts(tx_or_store: Tx | Store) -> list[HostInfo]:
    return [
        HostInfo(h["name"], int(h["cpus"]), int(h["memory_mib"]), float(h["last_seen"]))
        for h in tx_or_store.list_hosts()
    ]


class TenantService:
    """The server side of level 2."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        renderer: IgnitionRenderer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.clock = clock

    # -- tenants ------------------------------------------------------------------------

    def create(self, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise Unprocessable("invalid TenantCluster", {"": "must be a mapping"})
        doc = {k: v for k, v in doc.items() if k != "status"}
        meta = dict(doc.get("metadata") or {})
        meta["generation"] = 1
        doc["metadata"] = meta

        def txn(tx: Tx) -> dict[str, Any]:
            records = tx.list_tenants()
            name = meta.get("name")
            if any(r["doc"]["metadata"]["name"] == name for r in records):
                raise Unprocessable("tenant exists", {"metadata.name": f"{name!r} already exists"})
            tenant = parse_tenant(doc, self._images(), self._parsed(records))
            record = {
                "doc": tenant.model_dump(exclude={"status"}),
                "assignments": {},
                "nodes": {},
                "deleting": False,
            }
            tx.put_tenant(tenant.name, record)
            self._place(tx)
            return tx.get_tenant(tenant.name) or record

        return self.view(self.store.atomically(txn))

    def update_spec(self, name: str, spec_patch: Any) -> dict[str, Any]:
        """Merge a partial spec into the tenant; a change bumps metadata.generation."""
        if not isinstance(spec_patch, dict):
            raise BadRequest('body must be {"spec": {...}}')

        def txn(tx: Tx) -> dict[str, Any]:
            record = self._record(tx, name)
            others = [r for r in tx.list_tenants() if r["doc"]["metadata"]["name"] != name]
            doc = record["doc"]
            spec = {**doc["spec"], **spec_patch}
            if spec != doc["spec"]:
                meta = {**doc["metadata"], "generation": doc["metadata"]["generation"] + 1}
                candidate = {**doc, "metadata": meta, "spec": spec}
                tenant = parse_tenant(candidate, self._images(), self._parsed(others))
                record["doc"] = tenant.model_dump(exclude={"status"})
                names = {n.name for n in tenant_nodes(tenant)}
                record["assignments"] = {
                    n: h for n, h in record["assignments"].items() if n in names
                }
                tx.put_tenant(name, record)
                self._place(tx)
            return tx.get_tenant(name) or record

        return self.view(self.store.atomically(txn))

    def delete(self, name: str) -> dict[str, Any]:
        """Mark a tenant for deletion; agents remove its VMs, disks, network and secrets."""

        def txn(tx: Tx) -> dict[str, Any]:
            record = self._record(tx, name)
            record["deleting"] = True
            self._store_or_purge(tx, name, record)
            return record

        return self.view(self.store.atomically(txn))

    def get(self, name: str) -> dict[str, Any]:
        record = self.store.get_tenant(name)
        if record is None:
            raise NotFound("no such tenant", {"name": name})
        return self.view(record)

    def list(self) -> list[dict[str, Any]]:
        hosts = _hosts(self.store)
        return [self.view(r, hosts) for r in self.store.list_tenants()]

    def report_node(self, tenant: str, node: str, body: Any) -> dict[str, Any]:
        """An agent reports a node's observed state; deleted nodes of a deleting tenant go."""
        if not isinstance(body, dict) or body.get("state") not in NODE_STATES:
            raise BadRequest("state must be one of " + ", ".join(NODE_STATES))

        def txn(tx: Tx) -> dict[str, Any]:
            record = self._record(tx, tenant)
            record["nodes"][node] = {
                "state": body["state"],
                "ip": body.get("ip"),
                "host": body.get("host"),
                "message": str(body.get("message") or "")[:500],
                "generation": body.get("generation"),
                "updated": self.clock(),
            }
            self._store_or_purge(tx, tenant, record)
            return record

        return self.view(self.store.atomically(txn))

    def node_ignition(self, tenant_name: str, node_name: str) -> bytes:
        """A tenant node's Ignition, with certificates from the tenant's own PKI."""
        record = self._record(self.store, tenant_name)
        tenant = TenantCluster.model_validate(record["doc"])
        return render_tenant_node(tenant, node_name, self.tenant_pki(tenant.name), self.renderer)

    def host_of(self, tenant: str, node: str) -> str | None:
        """The host a node is placed on (None when unplaced); NotFound for an unknown tenant."""
        return self._record(self.store, tenant)["assignments"].get(node)

    def tenant_pki(self, name: str) -> ClusterPKI:
        return ClusterPKI.load_or_create(self._pki_dir(name), name)

    def admin_kubeconfig(self, name: str) -> str:
        record = self._record(self.store, name)
        tenant = TenantCluster.model_validate(record["doc"])
        master = next(n for n in tenant_nodes(tenant) if n.role == "master")
        facts = ClusterFacts(
            name=name,
            domain="cluster.local",
            service_ip="10.96.0.1",
            api_endpoint=f"https://{master.ip}:6443",
        )
        return self.tenant_pki(name).admin_kubeconfig(facts)

    # -- hosts --------------------------------------------------------------------------

    def heartbeat(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        try:
            record = {
                "name": str(body["name"]),
                "cpus": int(body["cpus"]),
                "memory_mib": int(body["memory_mib"]),
                "address": str(body.get("address") or ""),
                "last_seen": self.clock(),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest("host needs name, cpus, memory_mib", {"error": str(exc)}) from exc

        def txn(tx: Tx) -> dict[str, Any]:
            tx.put_host(record)
            self._place(tx)
            return record

        return self.store.atomically(txn)

    def list_hosts(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [
            h | {"alive": info.alive(now)}
            for h, info in zip(self.store.list_hosts(), _hosts(self.store), strict=True)
        ]

    def desired_for_host(self, host: str) -> list[dict[str, Any]]:
        result = []
        for record in self.store.list_tenants():
            if record["deleting"]:
                continue
            tenant = TenantCluster.model_validate(record["doc"])
            for node in tenant_nodes(tenant):
                if record["assignments"].get(node.name) == host:
                    result.append(desired_node_json(tenant, node))
        return result

    # -- helpers ------------------------------------------------------------------------

    def view(self, record: dict[str, Any], hosts: list[HostInfo] | None = None) -> dict[str, Any]:
        """The TenantCluster document with its computed status."""
        tenant = TenantCluster.model_validate(record["doc"])
        assignments = record["assignments"]
        hosts = _hosts(self.store) if hosts is None else hosts
        lapsed = lapsed_nodes(assignments, hosts, now=self.clock())
        nodes = []
        for node in tenant_nodes(tenant):
            reported = record["nodes"].get(node.name, {})
            state = "unknown" if node.name in lapsed else reported.get("state", "pending")
            nodes.append(
                {
                    "name": node.name,
                    "role": node.role,
                    "host": assignments.get(node.name),
                    "state": state,
                    "ip": reported.get("ip") or None,
                }
            )
        states = {n["state"] for n in nodes}
        if record["deleting"]:
            phase = "Deleting"
        elif states == {"ready"}:
            phase = "Ready"
        elif states & {"failed", "crashed", "unknown"}:
            phase = "Degraded"
        else:
            phase = "Provisioning"
        generations = [record["nodes"].get(n["name"], {}).get("generation") or 0 for n in nodes]
        doc = dict(record["doc"])
        doc["status"] = {
            "phase": phase,
            "observedGeneration": min(generations, default=0),
            "nodes": nodes,
        }
        return doc

    def _record(self, tx_or_store: Tx | Store, name: str) -> dict[str, Any]:
        record = tx_or_store.get_tenant(name)
        if record is None:
            raise NotFound("no such tenant", {"name": name})
        return record

    def _images(self) -> dict[str, ImageInfo]:
        return {
            name: ImageInfo(name, image.min_memory_mib)
            for name, image in self.settings.tenant_images.items()
        }

    @staticmethod
    def _parsed(records: list[dict[str, Any]]) -> list[TenantCluster]:
        return [TenantCluster.model_validate(r["doc"]) for r in records]

    def _place(self, tx: Tx) -> None:
        records = [r for r in tx.list_tenants() if not r["deleting"]]
        nodes, existing = [], {}
        for record in records:
            nodes += tenant_nodes(TenantCluster.model_validate(record["doc"]))
            existing.update(record["assignments"])
        placed = place(nodes, _hosts(tx), existing, now=self.clock())
        for record in records:
            tenant = TenantCluster.model_validate(record["doc"])
            wanted = {n.name: placed[n.name] for n in tenant_nodes(tenant) if n.name in placed}
            if wanted != record["assignments"]:
                record["assignments"] = wanted
                tx.put_tenant(tenant.name, record)

    def _store_or_purge(self, tx: Tx, name: str, record: dict[str, Any]) -> None:
        """Keep a tenant's record, or purge it (with its PKI) once it is deleting and no
        agent still holds one of its nodes: each reported `deleted` or never reported at all
        (an agent that never saw a node has nothing to remove; one that did reports it)."""
        gone = all(
            record["nodes"].get(node, {}).get("state", "deleted") == "deleted"
            for node in record["assignments"]
        )
        if record["deleting"] and gone:
            tx.delete_tenant(name)
            self._forget_pki(name)
        else:
            tx.put_tenant(name, record)

    def _pki_dir(self, name: str) -> Path:
        return self.settings.data_path / "tenants" / name / "pki"

    def _forget_pki(self, name: str) -> None:
        shutil.rmtree(self.settings.data_path / "tenants" / name, ignore_errors=True)
