"""A real etcd cluster (Debian's `etcd-server`) of N members on 127.0.0.1 free ports (or on an
address inside a network namespace), for `mayu lab up --store etcd` (lab.replicas), peer tests
and benchmarks: started,
health-checked with bounded waits, members killed, paused and restarted on demand, leadership
moved (etcdctl), and every process reaped on stop."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from mayu_py.lab.netns import InNamespace
from mayu_py.pki.x509 import (
    LeafSpec,
    certificate_pem,
    create_authority,
    issue,
    private_key_pem,
    utcnow,
)

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
START_TIMEOUT_S = 30.0


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open together so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed. The
    server certificate is good for client auth too: etcd 3.4's JSON gateway dials its own
    gRPC port with it, and with --client-cert-auth that dial is refused otherwise."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, directory: Path) -> TlsFiles:
        directory.mkdir(parents=True, exist_ok=True)
        now = utcnow()
        ca = create_authority("etcd test CA", "mayu tests", now)
        paths = {"ca": directory / "ca.crt"}
        paths["ca"].write_text(certificate_pem(ca.certificate))
        for name, spec in (
            (
                "server",
                LeafSpec("etcd", "etcd", ips=frozenset({"127.0.0.1"}), server=True, client=True),
            ),
            ("client", LeafSpec("etcd", "mayu", client=True)),
        ):
            certificate, key = issue(spec, ca, now)
            paths[f"{name}_cert"] = directory / f"{name}.crt"
            paths[f"{name}_key"] = directory / f"{name}.key"
            paths[f"{name}_cert"].write_text(certificate_pem(certificate))
            paths[f"{name}_key"].write_text(private_key_pem(key))
            paths[f"{name}_key"].chmod(0o600)
        return cls(**paths)


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    tls: TlsFiles | None = None
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    def _options(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        tls = self.tls
        return {"verify": str(tls.ca), "cert": (str(tls.client_cert), str(tls.client_key))}

    def metrics(self) -> str:
        """The member's Prometheus exposition."""
        reply = requests.get(f"{self.client_url}/metrics", timeout=5, **self._options())
        reply.raise_for_status()
        return reply.text

    def healthy(self) -> bool:
        try:
            reply = requests.get(f"{self.client_url}/health", timeout=1, **self._options())
            return reply.ok and reply.json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False


