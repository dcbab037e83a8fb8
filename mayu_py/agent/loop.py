"""The level-triggered reconcile loop: fetch desired, observe, plan, apply, observe, report.

Runs at start, every `interval` seconds, whenever libvirt reports a lifecycle event and whenever
the source's watch sees a change. With an ingress, each pass also routes the tenant API names to
the masters among the desired nodes (mayu_py.agent.ingress). Errors decide retries the kopf way:
a temporary one (`MayuError.temporary`: libvirtd or the server unreachable) abandons the pass,
which is retried after `retry_s`; a permanent one fails only its node (or tenant), which is
reported `failed` and retried at the next pass, never in a tight loop; the other nodes carry on.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mayu_py.agent.actual import ActualState, observe
from mayu_py.agent.apply import Applier, DrainHook
from mayu_py.agent.desired import DesiredNetwork, networks_for
from mayu_py.agent.drain import KubeDrain
from mayu_py.agent.ingress import IngressController
from mayu_py.agent.metrics import AgentMetrics
from mayu_py.agent.overlay import overlays_for
from mayu_py.agent.plan import (
    Action,
    DeleteDomain,
    DeleteFiles,
    DeleteTenantDir,
    StartDomain,
    plan,
)
from mayu_py.agent.probe import detect_domain_type
from mayu_py.agent.readiness import ReadinessTracker
from mayu_py.agent.reasons import BOOT_FAILED, failure
from mayu_py.agent.source import DesiredSource
from mayu_py.agent.statedir import StateDir, log_name
from mayu_py.errors import MayuError, NotFound
from mayu_py.files import temp_target
from mayu_py.images.base import BaseImages
from mayu_py.tenants import HostRegistration, NodeReport, NodeState, TenantNode
from mayu_py.tenants.conditions import state_reason
from mayu_py.tenants.wire import IMAGE_NAME_PATTERN, HostImage
from mayu_py.virt.bridge_address import hold
from mayu_py.virt.host import LibvirtHost, start_event_loop
from mayu_py.virt.overlay import HostOverlay
from mayu_py.virt.ownership import HostScope

log = logging.getLogger(__name__)
RETRY_S = 5.0  # after a temporary error, the next pass comes this soon (at most `interval`)


@dataclass
class ReconcileResult:
    applied: list[Action] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # node or tenant -> message
    reasons: dict[str, str] = field(default_factory=dict)  # node or tenant -> its reason
    states: dict[str, NodeState] = field(default_factory=dict)  # node -> observed state
    deleted: list[str] = field(default_factory=list)  # nodes reported `deleted` this pass
    booting: list[str] = field(default_factory=list)  # running, no MAYU-READY yet


def _blame(action: Action) -> str:
    return action.node_name or action.tenant or "host"


def _node_of_file(name: str) -> str:
    """The node a state-dir file belongs to: <node>.log, <node>.<hash>.qcow2|ign, or a temporary
    file left by a kill -9 while one of those was written."""
    name = temp_target(name) or name
    if name.endswith(".log"):
        return name.removesuffix(".log")
    return name.rsplit(".", 2)[0]


class Agent:
    """Reconciles one libvirt host with the desired nodes from a DesiredSource."""

    def __init__(
        self,
        host_name: str,
        host: LibvirtHost,
        source: DesiredSource,
        state_dir: StateDir,
        images: BaseImages,
        *,
        domain_type: str = "qemu",
        address: str = "",
        underlay: str = "",
        drain: DrainHook | None = None,
        metrics: AgentMetrics | None = None,
        overlay: HostOverlay | None = None,
        ingress: IngressController | None = None,
    ) -> None:
        self.host_name = host_name
        self.ingress = ingress
        self.host = host
        self.metrics = metrics or AgentMetrics(lambda: host.reconnects)
        self.source = source
        self.state_dir = state_dir
        self.address = address
        self.underlay = underlay
        self.overlay = overlay  # tenant VXLAN overlays on this host (None: none are run)
        # with several hosts' agents on one libvirtd, each touches only its host's objects
        self.scope = HostScope(host_name)
        self.overlay_tag = overlay.tag if overlay is not None else ""
        kwargs = {"drain": drain} if drain else {}
        self.images = images
        self.applier = Applier(
            host, state_dir, images, source.ignition, domain_type,
            scope=self.scope, overlay_tag=self.overlay_tag, **kwargs,
        )  # fmt: skip
        self._reported: dict[str, NodeReport] = {}  # node: its last report
        self.readiness = ReadinessTracker()
        self._booting: dict[str, TenantNode] = {}
        self._wake = source.wake_event  # set by the source's watch and by libvirt events
        self.state_dir.ensure()

    def register(self) -> None:
        """Heartbeat: this host's capacity, addresses and base images (placement needs them)."""
        cpus, memory_mib = self.host.capacity()
        images = tuple(
            HostImage(i.name, i.version, i.sha256)
            for i in self.images.summaries()
            if re.fullmatch(IMAGE_NAME_PATTERN, i.name)
        )
        self.source.register(
            HostRegistration(self.host_name, cpus, memory_mib, self.address, self.underlay, images)
        )

    def run_once(self) -> ReconcileResult:
        """One full pass; raises only when desired or actual state cannot be read at all, or
        on a temporary error (a peer is gone: the whole pass is retried later)."""
        with self.metrics.reconcile_duration.time():
            try:
                result = self._reconcile()
            except MayuError:
                self.metrics.reconciles.labels("abandoned").inc()
                raise
        self.metrics.reconciles.labels("completed").inc()
        return result

    def _reconcile(self) -> ReconcileResult:
        desired = self.source.desired_nodes()
        networks = networks_for(desired, self.overlay_tag, ingress=self.ingress is not None)
        if self.overlay is not None:
            self.overlay.sync(overlays_for(desired, ingress=self.ingress is not None))
        else:  # on the bridges there already, before HAProxy connects from the address
            self._hold(networks)
        self._route(desired)
        actual = observe(self.host, self.state_dir, self.scope)
        actions = plan(desired, networks, actual)
        result = ReconcileResult()
        failed: set[str] = set()
        wanted = {n.name for n in desired}
        for action in actions:
            if action.node_name in failed or action.tenant in failed:
                continue
            try:
                self._before(action, actual, wanted, result)
                self._apply(action)
                result.applied.append(action)
                self._after(action, wanted, result)
            except MayuError as exc:
                if exc.temporary:
                    raise
                key = _blame(action)
                log.error("%s failed for %s: %s", type(action).__name__, key, exc.message)
                result.reasons[key], result.errors[key] = failure(action, exc, self.host_name)
                failed.add(key)
        if actions and self.overlay is None:  # on the bridges of networks just created
            self._hold(networks)
        after = observe(self.host, self.state_dir, self.scope) if actions else actual
        self.metrics.observed(after)
        self._report(desired, after, result)
        by_name = {n.name: n for n in desired}
        self._booting = {name: by_name[name] for name in result.booting}
        return result

    def _route(self, desired: list[TenantNode]) -> None:
        """Bring the ingress in step with the desired masters; a failure leaves HAProxy on its
        previous routes and is retried at the next pass, without holding up the nodes."""
        if self.ingress is None:
            return
        try:
            reloaded = self.ingress.update(desired)
        except MayuError as exc:
            self.metrics.ingress_updates.labels("failed").inc()
            log.error("ingress not updated (retried at the next pass): %s", exc.message)
            return
        if reloaded and self.ingress.haproxy.last_reload_s is not None:
            self.metrics.ingress_updates.labels("reloaded").inc()
            self.metrics.ingress_reload_duration.observe(self.ingress.haproxy.last_reload_s)

    def _hold(self, networks: list[DesiredNetwork]) -> None:
        """The ingress address (with an ingress on this host) or none on each isolated
        network's bridge; a failure is retried at the next pass, without holding up nodes."""
        try:
            hold(n.held for n in networks)
        except MayuError as exc:
            log.error("ingress addresses not held (retried at the next pass): %s", exc.message)

    def _apply(self, action: Action) -> None:
        kind = type(action).__name__
        try:
            self.applier.apply(action)
        except MayuError:
            self.metrics.actions.labels(kind, "failed").inc()
            raise
        self.metrics.actions.labels(kind, "succeeded").inc()

    def _before(
        self, action: Action, actual: ActualState, wanted: set[str], out: ReconcileResult
    ) -> None:
        """Report `deleted` before the last trace of a node (its files) goes.

        The files are the durable record of what this host still owes the server: a kill -9
        between the report and the deletion reports again, never loses the report.
        """
        if isinstance(action, DeleteTenantDir):
            names = actual.files.get(action.owner, frozenset())
        elif isinstance(action, DeleteFiles):
            names = frozenset(action.names)
        else:
            return
        nodes = sorted({_node_of_file(n) for n in names} - wanted - set(out.deleted))
        for node in nodes:
            self._report_deleted(action.owner, node, out)

    def _after(self, action: Action, wanted: set[str], out: ReconcileResult) -> None:
        if isinstance(action, StartDomain):
            log = self.state_dir.tenant_dir(action.owner) / log_name(action.name)
            self.readiness.started(action.name, log)
        elif isinstance(action, DeleteDomain) and action.name not in wanted:
            self._report_deleted(action.owner, action.name, out)

    def _report_deleted(self, tenant: str, node: str, out: ReconcileResult) -> None:
        if node in out.deleted:
            return
        try:
            self.source.report(NodeReport(tenant, node, NodeState.DELETED, None, self.host_name))
        except MayuError as exc:
            if exc.status != NotFound.status:
                raise  # else the tenant is gone from the source already: nothing left to tell
        out.deleted.append(node)
        self._reported.pop(node, None)

    def _report_vanished(
        self, desired: list[TenantNode], actual: ActualState, out: ReconcileResult
    ) -> None:
        """Nodes this agent reported that are no longer desired and of which nothing is left
        here (e.g. one that failed before its first file): `deleted`, so that a deleting
        tenant is purged; the deletion of a domain or files reports the others itself."""
        for name in set(self._reported) - {n.name for n in desired}:
            tenant = self._reported.pop(name).tenant
            files = actual.files.get(tenant, frozenset())
            if name in actual.domains or any(_node_of_file(f) == name for f in files):
                continue
            try:
                self._report_deleted(tenant, name, out)
            except MayuError as exc:
                log.warning("could not report %s deleted: %s", name, exc.message)

    def _report(self, desired: list[TenantNode], actual: ActualState, out: ReconcileResult) -> None:
        running = {n for n, d in actual.domains.items() if d.state == NodeState.RUNNING}
        self.readiness.forget(running)
        self._report_vanished(desired, actual, out)
        for node in desired:
            dom = actual.domains.get(node.name)
            blame = node.name if node.name in out.errors else node.tenant
            message = out.errors.get(blame, "")
            reason = out.reasons.get(blame, "")
            current = dom is not None and dom.spec_hash == node.spec_hash
            generation = node.generation if current else 0
            if message:
                state = NodeState.FAILED
            elif dom is None or not current:
                state = NodeState.PENDING
            else:
                state = dom.state
            ip: str | None = node.ip
            if state == NodeState.RUNNING:
                verdict = self.readiness.check(node.name, self.state_dir.log(node))
                if verdict.ready:
                    state, ip = NodeState.READY, verdict.ip
                elif verdict.failed:
                    state, message, reason = NodeState.FAILED, verdict.failed, BOOT_FAILED
                else:
                    if self.readiness.booting(node.name):
                        out.booting.append(node.name)
            if state == NodeState.READY:
                self.applier.drain_notes.pop(node.name, None)
            elif not message:  # while it is replaced: how its drain went
                message = self.applier.drain_notes.get(node.name, "")
            out.states[node.name] = state
            self._send(node, state, ip, generation, reason, message)

    def _send(
        self,
        node: TenantNode,
        state: NodeState,
        ip: str | None,
        generation: int,
        reason: str = "",
        message: str = "",
    ) -> None:
        """Report a node's state with why (the state's own reason unless told), unless the
        last report said the same; a failure to report is retried at the next pass."""
        if not reason:
            reason, default = state_reason(state)
            message = message or default
        report = NodeReport(
            node.tenant, node.name, state, ip, self.host_name, message, generation, reason
        )
        last = self._reported.get(node.name)
        if last is not None and replace(last, ip=ip) == report:  # a new address alone is no news
            return
        try:
            self.source.report(report)
            self._reported[node.name] = report
        except MayuError as exc:
            log.warning("could not report %s: %s", node.name, exc.message)

    def _on_event(self, name: str, event: int) -> None:
        log.debug("lifecycle event %s for %s", event, name)
        self._wake.set()

    def poll_readiness(self) -> None:
        """Between passes: read only the new serial output of booting nodes; report the
        ones that became ready (or failed). No libvirt or server call unless one did."""
        for name, node in list(self._booting.items()):
            verdict = self.readiness.check(name, self.state_dir.log(node))
            if verdict.ready:
                state, ip, message = NodeState.READY, verdict.ip, ""
            elif verdict.failed:
                state, ip, message = NodeState.FAILED, node.ip, verdict.failed
            else:
                if not self.readiness.booting(name):
                    del self._booting[name]
                continue
            del self._booting[name]
            self.applier.drain_notes.pop(name, None)
            reason = BOOT_FAILED if state == NodeState.FAILED else ""
            self._send(node, state, ip, node.generation, reason, message)

    def run_forever(
        self,
        interval: float = 30.0,
        stop: threading.Event | None = None,
        boot_poll: float = 0.25,
        retry_s: float = RETRY_S,
    ) -> None:
        """Reconcile at start, every interval and on wake events until stop is set; a pass
        abandoned on a temporary error is retried after retry_s (at most interval), one that
        failed permanently waits for the next interval. While a node boots, its serial log is
        read every boot_poll seconds in between (its MAYU-READY is not a libvirt event)."""
        stop = stop or threading.Event()
        self.host.on_lifecycle(self._on_event)
        while not stop.is_set():
            started = time.monotonic()
            wait = interval
            try:
                self.register()
                result = self.run_once()
                if result.applied or result.errors:
                    log.info(
                        "reconciled: %d actions, %d errors in %.2fs",
                        len(result.applied),
                        len(result.errors),
                        time.monotonic() - started,
                    )
            except MayuError as exc:
                if exc.temporary:
                    wait = min(retry_s, interval)
                log.warning("reconcile skipped (next try in %.0f s): %s", wait, exc.message)
            deadline = time.monotonic() + wait
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or self._wake.wait(min(left, boot_poll) if self._booting else left):
                    break
                self.poll_readiness()
            self._wake.clear()


