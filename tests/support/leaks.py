"""What an agent, lab or network test may leave behind on this host, and the check that it
left nothing.

A snapshot lists, by kind: libvirt domains, networks and nwfilter bindings (through the
connection given, if any), the network interfaces (bridges, taps, veths) and namespaces of the host
(/sys/class/net, /run/netns), the files under given directories (overlays, Ignition files,
serial logs) and the processes that are VMs, dnsmasq or carry a given marker (a work
directory) in their command line. `assert_no_leaks(before, after)` fails naming everything
the later snapshot holds that the earlier one did not.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import libvirt

VM_AND_DHCP = ("qemu-system", "dnsmasq")  # process names (comm, 15 characters at most)


@dataclass(frozen=True)
class Snapshot:
    objects: dict[str, frozenset[str]]  # kind -> names


def _libvirt_objects(conn: libvirt.virConnect) -> dict[str, frozenset[str]]:
    try:
        bindings = frozenset(
            f"{b.portDev()} {b.filterName()}" for b in conn.listAllNWFilterBindings()
        )
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:  # test:/// has none
            raise
        bindings = frozenset()
    return {
        "libvirt domain": frozenset(d.name() for d in conn.listAllDomains()),
        "libvirt network": frozenset(n.name() for n in conn.listAllNetworks()),
        "nwfilter binding": bindings,
    }


def _host_objects() -> dict[str, frozenset[str]]:
    netns = Path("/run/netns")
    return {
        "interface": frozenset(os.listdir("/sys/class/net")),
        "network namespace": frozenset(os.listdir(netns) if netns.is_dir() else ()),
    }


def _processes(markers: Iterable[str]) -> frozenset[str]:
    """'pid comm' of live processes named like a VM or dnsmasq or carrying a marker."""
    markers = [m for m in markers if m]
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if state == "Z":
            continue
        if comm.startswith(VM_AND_DHCP) or any(m in cmdline for m in markers):
            found.add(f"{entry.name} {comm}")
    return frozenset(found)


def _files(roots: Iterable[Path]) -> frozenset[str]:
    return frozenset(
        str(path) for root in roots if root.exists() for path in root.rglob("*") if path.is_file()
    )


def snapshot(
    conn: libvirt.virConnect | None,
    *,
    files: Iterable[Path] = (),
    host: bool = True,
    markers: Iterable[str] = (),
) -> Snapshot:
    """libvirt's objects on conn (if any), the files under `files`; with `host` (not for
    test:///) also interfaces, namespaces and processes (VMs, dnsmasq, any with a marker)."""
    objects = {"file": _files(files)}
    if conn is not None:
        objects |= _libvirt_objects(conn)
    if host:
        objects |= {**_host_objects(), "process": _processes(markers)}
    return Snapshot(objects)


def leaks(before: Snapshot, after: Snapshot) -> dict[str, list[str]]:
    """kind -> what `after` holds that `before` did not."""
    result = {}
    for kind, names in after.objects.items():
        new = sorted(names - before.objects.get(kind, frozenset()))
        if new:
            result[kind] = new
    return result


def assert_no_leaks(before: Snapshot, after: Snapshot) -> None:
    left = leaks(before, after)
    assert not left, f"left behind: {left}"
