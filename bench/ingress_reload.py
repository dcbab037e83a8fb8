"""HAProxy reload time of the tenant API ingress, and whether a session open across reloads
survives them.

In a network namespace of its own (no packet leaves the machine), the agent's ingress
controller (mayu_py.agent.ingress) runs the real HAProxy with routes for T tenants (1 master
each); tenant 0's master is an `openssl s_server` with a self-signed certificate. One TLS
session through the ingress to it is opened and held; then R updates each move one tenant's
master to another address (a changed configuration: checked with `haproxy -c`, written,
SIGUSR2 to the master, until it logs "Loading success."). Reported: the update (check + write +
reload) and the reload alone, median / p95 / max; and whether the held session still carried
a request and its answer after all the reloads.

    .venv/bin/python bench/ingress_reload.py  (as root: it makes a network namespace) [--tenants 1,10,100] [--reloads 20]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mayu_py.agent.ingress import IngressController  # noqa: E402
from mayu_py.tenants import ImageInfo, TenantNode, parse_tenant, tenant_nodes  # noqa: E402
from tests.support.ingress import HeldConnection, namespace  # noqa: E402
from tests.support.tenants import tenant_doc  # noqa: E402
from tests.support.wait import wait_for  # noqa: E402

DOMAIN = "bench.test"
LISTEN = "10.218.255.1:6443"


def masters(count: int) -> list[TenantNode]:
    """Tenant i's master (10.218.i.10, ingress address 10.218.i.2), for i < count (at most 250)."""
    found = []
    for i in range(count):
        doc = tenant_doc(f"t{i}", f"10.218.{i}.0/24", 1000 + i, workers=0)
        found += tenant_nodes(parse_tenant(doc, {"lab": ImageInfo("lab")}, []))
    return found


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "t0.crt", directory / "t0.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=kube-apiserver",
         "-addext", f"subjectAltName=DNS:t0.api.{DOMAIN}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_case(tenants: int, reloads: int, work: Path) -> None:
    nodes = masters(tenants)
    cert, key = self_signed(work)
    with namespace("mayu-bench-ingress-") as ns:
        addresses = {LISTEN.rpartition(":")[0], nodes[0].ip} | {n.ingress for n in nodes}
        for address in sorted(addresses):
            subprocess.run(
                ["ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "lo"], check=True
            )
        backend = subprocess.Popen(
            ["ip", "netns", "exec", ns, "openssl", "s_server", "-quiet", "-www",
             "-accept", f"{nodes[0].ip}:6443", "-cert", str(cert), "-key", str(key)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        ingress = IngressController(work / f"ingress-{tenants}", LISTEN, DOMAIN, netns=ns)
        try:
            ingress.start()
            ingress.update(nodes)
            held = HeldConnection(ns, LISTEN, f"t0.api.{DOMAIN}", cert)
            wait_for("the held session", lambda: "Verify return code: 0" in held.output, 30, 0.05)
            updates, reload_times = [], []
            for r in range(reloads):
                host = 11 if r % 2 == 0 else 10  # the last tenant's master moves, and back
                moved = [
                    *nodes[:-1],
                    replace(nodes[-1], ip=nodes[-1].ip.rsplit(".", 1)[0] + f".{host}"),
                ]
                started = time.perf_counter()
                assert ingress.update(moved)
                updates.append(time.perf_counter() - started)
                assert ingress.haproxy.last_reload_s is not None
                reload_times.append(ingress.haproxy.last_reload_s)
            survived = held.established() and held.finish().ok
        finally:
            ingress.stop()
            backend.terminate()
            backend.wait(10)
    ms = [x * 1000 for x in reload_times]
    um = [x * 1000 for x in updates]
    print(
        f"{tenants:4d} tenants, {reloads} reloads: update {statistics.median(um):.0f} ms median, "
        f"{pct(um, 0.95):.0f} p95, {max(um):.0f} max; reload alone "
        f"{statistics.median(ms):.0f} ms median, {pct(ms, 0.95):.0f} p95, {max(ms):.0f} max; "
        f"held session survived: {'yes' if survived else 'NO'}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", default="1,10,100")
    parser.add_argument("--reloads", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # HAProxy's own lines: a master moved is DOWN
    with tempfile.TemporaryDirectory(prefix="mayu-bench-ingress-") as tmp:
        for count in (int(c) for c in args.tenants.split(",")):
            run_case(count, args.reloads, Path(tmp))


if __name__ == "__main__":
    main()
