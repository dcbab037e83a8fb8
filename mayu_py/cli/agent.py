"""`mayu agent`: the node agent that turns this host's tenant nodes into libvirt objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from mayu_py.pki.layout import DRAINER_LIFETIME


@click.command("agent")
@click.option("--host-name", required=True, help="This host's name as registered with the server.")
@click.option("--libvirt-uri", default="qemu:///system", show_default=True)
@click.option(
    "--server",
    "server_url",
    envvar="MAYU_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="mayu server URL (env MAYU_URL).",
)
@click.option(
    "--state-dir",
    default="/var/lib/mayu-agent",
    show_default=True,
    help="Agent state: overlays, Ignition files, caches.",
)
@click.option(
    "--images-dir",
    default="/var/lib/mayu-agent/images",
    show_default=True,
    help="Read-only base images, versioned by file name.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True),
    help="File holding this host's agent token (else env MAYU_TOKEN).",
)
@click.option(
    "--source",
    "source_kind",
    type=click.Choice(["api", "kubernetes"]),
    default="api",
    show_default=True,
    help="Desired state: the mayu server's API, or TenantCluster objects in Kubernetes.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True),
    help="With --source kubernetes: kubeconfig file (default: in-cluster when run as a pod, "
    "else ~/.kube/config).",
)
@click.option("--interval", default=30.0, show_default=True, help="Periodic resync, seconds.")
@click.option("--once", is_flag=True, help="Reconcile once and exit.")
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (no auth: a management address).",
)
@click.option(
    "--underlay",
    default="",
    help="This host's VXLAN endpoint address (an address of this host): the agent then runs "
    "each tenant's VXLAN overlay and tells the address in its heartbeats.",
)
@click.option(
    "--overlay-netns",
    metavar="NAME",
    help="With --underlay: the network namespace (ip netns) holding the underlay address and "
    "the tenants' overlays; VMs reach them through an L2-only bridge here per tenant.",
)
@click.option(
    "--ingress-listen",
    metavar="HOST:PORT",
    help="Run HAProxy here, routing <tenant>.api.<--ingress-domain> (TLS passed through) to "
    "the tenant's masters on this host (not with --once).",
)
@click.option(
    "--ingress-domain",
    envvar="MAYU_INGRESS_DOMAIN",
    help="The server's tenants.ingress_domain (env MAYU_INGRESS_DOMAIN); needed with "
    "--ingress-listen.",
)
@click.option(
    "--drain",
    "drain_kind",
    type=click.Choice(["none", "kube"]),
    default="kube",
    show_default=True,
    help="Before a node of a still-wanted tenant is deleted (a rolling replacement, a scale "
    "down): kube = cordon it and evict its pods through the tenant's Kubernetes API (with "
    "this host's drain credential); none = delete it undrained. Either way the agent says "
    "what it did.",
)
@click.option(
    "--drain-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0, DRAINER_LIFETIME.renew_before.total_seconds()),
    help="Seconds a drain may take; a tenant API unreachable that long: the drain is skipped "
    "(said in the log and the node's message). At most the time the drain certificate, "
    "fetched as a drain starts, is still valid for (30 minutes).",
)
def agent(
    host_name: str,
    libvirt_uri: str,
    server_url: str,
    state_dir: str,
    images_dir: str,
    token_file: str | None,
    source_kind: str,
    kubeconfig: str | None,
    interval: float,
    once: bool,
    metrics_listen: str | None,
    underlay: str,
    overlay_netns: str | None,
    ingress_listen: str | None,
    ingress_domain: str | None,
    drain_kind: str,
    drain_timeout: float,
) -> None:
    """Reconcile the tenant clusters assigned to this host."""
    if ingress_listen and not ingress_domain:
        raise click.UsageError("--ingress-listen needs --ingress-domain (or MAYU_INGRESS_DOMAIN)")
    from mayu_py.agent.loop import AgentOptions, run_agent
    from mayu_py.agent.source import ApiSource, DesiredSource

    source: DesiredSource
    if source_kind == "kubernetes":
        from mayu_py.agent.kube_source import KubernetesSource

        source = KubernetesSource(
            host_name,
            _kube_client(kubeconfig),
            pki_root=Path(state_dir) / "tenant-pki",
            watch=not once,
        )
        address = ""
    else:
        token = (
            Path(token_file).read_text().strip() if token_file else os.environ.get("MAYU_TOKEN", "")
        )
        if not token:
            raise click.UsageError("give --token-file or set MAYU_TOKEN (agent or admin token)")
        source = api = ApiSource(server_url, token, host_name)
        address = api.local_address()
        if not once:
            api.start_watch()
    options = AgentOptions(
        host_name=host_name,
        state_dir=Path(state_dir),
        images_dir=Path(images_dir),
        libvirt_uri=libvirt_uri,
        interval=interval,
        once=once,
        address=address,
        underlay=underlay,
        overlay_netns=overlay_netns,
        metrics_listen=metrics_listen,
        ingress_listen=ingress_listen,
        ingress_domain=ingress_domain,
        drain=drain_kind,
        drain_timeout=drain_timeout,
    )
    run_agent(options, source)


def _kube_client(kubeconfig: str | None) -> Any:
    """A Kubernetes API client: the given kubeconfig, the pod's service account, or
    ~/.kube/config (kubectl's default)."""
    from kubernetes import client, config

    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config()
    except config.ConfigException as exc:
        raise click.UsageError(f"no usable Kubernetes configuration: {exc}") from exc
