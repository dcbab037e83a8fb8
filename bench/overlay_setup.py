"""Overlay setup per tenant on two "hosts" (issue 15: < 1 s per tenant).

Two network namespaces joined by an underlay veth pair (addresses only inside them), as in
tests/peers/test_overlay.py. For N tenants, each host's `HostOverlay.ensure` (bridge, VXLAN
device, FDB entries, iptables chains) is timed per tenant; then an unchanged `sync` of all N
(the agent's steady-state cost per pass), and `remove` per tenant. Run as root under
`flock /tmp/mayu-vm.lock`; the namespaces are deleted at the end.

    .venv/bin/python bench/overlay_setup.py [--tenants 1,10,50]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mayu_py.command import run  # noqa: E402
from mayu_py.virt.overlay import HostOverlay, TenantOverlay, Vtep  # noqa: E402

UNDERLAY = {"a": "10.231.0.1", "b": "10.231.0.2"}
FIRST_VNI = 5000


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def tenants_for(host: str, count: int) -> list[TenantOverlay]:
    other = "b" if host == "a" else "a"
    return [
        TenantOverlay(
            FIRST_VNI + i,
            (Vtep(UNDERLAY[other], UNDERLAY[other], (f"52:54:00:0f:{i >> 8:02x}:{i & 255:02x}",)),),
        )
        for i in range(count)
    ]


def measure(count: int) -> dict[str, float]:
    suffix = secrets.token_hex(2)
    ns = {h: f"mayu-overlay-bench-{h}-{suffix}" for h in UNDERLAY}
    try:
        for name in ns.values():
            run(["ip", "netns", "add", name])
        run(["ip", "-n", ns["a"], "link", "add", "under0", "type", "veth", "peer", "name",
             "under0", "netns", ns["b"]])  # fmt: skip
        for host, name in ns.items():
            run(["ip", "-n", name, "addr", "add", f"{UNDERLAY[host]}/24", "dev", "under0"])
            run(["ip", "-n", name, "link", "set", "under0", "up"])
        setup, remove, steady = [], [], []
        for host, name in ns.items():
            overlay = HostOverlay(f"bench-{host}", UNDERLAY[host], name)
            wanted = tenants_for(host, count)
            setup += [timed(overlay.ensure, t) for t in wanted]
            steady.append(timed(overlay.sync, wanted))
            remove += [timed(overlay.remove, t.vni) for t in wanted]
        return {
            "setup_median_ms": statistics.median(setup) * 1000,
            "setup_max_ms": max(setup) * 1000,
            "unchanged_sync_ms": statistics.median(steady) * 1000,
            "remove_median_ms": statistics.median(remove) * 1000,
        }
    finally:
        for name in ns.values():
            run(["ip", "netns", "del", name], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", default="1,10,50")
    args = parser.parse_args()
    print("| tenants per host | setup per tenant, median | max | unchanged sync of all "
          "| remove per tenant, median |")  # fmt: skip
    print("|---|---|---|---|---|")
    for count in (int(c) for c in args.tenants.split(",")):
        r = measure(count)
        print(f"| {count} | {r['setup_median_ms']:.1f} ms | {r['setup_max_ms']:.1f} ms "
              f"| {r['unchanged_sync_ms']:.1f} ms | {r['remove_median_ms']:.1f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
