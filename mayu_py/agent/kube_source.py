"""Desired state from TenantCluster objects in a Kubernetes API server (the `kubernetes` client).

The shipped CRD (static_manifests/crds/tenantcluster.yaml) is cluster-scoped, so every call is
a cluster-scoped custom-object call. Each `desired_nodes()` lists the objects afresh (level
triggered); a background watch only wakes the agent loop early through `wake_event`.

Scope: one host per tenant cluster. The tenant's PKI lives on the host that renders its nodes'
Ignition (`pki_root/<tenant>`), so an agent claims a tenant only when no node of it is
assigned to another host, and a fresh tenant only when all its nodes fit here. Claims are
written to `status.nodes[].host` with the object's resourceVersion as a precondition, so two
agents racing for a tenant cannot both win (the loser gets 409 and sees the claim next pass).

A spec change that gives running nodes new VMs (version, size, image) is rolled out as the
server does it (mayu_py.tenants.rollout): the changed nodes stay pinned to the revision they
run and are handed out one at a time, masters first, each once every node is ready again. The
pins are kept in the tenant's directory on this host (mayu_py.agent.tenant_book); progress is
written to `status.rollout`. The drain hook's credential comes from the tenant's PKI here:
a short-lived client certificate for this host's drain identity (`drain_kubeconfig`).

Node addresses and the VNI are the server's rule (mayu_py.tenants.addresses) with the record
as the store: every node the object names no address for (and the ingress address, if it names
none) keeps the record's on the same CIDR (`kept_addresses`), new nodes get free ones around
the addresses of removed nodes not yet reported deleted (`TenantRecord.held_addresses`), and
an object naming no VNI keeps the one picked for it on its first pass (the lowest that no
other tenant known here names or keeps; a new one only if an older tenant names it since).
The object itself is never written.

The record is mirrored in the object's `status.applied` (JSON text: its spec with generation,
addresses and VNI, the nodes' last reports with the generation each runs, the rollout),
written with the status change of the pass or report that changes it. An agent that finds no
record (its state lost, its host rebuilt around running VMs) restores it from there when the
tenant is claimed by this host: a change made meanwhile is then a change from what runs,
pinned and rolled one node at a time, a rollout under way goes on where it was, and the
addresses and VNI stay. Without `status.applied` (an agent upgraded from before it)
the record is seeded from `status.nodes` with the current spec as what runs: the next change
rolls, but one made before that first pass is taken as what runs already (its nodes replaced
at once, as their VMs differ). Left open: a record lost between its change and the status
write of the same pass (the mirror one step behind).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from mayu_py.agent.tenant_book import TenantBook
from mayu_py.errors import Conflict, MayuError, NotFound, PeerUnavailable, Unprocessable
from mayu_py.pki import ClusterPKI
from mayu_py.pki.identity import is_ip
from mayu_py.render import IgnitionRenderer
from mayu_py.tenants import (
    HostInfo,
    HostRegistration,
    ImageInfo,
    NodeReport,
    NodeState,
    Phase,
    ReportedNode,
    TenantCluster,
    TenantNode,
    TenantRecord,
    parse_tenant,
    phase_of,
    place,
    tenant_nodes,
)
from mayu_py.tenants.conditions import NodeFacts, node_conditions, stamp, tenant_conditions
from mayu_py.tenants.ignition import admin_facts, render_tenant_node
from mayu_py.tenants.nodes import node_names
from mayu_py.tenants.resource import Condition, NodeStatus, Role
from mayu_py.tenants.rollout import desired_nodes, rollout_status
from mayu_py.tenants.validation import free_vni, kept_addresses

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "mayu.io", "v1alpha1", "tenantclusters"
FIELD_MANAGER = "mayu-agent"
VALID = "Valid"
_GONE = 410
_TEMPORARY = {429, 500, 502, 503, 504}
_REPORT_ATTEMPTS = 3


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _sort_key(obj: dict[str, Any]) -> tuple[str, str]:
    """Oldest first: the older of two conflicting tenants (overlapping CIDR, VNI) is valid."""
    meta = _meta(obj)
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def _state(value: Any) -> NodeState:
    """A status.nodes[] state as written; `pending` when absent or not a node state."""
    try:
        return NodeState(value)
    except ValueError:
        return NodeState.PENDING


def _phase(nodes: list[dict[str, Any]], deleting: bool = False) -> Phase:
    return phase_of((_state(n.get("state")) for n in nodes), deleting=deleting)


def _conditions(holder: dict[str, Any]) -> list[Condition]:
    """The conditions an object or status.nodes[] item carries (unreadable ones left out)."""
    found = []
    for item in holder.get("conditions") or []:
        try:
            found.append(Condition.model_validate(item))
        except ValueError:  # pydantic's ValidationError is one
            continue
    return found


def _entry(
    node: tuple[Role, str],
    old: dict[str, Any],
    host: str | None,
    conditions: list[Condition] | None = None,
) -> dict[str, Any]:
    """A status.nodes[] item for node (role, name); absent keys rather than nulls (the CRD
    types them as strings); its conditions as given, else as they were."""
    role, name = node
    status = NodeStatus(
        name=name,
        role=role,
        host=host or None,
        state=_state(old.get("state")),
        ip=old.get("ip") or None,
        conditions=_conditions(old) if conditions is None else conditions,
    )
    return status.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {
        "name": name,
        "role": role,
        "state": str(status.state),
    }


def _facts(entry: dict[str, Any]) -> NodeFacts:
    """What a status.nodes[] item says of its node, for the tenant's conditions."""
    ready = next((c for c in _conditions(entry) if c.type == "Ready"), None)
    return NodeFacts(
        str(entry.get("name")),
        _state(entry.get("state")),
        entry.get("host") or None,
        ready.reason if ready else "",
        ready.message if ready else "",
    )


