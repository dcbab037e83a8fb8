"""SIGKILL of `mayu serve` while registrations, Ignition fetches and reports are in flight.

Everything the server acknowledged survives the kill: registered machines with their boot
tokens, spent tokens (the real config fetched over HTTPS, and the certificates served with it,
in the PKI cache), reports made with a machine's report credential;
requests cut off by the kill leave a consistent state; the store passes `PRAGMA
integrity_check`. The test proves that requests were in flight when the kill landed.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import RunningServer, start_server
from tests.support.boot import boot_token
from tests.support.ignition import file_text
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

THREADS = 6  # per kind of request
PER_THREAD = 40  # machines a registering or fetching thread works through
ACKS_BEFORE_KILL = 10  # of every kind: the kill lands while all three are going
# Every machine is approved by one catch-all group: each registration gets a boot token. All
# requests come from 127.0.0.1: discovery's per-source limit and event retention are lifted.
CONFIG = {
    "groups": [{"name": "all", "profile": "worker", "selector": {}}],
    "server": {
        "discovery": {"per_source_per_minute": 100_000, "per_minute": 100_000},
        "events_per_machine": 100_000,
    },
}
KUBELET_CRT = "/var/lib/kubelet/pki/kubelet.crt"
KUBELET_KEY = "/var/lib/kubelet/pki/kubelet.key"
REPORT_CREDENTIAL = "/etc/mayu/report.token"


@dataclass
class Call:
    kind: str
    mac: str
    started: float
    acked: bool = False
    reached: bool = True  # False: the connection was refused, nothing was sent
    data: Any = None  # what the acknowledgement carried
    refused: str = ""  # an answer other than 200


@dataclass
class Traffic:
    """Every request the clients made, from any thread."""

    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def acked(self, kind: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.kind == kind and c.acked]

    def run(self, kind: str, mac: str, send: Callable[[], Any]) -> bool:
        """One request; send() returns the acknowledged data or raises. False once stopped."""
        if self.stop.is_set():
            return False
        call = Call(kind, mac, time.monotonic())
        with self.lock:
            self.calls.append(call)
        try:
            call.data = send()
            call.acked = True
        except requests.RequestException as exc:  # refused, reset, cut off mid-response
            call.reached = not _refused(exc)
            return False
        except AssertionError as exc:  # the server answered, but not 200
            call.refused = str(exc)
            return False
        return True


def _refused(exc: requests.RequestException) -> bool:
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, urllib3.exceptions.MaxRetryError) and isinstance(
        reason.reason, urllib3.exceptions.NewConnectionError
    )


def _ok(response: requests.Response) -> requests.Response:
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return response


def _mac(kind: int, thread: int, n: int) -> str:
    return f"52:54:{kind:02x}:{thread:02x}:{n >> 8:02x}:{n & 0xFF:02x}"


def _register(session: requests.Session, url: str, mac: str) -> str:
    """GET /ipxe as a new machine; its boot token."""
    return boot_token(_ok(session.get(f"{url}/ipxe", params={"mac": mac}, timeout=10)).text)


def _config(session: requests.Session, server: RunningServer, mac: str, token: str) -> Any:
    """The stub over HTTP, then the real config it names over HTTPS (spends the token)."""
    params = {"mac": mac, "token": token}
    stub = _ok(session.get(f"{server.url}/ignition", params=params, timeout=10)).json()
    source = stub["ignition"]["config"]["merge"][0]["source"]
    return _ok(session.get(source, verify=str(server.ca_file), timeout=10)).json()


def _fetch(session: requests.Session, server: RunningServer, mac: str, token: str) -> Any:
    """A machine's whole Ignition fetch; the kubelet certificate and key it served."""
    files = {f["path"]: f for f in _config(session, server, mac, token)["storage"]["files"]}
    return file_text(files[KUBELET_CRT]), file_text(files[KUBELET_KEY])


def _report(session: requests.Session, url: str, mac: str, credential: str, n: int) -> int:
    """A `running` report with the machine's report credential (as at every disk boot)."""
    body = {"event": "running", "details": {"n": n}}
    headers = {"Authorization": f"Bearer {credential}"}
    _ok(session.post(f"{url}/report", params={"mac": mac}, json=body, headers=headers, timeout=10))
    return n


def _cached_leaves(data: Path) -> list[str]:
    """Every cached leaf bundle under the PKI directory. Each one parses and its key belongs
    to its certificate (no torn write)."""
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    leaves = []
    for path in sorted((data / "pki").rglob("*.pem")):
        text = path.read_text()
        certificate = x509.load_pem_x509_certificate(text.encode())
        key = serialization.load_pem_private_key(text.encode(), password=None)
        assert key.public_key().public_bytes(*public) == certificate.public_key().public_bytes(
            *public
        ), path
        leaves.append(text)
    return leaves


@dataclass
class Machines:
    """The boot tokens of the machines that fetch Ignition and that report."""

    fetching: list[list[tuple[str, str]]]  # per thread: (mac, token)
    reporting: dict[str, str]  # mac -> report credential, one machine per thread


