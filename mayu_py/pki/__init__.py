"""Per-cluster PKI: CAs created once per cluster, leaf certificates per node, kubeconfigs.

Public API: ClusterPKI (one per cluster directory), NodeIdentity and ClusterFacts.
"""

from __future__ import annotations

from mayu_py.pki.cluster import ClusterPKI
from mayu_py.pki.identity import ClusterFacts, NodeIdentity

__all__ = ["ClusterFacts", "ClusterPKI", "NodeIdentity"]