class KubernetesSource:
    """A DesiredSource backed by TenantCluster objects; renders Ignition locally."""

    def __init__(
        self,
        host_name: str,
        api_client: client.ApiClient,
        *,
        pki_root: Path | str,
        renderer: IgnitionRenderer | None = None,
        watch: bool = True,
        watch_timeout_s: int = 300,
        request_timeout_s: float = 10.0,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host_name = host_name
        self.api = client.CustomObjectsApi(api_client)
        self.pki_root = Path(pki_root)
        self.renderer = renderer or IgnitionRenderer()
        self.wake_event = threading.Event()
        self.watch_enabled = watch
        self.watch_timeout_s = watch_timeout_s
        self.request_timeout_s = request_timeout_s
        self.retry_s = retry_s
        self.clock = clock
        self.relists = 0  # lists the watch thread needed (410 Gone: resume point too old)
        self._host: HostInfo | None = None
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantCluster] = {}  # valid tenants of the last list
        self._carried: set[str] = set()  # live tenants with nodes here, as of the last pass
        self._pkis: dict[str, ClusterPKI] = {}
        self.book = TenantBook(self.pki_root)  # per tenant: its revision, pins, reports
        self._seen: dict[str, tuple[int, str | None]] = {}  # name -> (generation, deleting)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None

    # -- DesiredSource ------------------------------------------------------------------

    def register(self, host: HostRegistration) -> None:
        """Remember this host's capacity for placement (Kubernetes has no host registry)."""
        self._host = HostInfo.seen(host, self.clock())

    def desired_nodes(self) -> list[TenantNode]:
        items, version = self._list()
        with self._lock:
            self._seen = {str(_meta(o).get("name")): _identity(o) for o in items}
        self._start_watch(version)
        names = {str(_meta(o).get("name")) for o in items}
        self._prune_pki(names)
        valid = self._validate(items)
        with self._lock:
            self._tenants = {t.name: t for _, t in valid}
        live = [(o, t) for o, t in valid if not _meta(o).get("deletionTimestamp")]
        claimed = self._claim(live)
        tenants = {n.tenant for n in claimed}
        with self._lock:
            self._carried = tenants
        rolled = {
            t.name: {n.name: n for n in desired_nodes(t, self._step(o, t).rollout)}
            for o, t in live
            if t.name in tenants
        }
        return [rolled[n.tenant].get(n.name, n) for n in claimed]

    def ignition(self, node: TenantNode) -> bytes:
        with self._lock:
            tenant = self._tenants.get(node.tenant)
        record = self.book.get(node.tenant)
        pinned = record.rollout.pins.get(node.name) if record else None
        if record is not None and pinned is not None:
            tenant = record.rollout.revisions[pinned]  # still the revision it runs
        elif tenant is None or tenant.metadata.generation < node.generation:
            obj = self._call("get", self.api.get_cluster_custom_object, node.tenant)
            try:
                tenant = self._parsed(obj, [])  # the addresses its next pass assigns
            except (Unprocessable, Conflict) as exc:
                raise Unprocessable(f"TenantCluster {node.tenant} is invalid", exc.detail) from exc
        return render_tenant_node(tenant, node.name, self._pki(tenant.name), self.renderer)

    def drain_kubeconfig(self, tenant: str) -> str:
        """This host's drain kubeconfig for the tenant (mayu_py.agent.drain): a short-lived
        client certificate from the tenant's CA for the drain identity, not the admin one,
        built afresh for each drain (issued anew near its end: ClusterPKI). NotFound unless
        the tenant is live and has nodes here, as the server has it."""
        with self._lock:
            found = self._tenants.get(tenant) if tenant in self._carried else None
        if found is None:
            raise NotFound(f"TenantCluster {tenant} is not run here", {"tenant": tenant})
        return self._pki(tenant).drainer_kubeconfig(self.host_name, admin_facts(found))

    def report(self, report: NodeReport) -> None:
        """Write the node's state into status.nodes, then the tenant's phase and rollout."""
        record = self._reported(report)
        for _ in range(_REPORT_ATTEMPTS):
            obj = self._call("get", self.api.get_cluster_custom_object, report.tenant)
            status = dict(obj.get("status") or {})
            old = {n.get("name"): n for n in status.get("nodes") or []}
            now = self.clock()
            nodes = _reported_nodes(obj, old, report, now)
            status["nodes"] = nodes
            deleting = bool(_meta(obj).get("deletionTimestamp"))
            if deleting or nodes:
                status["phase"] = str(_phase(nodes, deleting))
                own = tenant_conditions([_facts(n) for n in nodes], deleting=deleting)
                before = _conditions(status)
                valid = [c.model_dump(mode="json") for c in before if c.type == VALID]
                ours = [c.model_dump(mode="json") for c in stamp(own, before, now)]
                status["conditions"] = valid + ours
            if status.get("phase") == Phase.READY:
                status["observedGeneration"] = _observed(record, nodes, status)
            if record is not None and (record.rollout.members or "rollout" in status):
                status["rollout"] = _rollout_view(record)
            if record is not None:
                status["applied"] = _applied(record)
            try:
                self._patch_status(obj, status)
                return
            except Conflict:
                log.debug("status of %s changed meanwhile; reporting again", report.tenant)
        raise Conflict(f"status of tenant {report.tenant} kept changing; report retried later")

    # -- rolling replacement -------------------------------------------------------------

    def _step(self, obj: dict[str, Any], tenant: TenantCluster) -> TenantRecord:
        """The tenant's record after this pass: a new revision pins the nodes it changes, a
        settled tenant releases the next node; kept before its nodes are handed out, and
        `status.rollout` and `status.applied` brought up to date."""
        before = self.book.get(tenant.name)
        if before is None:
            record = TenantRecord(tenant, nodes=_seeded(obj, tenant, self.host_name, self.clock()))
        elif before.tenant != tenant:
            record = before.with_spec(tenant)
        else:
            record = before
        record = record.advanced()
        self.book.put(record)
        status = obj.get("status") or {}
        changed = {"rollout": _rollout_view(record), "applied": _applied(record)}
        changed = {k: v for k, v in changed.items() if v != status.get(k)}
        if changed:
            body = {"status": changed}  # merge patch: only these (a null rollout: gone)
            try:
                self._call(
                    "patch status of",
                    self.api.patch_cluster_custom_object_status,
                    tenant.name,
                    body,
                    field_manager=FIELD_MANAGER,
                )
            except MayuError as exc:  # the next pass writes it again
                log.warning("could not write the rollout of %s: %s", tenant.name, exc.message)
        return record

    def _reported(self, report: NodeReport) -> TenantRecord | None:
        """The tenant's record with the report in; a report that lets the rollout go on wakes
        the loop, which hands out the next node."""
        before = self.book.get(report.tenant)
        if before is None:
            return None
        nodes = {**before.nodes, report.node: ReportedNode(report, self.clock())}
        record = dataclasses.replace(before, nodes=nodes).advanced()
        self.book.put(record)
        if record.rollout != before.rollout:
            self.wake_event.set()
        return record

    # -- watch --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the watch thread."""
        self._stop.set()
        current = self._watch
        if current is not None:
            current.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _start_watch(self, version: str) -> None:
        if not self.watch_enabled or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._watch_loop, args=(version,), name="mayu-kube-watch", daemon=True
        )
        self._thread.start()

    def _watch_loop(self, start: str) -> None:
        version: str | None = start or None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist()
                started = time.monotonic()
                version = self._watch_once(version)
                if time.monotonic() - started < 1.0:
                    self._stop.wait(1.0)  # a watch the server ends at once: do not spin
            except ApiException as exc:
                if exc.status == _GONE:
                    log.info("watch of %s expired (410 Gone): listing again", PLURAL)
                    version = None
                    continue
                log.warning("watch of %s failed: %s %s", PLURAL, exc.status, exc.reason)
                self._stop.wait(self.retry_s)
            except Exception as exc:  # the thread must outlive any one bad watch
                if self._stop.is_set():
                    return
                log.warning("watch of %s interrupted: %r; retrying", PLURAL, exc)
                self._stop.wait(self.retry_s)

    def _relist(self) -> str:
        items, version = self._list()
        self.relists += 1
        with self._lock:
            self._seen = {str(_meta(o).get("name")): _identity(o) for o in items}
        self.wake_event.set()  # changes may have been missed while not watching
        return version

    def _watch_once(self, version: str) -> str:
        """Stream events from `version` until the server ends the watch; the last version."""
        current = watch.Watch()
        self._watch = current
        stream = current.stream(
            self.api.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout_s,
            _request_timeout=(self.request_timeout_s, self.watch_timeout_s + 30),
        )
        try:
            for event in stream:
                if self._stop.is_set():
                    break
                if not isinstance(event, dict):
                    continue  # a blank keep-alive line
                obj = event.get("raw_object") or {}
                version = str(_meta(obj).get("resourceVersion") or version)
                if self._relevant(event.get("type", ""), obj):
                    self.wake_event.set()
        finally:
            self._watch = None
        return version

    def _relevant(self, kind: str, obj: dict[str, Any]) -> bool:
        """Spec, deletion and existence changes matter; status-only writes (ours) do not."""
        name = str(_meta(obj).get("name"))
        with self._lock:
            if kind == "DELETED":
                self._seen.pop(name, None)
                return True
            if kind not in ("ADDED", "MODIFIED"):
                return False
            before = self._seen.get(name)
            self._seen[name] = _identity(obj)
        log.debug("%s %s (generation %s)", kind, name, _meta(obj).get("generation"))
        return before != _identity(obj)

    # -- helpers ------------------------------------------------------------------------

    def _call(self, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call with errors translated at the boundary (kinds: temporary/permanent)."""
        try:
            return func(
                GROUP, VERSION, PLURAL, *args, _request_timeout=self.request_timeout_s, **kwargs
            )
        except ApiException as exc:
            where = f"{what} {PLURAL}.{GROUP} {' '.join(map(str, args[:1]))}".strip()
            detail = {"status": exc.status, "reason": exc.reason, "body": str(exc.body)[:500]}
            if exc.status == 404:
                raise NotFound(f"{where}: not found", detail) from exc
            if exc.status == 409:
                raise Conflict(f"{where}: conflict", detail) from exc
            if exc.status in _TEMPORARY or not exc.status:
                raise PeerUnavailable(f"{where}: {exc.status} {exc.reason}", detail) from exc
            raise MayuError(f"{where}: {exc.status} {exc.reason}", detail) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PeerUnavailable(f"Kubernetes API not reachable ({what} {PLURAL}): {exc}") from exc

    def _list(self) -> tuple[list[dict[str, Any]], str]:
        result = self._call("list", self.api.list_cluster_custom_object)
        items = list(result.get("items") or [])
        return items, str((result.get("metadata") or {}).get("resourceVersion") or "")

    def _validate(self, items: list[dict[str, Any]]) -> list[tuple[dict[str, Any], TenantCluster]]:
        """Valid tenants, oldest first; an invalid one is logged and marked Valid=False."""
        valid: list[tuple[dict[str, Any], TenantCluster]] = []
        known = self._known_vnis(items)
        for obj in sorted(items, key=_sort_key):
            try:
                tenant = self._parsed(obj, [t for _, t in valid], known)
            except (Unprocessable, Conflict) as exc:
                name = _meta(obj).get("name")
                log.debug("skipping invalid TenantCluster %s: %s", name, exc.detail)
                self._set_condition(obj, "False", "Invalid", _describe(exc.detail))
                continue
            valid.append((self._set_condition(obj, "True", "Valid", ""), tenant))
        return valid

    def _parsed(
        self,
        obj: dict[str, Any],
        existing: list[TenantCluster],
        known: Sequence[tuple[str, int]] = (),
    ) -> TenantCluster:
        """The object as a valid tenant (`parse_tenant`; Unprocessable or Conflict), with the
        addresses and VNI its record keeps, new nodes' addresses allocated around the held
        ones, and a VNI picked once when it names none and has none (`_with_kept_network`)."""
        name = str(_meta(obj).get("name"))
        record = self._record(obj)
        taken = {t.spec.network.vni for t in existing if t.name != name}
        others = taken | {vni for owner, vni in known if owner != name}
        doc = _with_kept_network(_without_status(obj), record, taken, others)
        held = record.held_addresses if record is not None else ()
        return parse_tenant(doc, _any_image(doc), existing, held)

    def _record(self, obj: dict[str, Any]) -> TenantRecord | None:
        """The tenant's record: this host's, else the one its object's `status.applied`
        mirrors when nodes of it run here (restored into the book: see the module doc)."""
        name = str(_meta(obj).get("name"))
        record = self.book.get(name)
        if record is None and (restored := _restored(obj, self.host_name)):
            log.warning("tenant %s: no record here, restored from its status.applied", name)
            self.book.put(restored)
            record = restored
        return record

    def _known_vnis(self, items: list[dict[str, Any]]) -> list[tuple[str, int]]:
        """(tenant, VNI) of every tenant known here: the VNIs the objects name and those
        their records keep."""
        known = []
        for obj in items:
            name = str(_meta(obj).get("name"))
            if (named := _named_vni(obj)) is not None:
                known.append((name, named))
            record = self._record(obj)
            if record is not None and record.tenant.spec.network.vni is not None:
                known.append((name, record.tenant.spec.network.vni))
        return known

    def _set_condition(
        self, obj: dict[str, Any], state: str, reason: str, message: str
    ) -> dict[str, Any]:
        """Keep a Valid condition current; written only when it changes (or is new and False).
        Returns the object as it is now (patched or not)."""
        status = dict(obj.get("status") or {})
        conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
        old = next((c for c in conditions if c.get("type") == VALID), None)
        if old is None and state == "True":
            return obj  # nothing to correct: valid objects carry no condition until one was False
        if old and (old.get("status"), old.get("reason"), old.get("message")) == (
            state,
            reason,
            message,
        ):
            return obj
        if state == "False":
            log.warning("TenantCluster %s is invalid: %s", _meta(obj).get("name"), message)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        new = {"type": VALID, "status": state, "reason": reason, "message": message}
        new["lastTransitionTime"] = now
        status["conditions"] = [c for c in conditions if c.get("type") != VALID] + [new]
        if state == "False":
            status["phase"] = str(Phase.INVALID)
        elif status.get("phase") == Phase.INVALID:
            status["phase"] = str(Phase.PENDING)
        try:
            return self._patch_status(obj, status)
        except (Conflict, NotFound):
            self.wake_event.set()  # changed or gone meanwhile: the next pass sees it
        except MayuError as exc:
            log.warning("could not mark %s: %s", _meta(obj).get("name"), exc.message)
        return obj

    def _claim(self, live: list[tuple[dict[str, Any], TenantCluster]]) -> list[TenantNode]:
        """Nodes assigned to this host, after claiming what fits here (see module doc)."""
        me = self.host_name
        # unregistered: a host without capacity keeps existing claims and takes nothing new
        hosts = [self._host or HostInfo(me, 0, 0, self.clock())]
        mine: list[TenantNode] = []  # nodes already placed here (their usage counts)
        assigned: dict[str, str] = {}
        candidates = []
        for obj, tenant in live:
            nodes = tenant_nodes(tenant)
            names = {n.name for n in nodes}
            entries = {n.get("name"): n for n in (obj.get("status") or {}).get("nodes") or []}
            hosts_of = {k: e["host"] for k, e in entries.items() if k in names and e.get("host")}
            if any(h != me for h in hosts_of.values()):
                continue  # another host's tenant
            candidates.append((obj, tenant, nodes, entries, hosts_of))
            mine += [n for n in nodes if n.name in hosts_of]
            assigned.update(hosts_of)
        # tenants already here first (they grow in place), then new ones, oldest first
        candidates.sort(key=lambda c: (not c[4], _sort_key(c[0])))
        result: list[TenantNode] = []
        for obj, tenant, nodes, entries, hosts_of in candidates:
            fresh = [n for n in nodes if n.name not in assigned]
            placed = place(mine + fresh, hosts, assigned, now=self.clock())
            wanted = {n.name: me for n in nodes if placed.get(n.name) == me}
            if not hosts_of and len(wanted) < len(nodes):
                log.info(
                    "tenant %s does not fit on %s; leaving it to another host", tenant.name, me
                )
                continue
            status_nodes = [
                _entry((n.role, n.name), entries.get(n.name) or {}, wanted.get(n.name))
                for n in nodes
            ]
            if status_nodes != list(entries.values()):
                status = dict(obj.get("status") or {})
                status["nodes"] = status_nodes
                status["phase"] = str(_phase(status_nodes))
                try:
                    self._patch_status(obj, status)
                except (Conflict, NotFound):
                    log.info("tenant %s changed while claiming it; retrying", tenant.name)
                    self.wake_event.set()
                    wanted = hosts_of  # only what is persisted counts
            for node in nodes:
                if node.name in wanted and node.name not in assigned:
                    mine.append(node)
                    assigned[node.name] = me
            result += [n for n in nodes if n.name in wanted]
        return result

    def _patch_status(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource, conditional on the object's resourceVersion."""
        body = {"metadata": {"resourceVersion": _meta(obj).get("resourceVersion")}}
        body["status"] = status
        return self._call(
            "patch status of",
            self.api.patch_cluster_custom_object_status,
            _meta(obj).get("name"),
            body,
            field_manager=FIELD_MANAGER,
        )

    def _pki(self, tenant: str) -> ClusterPKI:
        with self._lock:
            pki = self._pkis.get(tenant)
            if pki is None:
                pki = ClusterPKI.load_or_create(self.pki_root / tenant, tenant)
                self._pkis[tenant] = pki
            return pki

    def _prune_pki(self, names: set[str]) -> None:
        """Forget the PKI (CA keys included) of tenants that no longer exist."""
        if not self.pki_root.is_dir():
            return
        for path in self.pki_root.iterdir():
            if path.is_dir() and path.name not in names:
                log.info("tenant %s is gone: removing its PKI %s", path.name, path)
                with self._lock:
                    self._pkis.pop(path.name, None)
                self.book.forget(path.name)
                shutil.rmtree(path, ignore_errors=True)


def _reported_nodes(
    obj: dict[str, Any], old: dict[str, dict[str, Any]], report: NodeReport, now: float
) -> list[dict[str, Any]]:
    """status.nodes with the report applied (its conditions as of `now`): the spec's nodes
    in order (a `deleted` node dropped), or for an object that no longer validates just the
    old entries."""
    try:  # names only: an object need not name every node's address
        nodes = node_names(TenantCluster.model_validate(_without_status(obj)))
    except ValueError:  # pydantic's ValidationError is one
        return [n for n in old.values() if n.get("name") != report.node]
    result = []
    for node in nodes:
        name = node[1]
        before = old.get(name) or {}
        if name != report.node:
            result.append(_entry(node, before, before.get("host")))
        elif report.state != NodeState.DELETED:
            facts = NodeFacts(name, report.state, report.host, report.reason, report.message)
            conditions = stamp(node_conditions(facts), _conditions(before), now)
            entry = {"state": report.state, "ip": report.ip}
            result.append(_entry(node, entry, report.host, conditions))
    return result


def _observed(
    record: TenantRecord | None, nodes: list[dict[str, Any]], status: dict[str, Any]
) -> int:
    """The oldest generation this host reported for the tenant's nodes (all ready)."""
    reports = record.reports if record is not None else {}
    gens = [r.generation if (r := reports.get(n["name"])) else 0 for n in nodes]
    previous = int(status.get("observedGeneration") or 0)
    return min(gens) if gens and min(gens) > 0 else previous


def _rollout_view(record: TenantRecord) -> dict[str, Any] | None:
    """`status.rollout` as the CRD has it (absent keys rather than nulls); None: no rollout."""
    view = rollout_status(record.tenant, record.rollout, record.reports)
    return view.model_dump(mode="json", exclude_none=True) if view is not None else None


def _with_kept_network(
    doc: dict[str, Any], record: TenantRecord | None, taken: set[int | None], others: set[int]
) -> dict[str, Any]:
    """The object's document with what this host assigned its tenant before (kept in its
    record) where it names nothing, as the server keeps them: the addresses
    (`kept_addresses`) and the VNI. A tenant naming no VNI keeps its record's unless an older
    valid tenant (`taken`) now names it; otherwise (no record yet, or so taken) it gets the
    lowest VNI no other tenant known here has (`others`: those objects name or records keep),
    which the record then keeps."""
    spec = doc.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("network"), dict):
        return doc
    network = dict(spec["network"])
    if record is not None:
        network = kept_addresses(record.tenant, network)
    if network.get("vni") is None:
        kept = record.tenant.spec.network.vni if record is not None else None
        network["vni"] = kept if kept is not None and kept not in taken else free_vni(others)
    return {**doc, "spec": {**spec, "network": network}}


