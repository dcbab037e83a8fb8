"""`mayu serve --dhcp full` with its supervised dnsmasq, on a bridge in a throw-away namespace.

The server runs inside the namespace (`ip netns exec`), a busybox udhcpc in a second
namespace plays an iPXE client; the test talks HTTP to the server from a thread that joined
the namespace, so no packet can leave the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from mayu_py.lab.netns import InNamespace
from tests.peers.netns_helpers import BRIDGE, NetLab, net_lab, udhcpc
from tests.support.peers import require_peers
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

CLIENT_MAC = "02:77:00:00:00:41"
PORT = 8080
TOKEN = "serve-dhcp-test-token-0123456789abcdef"


@pytest.fixture(autouse=True, scope="module")
def _peers() -> None:
    require_peers("dnsmasq", "busybox", root=True)


@pytest.fixture
def tmp_path(open_tmp: Path) -> Path:
    """dnsmasq drops to nobody and must reach the TFTP root under it."""
    return open_tmp


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with net_lab(ipv6=True) as lab:
        yield lab


def _config(lab: NetLab, tmp_path: Path, interface: str = BRIDGE) -> Path:
    path = tmp_path / "serve.yaml"
    dhcp = {
        "mode": "full",
        "interface": interface,
        "server_ip": lab.server_ip,
        "subnet": lab.subnet,
        "range_start": f"{lab.prefix}.100",
        "range_end": f"{lab.prefix}.199",
    }
    path.write_text(yaml.safe_dump({"dhcp": dhcp}))
    return path


def _serve(lab: NetLab, tmp_path: Path, config: Path) -> subprocess.Popen[str]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    argv = [
        sys.executable, "-c", "from mayu_py.cli.mayu import main; main()", "serve",
        "--config", str(config), "--data-dir", str(data), "--dhcp", "full",
        "--listen", f"{lab.server_ip}:{PORT}", "--workers", "2",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAYU_")}
    env["MAYU_TOKEN"] = TOKEN
    return subprocess.Popen(
        ["ip", "netns", "exec", lab.server_ns, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def _healthz(url: str) -> bool:
    session = requests.Session()
    session.trust_env = False
    try:
        return session.get(f"{url}/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def _get(url: str) -> str:
    session = requests.Session()
    session.trust_env = False
    response = session.get(url, timeout=5)
    response.raise_for_status()
    return response.text


def _restarts(url: str) -> float:
    session = requests.Session()
    session.trust_env = False
    response = session.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    response.raise_for_status()
    line = next(ln for ln in response.text.splitlines() if ln.startswith("mayu_dnsmasq_restarts"))
    return float(line.split()[-1])


def _processes(ns: str) -> dict[int, str]:
    """pid -> command name of the live processes in namespace ns."""
    proc = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
    found = {}
    for pid in proc.stdout.split():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] != "Z":
            found[int(pid)] = comm
    return found


def _dnsmasq_pids(ns: str) -> list[int]:
    return sorted(pid for pid, comm in _processes(ns).items() if comm == "dnsmasq")


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM to serve alone (not its process group): serve itself must stop dnsmasq."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate(timeout=10)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Clean-up only: whatever serve left in its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def test_serve_runs_dnsmasq_that_hands_ipxe_the_boot_url_and_stops_with_it(
    lab: NetLab, tmp_path: Path
) -> None:
    server = _serve(lab, tmp_path, _config(lab, tmp_path))
    url = f"http://{lab.server_ip}:{PORT}"
    try:
        with InNamespace(lab.server_ns) as ns:
            _wait_healthy(ns, server, url)
            pids = _dnsmasq_pids(lab.server_ns)
            assert len(pids) == 1, pids
            conf = (tmp_path / "data" / "dhcp" / "dnsmasq.conf").read_text()
            assert f"dhcp-boot=tag:ipxe,{url}/boot.ipxe" in conf
            assert "enable-ra" in conf  # the bridge has fd77::1, so iPXE gets an RA

            client_ns, ifname = lab.add_namespace(CLIENT_MAC)
            # iPXE sends user class "iPXE" (option 77, raw); busybox takes hex for it.
            env = udhcpc(client_ns, ifname, tmp_path, "-x", "77:69505845")
            assert env["ip"].startswith(f"{lab.prefix}.")
            assert 100 <= int(env["ip"].rsplit(".", 1)[1]) <= 199
            assert env["serverid"] == lab.server_ip
            assert env["boot_file"] == f"{url}/boot.ipxe"
            # The URL it was given serves the generic iPXE script.
            assert ns.call(_get, env["boot_file"]).startswith("#!ipxe")
            # The lease is on record (the server's inventory records the source address).
            leases = (tmp_path / "data" / "dhcp" / "leases").read_text()
            assert CLIENT_MAC in leases and env["ip"] in leases
            # A plain PXE ROM (no iPXE user class) is told to chainload iPXE over TFTP.
            plain = udhcpc(client_ns, ifname, tmp_path, "-V", "PXEClient:Arch:00000:UNDI:002001")
            assert plain["boot_file"] == "undionly.kpxe"
            # A dnsmasq that dies is restarted, and /metrics (any worker) counts it.
            assert ns.call(_restarts, url) == 0
            os.kill(pids[0], signal.SIGKILL)
            wait_for("the dnsmasq restart counted", lambda: ns.call(_restarts, url) == 1, 30)
            assert _dnsmasq_pids(lab.server_ns) not in ([], pids)
    finally:
        out, err = _stop(server)
    left = _dnsmasq_pids(lab.server_ns)
    _kill_group(server)
    assert server.returncode == 0, err[-2000:]
    assert not left, "dnsmasq outlived mayu serve"
    assert "Traceback" not in err


def test_bad_interface_stops_serve_with_one_line_naming_the_field(
    lab: NetLab, tmp_path: Path
) -> None:
    server = _serve(lab, tmp_path, _config(lab, tmp_path, interface="mayu-nope0"))
    try:
        out, err = server.communicate(timeout=60)
    finally:
        _stop(server)
    assert server.returncode != 0
    assert "Traceback" not in err + out
    # DHCP is validated before anything is prepared: the whole output is the one error line.
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "dhcp.interface" in lines[0] and "mayu-nope0" in lines[0]
    assert not _dnsmasq_pids(lab.server_ns)


def _wait_healthy(ns: InNamespace, server: subprocess.Popen[str], url: str) -> None:
    def healthy() -> bool:
        assert server.poll() is None, f"serve exited: {server.communicate()}"
        return ns.call(_healthz, url)

    wait_for("mayu serve to answer /healthz", healthy, 30, every=0.2)


def test_dnsmasq_orphaned_by_a_killed_serve_is_replaced_on_restart(
    lab: NetLab, tmp_path: Path
) -> None:
    config = _config(lab, tmp_path)
    url = f"http://{lab.server_ip}:{PORT}"
    first = _serve(lab, tmp_path, config)
    second = None
    try:
        with InNamespace(lab.server_ns) as ns:
            _wait_healthy(ns, first, url)
            [orphan] = _dnsmasq_pids(lab.server_ns)
            # serve dies, master and workers (left alone, the workers would notice their
            # master's death only up to 30 s later); its dnsmasq survives
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            for pid, comm in _processes(lab.server_ns).items():
                if comm != "dnsmasq":
                    os.kill(pid, signal.SIGKILL)
            wait_for(
                "serve's workers gone",
                lambda: set(_processes(lab.server_ns).values()) == {"dnsmasq"},
            )
            assert _dnsmasq_pids(lab.server_ns) == [orphan], "nothing was orphaned"
            second = _serve(lab, tmp_path, config)

            def replaced() -> list[int] | None:
                assert second.poll() is None, second.communicate()
                pids = _dnsmasq_pids(lab.server_ns)
                return pids if pids not in ([orphan], []) else None

            pids = wait_for("the restarted serve to replace the orphan", replaced, 30, every=0.2)
            assert orphan not in pids and len(pids) == 1, pids
            _wait_healthy(ns, second, url)
    finally:
        _kill_group(first)
        if second is not None:
            _stop(second)
            _kill_group(second)
    assert not _dnsmasq_pids(lab.server_ns)
