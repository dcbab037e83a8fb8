"""The lab's admin client reaches a real `mayu serve` that listens only inside a network
namespace, through the namespace thread (its injected transport); from the host's namespace
the same address answers nothing. The namespace has only `lo`: no packet can leave it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mayu_py.api_client import AdminClient, ApiError
from mayu_py.command import run
from mayu_py.lab.api import LabClient
from mayu_py.lab.netns import InNamespace
from mayu_py.tenants import NodeReport, NodeState
from tests.conftest import free_port
from tests.support.tenants import acme

pytestmark = pytest.mark.peer

TOKEN = "lab-client-test-token-0123456789abcdef"
URL = f"http://127.0.0.1:{free_port()}"  # free here, so nothing answers outside the namespace


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabClient]:
    namespace = f"mayu-lct{secrets.token_hex(3)}"
    run(["ip", "netns", "add", namespace])
    server = None
    try:
        run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        serve = [sys.executable, "-c", "from mayu_py.cli.mayu import main; main()", "serve"]
        args = ["--data-dir", str(tmp_path / "data"), "--listen", URL.removeprefix("http://")]
        with open(tmp_path / "serve.log", "ab") as log:
            server = subprocess.Popen(
                ["ip", "netns", "exec", namespace, *serve, *args, "--workers", "1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MAYU_TOKEN": TOKEN},
                start_new_session=True,
            )
        with InNamespace(namespace) as ns:
            client = LabClient(ns, URL, TOKEN)
            deadline = time.monotonic() + 30
            while not client.healthy():
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "mayu serve did not answer in the namespace"
                time.sleep(0.1)
            yield client
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        run(["ip", "netns", "del", namespace])


def test_the_lab_client_talks_through_its_namespace(lab: LabClient) -> None:
    assert not AdminClient(URL, TOKEN, timeout=2).healthy()  # nothing there outside
    assert lab.create_tenant(acme())["metadata"]["name"] == "acme"
    assert [t["metadata"]["name"] for t in lab.tenants()] == ["acme"]
    with pytest.raises(ApiError) as info:
        lab.create_tenant(acme())
    assert info.value.status == 409 and "tenant exists" in info.value.message
    report = NodeReport("acme", "acme-master-0", NodeState.RUNNING, None, "lab-host")
    nodes = lab.report_node(report)["status"]["nodes"]
    assert nodes[0]["state"] == "running"
    assert lab.machines() == {} and lab.hosts() == []
    assert "chain" in lab.get_text("/boot.ipxe")
