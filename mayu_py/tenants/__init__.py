"""Tenant clusters (level 2), shared by the server and the agent.

`resource` (the TenantCluster models, written like the shipped CRD), `validation`
(`parse_tenant`), `nodes` (`TenantNode`, the one node type, and its wire form), `states`
(node states, phases and the phase rule), `placement` (hosts and `place`), `wire` (what an
agent sends), `record` (the server's typed `TenantRecord`) and `ignition` (a node's Ignition
and the tenant's cluster facts). Everything but `ignition` is pure; `ignition` (it needs pki
and render) is imported by name, so the package itself stays light for the agent.
"""

from __future__ import annotations

from mayu_py.tenants.nodes import TenantNode, tenant_nodes
from mayu_py.tenants.placement import HostInfo, lapsed_nodes, place
from mayu_py.tenants.record import ReportedNode, TenantRecord
from mayu_py.tenants.resource import TenantCluster, parse_quantity
from mayu_py.tenants.states import REPORTED_STATES, NodeState, Phase, phase_of
from mayu_py.tenants.validation import ImageInfo, parse_tenant
from mayu_py.tenants.wire import HostRegistration, NodeReport

__all__ = [
    "REPORTED_STATES",
    "HostInfo",
    "HostRegistration",
    "ImageInfo",
    "NodeReport",
    "NodeState",
    "Phase",
    "ReportedNode",
    "TenantCluster",
    "TenantNode",
    "TenantRecord",
    "lapsed_nodes",
    "parse_quantity",
    "parse_tenant",
    "phase_of",
    "place",
    "tenant_nodes",
]
