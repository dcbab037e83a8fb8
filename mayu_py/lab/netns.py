"""The lab network: namespace, bridge and taps; and running Python code inside the namespace.

Nothing with an address is created in the host's namespace. `--vms libvirt` adds an
address-less bridge there (libvirt puts its domains' taps in the host's namespace) and a veth
pair from it into the lab bridge (`link_host_bridge`, RECIPES.md 12).

Code that talks to lab addresses (the admin API, the boot plane) runs on a worker thread that
has joined the namespace with setns(2), which changes only that thread's network namespace,
so it cannot reach anything outside.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from mayu_py.command import run
from mayu_py.errors import CommandError, ConfigError
from mayu_py.lab import topology as topo

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def exists(namespace: str = topo.NAMESPACE) -> bool:
    return (NETNS_DIR / namespace).exists()


def create_network(namespace: str = topo.NAMESPACE) -> None:
    """The namespace with lo up and the bridge holding the server's IPv4 and IPv6 addresses."""
    run(["ip", "netns", "add", namespace])
    n = ["ip", "-n", namespace]
    run([*n, "link", "set", "lo", "up"])
    run([*n, "link", "add", topo.BRIDGE, "type", "bridge", "forward_delay", "0"])
    run([*n, "addr", "add", f"{topo.SERVER_IP}/{topo.PREFIX_LEN}", "dev", topo.BRIDGE])
    # An IPv6 address lets dnsmasq send router advertisements (RECIPES.md 4, point 2).
    run([*n, "addr", "add", topo.SERVER_IPV6, "dev", topo.BRIDGE, "nodad"])
    run([*n, "link", "set", topo.BRIDGE, "up"])


def add_tap(name: str, namespace: str = topo.NAMESPACE) -> None:
    n = ["ip", "-n", namespace]
    run([*n, "tuntap", "add", "dev", name, "mode", "tap"])
    run([*n, "link", "set", name, "master", topo.BRIDGE, "up"])


def link_host_bridge(namespace: str = topo.NAMESPACE) -> None:
    """The host's lab bridge (no address, no IPv6: no SLAAC from the lab's router
    advertisements) and the veth pair joining it to the lab bridge in the namespace."""
    run(["ip", "link", "add", topo.ROOT_BRIDGE, "type", "bridge", "forward_delay", "0"])
    run(["ip", "link", "add", topo.ROOT_VETH, "type", "veth", "peer", "name", topo.NS_VETH,
         "netns", namespace])  # fmt: skip
    for link in (topo.ROOT_BRIDGE, topo.ROOT_VETH):
        run(["sysctl", "-q", "-w", f"net.ipv6.conf.{link}.disable_ipv6=1"])
    run(["ip", "link", "set", topo.ROOT_VETH, "master", topo.ROOT_BRIDGE, "up"])
    run(["ip", "link", "set", topo.ROOT_BRIDGE, "up"])
    run(["ip", "-n", namespace, "link", "set", topo.NS_VETH, "master", topo.BRIDGE, "up"])


def unlink_host_bridge() -> list[str]:
    """Delete the host's lab bridge and veth end when they exist (the veth explicitly: `ip
    netns del` leaves it while a process of the namespace is still exiting); a line each."""
    done = []
    for link, what in ((topo.ROOT_VETH, "veth pair"), (topo.ROOT_BRIDGE, "host bridge")):
        if Path(f"/sys/class/net/{link}").exists():
            run(["ip", "link", "del", link], check=False)
            done.append(f"deleted {what} {link}")
    return done


def create_site(namespace: str = topo.SITE_NAMESPACE, lab: str = topo.NAMESPACE) -> None:
    """The site's namespace, joined to the lab bridge by a veth pair (RECIPES.md 4: a second
    dnsmasq needs its own namespace, both want port 67). Both ends live in namespaces, so
    deleting either namespace removes the pair; nothing is created in the host's."""
    run(["ip", "netns", "add", namespace])
    s, n = ["ip", "-n", namespace], ["ip", "-n", lab]
    run([*s, "link", "set", "lo", "up"])
    run([*n, "link", "add", topo.SITE_VETH_PEER, "type", "veth", "peer", "name", topo.SITE_VETH,
         "netns", namespace])  # fmt: skip
    run([*n, "link", "set", topo.SITE_VETH_PEER, "master", topo.BRIDGE, "up"])
    run([*s, "addr", "add", f"{topo.SITE_IP}/{topo.PREFIX_LEN}", "dev", topo.SITE_VETH])
    run([*s, "addr", "add", topo.SITE_IPV6, "dev", topo.SITE_VETH, "nodad"])
    run([*s, "link", "set", topo.SITE_VETH, "up"])


def pids(namespace: str = topo.NAMESPACE) -> list[int]:
    """Every process whose network namespace is `namespace` (empty when it does not exist)."""
    if not exists(namespace):
        return []
    proc = run(["ip", "netns", "pids", namespace], check=False, timeout=10.0)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def delete(namespace: str = topo.NAMESPACE) -> None:
    """Delete the namespace (its bridge and taps go with it); no error when already gone."""
    if not exists(namespace):
        return
    try:
        run(["ip", "netns", "del", namespace], timeout=30.0)
    except CommandError as exc:
        if exists(namespace):
            raise ConfigError(
                f"cannot delete network namespace {namespace}: {exc.message}"
            ) from None


def _enter(namespace: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({namespace}): {os.strerror(err)}")
    finally:
        os.close(fd)


class InNamespace:
    """Runs callables on one worker thread that lives inside a network namespace."""

    def __init__(self, namespace: str = topo.NAMESPACE) -> None:
        if not exists(namespace):
            raise ConfigError(f"network namespace {namespace} does not exist")
        self.namespace = namespace
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"netns-{namespace}", initializer=self._init
        )

    def _init(self) -> None:
        _enter(self.namespace)

    def call(self, fn: Callable[..., T], *args: object, timeout: float = 30.0) -> T:
        # A failed setns breaks the pool (BrokenThreadPool): fn never runs outside.
        return self._pool.submit(fn, *args).result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> InNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
