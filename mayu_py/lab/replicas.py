"""`mayu lab up --store etcd --replicas N`: the lab's store and replica topology.

Inside the lab namespace: a 3-member etcd cluster on the namespace's 127.0.0.1 (lab.etcd, data
under <work>/etcd, started afresh by every `up`), N `mayu serve` replicas on it, replica i on
10.77.0.1:808i (HTTPS 10.77.0.1:844(3+i)), and HAProxy (lab.balancer: the shipped
docs/examples/haproxy-replicas.cfg) on the lab's server address 10.77.0.1:8080 and :8443 in
front of them with the PROXY protocol, round robin per connection: machines, and `up`'s own
client, reach the replicas through it. Replica 1 keeps its data in the lab's data dir and
creates the replica key and the CAs in the store; replica i > 1 gets <work>/replica-i with a
copy of that key (0600), starts as soon as the key exists, and serves the same assets. Full
DHCP: the replicas elect one leader by etcd lease (docs/ha.md), whose dnsmasq answers; `up`
waits for it before a machine boots. Every process is recorded by pid in the state file;
`down` stops them (and, like any process of the namespace, finds them without it) and
removes the etcd data and the further replicas' data dirs by their fixed paths.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from mayu_py.errors import ConfigError
from mayu_py.files import atomic_write
from mayu_py.lab import balancer, site
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.etcd import ETCD, EtcdCluster
from mayu_py.lab.netns import InNamespace
from mayu_py.lab.processes import child_env, log_tail, spawn
from mayu_py.lab.state import LabState, work_dir
from mayu_py.pids import running, stop

STORES = ("sqlite", "etcd")
MAX_REPLICAS = 5
ETCD_MEMBERS = 3
PREFIX = "/mayu-lab/"
START_TIMEOUT_S = 60.0
LEADER_LOG = "full DHCP leader: dnsmasq started"
KEY_FILE = "replica.key"  # where a replica keeps the replica key (store.replica_key_file)


def check(store: str, replicas: int, dhcp: str) -> None:
    """Refuse what the lab cannot run, in one line each."""
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ConfigError(f"--replicas must be between 1 and {MAX_REPLICAS}")
    if store == "sqlite" and replicas > 1:
        raise ConfigError("--replicas above 1 needs --store etcd (replicas share the store)")
    if store != "etcd":
        return
    if dhcp == "proxy" and replicas > 1:
        raise ConfigError(
            "--dhcp proxy with --replicas above 1 is not supported by the lab yet (each "
            "replica's proxyDHCP would need its own address on the lab bridge)"
        )
    for tool, package in ((ETCD, "etcd-server"), (balancer.HAPROXY, "haproxy")):
        if shutil.which(tool) is None:
            raise ConfigError(f"{tool} not found: install {package}")


def listen(index: int) -> tuple[str, str]:
    """Replica `index`'s (1-based) plain and HTTPS listen addresses."""
    return f"{topo.SERVER_IP}:{topo.PORT + index}", f"{topo.SERVER_IP}:{topo.TLS_PORT + index}"


def replica_data_dir(data_dir: Path, index: int) -> Path:
    return data_dir if index == 1 else work_dir(data_dir) / f"replica-{index}"


def replica_config(
    base: dict[str, Any], store_url: str, data_dir: Path, index: int, assets_root: Path
) -> dict[str, Any]:
    """The lab's server config for replica `index`: the shared store, the balancer's URLs
    in what machines are told, PROXY lines believed from the balancer only."""
    server = dict(base.get("server") or {})
    server["public_url"] = topo.SERVER_URL
    server["tls"] = {**(server.get("tls") or {}), "public_url": topo.SERVER_TLS_URL}
    server["proxy_protocol_from"] = [topo.SERVER_IP]
    return base | {
        "data_dir": str(replica_data_dir(data_dir, index)),
        "store": {**(base.get("store") or {}), "url": store_url},
        "server": server,
        "assets": {**(base.get("assets") or {}), "root": str(assets_root)},
    }


