"""The TenantCluster resource as pydantic models, written like the CRD that ships with mayu.

static_manifests/crds/tenantcluster.yaml is the same schema for Kubernetes (tests keep the two
in agreement). Quantities (`512Mi`, `2Gi`) are parsed here too.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from mayu_py.tenants.states import NodeState, Phase

API_VERSION = "mayu.io/v1alpha1"
KIND = "TenantCluster"
MAX_VNI = 16_777_215  # 24 bits; `mayu-t<vni>` stays within the 15-character bridge limit
QUANTITY_PATTERN = r"^([0-9]{1,15})(Ki|Mi|Gi|Ti|k|M|G|T)?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)
# One line (no CR, LF or NUL): a key with a newline would add lines to authorized_keys.
SSH_KEY_PATTERN = r"^[^\r\n\x00]+$"
MAX_SSH_KEY = 16384
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
    cpus: StrictInt = Field(ge=1, le=64)
    memory: str = Field(pattern=QUANTITY_PATTERN)
    disk: str = Field(pattern=QUANTITY_PATTERN)


class TenantNetwork(_Strict):
    cidr: str
    vni: StrictInt | None = Field(default=None, ge=1, le=MAX_VNI)  # None: the server allocates
    # node name -> address, and the tenant's ingress address: the server assigns and stores
    # them (mayu_py.tenants.addresses); None only in tenants stored before it did
    addresses: dict[str, str] | None = None
    ingress: str | None = None


class TenantSpec(_Strict):
    kubernetesVersion: str = Field(pattern=r"^1\.[0-9]+(\.[0-9]+)?$")
    image: str = Field(min_length=1)
    network: TenantNetwork
    masters: list[NodeSize]
    workers: list[NodeSize] = Field(default_factory=list)
    sshAuthorizedKeys: list[
        Annotated[str, Field(pattern=SSH_KEY_PATTERN, max_length=MAX_SSH_KEY)]
    ] = Field(default_factory=list, max_length=64)


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
    conditions: list[Condition] = Field(default_factory=list)


class RolloutStatus(_Strict):
    """`status.rollout` while nodes are replaced one at a time (mayu_py.tenants.rollout)."""

    node: str | None = None  # the node being replaced, or next in line when `waiting`
    step: str = ""  # draining | recreating | booting | waiting | a node state
    message: str = ""  # the node's last word from its agent (e.g. how its drain went)
    done: int = 0
    total: int = 0
    revision: int = 0  # the generation the nodes are replaced into


class TenantStatus(_Strict):
    phase: Phase = Phase.PENDING
    observedGeneration: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    nodes: list[NodeStatus] = Field(default_factory=list)
    rollout: RolloutStatus | None = None


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
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(f"not a quantity: {text!r} (use e.g. 512Mi or 2Gi)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def mib(text: str) -> int:
    """A quantity in MiB, rounded up."""
    return math.ceil(parse_quantity(text) / 2**20)


def gib(text: str) -> int:
    """A quantity in GiB, rounded up."""
    return math.ceil(parse_quantity(text) / 2**30)