@dataclass(frozen=True)
class AgentOptions:
    """How an agent runs: its host name, libvirt, directories, resync interval."""

    host_name: str
    state_dir: Path
    images_dir: Path
    libvirt_uri: str = "qemu:///system"
    interval: float = 30.0
    once: bool = False  # reconcile once and return
    address: str = ""  # the address this host registers with (its route to the server)
    underlay: str = ""  # its VXLAN endpoint, told in heartbeats; given: it runs the overlays
    overlay_netns: str | None = None  # the network namespace the overlays (and underlay) are in
    metrics_listen: str | None = None  # HOST:PORT of the Prometheus endpoint
    ingress_listen: str | None = None  # HOST:PORT of the tenant API ingress (with a domain)
    ingress_domain: str | None = None  # tenants' API names are <tenant>.api.<domain>
    drain: str = "kube"  # before a wanted node's VM goes: kube (cordon + evict) | none
    drain_timeout: float = 60.0  # seconds a drain may take (the lab: short, no tenant API)


def run_agent(options: AgentOptions, source: DesiredSource) -> None:
    """Entry point of `mayu agent`: reconcile this host against a desired-state source (the
    mayu API, Kubernetes) until SIGTERM (after the pass under way) or Ctrl-C, or once; drains
    through the tenant's API with the source's drain credential (`options.drain`). Closes
    the source and stops the ingress's HAProxy when done (a kill -9 leaves HAProxy to the next
    agent, which ends it)."""
    if not options.once:
        start_event_loop()
    host = LibvirtHost(options.libvirt_uri)
    metrics = AgentMetrics(lambda: host.reconnects)
    exporter = metrics.serve(options.metrics_listen) if options.metrics_listen else None
    state = StateDir(options.state_dir)
    state.ensure()
    images = BaseImages(options.images_dir)
    known = images.known()
    probe_image = images.get(known[0]) if known else None
    domain_type = detect_domain_type(
        host,
        state.accel_cache,
        probe_image.kernel if probe_image else None,
        probe_image.initrd if probe_image else None,
    )
    drain: DrainHook | None = None
    if options.drain == "kube":
        drain = KubeDrain(source.drain_kubeconfig, timeout_s=options.drain_timeout)
    ingress = None
    if options.ingress_listen and options.ingress_domain and not options.once:
        ingress = IngressController(state.ingress, options.ingress_listen, options.ingress_domain)
    agent = Agent(
        options.host_name, host, source, state, images,
        domain_type=domain_type, address=options.address, underlay=options.underlay,
        metrics=metrics, ingress=ingress, drain=drain,
        overlay=(
            HostOverlay(options.host_name, options.underlay, options.overlay_netns)
            if options.underlay
            else None
        ),
    )  # fmt: skip
    try:
        if ingress is not None:
            ingress.start()
        if options.once:
            agent.register()
            agent.run_once()
        else:
            stop = threading.Event()

            def terminate(_signum: int, _frame: object) -> None:
                stop.set()
                source.wake_event.set()

            signal.signal(signal.SIGTERM, terminate)
            agent.run_forever(options.interval, stop)
    finally:
        if ingress is not None:
            ingress.stop()
        if exporter is not None:
            exporter.shutdown()
        source.close()
        host.close()
