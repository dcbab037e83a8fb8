"""Every Prometheus metric of `mayu serve`, defined once, and the exposition /metrics serves.

`mayu serve` is several processes: two gunicorn servers (plain HTTP, HTTPS), each a master
with workers, and dnsmasq's supervisor in the first master. prometheus-client's multiprocess
mode keeps each process's values in mmap files under one directory shared by both servers
(`<data-dir>/metrics`, emptied when `mayu serve` starts), so a scrape of /metrics on either
listener merges every file and reports the whole server. A worker that exits has its live
gauges dropped (gunicorn's child_exit; a scrape drops those of any other process that is gone,
such as a killed HTTPS listener's); its counters and histograms stay in the sums.

Without that directory (an in-process app, unit tests) the values live in this process, in
the `ServerMetrics`' own registry. `mayu_machines` is not kept anywhere: it is counted from the
store at scrape time (one grouped index scan).

Label values are bounded: endpoint names come from Flask's url map (`unmatched` for a path no
route takes), methods from a fixed list, never the raw path or query.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as client_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from mayu_py.errors import ConfigError
from mayu_py.model import MachineState
from mayu_py.store import Store, TxOutcome

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RENDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROVISIONING_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


def metrics_dir(data_dir: Path) -> Path:
    """Where the processes of one `mayu serve` keep their metric values."""
    return data_dir / "metrics"


def use_multiprocess_dir(directory: Path, *, clean: bool) -> None:
    """Keep this process's metric values (and its children's, through the environment) in
    `directory`; `clean` empties it first (the server starts, earlier values are stale).

    Must run before any metric is constructed in this process: prometheus-client picks its
    value class when imported, from the environment, so it is picked again here."""
    try:
        if clean:
            shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"config error at data_dir: {directory}: {exc.strerror}") from None
    os.environ[MULTIPROC_ENV] = str(directory)
    client_values.ValueClass = client_values.get_value_class()


def forget_worker(pid: int) -> None:
    """A worker exited: drop its live gauges (gunicorn's child_exit hook, in the master)."""
    if os.environ.get(MULTIPROC_ENV):
        mark_process_dead(pid)


def _forget_dead_processes(directory: Path) -> None:
    """Drop the live gauges of processes that are gone without a gunicorn master that could
    tell (the HTTPS listener's master and workers, when it was killed and restarted)."""
    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)  # another worker's scrape may be sweeping too


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class _MachineStates:
    """`mayu_machines{state}`, counted from the store when scraped."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counts = self.store.machine_counts()
        family = GaugeMetricFamily("mayu_machines", "Machines by state.", labels=["state"])
        for state in MachineState:
            family.add_metric([str(state)], counts.get(str(state), 0))
        yield family


class _Sources:
    """The collectors of one scrape, as one."""

    def __init__(self, *sources: object) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()  # type: ignore[attr-defined]


class ServerMetrics:
    """The server's metrics; one per app (and per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # The request counter's and timer's series by (endpoint, method, status).
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        r = self.registry
        self.http_requests = Counter(
            "mayu_http_requests_total",
            "HTTP requests answered, by Flask endpoint, method and status code.",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "mayu_http_request_duration_seconds",
            "Time from request to response headers, by Flask endpoint and status code.",
            ["endpoint", "status"],
            registry=r,
        )
        self.http_in_progress = Gauge(
            "mayu_http_requests_in_progress",
            "HTTP requests being answered now, over all live workers.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.tokens_issued = Counter(
            "mayu_boot_tokens_issued_total",
            "One-time boot tokens minted (iPXE installer scripts served).",
            registry=r,
        )
        self.tokens_consumed = Counter(
            "mayu_boot_tokens_consumed_total",
            "Boot tokens spent on a secret Ignition config over HTTPS.",
            registry=r,
        )
        self.tokens_refused = Counter(
            "mayu_boot_tokens_refused_total",
            "Boot-plane credentials refused (boot tokens, report credentials), by endpoint.",
            ["endpoint"],
            registry=r,
        )
        self.provisioning = Histogram(
            "mayu_provisioning_duration_seconds",
            "From a machine's approval (or reinstall) to its report `running`.",
            buckets=PROVISIONING_BUCKETS,
            registry=r,
        )
        self.dnsmasq_restarts = Counter(
            "mayu_dnsmasq_restarts_total",
            "Times the supervised dnsmasq was restarted after it exited.",
            registry=r,
        )
        self.dhcp_leader = Gauge(
            "mayu_dhcp_leader",
            "1 while this replica is the elected full-DHCP leader (runs dnsmasq), else 0.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.dhcp_leadership_changes = Counter(
            "mayu_dhcp_leadership_changes_total",
            "Times this replica became the full-DHCP leader (elected) or stopped being it "
            "(deposed).",
            ["change"],
            registry=r,
        )
        self.render = Histogram(
            "mayu_ignition_render_duration_seconds",
            "Time to produce one secret Ignition config (templates, certificates, JSON), by "
            "target (machine or tenant_node).",
            ["target"],
            buckets=RENDER_BUCKETS,
            registry=r,
        )
        self.store_duration = Histogram(
            "mayu_store_transaction_duration_seconds",
            "Store transactions, from asking for the write lock to commit or rollback.",
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.store_failures = Counter(
            "mayu_store_transaction_failures_total",
            "Store transactions that failed: conflict (conflicting state, rolled back), busy "
            "(the write lock was not free in time), error (the store is unusable).",
            ["reason"],
            registry=r,
        )

    # -- hooks ------------------------------------------------------------------------------

    def request_done(self, endpoint: str | None, method: str, status: int, seconds: float) -> None:
        key = (endpoint or UNMATCHED, method_label(method), status)
        series = self._request_series.get(key)
        if series is None:  # bound once per label values (a bounded set, see above)
            name, verb, code = key[0], key[1], str(status)
            series = (
                self.http_requests.labels(name, verb, code),
                self.http_duration.labels(name, code),
            )
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def store_transaction(self, seconds: float, outcome: TxOutcome) -> None:
        """The store's transaction observer."""
        self.store_duration.observe(seconds)
        if outcome in ("conflict", "busy", "error"):
            self.store_failures.labels(outcome).inc()

    # -- exposition -------------------------------------------------------------------------

    def exposition(self, store: Store) -> bytes:
        """The text format of every metric of this server (all processes when multiprocess)."""
        if multiprocess():
            _forget_dead_processes(Path(os.environ[MULTIPROC_ENV]))
            values = CollectorRegistry()
            MultiProcessCollector(values)
            source = _Sources(values, _MachineStates(store))
        else:
            source = _Sources(self.registry, _MachineStates(store))
        return generate_latest(source)  # type: ignore[arg-type]
