"""Node conditions end to end without a VM boot: a real `mayu serve`, the real agent (its API
source) and the real libvirtd (qemu:///system).

A host reports its base images in its heartbeats; a tenant is placed on it; the image then
goes from the host: the agent fails the node with `BaseImageMissing` and the command that fixes
it, which the tenant API and `mayuctl tenants show` carry. A second tenant asks for the image
no host has now: it stays pending with `NoHostWithImage`. Deleting both leaves nothing.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mayu_py.agent.loop import Agent
from mayu_py.agent.source import ApiSource
from mayu_py.agent.statedir import StateDir
from mayu_py.images.base import BaseImages, install_base_image
from mayu_py.virt.host import LibvirtHost
from tests.conftest import RunningServer
from tests.support.leaks import assert_no_leaks, snapshot
from tests.support.libvirtd import URI, ensure_daemons
from tests.support.tenants import tenant_doc
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer
SUFFIX = uuid.uuid4().hex[:6]
HOST = f"s18-{SUFFIX}"
BROKEN, WAITING = f"cond{SUFFIX}a", f"cond{SUFFIX}b"
NETS = {BROKEN: ("10.233.1.0/24", 9233), WAITING: ("10.233.2.0/24", 9234)}


@pytest.fixture
def work() -> Iterator[Path]:
    ensure_daemons()
    path = Path(f"/var/tmp/mayu-cond-{SUFFIX}")
    path.mkdir(mode=0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _conditions(holder: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in holder.get("conditions") or []}


def _create(server: RunningServer, name: str) -> dict[str, Any]:
    cidr, vni = NETS[name]
    doc = tenant_doc(name, cidr, vni, workers=0)
    created = server.api("POST", "/api/v1/tenants", json=doc)
    assert created.status_code == 201, created.text
    return created.json()


def _status(server: RunningServer, name: str) -> dict[str, Any]:
    shown = server.api("GET", f"/api/v1/tenants/{name}")
    assert shown.status_code == 200, shown.text
    return shown.json()["status"]


def test_missing_image_and_no_host_with_image_say_why(server: RunningServer, work: Path) -> None:
    (work / "vmlinuz").write_bytes(b"kernel")  # never booted: the node fails before its VM
    (work / "initrd").write_bytes(b"initrd")
    images = work / "images"
    install_base_image(images, "lab", "1", work / "vmlinuz", work / "initrd")
    host = LibvirtHost(URI)
    state = StateDir(work / "state")
    before = snapshot(host.connection(), files=[state.root], markers=[str(work)])
    source = ApiSource(server.url, server.token, HOST)
    agent = Agent(HOST, host, source, state, BaseImages(images), address="127.0.0.1")
    try:
        agent.register()
        seen = server.api("GET", "/api/v1/hosts").json()["items"]
        reported = next(h for h in seen if h["name"] == HOST)["images"]
        assert [(i["name"], i["version"], len(i["sha256"])) for i in reported] == [("lab", "1", 64)]
        placed = _create(server, BROKEN)["status"]["nodes"][0]
        assert placed["host"] == HOST
        assert _conditions(placed)["Scheduled"]["status"] == "True"

        (images / "lab.json").unlink()  # the image goes after its node was placed here
        agent.register()
        result = agent.run_once()
        node = f"{BROKEN}-master-0"
        assert set(result.errors) == {node}
        status = _status(server, BROKEN)
        ready = _conditions(status["nodes"][0])["Ready"]
        assert (status["nodes"][0]["state"], ready["status"], ready["reason"]) == (
            "failed",
            "False",
            "BaseImageMissing",
        )
        assert ready["message"] == (
            f"base image `lab` is not present on host `{HOST}`: run `mayu images build-lab "
            f"--tenant-images DIR` on {HOST} (DIR: its agent's --images-dir)"
        )
        degraded = _conditions(status)["Degraded"]
        assert (status["phase"], degraded["status"], degraded["reason"]) == (
            "Degraded",
            "True",
            "BaseImageMissing",
        )
        shown = server.mayuctl("tenants", "show", BROKEN)
        assert shown.returncode == 0, shown.stderr
        assert "BaseImageMissing" in shown.stdout and f"node/{node}" in shown.stdout

        waiting = _create(server, WAITING)["status"]
        assert [n["host"] for n in waiting["nodes"]] == [None]
        scheduled = _conditions(waiting["nodes"][0])["Scheduled"]
        assert (scheduled["status"], scheduled["reason"]) == ("False", "NoHostWithImage")
        assert _conditions(waiting)["Progressing"]["reason"] == "NoHostWithImage"
        agent.register()  # the heartbeats go on: still no host has the image
        assert _status(server, WAITING)["nodes"][0]["state"] == "pending"
        table = server.mayuctl("tenants", "show", WAITING)
        assert "NoHostWithImage" in table.stdout and "base image `lab`" in table.stdout

        for name in (BROKEN, WAITING):
            assert server.api("DELETE", f"/api/v1/tenants/{name}").status_code == 202
        assert agent.run_once().errors == {}

        def purged() -> bool:
            return all(server.api("GET", f"/api/v1/tenants/{n}").status_code == 404 for n in NETS)

        wait_for("both tenants purged", purged, 10.0)
    finally:
        source.close()
        try:
            assert_no_leaks(
                before, snapshot(host.connection(), files=[state.root], markers=[str(work)])
            )
        finally:
            for net in host.list_networks():
                if net.facts.owned and SUFFIX in net.facts.name:
                    host.delete_network(net.facts.name)
            host.close()
