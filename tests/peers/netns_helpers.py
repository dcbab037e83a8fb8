"""Throw-away network namespaces for peer tests: a server namespace with a bridge, client
namespaces attached to it by veth pairs. Nothing is created in the host's namespace, and the
namespaces have no route out, so no test packet can leave the machine (RECIPES.md section 8).

Run as a script, this module is a tiny DHCPv4/PXE client (standard library only, no scapy):

    python netns_helpers.py IFACE MAC ARCH [--user-class iPXE] [--wait SECONDS]
        [--servers N] [--boot-request SERVER --boot-item TYPE --ciaddr IP]

It broadcasts DHCPDISCOVER with option 60 `PXEClient:Arch:NNNNN:UNDI:002001`, option 93
(client arch) and optionally option 77 (user class, sent raw as iPXE does), and prints each
reply within --wait seconds (or until N servers have replied) as a JSON line: server (option
54), yiaddr, siaddr, file (header or option 67), option 60 and option 43 (hex). With --boot-request it sends a PXE boot-server
DHCPREQUEST (option 43 sub-option 71 = boot item TYPE) from CIADDR:68 to SERVER:4011, as a PXE
ROM does after a proxyDHCP menu. Linux lets it send from 0.0.0.0:68 with SO_BINDTODEVICE.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from mayu_py.command import run
from mayu_py.lab.netns import InNamespace

BRIDGE = "mayu-br0"
BRIDGE_MAC = "02:00:00:77:00:01"


def ns_run(
    ns: str, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run argv inside network namespace `ns`."""
    return run(["ip", "netns", "exec", ns, *argv], timeout=timeout, check=check)


@dataclass
class NetLab:
    """A server namespace holding BRIDGE with `server_ip`/24, plus attached namespaces."""

    server_ns: str
    prefix: str  # e.g. "10.77.123"
    namespaces: list[str] = field(default_factory=list)
    _veth_count: int = 0

    @property
    def server_ip(self) -> str:
        return f"{self.prefix}.1"

    @property
    def subnet(self) -> str:
        return f"{self.prefix}.0/24"

    def add_namespace(self, mac: str, address: str | None = None) -> tuple[str, str]:
        """A new namespace whose interface (MAC `mac`, optional address/24) sits on BRIDGE.

        Returns (namespace, interface name inside it).
        """
        ns = f"mayu-c{secrets.token_hex(3)}"
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        self._veth_count += 1
        host_end, peer_end = f"mayu-vs{self._veth_count}", "mayu-eth0"
        s = ["ip", "-n", self.server_ns]
        run([*s, "link", "add", host_end, "type", "veth", "peer", "name", peer_end, "netns", ns])
        run([*s, "link", "set", host_end, "master", BRIDGE, "up"])
        c = ["ip", "-n", ns]
        run([*c, "link", "set", peer_end, "address", mac])
        run([*c, "link", "set", "lo", "up"])
        run([*c, "link", "set", peer_end, "up"])
        if address:
            run([*c, "addr", "add", f"{address}/24", "dev", peer_end])
        return ns, peer_end


# Labs still open in this process: a lab's leak check is not about another lab's namespaces
# (a test may hold two sites at once, one opened after the other).
_OPEN_LABS: list[NetLab] = []


@contextmanager
def net_lab(ipv6: bool = False) -> Iterator[NetLab]:
    """Create the server namespace with its bridge; delete every namespace afterwards, and
    then nothing of the test is left (interfaces, namespaces, dnsmasq)."""
    lab = NetLab(
        server_ns=f"mayu-t{secrets.token_hex(3)}", prefix=f"10.77.{secrets.randbelow(150) + 100}"
    )
    # imported here: this module also runs as a script in namespaces, without tests/ on path
    from tests.support.leaks import Snapshot, assert_no_leaks, snapshot

    before = snapshot(None)
    _OPEN_LABS.append(lab)
    try:
        run(["ip", "netns", "add", lab.server_ns])
        lab.namespaces.append(lab.server_ns)
        s = ["ip", "-n", lab.server_ns]
        run([*s, "link", "set", "lo", "up"])
        run([*s, "link", "add", BRIDGE, "type", "bridge"])
        run([*s, "link", "set", BRIDGE, "type", "bridge", "forward_delay", "0"])
        # A bridge without an address of its own takes the lowest MAC of its ports: adding
        # a namespace could change it under the others' ARP caches (their packets to the
        # server then go nowhere for ~30 s). A fixed address never changes.
        run([*s, "link", "set", BRIDGE, "address", BRIDGE_MAC])
        run([*s, "addr", "add", f"{lab.server_ip}/24", "dev", BRIDGE])
        if ipv6:
            run([*s, "addr", "add", "fd77::1/64", "dev", BRIDGE, "nodad"])
        run([*s, "link", "set", BRIDGE, "up"])
        yield lab
    finally:
        _OPEN_LABS.remove(lab)
        for ns in reversed(lab.namespaces):
            run(["ip", "netns", "del", ns], check=False)
    after = snapshot(None)
    others = {ns for other in _OPEN_LABS for ns in other.namespaces}
    kind = "network namespace"
    objects = {**after.objects, kind: after.objects.get(kind, frozenset()) - others}
    assert_no_leaks(before, Snapshot(objects))