@dataclass
class EtcdCluster:
    """N etcd members forming one cluster; `endpoints` is what `etcd://` URLs name. With
    `namespace`, the members run in that network namespace on `host`, an address there."""

    work: Path
    size: int = 3
    tls: TlsFiles | None = None
    host: str = "127.0.0.1"
    namespace: str | None = None
    token: str = field(default_factory=lambda: f"mayu-test-{uuid.uuid4().hex[:8]}")
    members: list[EtcdMember] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = _free_ports(2 * self.size)
        self.work.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            name = f"m{i + 1}"
            self.members.append(
                EtcdMember(
                    name,
                    ports[2 * i],
                    ports[2 * i + 1],
                    self.work / f"{name}.etcd",
                    self.work / f"{name}.log",
                    self.tls,
                    host=self.host,
                )
            )

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def url(self, prefix: str = "/mayu/") -> str:
        if self.tls is None:
            return f"etcd://{self.endpoints}{prefix}"
        tls = self.tls
        query = f"ca={tls.ca}&cert={tls.client_cert}&key={tls.client_key}"
        return f"etcds://{self.endpoints}{prefix}?{query}"

    def _command(self, member: EtcdMember) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        command = [
            ETCD,
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip
        if member.tls is not None:
            tls = member.tls
            command += [
                "--cert-file", str(tls.server_cert),
                "--key-file", str(tls.server_key),
                "--client-cert-auth",
                "--trusted-ca-file", str(tls.ca),
            ]  # fmt: skip
        return command

    def start_member(self, member: EtcdMember) -> None:
        command = self._command(member)
        if self.namespace is not None:
            command = ["ip", "netns", "exec", self.namespace, *command]  # exec's etcd: same pid
        with open(member.log_path, "ab") as log:
            member.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> EtcdCluster:
        """Start every member and wait until the cluster is healthy; on failure nothing is
        left running."""
        try:
            for member in self.members:
                self.start_member(member)
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until every running member reports healthy (a leader is elected)."""
        deadline = time.monotonic() + timeout
        running = [m for m in self.members if m.process is not None]
        with self._probes() as probe:
            while time.monotonic() < deadline:
                for member in running:
                    if member.process is not None and member.process.poll() is not None:
                        log = member.log_path.read_text()
                        raise RuntimeError(f"etcd {member.name} exited: {log}")
                if all(probe(m.healthy) for m in running):
                    return
                time.sleep(0.1)
        raise RuntimeError(f"etcd cluster not healthy within {timeout} s (logs in {self.work})")

    @contextlib.contextmanager
    def _probes(self) -> Iterator[Callable[[Callable[[], bool]], bool]]:
        """Runs a health probe where the members are reachable (inside their namespace)."""
        if self.namespace is None:
            yield lambda probe: probe()
            return
        with InNamespace(self.namespace) as inside:
            yield lambda probe: inside.call(probe)

    def kill_member(self, member: EtcdMember) -> None:
        """kill -9 one member and reap it (start_member brings it back, same data)."""
        if member.process is None:
            return
        if member.process.poll() is None:
            os.killpg(member.process.pid, signal.SIGKILL)
        member.process.wait(timeout=15)
        member.process = None

    def pause_member(self, member: EtcdMember) -> None:
        """SIGSTOP: the member neither answers nor times out (a partition, as its peers and
        clients see it); resume_member lets it catch up."""
        assert member.process is not None
        os.killpg(member.process.pid, signal.SIGSTOP)

    def resume_member(self, member: EtcdMember) -> None:
        assert member.process is not None
        os.killpg(member.process.pid, signal.SIGCONT)

    def _etcdctl(self, *args: str, members: list[EtcdMember] | None = None) -> str:
        endpoints = ",".join(m.client_url for m in members or self.members)
        command = [ETCDCTL, "--endpoints", endpoints, "--command-timeout", "10s", *args]
        if self.tls is not None:
            tls = self.tls
            command += ["--cacert", str(tls.ca), "--cert", str(tls.client_cert)]
            command += ["--key", str(tls.client_key)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def leader(self) -> tuple[EtcdMember, dict[str, int]]:
        """The current leader, and every running member's raft id by name."""
        running = [m for m in self.members if m.process is not None]
        statuses = json.loads(self._etcdctl("endpoint", "status", "-w", "json", members=running))
        ids: dict[str, int] = {}
        leader_id = 0
        for status in statuses:
            member = next(m for m in running if m.client_url == status["Endpoint"])
            ids[member.name] = int(status["Status"]["header"]["member_id"])
            leader_id = int(status["Status"]["leader"])
        return next(m for m in running if ids[m.name] == leader_id), ids

    def move_leader(self) -> EtcdMember:
        """`etcdctl move-leader` to another member (a leader change while clients write);
        the new leader."""
        leader, ids = self.leader()
        target = next(m for m in self.members if m.name in ids and m is not leader)
        self._etcdctl("move-leader", f"{ids[target.name]:x}", members=[leader])
        return target

    def counters(self) -> dict[str, int]:
        """What the cluster has done so far, from the running members' /metrics: `requests`
        (Range and Txn calls answered, summed over members: every round trip a client made)
        and `writes` (raft proposals applied: one per write transaction, the same on every
        member, so the highest value counts)."""
        requests_, writes = 0, 0
        for member in self.members:
            if member.process is None:
                continue
            for line in member.metrics().splitlines():
                name, _, value = line.rpartition(" ")
                if name.startswith("grpc_server_handled_total{") and (
                    'grpc_method="Range"' in name or 'grpc_method="Txn"' in name
                ):
                    requests_ += int(float(value))
                elif name == "etcd_server_proposals_applied_total":
                    writes = max(writes, int(float(value)))
        return {"requests": requests_, "writes": writes}

    def stop(self) -> None:
        """Kill every member (test data is thrown away, so no graceful leader handover)."""
        for member in self.members:
            self.kill_member(member)
