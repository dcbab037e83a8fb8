"""Boot cost: CPU and wall time of one machine's whole boot conversation, in process.

The app of this checkout (Flask test client, the real SQLite store in a temporary data dir)
answers N machines one after another: no sockets, no TLS, no other process, so the figure is
the server's own work per machine and hardly moves with the load of a shared machine (the boot
storm's throughput does). Flows as in bench/boot_storm.py: `trusted` (/ipxe, the stub over
HTTP, the secret config as the HTTPS listener serves it, /report), `plain` (the secret config
over HTTP: `insecure_secrets_over_http`), and `legacy` for checkouts before the trust work
(no config: unknown machines registered at once; /ipxe, /ignition, /report).

    .venv/bin/python bench/boot_cost.py [--machines 500] [--flow trusted|plain|legacy] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from mayu_py.config import load_settings
from mayu_py.server.app import create_app
from mayu_py.store import open_store

TOKEN_RE = re.compile(r"token=([A-Za-z0-9_-]+)")
WARM_UP = 20
SOURCE = {"REMOTE_ADDR": "127.0.0.1"}
TLS_MARK = "mayu.tls"  # what the HTTPS listener's WSGI wrapper sets on every request


def _config(data_dir: Path, flow: str) -> dict[str, Any]:
    if flow == "legacy":
        return {"data_dir": str(data_dir)}
    return {
        "data_dir": str(data_dir),
        "groups": [{"name": "storm", "profile": "worker", "selector": {}}],
        "server": {
            "discovery": {"per_source_per_minute": 100_000, "per_minute": 1_000_000},
            "insecure_secrets_over_http": flow == "plain",
        },
    }


def _machine(client: Any, index: int, flow: str) -> None:
    mac = "52-54-00-" + "-".join(f"{index >> shift & 255:02x}" for shift in (16, 8, 0))
    script = client.get("/ipxe", query_string={"mac": mac}, environ_base=SOURCE)
    match = TOKEN_RE.search(script.get_data(as_text=True))
    assert match, script.get_data(as_text=True)
    query = {"mac": mac, "token": match.group(1)}
    steps = [SOURCE] + ([{**SOURCE, TLS_MARK: True}] if flow == "trusted" else [])
    for environ in steps:
        response = client.get("/ignition", query_string=query, environ_base=environ)
        assert response.status_code == 200, response.get_data(as_text=True)
    report = {"event": "installed", "details": {}}
    response = client.post("/report", query_string=query, json=report, environ_base=SOURCE)
    assert response.status_code == 200, response.get_data(as_text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=500)
    parser.add_argument("--flow", choices=("trusted", "plain", "legacy"), default="trusted")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mayu-boot-cost-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(_config(Path(tmp) / "data", args.flow)))
        settings = load_settings(config, environ={})
        store = open_store(settings.data_path)
        client = create_app(settings, store, "boot-cost-admin-token-0123456789abcdef").test_client()
        for i in range(WARM_UP):
            _machine(client, (1 << 23) + i, args.flow)
        profile = cProfile.Profile() if args.profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        for i in range(args.machines):
            _machine(client, i, args.flow)
        if profile:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        store.close()
    print(
        f"boot cost, flow {args.flow}: {cpu / args.machines * 1000:.2f} ms CPU, "
        f"{wall / args.machines * 1000:.2f} ms wall per machine ({args.machines} machines)"
    )
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