def _prepare(server: RunningServer) -> Machines:
    url, session = server.url, requests.Session()
    fetching = [
        [(mac, _register(session, url, mac)) for mac in (_mac(2, t, n) for n in range(PER_THREAD))]
        for t in range(THREADS)
    ]
    reporting = {}
    for mac in (_mac(3, t, 0) for t in range(THREADS)):
        token = _register(session, url, mac)
        files = {f["path"]: f for f in _config(session, server, mac, token)["storage"]["files"]}
        reporting[mac] = file_text(files[REPORT_CREDENTIAL]).strip()
        params, body = {"mac": mac, "token": token}, {"event": "installed"}
        _ok(session.post(f"{url}/report", params=params, json=body, timeout=10))
    return Machines(fetching, reporting)


def _hammer(server: RunningServer, machines: Machines, traffic: Traffic) -> list[threading.Thread]:
    """Registering, Ignition-fetching and reporting threads, each with machines of its own."""
    url = server.url

    def registering(t: int) -> None:
        session = requests.Session()
        for n in range(PER_THREAD):
            mac = _mac(1, t, n)
            if not traffic.run("register", mac, partial(_register, session, url, mac)):
                return

    def fetching(t: int) -> None:
        session = requests.Session()
        for mac, token in machines.fetching[t]:
            if not traffic.run("ignition", mac, partial(_fetch, session, server, mac, token)):
                return

    def reporting(t: int) -> None:
        session = requests.Session()
        mac, credential = list(machines.reporting.items())[t]
        n = 0
        while traffic.run("report", mac, partial(_report, session, url, mac, credential, n)):
            n += 1

    threads = [
        threading.Thread(target=work, args=(t,), daemon=True)
        for work in (registering, fetching, reporting)
        for t in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    return threads


def test_acknowledged_work_survives_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, config=CONFIG, workers=2)
    traffic = Traffic()
    kinds = ("register", "ignition", "report")
    threads: list[threading.Thread] = []
    try:
        machines = _prepare(server)
        threads = _hammer(server, machines, traffic)
        wait_for(
            f"{ACKS_BEFORE_KILL} acknowledged requests of every kind",
            lambda: all(len(traffic.acked(k)) >= ACKS_BEFORE_KILL for k in kinds),
            timeout_s=120,
        )
        killed_at = time.monotonic()
        server.kill(signal.SIGKILL)
    finally:
        traffic.stop.set()
        server.kill(signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    refused = [(c.kind, c.mac, c.refused[:200]) for c in traffic.calls if c.refused]
    assert not refused, f"the server refused requests: {refused[:5]}"
    cut = [c for c in traffic.calls if c.started < killed_at and c.reached and not c.acked]
    print(f"\nacknowledged: { {k: len(traffic.acked(k)) for k in kinds} }; cut off: {len(cut)}")
    assert {c.kind for c in cut} == set(kinds), f"not every kind was in flight: {cut}"

    with contextlib.closing(sqlite3.connect(data / "inventory.sqlite3")) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    cached = _cached_leaves(data)
    for call in traffic.acked("ignition"):
        crt, key = call.data
        assert any(crt in leaf and key in leaf for leaf in cached), f"{call.mac}: leaf lost"

    restarted = start_server(data, config=CONFIG, workers=1, token=server.token)
    try:
        _check_after_restart(restarted, machines, traffic)
    finally:
        restarted.kill()


def _check_after_restart(server: RunningServer, machines: Machines, traffic: Traffic) -> None:
    def ignition(mac: str, token: str) -> int:
        """200 when the token still fetches the machine's whole config, else the refusal."""
        params = {"mac": mac, "token": token}
        stub = requests.get(f"{server.url}/ignition", params=params, timeout=30)
        if stub.status_code != 200:
            return stub.status_code
        source = stub.json()["ignition"]["config"]["merge"][0]["source"]
        return requests.get(source, verify=str(server.ca_file), timeout=30).status_code

    def state(mac: str) -> str:
        return str(_ok(server.api("GET", f"/api/v1/machines/{mac}")).json()["state"])

    # Registrations: the machine and its boot token, which still fetches its config once.
    for call in traffic.acked("register"):
        assert state(call.mac) == "configured", call.mac
        assert ignition(call.mac, call.data) == 200, f"{call.mac}: acknowledged token lost"
    # Ignition: an acknowledged fetch spent its token for good (the machine is installing);
    # any other, cut off or never sent, did both or neither.
    acked = {c.mac for c in traffic.acked("ignition")}
    for mac, token in (pair for thread in machines.fetching for pair in thread):
        outcome = (state(mac), ignition(mac, token))
        if mac in acked:
            assert outcome == ("installing", 403), mac
        else:
            assert outcome in (("installing", 403), ("configured", 200)), (mac, outcome)
    # Reports: every acknowledged one is recorded.
    for mac in machines.reporting:
        events = _ok(server.api("GET", f"/api/v1/machines/{mac}")).json()["events"]
        running = "report running (report credential)"
        recorded = {e["details"].get("n") for e in events if e["cause"] == running}
        sent = [c.data for c in traffic.acked("report") if c.mac == mac]
        assert sent, f"{mac} had no report acknowledged"
        missing = [n for n in sent if n not in recorded]
        assert not missing, f"{mac}: acknowledged reports lost: {missing[:10]}"
