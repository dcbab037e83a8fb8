"""The lab site's configuration: `mayu serve`'s config file and the site's own DHCP server.

The server's config is the user's `--config` file under the lab's facts: its plain HTTP and
HTTPS listen addresses (both inside the lab namespace, so the server certificate names
10.77.0.1), data dir, DHCP settings, room for the lab image's reports (every file Ignition
wrote, with its hash: more than the 4 KiB a production report needs), and one group per lab
machine that names it by MAC, so the lab approves its own machines through config (never by
arrival order): the first min(cluster.controller_count, N) machines get the `controller`
profile, the rest `worker`. The etcd members are pinned to those controllers unless the file
names its own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from mayu_py.config import load_settings
from mayu_py.errors import ConfigError
from mayu_py.images.disk import DISK_NAME, TCG_BOOT_ARGS
from mayu_py.lab import topology as topo

# The lab image reports every file Ignition wrote with its mode, size and SHA-256: a controller
# writes ~40 files (~7 KiB of report details).
REPORT_DETAILS_MAX_BYTES = 64 * 1024
# `--vms libvirt`: the machines have a disk; the lab image installs itself to it, reboots and
# from then on boots from the disk (the server answers them with the local-boot script).
INSTALL_DISK = "/dev/vda"


def disk_profiles() -> dict[str, dict[str, Any]]:
    """The lab's controller and worker profiles with an install to the machine's disk."""
    boot = {
        "kernel": "lab/vmlinuz",
        "initrd": ["lab/initrd.img"],
        "args": ["console=ttyS0", *TCG_BOOT_ARGS],
        "install": {"tool": "lab", "disk": INSTALL_DISK, "image": f"lab/{DISK_NAME}"},
    }
    return {
        role: boot | {"ignition_template": f"{role}.yaml.j2", "role": role}
        for role in ("controller", "worker")
    }


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _user_config(config_file: Path | None) -> dict[str, Any]:
    if config_file is None:
        return {}
    loaded = yaml.safe_load(Path(config_file).read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {config_file}: top level must be a mapping")
    return loaded


def controllers(machines: list[topo.LabMachine], controller_count: int) -> list[topo.LabMachine]:
    """The machines the lab names controllers: the first min(controller_count, N)."""
    return machines[: min(controller_count, len(machines))]


def machine_groups(machines: list[topo.LabMachine], controller_count: int) -> list[dict[str, Any]]:
    """One group per machine, selecting it by MAC, with its profile."""
    named = set(controllers(machines, controller_count))
    return [
        {
            "name": m.name,
            "profile": "controller" if m in named else "worker",
            "selector": {"mac": m.mac},
        }
        for m in machines
    ]


def serve_config(
    machines: list[topo.LabMachine],
    dhcp_mode: str,
    data_dir: Path,
    config_file: Path | None,
    disk_install: bool = False,
    approve_by_config: bool = True,
) -> dict[str, Any]:
    """The server's configuration: the user's file (if any) under the lab's facts;
    `disk_install`: the lab's profiles install to the machines' disks; without
    `approve_by_config` the lab names no group, so its machines wait to be approved by hand."""
    user = _user_config(config_file)
    cluster = load_settings(config_file, environ={}).cluster  # a bad file: one line, here
    dhcp: dict[str, Any] = {
        "mode": dhcp_mode,
        "interface": topo.BRIDGE,
        "server_ip": topo.SERVER_IP,
        "subnet": topo.SUBNET,
    }
    if dhcp_mode == "full":
        dhcp["range_start"] = topo.RANGE_START
        dhcp["range_end"] = topo.RANGE_END
        dhcp["reservations"] = {m.mac: m.ip for m in machines}
    elif isinstance(user.get("dhcp"), dict):
        # proxy: addresses are the site server's business; drop any the user file sets.
        user["dhcp"] = {
            k: v
            for k, v in user["dhcp"].items()
            if k not in ("range_start", "range_end", "reservations")
        }
    lab: dict[str, Any] = {
        "data_dir": str(data_dir),
        "server": {
            "listen": f"{topo.SERVER_IP}:{topo.PORT}",
            "tls": {"listen": f"{topo.SERVER_IP}:{topo.TLS_PORT}"},
            "report_details_max_bytes": REPORT_DETAILS_MAX_BYTES,
        },
        "dhcp": dhcp,
    }
    if approve_by_config:
        lab["groups"] = machine_groups(machines, cluster.controller_count)
    if disk_install:
        lab["profiles"] = disk_profiles()
    if not cluster.etcd_members:
        lab["cluster"] = {
            "etcd_members": [
                {"name": m.hostname, "address": m.ip}
                for m in controllers(machines, cluster.controller_count)
            ]
        }
    return _deep_merge(user, lab)


def serve_argv(
    config_path: Path,
    data_dir: Path,
    dhcp: str,
    listen: str = f"{topo.SERVER_IP}:{topo.PORT}",
    tls_listen: str = f"{topo.SERVER_IP}:{topo.TLS_PORT}",
) -> list[str]:
    """`mayu serve` as the lab runs it (a replica of `--store etcd`: on its own ports)."""
    return [
        sys.executable, "-c", "from mayu_py.cli.mayu import main; main()",
        "serve", "--config", str(config_path), "--data-dir", str(data_dir),
        "--listen", listen, "--tls-listen", tls_listen, "--dhcp", dhcp,
    ]  # fmt: skip


def site_dnsmasq_conf(machines: list[topo.LabMachine], lease_file: Path) -> str:
    """The site's ordinary DHCP server for `--dhcp proxy`: addresses and the machines'
    reservations, no boot options at all (RECIPES.md 4: `no-ping` here too, else boot storms
    time out; router advertisements so iPXE does not wait ~13 s for IPv6)."""
    lines = [
        "# the lab site's own DHCP server (mayu lab up --dhcp proxy); generated, do not edit",
        "port=0",
        f"interface={topo.SITE_VETH}",
        "bind-interfaces",
        "except-interface=lo",
        "pid-file=",
        "dhcp-authoritative",
        "no-ping",
        "log-dhcp",
        f"dhcp-leasefile={lease_file}",
        f"dhcp-range={topo.RANGE_START},{topo.RANGE_END},255.255.255.0,1h",
        *(f"dhcp-host={m.mac},{m.ip}" for m in machines),
        "enable-ra",
        f"dhcp-range=::,constructor:{topo.SITE_VETH},ra-only",
        f"ra-param={topo.SITE_VETH},10,0",
    ]
    return "\n".join(lines) + "\n"
