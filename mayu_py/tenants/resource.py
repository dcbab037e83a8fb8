"""The TenantCluster resource as pydantic models, written like the CRD that ships with mayu.

static_manifests/crds/tenantcluster.yaml is the same schema for Kubernetes (tests keep the two
in agreement). Quantities (`512Mi`, `2Gi`) are parsed here too.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mayu_py.tenants.states import NodeState, Phase

API_VERSION = "mayu.io/v1alpha1"
KIND = "TenantCluster"
MAX_VNI = 16_777_215  # 24 bits; `mayu-t<vni>` stays within the 15-character bridge limit
_QUANTITY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
Role = Literal["master", "worker"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSize(_Strict):
    cpus: int = Field(ge=1, le=64)
    memory: str
    disk: str


class TenantNetwork(_Strict):
    cidr: str
    vni: int | None = Field(default=None, ge=1, le=MAX_VNI)  # None: the server allocates one


class TenantSpec(_Strict):
    kubernetesVersion: str = Field(pattern=r"^1\.[0-9]+(\.[0-9]+)?$")
    image: str = Field(min_length=1)
    network: TenantNetwork
    masters: list[NodeSize]
    workers: list[NodeSize] = Field(default_factory=list)
    sshAuthorizedKeys: list[str] = Field(default_factory=list)


class Metadata(BaseModel):
    """Object metadata; fields Kubernetes adds (uid, labels, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str
    generation: int = Field(default=1, ge=1)


class Condition(_Strict):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    lastTransitionTime: str | None = None


class NodeStatus(_Strict):
    """One item of `status.nodes`."""

    name: str
    role: Role
    host: str | None = None
    state: NodeState = NodeState.PENDING
    ip: str | None = None


class TenantStatus(_Strict):
    phase: Phase = Phase.PENDING
    observedGeneration: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    nodes: list[NodeStatus] = Field(default_factory=list)


class TenantCluster(_Strict):
    apiVersion: Literal["mayu.io/v1alpha1"]
    kind: Literal["TenantCluster"]
    metadata: Metadata
    spec: TenantSpec
    status: TenantStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.spec.network.cidr)


def parse_quantity(text: str) -> int:
    """Bytes in a Kubernetes-style quantity ("512Mi", "2Gi", "1G", "1048576")."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"not a quantity: {text!r} (use e.g. 512Mi or 2Gi)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def mib(text: str) -> int:
    """A quantity in MiB, rounded up."""
    return math.ceil(parse_quantity(text) / 2**20)


def gib(text: str) -> int:
    """A quantity in GiB, rounded up."""
    return math.ceil(parse_quantity(text) / 2**30)