def _applied(record: TenantRecord) -> str:
    """`status.applied`: the record's spec, the nodes' last reports and the rollout, as JSON
    text (a merge patch replaces a string whole, where it would merge an object's keys and
    keep pins that are gone)."""
    data = record.to_json()
    return json.dumps({k: data[k] for k in ("doc", "nodes", "rollout")}, sort_keys=True)


def _any_image(doc: dict[str, Any]) -> dict[str, ImageInfo]:
    """The document's image as a known one: base images are this host's business (an
    unknown one fails its nodes at apply)."""
    spec = doc.get("spec")
    image = str((spec.get("image") if isinstance(spec, dict) else None) or "")
    return {image: ImageInfo(image, min_memory_mib=0)}


def _restored(obj: dict[str, Any], host: str) -> TenantRecord | None:
    """The record `status.applied` mirrors, its spec and every pinned revision valid as an
    object's spec would be; None when there is none, it is unreadable, invalid or not this
    tenant's, or no node of the tenant is claimed by this host."""
    status = obj.get("status") or {}
    text = status.get("applied")
    if not isinstance(text, str):
        return None
    if not any(e.get("host") == host for e in status.get("nodes") or [] if isinstance(e, dict)):
        return None
    try:
        record = TenantRecord.from_json(json.loads(text))
        for tenant in (record.tenant, *record.rollout.revisions.values()):
            doc = tenant.model_dump(mode="json", exclude={"status"})
            parse_tenant(doc, _any_image(doc), [])
    # (pydantic's ValidationError is a ValueError; parse_tenant's errors are MayuErrors)
    except (MayuError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("status.applied of %s not used: %s", _meta(obj).get("name"), exc)
        return None
    return record if record.name == _meta(obj).get("name") else None


def _seeded(
    obj: dict[str, Any], tenant: TenantCluster, host: str, now: float
) -> dict[str, ReportedNode]:
    """For a tenant this host kept no record of, nor `status.applied` (the first pass after an
    agent upgrade): the nodes `status.nodes` says run here, as reports of the current spec.
    The next spec change then pins them and replaces them one at a time, and their addresses
    are held."""
    seeded = {}
    for entry in (obj.get("status") or {}).get("nodes") or []:
        state = _state(entry.get("state"))
        name = entry.get("name")
        if not isinstance(name, str) or entry.get("host") != host:
            continue
        if state in (NodeState.PENDING, NodeState.DELETED):
            continue
        ip = _tenant_address(entry.get("ip"), tenant)
        report = NodeReport(tenant.name, name, state, ip, host, "", tenant.metadata.generation)
        seeded[name] = ReportedNode(report, now)
    return seeded


def _tenant_address(value: Any, tenant: TenantCluster) -> str | None:
    """`value` when it is an address of the tenant's network (one a node of it can hold)."""
    if isinstance(value, str) and is_ip(value) and ipaddress.ip_address(value) in tenant.network:
        return value
    return None


def _named_vni(obj: dict[str, Any]) -> int | None:
    """The VNI the object's spec names, when it names one."""
    spec = obj.get("spec")
    network = spec.get("network") if isinstance(spec, dict) else None
    vni = network.get("vni") if isinstance(network, dict) else None
    return vni if isinstance(vni, int) and not isinstance(vni, bool) else None


def _without_status(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "status"}


def _identity(obj: dict[str, Any]) -> tuple[int, str | None]:
    meta = _meta(obj)
    return int(meta.get("generation") or 0), meta.get("deletionTimestamp")


def _describe(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {v}" for k, v in sorted(detail.items()))[:1000]
    return str(detail)[:1000]
