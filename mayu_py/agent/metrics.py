"""Every Prometheus metric of `mayu agent`, defined once, and the endpoint that serves them
(`mayu agent --metrics-listen HOST:PORT`, GET /metrics, no authentication: bind it to the
host's management address; it tells reconcile timings and domain counts, nothing secret).

The agent is one process: values live in the `AgentMetrics`' own registry. Libvirt reconnects
are counted by the connection wrapper (`LibvirtHost.reconnects`) and read when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric

from mayu_py.agent.actual import ActualState
from mayu_py.errors import ConfigError
from mayu_py.tenants import NodeState

# The libvirt states an owned domain can be observed in (LibvirtHost.list_domains).
DOMAIN_STATES = (NodeState.RUNNING, NodeState.PAUSED, NodeState.SHUTOFF, NodeState.CRASHED)
RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
RELOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Reconnects:
    def __init__(self, count: Callable[[], int]) -> None:
        self.count = count

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "mayu_agent_libvirt_reconnects",
            "Times the libvirt connection was lost and opened again.",
            value=self.count(),
        )


class AgentMetrics:
    """The agent's metrics; `reconnects` reads the libvirt wrapper's count."""

    def __init__(self, reconnects: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_duration = Histogram(
            "mayu_agent_reconcile_duration_seconds",
            "Duration of reconcile passes (fetch desired, observe, plan, apply, report).",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.reconciles = Counter(
            "mayu_agent_reconciles_total",
            "Reconcile passes by outcome: completed, or abandoned on a temporary error "
            "(libvirtd or the server unreachable).",
            ["outcome"],
            registry=r,
        )
        self.actions = Counter(
            "mayu_agent_actions_total",
            "Actions applied to libvirt and the state dir, by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.domains = Gauge(
            "mayu_agent_domains",
            "This agent's domains by libvirt state, as last observed.",
            ["state"],
            registry=r,
        )
        self.ingress_updates = Counter(
            "mayu_agent_ingress_updates_total",
            "Changed tenant API routes given to HAProxy, by outcome: reloaded, or failed "
            "(rejected or not reloaded; the previous routes stay and the next pass retries).",
            ["outcome"],
            registry=r,
        )
        self.ingress_reload_duration = Histogram(
            "mayu_agent_ingress_reload_duration_seconds",
            "HAProxy reloads of the tenant API ingress: SIGUSR2 to its 'Loading success.'.",
            buckets=RELOAD_BUCKETS,
            registry=r,
        )
        r.register(_Reconnects(reconnects))

    def observed(self, actual: ActualState) -> None:
        """Record the domains of a fresh observation."""
        states = [d.state for d in actual.domains.values()]
        for state in DOMAIN_STATES:
            self.domains.labels(str(state)).set(states.count(state))

    def serve(self, listen: str) -> WSGIServer:
        """Serve GET /metrics on HOST:PORT in a daemon thread; ConfigError (one line) when the
        address is not HOST:PORT or cannot be bound."""
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"--metrics-listen {listen!r} is not HOST:PORT")
        try:
            server, _thread = start_http_server(
                int(port), host.strip("[]") or "0.0.0.0", registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(f"--metrics-listen: cannot bind {listen}: {exc.strerror}") from None
        return server
