"""Renders a machine's secret Ignition config: its template with the cluster PKI's files for
that machine, its agent token and its report credential."""

from __future__ import annotations

from mayu_py.config import Group, Settings
from mayu_py.model import FileSpec, Machine
from mayu_py.pki import ClusterFacts, ClusterPKI, NodeIdentity
from mayu_py.render import ClusterContext, IgnitionRenderer, NodeFacts, RenderContext
from mayu_py.server.scripts import url_mac
from mayu_py.server.tokens import AGENT_TOKEN_FILE
from mayu_py.server.urls import ServerUrls
from mayu_py.store import Store

REPORT_CREDENTIAL_FILE = "/etc/mayu/report.token"
SERVER_CA_FILE = "/etc/mayu/server-ca.crt"


class Provisioner:
    """Renders a machine's Ignition config with the cluster PKI's files for that machine."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        renderer: IgnitionRenderer,
        pki: ClusterPKI,
    ):
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.pki = pki

    def cluster_facts(self) -> ClusterFacts:
        cluster = self.settings.cluster
        controllers = self.store.machines_with_role("controller")
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
        group: Group,
        facts: ClusterFacts,
        base_url: str,
        report_url: str | None,
    ) -> RenderContext:
        """The render context of an enrolled machine under its group's profile."""
        node = NodeFacts(
            name=machine.node_name,
            role=self.settings.profiles[group.profile].role,
            mac=machine.mac,
            ip=machine.window_address or machine.ip,
            uuid=machine.uuid,
            serial=machine.serial,
            labels=dict(machine.labels),
            metadata=dict(group.metadata),
        )
        cluster = ClusterContext.from_config(
            self.settings.cluster,
            api_endpoint=facts.api_endpoint,
            etcd_members=facts.etcd_members,
        )
        return RenderContext(
            node=node,
            cluster=cluster,
            ssh_authorized_keys=tuple(self.settings.ssh_authorized_keys),
            report_url=report_url,
            server_url=base_url,
        )

    def secret_config(
        self,
        machine: Machine,
        group: Group,
        urls: ServerUrls,
        report_credential: str,
        agent_token: str,
        server_ca_pem: str,
    ) -> bytes:
        """Ignition JSON for machine with its certificates, agent token and report credential:
        only for a verified boot token inside the machine's window (the caller checks it)."""
        report_url = f"{urls.https}/report?mac={url_mac(machine.mac)}"
        profile = self.settings.profiles[group.profile]
        facts = self.cluster_facts()
        address = machine.window_address or machine.ip
        node = NodeIdentity(
            name=machine.node_name, role=profile.role, ips=(address,) if address else ()
        )
        files = self.pki.node_files(node, facts)
        files += [
            FileSpec(AGENT_TOKEN_FILE, 0o600, agent_token + "\n"),
            FileSpec(REPORT_CREDENTIAL_FILE, 0o600, report_credential + "\n"),
            FileSpec(SERVER_CA_FILE, 0o644, server_ca_pem),
        ]
        context = self.context(machine, group, facts, urls.http, report_url)
        return self.renderer.render_json(profile.ignition_template, context, files)
