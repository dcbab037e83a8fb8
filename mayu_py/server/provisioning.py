"""Builds what a machine is served: its iPXE script and its Ignition config (with its PKI files)."""

from __future__ import annotations

import posixpath
from typing import Any

from mayu_py.config import Group, Profile, Settings
from mayu_py.model import FileSpec, Machine
from mayu_py.pki import ClusterFacts, ClusterPKI, NodeIdentity
from mayu_py.render import IgnitionRenderer
from mayu_py.server.tokens import AGENT_TOKEN_FILE, agent_token
from mayu_py.store import Store


def url_mac(mac: str) -> str:
    """The MAC as iPXE's ${net0/mac:hexhyp} writes it: safe inside a URL."""
    return mac.replace(":", "-")


def ipxe_script(
    profile: Profile, machine: Machine, token: str, base_url: str, asset_url: str
) -> str:
    """The per-machine iPXE script: kernel with Ignition and phone-home URLs, initrds, boot."""
    query = f"mac={url_mac(machine.mac)}&token={token}"
    initrd_names = [posixpath.basename(path) for path in profile.initrd]
    args = [
        *(f"initrd={name}" for name in initrd_names),
        *profile.args,
        f"ignition.config.url={base_url}/ignition?{query}",
        f"mayu.report={base_url}/report?{query}",
    ]
    lines = ["#!ipxe", f"echo mayu: booting {machine.hostname} ({machine.mac})"]
    lines.append(f"kernel {asset_url}/{profile.kernel} {' '.join(args)}")
    lines.extend(f"initrd {asset_url}/{path}" for path in profile.initrd)
    lines.append("boot")
    return "\n".join(lines) + "\n"


def boot_script(base_url: str) -> str:
    """The generic script every machine gets first: chains to /ipxe with its identity."""
    identity = "mac=${net0/mac:hexhyp}&uuid=${uuid}&arch=${buildarch}&platform=${platform}"
    return f"""#!ipxe
set tries:int32 0
:retry
inc tries
chain --autofree {base_url}/ipxe?{identity}&serial=${{serial}} && goto done ||
echo mayu: no boot script yet (try ${{tries}}), retrying in 5 s
iseq ${{tries}} 60 && goto giveup ||
sleep 5
goto retry
:giveup
echo mayu: giving up, rebooting
reboot
:done
"""


class Provisioner:
    """Renders a machine's Ignition config with the cluster PKI's files for that machine."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        renderer: IgnitionRenderer,
        pki: ClusterPKI,
        agent_key: bytes,
    ):
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.pki = pki
        self.agent_key = agent_key

    def cluster_facts(self) -> ClusterFacts:
        cluster = self.settings.cluster
        controllers = self.store.machines_with_label("role", "controller")
        members = [(m.name, m.address) for m in cluster.etcd_members] or [
            (c.node_name, c.ip or c.node_name) for c in controllers[: cluster.controller_count]
        ]
        endpoint = cluster.api_endpoint
        if endpoint is None:
            first = members[0][1] if members else "127.0.0.1"
            endpoint = f"https://{first}:6443"
        return ClusterFacts(
            name=cluster.name,
            domain=cluster.domain,
            service_ip=cluster.service_ip,
            api_endpoint=endpoint,
            etcd_members=tuple(members),
        )

    def context(
        self,
        machine: Machine,
        group: Group | None,
        facts: ClusterFacts,
        base_url: str,
        report_url: str | None,
    ) -> dict[str, Any]:
        cluster = self.settings.cluster
        profile = self.settings.profiles[group.profile] if group else None
        return {
            "node": {
                "name": machine.node_name,
                "role": profile.role if profile else machine.labels.get("role", "worker"),
                "mac": machine.mac,
                "ip": machine.ip,
                "uuid": machine.uuid,
                "serial": machine.serial,
                "labels": dict(machine.labels),
                "metadata": dict(group.metadata) if group else {},
            },
            "cluster": {
                "name": cluster.name,
                "domain": cluster.domain,
                "kubernetes_version": cluster.kubernetes_version,
                "kubernetes_minor": cluster.kubernetes_minor,
                "pod_cidr": cluster.pod_cidr,
                "service_cidr": cluster.service_cidr,
                "cluster_dns": cluster.cluster_dns,
                "service_ip": cluster.service_ip,
                "api_endpoint": facts.api_endpoint,
                "etcd_members": [{"name": n, "address": a} for n, a in facts.etcd_members],
            },
            "ssh_authorized_keys": list(self.settings.ssh_authorized_keys),
            "report_url": report_url,
            "server_url": base_url,
        }

    def ignition(self, machine: Machine, group: Group, base_url: str, token: str) -> bytes:
        """Ignition JSON for machine with its certificates and agent token; only for a verified
        boot token (the caller checks it)."""
        report_url = f"{base_url}/report?mac={url_mac(machine.mac)}&token={token}"
        profile = self.settings.profiles[group.profile]
        facts = self.cluster_facts()
        node = NodeIdentity(
            name=machine.node_name,
            role=profile.role,
            ips=(machine.ip,) if machine.ip else (),
        )
        files = self.pki.node_files(node, facts)
        files.append(
            FileSpec(AGENT_TOKEN_FILE, 0o600, agent_token(self.agent_key, node.name) + "\n")
        )
        context = self.context(machine, group, facts, base_url, report_url)
        return self.renderer.render_json(profile.ignition_template, context, files)