def _wait(what: str, done: Callable[[], bool], failed: Callable[[], str | None]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not done():
        problem = failed()
        if problem is not None:
            raise ConfigError(f"{what}: {problem}")
        if time.monotonic() >= deadline:
            raise ConfigError(f"{what}: not within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.2)


def _exited(proc: subprocess.Popen[bytes], log_path: Path) -> str | None:
    """Why a process `up` waits for will never be ready: it exited (with its log's tail)."""
    return None if proc.poll() is None else f"exited {proc.returncode}: {log_tail(log_path)}"


class Replicated:
    """Starts the topology of one `up` and records it in `state`."""

    def __init__(
        self, state: LabState, data_dir: Path, ns: InNamespace, console: Console, count: int
    ) -> None:
        self.state = state
        self.data_dir = data_dir
        self.work = work_dir(data_dir)
        self.ns = ns
        self.console = console
        self.count = count

    def start(self, config_path: Path, assets_root: Path) -> None:
        self.start_etcd()
        base = yaml.safe_load(config_path.read_text())
        store_url = self.state.store_url
        first = self.spawn_replica(
            1, replica_config(base, store_url, self.data_dir, 1, assets_root)
        )
        if self.count > 1:
            # the others start as soon as the first has made the replica key (a replica that
            # finds the shared files published by another takes those over its own)
            _wait(
                "replica r1 (mayu serve) made no replica key",
                (self.data_dir / KEY_FILE).exists,
                lambda: _exited(first, Path(self.state.serve_log)),
            )
        started = [first] + [
            self.spawn_replica(i, replica_config(base, store_url, self.data_dir, i, assets_root))
            for i in range(2, self.count + 1)
        ]
        for index, proc in enumerate(started, start=1):
            self.wait_replica(index, proc)
        self.start_balancer()
        if self.state.dhcp == "full":
            logs = [Path(p) for p in self.state.replica_logs]
            _wait(
                "no replica was elected DHCP leader",
                lambda: any(LEADER_LOG in p.read_text(errors="replace") for p in logs),
                lambda: None,
            )

    def start_etcd(self) -> None:
        shutil.rmtree(self.work / "etcd", ignore_errors=True)  # a fresh cluster every up
        cluster = EtcdCluster(self.work / "etcd", size=ETCD_MEMBERS, namespace=self.state.namespace)
        cluster.start()
        self.state.etcd_pids = [m.process.pid for m in cluster.members if m.process]
        self.state.store_url = cluster.url(PREFIX)
        self.state.save()
        self.console.print(
            f"etcd: {ETCD_MEMBERS} members at {cluster.endpoints} in {self.state.namespace} "
            f"(data and logs in {self.work / 'etcd'})"
        )

    def spawn_replica(self, index: int, config: dict[str, Any]) -> subprocess.Popen[bytes]:
        data_dir = replica_data_dir(self.data_dir, index)
        data_dir.mkdir(parents=True, exist_ok=True)
        if index > 1:  # every replica seals and unseals the shared CAs with the first's key
            key = (self.data_dir / KEY_FILE).read_bytes()
            atomic_write(data_dir / KEY_FILE, key, 0o600)
        config_path = self.work / f"serve-r{index}.yaml"
        atomic_write(config_path, yaml.safe_dump(config), 0o600)
        log_path = Path(self.state.serve_log) if index == 1 else self.work / f"serve-r{index}.log"
        plain, tls = listen(index)
        argv = site.serve_argv(config_path, data_dir, self.state.dhcp, plain, tls)
        proc = spawn(argv, self.state.namespace, log_path, child_env(self.state.token))
        if index == 1:
            self.state.serve_pid = proc.pid
        self.state.replica_pids.append(proc.pid)
        self.state.replica_urls.append(f"http://{plain}")
        self.state.replica_logs.append(str(log_path))
        self.state.save()
        return proc

    def wait_replica(self, index: int, proc: subprocess.Popen[bytes]) -> None:
        url, log_path = self.state.replica_urls[index - 1], Path(self.state.replica_logs[index - 1])
        client = LabClient(self.ns, url, self.state.token)
        _wait(f"replica r{index} (mayu serve)", client.healthy, lambda: _exited(proc, log_path))
        self.console.print(f"replica r{index}: mayu serve at {url} (log {log_path})")

    def start_balancer(self) -> None:
        backends = [balancer.Backend(*listen(i)) for i in range(1, self.count + 1)]
        config = balancer.haproxy_config(
            topo.SERVER_IP, topo.PORT, topo.TLS_PORT, topo.SERVER_IP, backends
        )
        config_path = self.work / "haproxy.cfg"
        atomic_write(config_path, config, 0o644)
        log_path = self.work / "haproxy.log"
        proc = spawn(balancer.haproxy_argv(str(config_path)), self.state.namespace, log_path)
        self.state.balancer_pid = proc.pid
        self.state.balancer_log = str(log_path)
        self.state.save()
        client = LabClient(self.ns, self.state.url, self.state.token)
        _wait("the balancer (HAProxy)", client.healthy, lambda: _exited(proc, log_path))
        self.console.print(
            f"HAProxy at {topo.SERVER_URL} and {topo.SERVER_TLS_URL} in front of "
            f"{self.count} replica(s), PROXY protocol (log {log_path})"
        )


def stop_processes(state: LabState) -> list[str]:
    """Stop the further replicas, the balancer and then etcd (the replicas first: a DHCP
    leader gives its lease back on the way out)."""
    done: list[str] = []
    replicas = [p for p in state.replica_pids[1:] if running(p, "serve")]
    if replicas:
        stop(replicas, 10.0)
        done.append(f"stopped {len(replicas)} further mayu serve replica(s)")
    if running(state.balancer_pid, balancer.HAPROXY):
        stop([state.balancer_pid or 0], 5.0)
        done.append(f"stopped the balancer (HAProxy, pid {state.balancer_pid})")
    members = [p for p in state.etcd_pids if running(p, "etcd")]
    if members:
        stop(members, 5.0)
        done.append(f"stopped {len(members)} etcd member(s)")
    return done


def remove_files(data_dir: Path) -> list[str]:
    """The etcd data (the lab's whole store) and the further replicas' data dirs."""
    work = work_dir(data_dir)
    found = [work / "etcd", *sorted(work.glob("replica-*"))]
    gone = [path for path in found if path.is_dir()]
    for path in gone:
        shutil.rmtree(path)
    return [f"removed {path}" for path in gone]


def status_lines(state: LabState) -> list[str]:
    """`mayu lab status`: the store, each replica, the balancer."""
    if state.store != "etcd":
        return []

    def alive(pid: int | None, marker: str) -> str:
        return "running" if running(pid, marker) else "not running"

    members = sum(running(p, "etcd") for p in state.etcd_pids)
    lines = [
        f"store etcd: {members}/{len(state.etcd_pids)} member(s) running ({state.store_url} "
        f"in {state.namespace})",
        f"balancer HAProxy {alive(state.balancer_pid, balancer.HAPROXY)} (pid "
        f"{state.balancer_pid}, {state.url}, log {state.balancer_log})",
    ]
    for index, (pid, url, log) in enumerate(
        zip(state.replica_pids, state.replica_urls, state.replica_logs, strict=True), start=1
    ):
        lines.append(f"replica r{index} {alive(pid, 'serve')} (pid {pid}, {url}, log {log})")
    return lines
