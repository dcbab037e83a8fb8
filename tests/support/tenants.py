"""The example TenantCluster of DESIGN section 3, as shipped in docs/examples/tenant.yaml."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "tenant.yaml"
_ACME: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())


def acme() -> dict[str, Any]:
    """A fresh deep copy of the example tenant `acme` (1 master, 2 workers)."""
    return copy.deepcopy(_ACME)


def tenant_doc(
    name: str,
    cidr: str,
    vni: int,
    workers: int = 1,
    *,
    memory: str = "256Mi",
    disk: str = "1Gi",
    worker_cpus: int = 1,
    masters: int = 1,
) -> dict[str, Any]:
    """A TenantCluster with `masters` masters and `workers` workers of the given size."""
    size = {"cpus": 1, "memory": memory, "disk": disk}
    return {
        "apiVersion": "mayu.io/v1alpha1",
        "kind": "TenantCluster",
        "metadata": {"name": name},
        "spec": {
            "kubernetesVersion": "1.37",
            "image": "lab",
            "network": {"cidr": cidr, "vni": vni},
            "masters": [size] * masters,
            "workers": [dict(size, cpus=worker_cpus) for _ in range(workers)],
            "sshAuthorizedKeys": [],
        },
    }
