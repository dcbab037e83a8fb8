"""ClusterPKI: the per-cluster facade the server (level 1) and the agent (tenants) use.

One instance per cluster directory; nothing is global, so each tenant cluster gets its own
directory and thus its own CA set.

    <directory>/ca/...             authorities (see authorities.py)
    <directory>/nodes/<name>/*.pem cached leaves per node (see leafcache.py)
    <directory>/users/admin/*.pem  the admin client certificate
    <directory>/admin.conf         admin kubeconfig (0600)
    <directory>/users/drainer-<host>/drainer.pem  an agent's drain client certificate
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from mayu_py.files import atomic_write
from mayu_py.model import FileSpec
from mayu_py.pki import authorities, files, kubeconfig, layout
from mayu_py.pki.identity import ClusterFacts, NodeIdentity
from mayu_py.pki.leafcache import Leaf, LeafCache
from mayu_py.pki.x509 import certificate_pem

log = logging.getLogger(__name__)

_SUBJECT_DIRS = ("nodes", "users")


class ClusterPKI:
    """The CAs of one cluster and the certificates issued from them."""

    def __init__(self, directory: Path, cas: authorities.Authorities) -> None:
        self.directory = directory
        self._cas = cas
        # node name -> (what the files were built from, the files): a repeat request whose
        # leaves on disk are unchanged is answered without rendering kubeconfigs again.
        self._rendered: dict[str, tuple[tuple[object, ...], list[FileSpec]]] = {}

    @classmethod
    def load_or_create(cls, directory: Path, cluster_name: str) -> ClusterPKI:
        """Open the cluster's PKI under directory, creating its CAs the first time."""
        return cls(directory, authorities.load_or_create(directory, cluster_name))

    @property
    def ca_certificate_pem(self) -> str:
        """The Kubernetes CA certificate (what clients trust for the API server)."""
        return certificate_pem(self._cas.cas[authorities.KUBERNETES].certificate)

    def node_files(self, node: NodeIdentity, facts: ClusterFacts) -> list[FileSpec]:
        """Certificates, keys and kubeconfigs for the node at kubeadm's paths.

        Leaves are cached per node and signed again only when the node's identity (name,
        addresses, role, the cluster's SANs) changed or the cached one has expired.
        """
        leaves = self._cache("nodes", node.name).leaves(layout.wanted_leaves(node, facts))
        inputs = (node, facts, *(leaf.certificate_pem for leaf in leaves.values()))
        previous = self._rendered.get(node.name)
        if previous is None or previous[0] != inputs:
            previous = (inputs, layout.node_file_specs(node, facts, self._cas, leaves))
            self._rendered[node.name] = previous
        return list(previous[1])

    def forget_node(self, name: str) -> list[str]:
        """Delete a node's cached certificates and keys (a deleted machine's): a machine that
        comes back gets new ones. Returns the forgotten certificates' serial numbers."""
        self._rendered.pop(name, None)
        if not (self.directory / "nodes" / name).is_dir():
            return []
        return self._cache("nodes", name).forget()

    def admin_kubeconfig(self, facts: ClusterFacts) -> str:
        """A cluster-admin kubeconfig, also written to <directory>/admin.conf (0600)."""
        text = self._kubeconfig(self._admin_leaf(), facts)
        atomic_write(self.directory / "admin.conf", text, 0o600)
        return text

    def drainer_kubeconfig(self, host: str, facts: ClusterFacts) -> str:
        """A kubeconfig for the drains of the agent of `host` (mayu_py.agent.drain): its own
        short-lived client certificate (`layout.DRAINER_LIFETIME`: issued anew when it nears
        its end) in the group the tenant's RBAC lets cordon and evict, no more. Kept only as
        the 0600 certificate bundle; the text is the caller's (never logged)."""
        cache = self._cache("users", f"{layout.DRAINER_LEAF}-{host}")
        wanted = {layout.DRAINER_LEAF: layout.drainer_spec(host)}
        leaf = cache.leaves(wanted, layout.DRAINER_LIFETIME)[layout.DRAINER_LEAF]
        return self._kubeconfig(leaf, facts)

    def _kubeconfig(self, leaf: Leaf, facts: ClusterFacts) -> str:
        """A kubeconfig for the cluster's API with `leaf` as the user (named after its CN)."""
        return kubeconfig.render(
            cluster=facts.name,
            server=facts.api_endpoint,
            ca_pem=self.ca_certificate_pem,
            user=leaf.common_name,
            certificate_pem=leaf.certificate_pem,
            key_pem=leaf.key_pem,
        )

    def rotate(self, within_days: int = 30, force: bool = False) -> list[str]:
        """Re-issue every cached leaf expiring within `within_days` (all with force).

        The CAs stay. Returns what was re-issued as "<nodes|users>/<subject>/<leaf>". Nodes get
        the new certificates from their next node_files call; admin.conf is updated in place.
        """
        rotated: list[str] = []
        for kind in _SUBJECT_DIRS:
            base = self.directory / kind
            subjects = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
            for subject in subjects:
                leaves = LeafCache(subject, self._cas).rotate(timedelta(days=within_days), force)
                rotated += [f"{kind}/{subject.name}/{leaf}" for leaf in leaves]
        if f"users/{layout.ADMIN_LEAF}/{layout.ADMIN_LEAF}" in rotated:
            self._refresh_admin_conf()
        log.info(
            "rotated certificates", extra={"cluster": self._cas.cluster_name, "count": len(rotated)}
        )
        return rotated

    def _refresh_admin_conf(self) -> None:
        path = self.directory / "admin.conf"
        text = files.read_text(path)
        if text is None:
            return
        leaf = self._admin_leaf()
        updated = kubeconfig.replace_credentials(text, leaf.certificate_pem, leaf.key_pem)
        atomic_write(path, updated, 0o600)

    def _admin_leaf(self) -> Leaf:
        cache = self._cache("users", layout.ADMIN_LEAF)
        return cache.leaves({layout.ADMIN_LEAF: layout.ADMIN_SPEC})[layout.ADMIN_LEAF]

    def _cache(self, kind: str, subject: str) -> LeafCache:
        files.ensure_private_dir(self.directory / kind)
        return LeafCache(self.directory / kind / subject, self._cas)
