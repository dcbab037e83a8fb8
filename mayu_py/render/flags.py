"""The command-line flags each component accepts in every supported release.

There are no Kubernetes or etcd binaries here, so the table is read from upstream with the
search tool (sources and release notes read, nothing run). It holds the flags the shipped
templates use, which every supported release accepts (ACCEPTED), and the flags removed in or
near those releases with their replacements (REMOVED); a flag it does not know is not judged
by `removed_flags`, while the tests require every rendered flag to be in it.
- kube-apiserver, kube-controller-manager, kube-scheduler: the flags kubeadm's control-plane
  manifests pass. The generic ones are defined in k8s.io/apiserver pkg/server/options,
  k8s.io/controller-manager, k8s.io/cloud-provider options and k8s.io/component-base, read at
  v0.35.7, v0.36.3 and v0.37.0-beta.0; the others live in kubernetes/kubernetes cmd/ (too
  large to fetch here): no release note of 1.35, 1.36 or 1.37 removes or renames any of them
  (kubernetes/sig-release releases/release-1.3x/release-notes/release-notes-draft.md; the 1.37
  draft is that of v1.37.0-rc.0). kube-controller-manager --concurrent-service-syncs: #138002.
- kubelet: --config, --kubeconfig and --node-labels have no configuration-file field; the
  removals are from the same notes (#133779 in 1.35, #139870 in 1.37).
- etcd, keyed by etcd's own minor: server/etcdmain/help.go of etcd v3.6.11 and v3.7.0. etcd 3.6
  deprecated the --experimental-* flags and 3.7 removed them; kubeadm 1.36 moved to the
  replacements (#135701).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mayu_py.kubernetes_releases import Release, version_key


@dataclass(frozen=True)
class Removal:
    """A flag the component rejects from `version` on, and what replaces it."""

    version: str
    use: str = ""


ACCEPTED: dict[str, frozenset[str]] = {
    "kube-apiserver": frozenset(
        {
            "advertise-address",
            "allow-privileged",
            "authorization-mode",
            "client-ca-file",
            "enable-admission-plugins",
            "enable-bootstrap-token-auth",
            "etcd-cafile",
            "etcd-certfile",
            "etcd-keyfile",
            "etcd-servers",
            "kubelet-client-certificate",
            "kubelet-client-key",
            "kubelet-preferred-address-types",
            "proxy-client-cert-file",
            "proxy-client-key-file",
            "requestheader-allowed-names",
            "requestheader-client-ca-file",
            "requestheader-extra-headers-prefix",
            "requestheader-group-headers",
            "requestheader-username-headers",
            "secure-port",
            "service-account-issuer",
            "service-account-key-file",
            "service-account-signing-key-file",
            "service-cluster-ip-range",
            "tls-cert-file",
            "tls-private-key-file",
        }
    ),
    "kube-controller-manager": frozenset(
        {
            "allocate-node-cidrs",
            "authentication-kubeconfig",
            "authorization-kubeconfig",
            "bind-address",
            "client-ca-file",
            "cluster-cidr",
            "cluster-name",
            "cluster-signing-cert-file",
            "cluster-signing-key-file",
            "controllers",
            "kubeconfig",
            "leader-elect",
            "requestheader-client-ca-file",
            "root-ca-file",
            "service-account-private-key-file",
            "service-cluster-ip-range",
            "use-service-account-credentials",
        }
    ),
    "kube-scheduler": frozenset(
        {
            "authentication-kubeconfig",
            "authorization-kubeconfig",
            "bind-address",
            "kubeconfig",
            "leader-elect",
        }
    ),
    "kubelet": frozenset({"config", "kubeconfig", "node-labels"}),
    "etcd": frozenset(
        {
            "advertise-client-urls",
            "cert-file",
            "client-cert-auth",
            "data-dir",
            "feature-gates",
            "initial-advertise-peer-urls",
            "initial-cluster",
            "initial-cluster-state",
            "key-file",
            "listen-client-urls",
            "listen-metrics-urls",
            "listen-peer-urls",
            "name",
            "peer-cert-file",
            "peer-client-cert-auth",
            "peer-key-file",
            "peer-trusted-ca-file",
            "snapshot-count",
            "trusted-ca-file",
            "watch-progress-notify-interval",
        }
    ),
}

_CADVISOR = Removal("1.37", "nothing: the kubelet's cAdvisor flags are gone")
_ETCD_FEATURE_GATES = {
    "experimental-initial-corrupt-check": "InitialCorruptCheck",
    "experimental-compact-hash-check-enabled": "CompactHashCheck",
    "experimental-enable-lease-checkpoint": "LeaseCheckpoint",
    "experimental-enable-lease-checkpoint-persist": "LeaseCheckpointPersist",
    "experimental-stop-grpc-service-on-defrag": "StopGRPCServiceOnDefrag",
    "experimental-txn-mode-write-with-shared-buffer": "TxnModeWriteWithSharedBuffer",
}
_ETCD_RENAMED = (
    "bootstrap-defrag-threshold-megabytes",
    "compact-hash-check-time",
    "compaction-batch-limit",
    "compaction-sleep-interval",
    "corrupt-check-time",
    "distributed-tracing-address",
    "distributed-tracing-instance-id",
    "distributed-tracing-sampling-rate",
    "distributed-tracing-service-name",
    "downgrade-check-time",
    "enable-distributed-tracing",
    "memory-mlock",
    "peer-skip-client-san-verification",
    "snapshot-catchup-entries",
    "warning-apply-duration",
    "warning-unary-request-duration",
    "watch-progress-notify-interval",
)

REMOVED: dict[str, dict[str, Removal]] = {
    "kube-apiserver": {},
    "kube-controller-manager": {
        "concurrent-service-syncs": Removal("1.37", "nothing: it was a no-op since 1.31"),
    },
    "kube-scheduler": {},
    "kubelet": {
        "pod-infra-container-image": Removal("1.35", "the runtime's sandbox image setting"),
        **{
            name: _CADVISOR
            for name in (
                "application-metrics-count-limit",
                "boot-id-file",
                "container-hints",
                "containerd",
                "containerd-namespace",
                "enable-load-reader",
                "event-storage-age-limit",
                "event-storage-event-limit",
                "global-housekeeping-interval",
                "log-cadvisor-usage",
                "machine-id-file",
                "storage-driver-buffer-duration",
                "storage-driver-db",
                "storage-driver-host",
                "storage-driver-password",
                "storage-driver-secure",
                "storage-driver-table",
                "storage-driver-user",
            )
        },
    },
    "etcd": {
        **{
            old: Removal("3.7", f"--feature-gates={gate}=true")
            for old, gate in _ETCD_FEATURE_GATES.items()
        },
        **{f"experimental-{name}": Removal("3.7", f"--{name}") for name in _ETCD_RENAMED},
    },
}


def component_version(component: str, release: Release) -> str:
    """The version that decides a component's flags: etcd's own minor, else the Kubernetes one."""
    return release.etcd_series if component == "etcd" else release.minor


def accepted_flags(component: str, release: Release) -> frozenset[str]:
    """Every flag of `component` the table knows that `release` accepts."""
    version = version_key(component_version(component, release))
    kept = {
        name for name, gone in REMOVED[component].items() if version < version_key(gone.version)
    }
    return ACCEPTED[component] | kept


def flag_names(command: Sequence[str]) -> list[str]:
    """The flags of a command line: "--name=value" and "--name" give "name"."""
    return [arg[2:].split("=", 1)[0] for arg in command if arg.startswith("--")]


def removed_flags(component: str, command: Sequence[str], release: Release) -> list[str]:
    """One line for each flag of `command` that `release`'s component no longer accepts."""
    version = component_version(component, release)
    gone = REMOVED.get(component, {})
    return [
        f"{component} {version} does not accept --{name} (removed in {removal.version}; "
        f"use {removal.use})"
        for name in flag_names(command)
        if (removal := gone.get(name)) and version_key(version) >= version_key(removal.version)
    ]
