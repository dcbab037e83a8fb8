"""`mayu agent --ingress-listen` as a process against a real `mayu serve` (libvirt's mock
driver test:///default for the domains, the real HAProxy on 127.0.0.1): the routes follow the
tenant placed on the host; an agent killed -9 leaves its HAProxy running, the next agent ends
it and runs its own; a stopped agent stops its HAProxy."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mayu_py.images.base import install_base_image
from mayu_py.pids import alive
from tests.conftest import BIN, RunningServer, free_port
from tests.support.tenants import acme
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer


def _agent(server: RunningServer, tmp_path: Path, listen: str) -> subprocess.Popen[bytes]:
    args = [
        str(BIN / "mayu"), "agent", "--host-name", "h1", "--libvirt-uri", "test:///default",
        "--server", server.url, "--state-dir", str(tmp_path / "state"),
        "--images-dir", str(tmp_path / "images"), "--interval", "1",
        "--ingress-listen", listen, "--ingress-domain", "ing.test",
    ]  # fmt: skip
    env = {**os.environ, "MAYU_TOKEN": server.token, "MAYU_ACCEL": "tcg"}
    with open(tmp_path / "agent.log", "ab") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.fixture
def images(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "initrd").write_bytes(b"initrd")
    install_base_image(tmp_path / "images", "lab", "1", tmp_path / "vmlinuz", tmp_path / "initrd")
    yield tmp_path / "images"


def _haproxy_pid(tmp_path: Path) -> int | None:
    try:
        pid = int((tmp_path / "state" / "ingress" / "haproxy.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def _routes(tmp_path: Path) -> str:
    try:
        return (tmp_path / "state" / "ingress" / "haproxy.cfg").read_text()
    except OSError:
        return ""


def test_the_agent_runs_its_ingress_and_a_killed_agents_haproxy_is_replaced(
    server: RunningServer, tmp_path: Path, images: Path
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    log = tmp_path / "agent.log"
    agent = _agent(server, tmp_path, listen)
    try:
        wait_for("h1 registered", lambda: server.api("GET", "/api/v1/hosts").json()["items"], 30)
        assert server.api("POST", "/api/v1/tenants", json=acme()).status_code == 201
        route = "server acme-master-0 10.100.0.10:6443 check"
        wait_for("acme routed", lambda: route in _routes(tmp_path), 30)
        first = _haproxy_pid(tmp_path)
        assert first is not None, log.read_text()

        agent.send_signal(signal.SIGKILL)  # its HAProxy runs on, holding the listen address
        agent.wait(10)
        assert _haproxy_pid(tmp_path) == first
        agent = _agent(server, tmp_path, listen)
        wait_for("a new haproxy", lambda: _haproxy_pid(tmp_path) not in (None, first), 30)
        assert not alive(first)
        wait_for("acme routed again", lambda: route in _routes(tmp_path), 30)

        second = _haproxy_pid(tmp_path)
        agent.terminate()
        assert agent.wait(30) is not None
        assert second is not None and not alive(second), log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        leftover = _haproxy_pid(tmp_path)
        if leftover is not None:
            os.kill(leftover, signal.SIGKILL)
