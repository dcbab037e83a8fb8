"""What a node of each role receives and where: kubeadm's standard paths and identities.

Client identities follow kubeadm, except that the API server's kubelet client and the admin
user are in `system:masters` rather than kubeadm 1.29's `kubeadm:cluster-admins` (that group
only works once kubeadm has created its ClusterRoleBinding, and nothing here runs kubeadm).
Control-plane components on a controller reach their own API server at LOCAL_API_SERVER, so
the API server certificate also names localhost/127.0.0.1; kubelets use the cluster's
api_endpoint.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from mayu_py.model import FileSpec
from mayu_py.pki.authorities import ETCD, FRONT_PROXY, KUBERNETES, Authorities
from mayu_py.pki.identity import (
    ClusterFacts,
    NodeIdentity,
    check_dns_name,
    check_ip,
    endpoint_host,
    is_ip,
)
from mayu_py.pki.kubeconfig import render
from mayu_py.pki.leafcache import Leaf
from mayu_py.pki.x509 import (
    LeafSpec,
    Lifetime,
    certificate_pem,
    private_key_pem,
    public_key_pem,
)

PKI = "/etc/kubernetes/pki"
KUBELET_PKI = "/var/lib/kubelet/pki"
LOCAL_API_SERVER = "https://127.0.0.1:6443"
CERT_MODE = 0o644
SECRET_MODE = 0o600

# leaf name -> (certificate path, key path)
_CERT_FILES = {
    "apiserver": (f"{PKI}/apiserver.crt", f"{PKI}/apiserver.key"),
    "apiserver-kubelet-client": (
        f"{PKI}/apiserver-kubelet-client.crt",
        f"{PKI}/apiserver-kubelet-client.key",
    ),
    "apiserver-etcd-client": (
        f"{PKI}/apiserver-etcd-client.crt",
        f"{PKI}/apiserver-etcd-client.key",
    ),
    "front-proxy-client": (f"{PKI}/front-proxy-client.crt", f"{PKI}/front-proxy-client.key"),
    "etcd-server": (f"{PKI}/etcd/server.crt", f"{PKI}/etcd/server.key"),
    "etcd-peer": (f"{PKI}/etcd/peer.crt", f"{PKI}/etcd/peer.key"),
    "etcd-healthcheck-client": (
        f"{PKI}/etcd/healthcheck-client.crt",
        f"{PKI}/etcd/healthcheck-client.key",
    ),
    "kubelet-serving": (f"{KUBELET_PKI}/kubelet.crt", f"{KUBELET_PKI}/kubelet.key"),
}

# leaf name -> (kubeconfig path, whether it talks to the local API server); as in kubeadm, the
# kubeconfig's user is named after the certificate's common name.
_KUBECONFIGS = {
    "controller-manager": ("/etc/kubernetes/controller-manager.conf", True),
    "scheduler": ("/etc/kubernetes/scheduler.conf", True),
    "kubelet-client": ("/etc/kubernetes/kubelet.conf", False),
    "admin": ("/etc/kubernetes/admin.conf", True),
}

ADMIN_LEAF = "admin"
ADMIN_SPEC = LeafSpec(
    ca=KUBERNETES, common_name="kubernetes-admin", organizations=("system:masters",), client=True
)
# The agents' drain identity: RBAC in the tenant (mayu_py.render.addons) lets this group
# cordon nodes and evict pods, nothing more.
DRAINER_LEAF = "drainer"
DRAINERS_GROUP = "mayu:drainers"
# Tenant clusters have no CRL, so a drain certificate cannot be revoked when its host stops
# carrying the tenant; it is short-lived instead: valid for an hour (what Kubernetes gives a
# bound service account token by default), issued anew once less than 30 minutes are left.
# Agents fetch it at the start of every drain, so a drain (`mayu agent --drain-timeout`, at
# most DRAINER_LIFETIME.renew_before) always ends with it valid, and a host that no longer
# carries the tenant keeps a working credential for an hour at most.
DRAINER_LIFETIME = Lifetime(timedelta(hours=1), renew_before=timedelta(minutes=30))


def drainer_spec(host: str) -> LeafSpec:
    """The client certificate of the agent of `host` for its drains (CN mayu:drainer:<host>)."""
    return LeafSpec(
        ca=KUBERNETES,
        common_name=f"mayu:drainer:{host}",
        organizations=(DRAINERS_GROUP,),
        client=True,
    )


def _split_hosts(hosts: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    """Partition host names into (DNS names, canonical IP texts)."""
    ips = frozenset(check_ip(h, "host address") for h in hosts if is_ip(h))
    dns = frozenset(check_dns_name(h.lower(), "host name") for h in hosts if not is_ip(h))
    return dns, ips


def _etcd_hosts(node: NodeIdentity, facts: ClusterFacts) -> list[str]:
    """The address this node is listed under among the etcd members (URL or bare host)."""
    hosts = []
    for name, address in facts.etcd_members:
        if name == node.name:
            hosts.append(urlsplit(address).hostname if "://" in address else address.strip("[]"))
    return [h for h in hosts if h]


def wanted_leaves(node: NodeIdentity, facts: ClusterFacts) -> dict[str, LeafSpec]:
    """The leaf certificates a node of this role needs, by leaf name."""
    kubelet_dns, kubelet_ips = _split_hosts([node.name, *node.ips])
    leaves = {
        "kubelet-client": LeafSpec(
            ca=KUBERNETES,
            common_name=f"system:node:{node.name}",
            organizations=("system:nodes",),
            client=True,
        ),
        "kubelet-serving": LeafSpec(
            ca=KUBERNETES,
            common_name=f"system:node:{node.name}",
            organizations=("system:nodes",),
            dns_names=kubelet_dns,
            ips=kubelet_ips,
            server=True,
        ),
    }
    if node.role == "worker":
        return leaves
    service = "kubernetes.default.svc"
    api_dns, api_ips = _split_hosts(
        [
            node.name,
            *node.ips,
            facts.service_ip,
            "kubernetes",
            "kubernetes.default",
            service,
            f"{service}.{facts.domain}",
            "localhost",
            "127.0.0.1",
            endpoint_host(facts.api_endpoint),
            *facts.external_names,
        ]
    )
    etcd_dns, etcd_ips = _split_hosts(
        [node.name, "localhost", "127.0.0.1", "::1", *node.ips, *_etcd_hosts(node, facts)]
    )
    etcd_member = {"ca": ETCD, "common_name": node.name, "dns_names": etcd_dns, "ips": etcd_ips}
    return leaves | {
        "apiserver": LeafSpec(
            ca=KUBERNETES, common_name="kube-apiserver", dns_names=api_dns, ips=api_ips, server=True
        ),
        "apiserver-kubelet-client": LeafSpec(
            ca=KUBERNETES,
            common_name="kube-apiserver-kubelet-client",
            organizations=("system:masters",),
            client=True,
        ),
        "apiserver-etcd-client": LeafSpec(
            ca=ETCD, common_name="kube-apiserver-etcd-client", client=True
        ),
        "front-proxy-client": LeafSpec(
            ca=FRONT_PROXY, common_name="front-proxy-client", client=True
        ),
        "etcd-server": LeafSpec(**etcd_member, server=True, client=True),
        "etcd-peer": LeafSpec(**etcd_member, server=True, client=True),
        "etcd-healthcheck-client": LeafSpec(
            ca=ETCD, common_name="kube-etcd-healthcheck-client", client=True
        ),
        "controller-manager": LeafSpec(
            ca=KUBERNETES, common_name="system:kube-controller-manager", client=True
        ),
        "scheduler": LeafSpec(ca=KUBERNETES, common_name="system:kube-scheduler", client=True),
        ADMIN_LEAF: ADMIN_SPEC,  # admin.conf: what applies the cluster's add-ons (kubeadm's)
    }


def _ca_files(role: str, authorities: Authorities) -> list[FileSpec]:
    kubernetes = authorities.cas[KUBERNETES]
    specs = [FileSpec(f"{PKI}/ca.crt", CERT_MODE, certificate_pem(kubernetes.certificate))]
    if role == "worker":
        return specs
    sa_key = authorities.service_account_key
    return specs + [
        FileSpec(f"{PKI}/ca.key", SECRET_MODE, private_key_pem(kubernetes.key)),
        FileSpec(
            f"{PKI}/front-proxy-ca.crt",
            CERT_MODE,
            certificate_pem(authorities.cas[FRONT_PROXY].certificate),
        ),
        FileSpec(
            f"{PKI}/etcd/ca.crt", CERT_MODE, certificate_pem(authorities.cas[ETCD].certificate)
        ),
        FileSpec(f"{PKI}/sa.key", SECRET_MODE, private_key_pem(sa_key)),
        FileSpec(f"{PKI}/sa.pub", CERT_MODE, public_key_pem(sa_key)),
    ]


def node_file_specs(
    node: NodeIdentity, facts: ClusterFacts, authorities: Authorities, leaves: dict[str, Leaf]
) -> list[FileSpec]:
    """Every PKI file and kubeconfig for the node, sorted by path."""
    specs = _ca_files(node.role, authorities)
    ca_pem = certificate_pem(authorities.cas[KUBERNETES].certificate)
    for name, leaf in leaves.items():
        if name in _CERT_FILES:
            cert_path, key_path = _CERT_FILES[name]
            specs.append(FileSpec(cert_path, CERT_MODE, leaf.certificate_pem))
            specs.append(FileSpec(key_path, SECRET_MODE, leaf.key_pem))
        else:
            path, local = _KUBECONFIGS[name]
            text = render(
                cluster=facts.name,
                server=LOCAL_API_SERVER if local else facts.api_endpoint,
                ca_pem=ca_pem,
                user=leaf.common_name,
                certificate_pem=leaf.certificate_pem,
                key_pem=leaf.key_pem,
            )
            specs.append(FileSpec(path, SECRET_MODE, text))
    return sorted(specs, key=lambda spec: spec.path)