def udhcpc(ns: str, ifname: str, workdir: Path, *extra: str) -> dict[str, str]:
    """Run busybox udhcpc once inside `ns`: the interface gets the leased address; returns
    the environment its script saw on `bound` (ip, mask, serverid, boot_file, ...)."""
    env_file = workdir / "udhcpc.env"
    env_file.unlink(missing_ok=True)
    script = workdir / "udhcpc.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = bound ]; then env > {env_file}; '
        'ip -4 addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"; fi\n'
    )
    script.chmod(0o755)
    argv = ["busybox", "udhcpc", "-i", ifname, "-q", "-n", "-t", "5", "-T", "1"]
    proc = ns_run(ns, [*argv, "-s", str(script), *extra], timeout=30, check=False)
    assert proc.returncode == 0, f"udhcpc failed: {proc.stderr}"
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


@dataclass
class NetHost:
    """A namespace on the bridge with one address, sending HTTP requests from it (a thread
    that joined the namespace: nothing it sends can leave the machine)."""

    namespace: str
    mac: str
    address: str

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        def send() -> requests.Response:
            with requests.Session() as session:
                session.trust_env = False
                return session.request(method, url, timeout=30, **kwargs)

        with InNamespace(self.namespace) as ns:
            return ns.call(send, timeout=60)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)


MAGIC = b"\x63\x82\x53\x63"


def build_packet(
    mac: bytes,
    xid: int,
    arch: int,
    user_class: str | None,
    *,
    msg_type: int = 1,
    ciaddr: str = "0.0.0.0",
    boot_item: int | None = None,
) -> bytes:
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        xid,
        0,
        0x8000,
        socket.inet_aton(ciaddr),
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        mac.ljust(16, b"\0"),
        b"",
        b"",
    )
    vendor = f"PXEClient:Arch:{arch:05d}:UNDI:002001".encode()
    opts = bytes([53, 1, msg_type])
    opts += bytes([60, len(vendor)]) + vendor
    opts += bytes([93, 2]) + struct.pack("!H", arch)
    opts += bytes([94, 3, 1, 2, 1])
    opts += bytes([97, 17, 0]) + secrets.token_bytes(16)
    if user_class:
        opts += bytes([77, len(user_class)]) + user_class.encode()
    if boot_item is not None:
        item = bytes([71, 4]) + struct.pack("!HH", boot_item, 0)
        opts += bytes([43, len(item) + 1]) + item + b"\xff"
    opts += bytes([55, 6, 1, 3, 43, 54, 60, 67]) + b"\xff"
    return header + MAGIC + opts


def parse_reply(data: bytes) -> dict[str, object] | None:
    if len(data) < 240 or data[236:240] != MAGIC:
        return None
    xid = struct.unpack("!I", data[4:8])[0]
    options: dict[int, bytes] = {}
    i = 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        code, length = data[i], data[i + 1]
        options[code] = data[i + 2 : i + 2 + length]
        i += 2 + length
    return {
        "xid": xid,
        "type": options.get(53, b"\0")[0],
        "server": socket.inet_ntoa(options[54]) if 54 in options else None,
        "yiaddr": socket.inet_ntoa(data[16:20]),
        "siaddr": socket.inet_ntoa(data[20:24]),
        "file": (data[108:236].split(b"\0")[0] or options.get(67, b"")).decode(errors="replace"),
        "opt60": options.get(60, b"").decode(errors="replace"),
        "opt43": options.get(43, b"").hex(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("iface")
    parser.add_argument("mac")
    parser.add_argument("arch", type=int)
    parser.add_argument("--user-class")
    parser.add_argument("--wait", type=float, default=3.0)
    parser.add_argument("--servers", type=int, default=0, help="stop once N servers replied")
    parser.add_argument("--boot-request")
    parser.add_argument("--boot-item", type=int, default=0)
    parser.add_argument("--ciaddr", default="0.0.0.0")
    args = parser.parse_args()
    mac = bytes.fromhex(args.mac.replace(":", ""))
    xid = secrets.randbits(32)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.bind(("0.0.0.0", 68))
    target = ("255.255.255.255", 67)
    if args.boot_request:
        target = (args.boot_request, 4011)
        packet = build_packet(
            mac,
            xid,
            args.arch,
            args.user_class,
            msg_type=3,
            ciaddr=args.ciaddr,
            boot_item=args.boot_item,
        )
    else:
        packet = build_packet(mac, xid, args.arch, args.user_class)
    deadline = time.monotonic() + args.wait
    next_send = 0.0
    seen: set[tuple[object, ...]] = set()
    while (now := time.monotonic()) < deadline:
        if args.servers and len({key[0] for key in seen}) >= args.servers:
            return
        if now >= next_send:
            sock.sendto(packet, target)
            next_send = now + 1.0
        sock.settimeout(max(0.05, min(next_send, deadline) - now))
        try:
            data = sock.recv(2048)
        except TimeoutError:
            continue
        reply = parse_reply(data)
        if reply and reply["xid"] == xid:
            key = (reply["server"], reply["yiaddr"], reply["file"], reply["opt43"])
            if key not in seen:
                seen.add(key)
                print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
