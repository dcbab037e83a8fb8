"""Shared fixtures: a real `mayu serve` subprocess on a free loopback port (or on an address
inside a network namespace a test made); the rules every test follows (no skips; the unit tier
starts no program but this Python)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import requests
import yaml

from mayu_py.lab.etcd import EtcdCluster
from mayu_py.lab.netns import InNamespace

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    """A `mayu serve` child process and what a test needs to talk to it."""

    url: str
    token: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    tls_url: str
    namespace: str | None = None  # the network namespace serve runs in (and is reached from)

    def inside(self, fn: Callable[[], T]) -> T:
        """Run fn where the server is reachable: here, or inside its network namespace."""
        if self.namespace is None:
            return fn()
        with InNamespace(self.namespace) as ns:
            return ns.call(fn, timeout=60)

    @property
    def ca_file(self) -> Path:
        """The server CA machines pin (and clients verify the HTTPS listener with)."""
        return self.data_dir / "pki" / "server" / "ca.crt"

    def api(self, method: str, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.inside(
            lambda: requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        )

    def mayuctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MAYU_URL": self.url, "MAYU_TOKEN": self.token}
        return subprocess.run(
            [str(BIN / "mayuctl"), *args], capture_output=True, text=True, env=env, timeout=60
        )

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def start_server(
    data_dir: Path,
    *,
    config: dict | None = None,
    listen: str | None = None,
    workers: int = 2,
    extra_args: tuple[str, ...] = (),
    token: str = "test-admin-token-0123456789abcdef-long",
    tls_listen: str | None = None,
    namespace: str | None = None,
) -> RunningServer:
    """Start `mayu serve` (plain HTTP and HTTPS listeners) and wait until /healthz answers.
    With `namespace`, serve runs inside that network namespace (`listen` is an address there)."""
    listen = listen or f"127.0.0.1:{free_port()}"
    tls_listen = tls_listen or f"{listen.rpartition(':')[0]}:{free_port()}"
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        str(BIN / "mayu"),
        "serve",
        "--data-dir",
        str(data_dir),
        "--listen",
        listen,
        "--tls-listen",
        tls_listen,
        "--workers",
        str(workers),
        *extra_args,
    ]
    if config is not None:
        config_path = data_dir.parent / f"{data_dir.name}-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        args += ["--config", str(config_path)]
    log_path = data_dir.parent / f"{data_dir.name}-serve.log"
    env = {**os.environ, "MAYU_TOKEN": token}
    if namespace is not None:
        args = ["ip", "netns", "exec", namespace, *args]  # exec's serve: the same pid
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = RunningServer(
        f"http://{listen}", token, data_dir, process, log_path, f"https://{tls_listen}", namespace
    )

    def healthy() -> bool:
        try:
            return requests.get(server.url + "/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mayu serve exited {process.returncode}: {log_path.read_text()}")
        if server.inside(healthy):
            return server
        time.sleep(0.1)
    server.kill(signal.SIGKILL)
    raise RuntimeError(f"mayu serve did not come up: {log_path.read_text()}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    srv = start_server(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """No test skips silently: one that skips (a missing peer or package) fails loudly."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"missing peer, refusing to skip: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    """The same for a module that skips as a whole."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped:
        report.outcome = "failed"
        report.longrepr = f"missing peer, refusing to skip: {report.longrepr}"


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A 0755 scratch directory under /tmp, for peers that drop privileges and must still
    reach it (dnsmasq runs as nobody; pytest's own tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="mayu-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One real 3-member etcd cluster (Debian's etcd-server) for the session; tests keep
    apart by key prefix. Tests that kill members start their own (mayu_py.lab.etcd)."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


# -- the unit tier runs no external program --------------------------------------------------

_VENV_BIN = Path(sys.executable).parent
_PYTHON = os.path.realpath(sys.executable)
_SPAWN_EVENTS = {"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system"}
_spawned: list[str] | None = None  # programs started by the current unit test, when one runs


def _our_python(program: str, env: dict | None) -> bool:
    """Is program this Python, a script of the venv, or a script run by this Python (or does
    it not exist at all, so nothing external runs)?"""
    if "/" not in program:
        found = shutil.which(program, path=(env or os.environ).get("PATH"))
        if found is None:
            return True
        program = found
    path = Path(program)
    if not path.is_file() or os.path.realpath(path) == _PYTHON or path.parent == _VENV_BIN:
        return True
    try:
        with path.open("rb") as handle:
            first = handle.readline(256)
    except OSError:
        return False
    words = first[2:].split() if first.startswith(b"#!") else []
    return bool(words) and os.path.realpath(os.fsdecode(words[0])) == _PYTHON


def _audit(event: str, args: tuple) -> None:  # type: ignore[type-arg]
    if _spawned is None or event not in _SPAWN_EVENTS:
        return
    if event == "os.system":
        _spawned.append(str(args[0]))
        return
    # (program, argv, env) sit at these positions of each event's arguments
    positions = {"subprocess.Popen": (0, 1, 3), "os.spawn": (1, 2, 3)}.get(event, (0, 1, 2))
    program, argv, env = (args[i] for i in positions)
    if not _our_python(os.fsdecode(program), env):
        _spawned.append(" ".join(os.fsdecode(a) for a in argv))


sys.addaudithook(_audit)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Watch what a unit test (not peer, not e2e) starts, from its setup to its teardown."""
    global _spawned
    peer = item.get_closest_marker("peer") or item.get_closest_marker("e2e")
    _spawned = None if peer else []


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After the fixtures' teardown: fail the unit test that started an external program."""
    global _spawned
    spawned, _spawned = _spawned, None
    if spawned:
        pytest.fail(
            "a unit test ran external programs (make it a peer test): " + "; ".join(spawned),
            pytrace=False,
        )
