"""A complete sample rendering context, used to check every template at start-up."""

from __future__ import annotations

from typing import Any

from mayu_py.kubernetes_releases import DEFAULT_KUBERNETES_VERSION, minor_of


def sample_context(
    role: str = "controller", kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
) -> dict[str, Any]:
    """A context with every key the shipped templates use, for a node of `role`."""
    minor = minor_of(kubernetes_version)
    return {
        "node": {
            "name": "node-525400000001",
            "role": role,
            "mac": "52:54:00:00:00:01",
            "ip": "192.0.2.11",
            "uuid": "8a6d2d3e-5d1c-4d5b-9f57-6f6e0c2d1a01",
            "serial": "SAMPLE-0001",
            "labels": {"role": role, "rack": "r1"},
            "metadata": {"owner": "sample"},
        },
        "cluster": {
            "name": "mayu",
            "domain": "cluster.local",
            "kubernetes_version": kubernetes_version,
            "kubernetes_minor": minor,
            "pod_cidr": "10.244.0.0/16",
            "service_cidr": "10.96.0.0/12",
            "cluster_dns": "10.96.0.10",
            "service_ip": "10.96.0.1",
            "api_endpoint": "https://192.0.2.11:6443",
            "etcd_members": [{"name": "node-525400000001", "address": "192.0.2.11"}],
        },
        "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMayuSampleKey core@sample"],
        "report_url": "https://192.0.2.1:8443/report?mac=52-54-00-00-00-01",
    }
