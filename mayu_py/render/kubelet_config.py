"""The fields of KubeletConfiguration (kubelet.config.k8s.io/v1beta1) in every supported release.

kubernetes-validate has no schema for the kubelet's configuration file, so this table is read
from the Go type, k8s.io/kubelet config/v1beta1/types.go, at v0.35.7 (1.35), v0.36.3 (1.36) and
v0.37.0-beta.0 (1.37; the 1.37.0 tag was not in the snapshot fetched here). 1.36 added two
fields and none was removed; three fields are marked "Deprecated: no longer has any effect".
Structs from other packages (logging, tracing) are not descended into.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mayu_py.kubernetes_releases import version_key

API_VERSION = "kubelet.config.k8s.io/v1beta1"
KIND = "KubeletConfiguration"

FIELDS_1_35 = frozenset(
    {
        "address",
        "allowedUnsafeSysctls",
        "authentication",
        "authorization",
        "cgroupDriver",
        "cgroupRoot",
        "cgroupsPerQOS",
        "clusterDNS",
        "clusterDomain",
        "configMapAndSecretChangeDetectionStrategy",
        "containerLogMaxFiles",
        "containerLogMaxSize",
        "containerLogMaxWorkers",
        "containerLogMonitorInterval",
        "containerRuntimeEndpoint",
        "contentType",
        "cpuCFSQuota",
        "cpuCFSQuotaPeriod",
        "cpuManagerPolicy",
        "cpuManagerPolicyOptions",
        "cpuManagerReconcilePeriod",
        "crashLoopBackOff",
        "enableContentionProfiling",
        "enableControllerAttachDetach",
        "enableDebugFlagsHandler",
        "enableDebuggingHandlers",
        "enableProfilingHandler",
        "enableServer",
        "enableSystemLogHandler",
        "enableSystemLogQuery",
        "enforceNodeAllocatable",
        "eventBurst",
        "eventRecordQPS",
        "evictionHard",
        "evictionMaxPodGracePeriod",
        "evictionMinimumReclaim",
        "evictionPressureTransitionPeriod",
        "evictionSoft",
        "evictionSoftGracePeriod",
        "failCgroupV1",
        "failSwapOn",
        "featureGates",
        "fileCheckFrequency",
        "hairpinMode",
        "healthzBindAddress",
        "healthzPort",
        "httpCheckFrequency",
        "imageGCHighThresholdPercent",
        "imageGCLowThresholdPercent",
        "imageMaximumGCAge",
        "imageMinimumGCAge",
        "imagePullCredentialsVerificationPolicy",
        "imageServiceEndpoint",
        "iptablesDropBit",
        "iptablesMasqueradeBit",
        "kernelMemcgNotification",
        "kubeAPIBurst",
        "kubeAPIQPS",
        "kubeReserved",
        "kubeReservedCgroup",
        "kubeletCgroups",
        "localStorageCapacityIsolation",
        "logging",
        "makeIPTablesUtilChains",
        "maxOpenFiles",
        "maxParallelImagePulls",
        "maxPods",
        "memoryManagerPolicy",
        "memorySwap",
        "memoryThrottlingFactor",
        "mergeDefaultEvictionSettings",
        "nodeLeaseDurationSeconds",
        "nodeStatusMaxImages",
        "nodeStatusReportFrequency",
        "nodeStatusUpdateFrequency",
        "oomScoreAdj",
        "podCIDR",
        "podLogsDir",
        "podPidsLimit",
        "podsPerCore",
        "port",
        "preloadedImagesVerificationAllowlist",
        "protectKernelDefaults",
        "providerID",
        "qosReserved",
        "readOnlyPort",
        "registerNode",
        "registerWithTaints",
        "registryBurst",
        "registryPullQPS",
        "reservedMemory",
        "reservedSystemCPUs",
        "resolvConf",
        "rotateCertificates",
        "runOnce",
        "runtimeRequestTimeout",
        "seccompDefault",
        "serializeImagePulls",
        "serverTLSBootstrap",
        "showHiddenMetricsForVersion",
        "shutdownGracePeriod",
        "shutdownGracePeriodByPodPriority",
        "shutdownGracePeriodCriticalPods",
        "singleProcessOOMKill",
        "staticPodPath",
        "staticPodURL",
        "staticPodURLHeader",
        "streamingConnectionIdleTimeout",
        "syncFrequency",
        "systemCgroups",
        "systemReserved",
        "systemReservedCgroup",
        "tlsCertFile",
        "tlsCipherSuites",
        "tlsMinVersion",
        "tlsPrivateKeyFile",
        "topologyManagerPolicy",
        "topologyManagerPolicyOptions",
        "topologyManagerScope",
        "tracing",
        "userNamespaces",
        "volumePluginDir",
        "volumeStatsAggPeriod",
    }
)
ADDED: dict[str, frozenset[str]] = {
    "1.36": frozenset({"memoryReservationPolicy", "tlsCurvePreferences"}),
}
DEPRECATED = frozenset(
    {"iptablesDropBit", "iptablesMasqueradeBit", "streamingConnectionIdleTimeout"}
)
# The nested structs of this package: field -> its fields (None: a leaf).
NESTED: dict[str, Any] = {
    "authentication": {
        "x509": {"clientCAFile": None},
        "webhook": {"enabled": None, "cacheTTL": None},
        "anonymous": {"enabled": None},
    },
    "authorization": {
        "mode": None,
        "webhook": {"cacheAuthorizedTTL": None, "cacheUnauthorizedTTL": None},
    },
}


def fields(minor: str) -> frozenset[str]:
    """The top-level fields of KubeletConfiguration in a supported minor."""
    added = (names for since, names in ADDED.items() if version_key(since) <= version_key(minor))
    return FIELDS_1_35.union(*added)


def kubelet_config_problems(config: Mapping[str, Any], minor: str) -> list[str]:
    """One line per unknown or deprecated field (dotted path) of a kubelet configuration."""
    problems = []
    if config.get("apiVersion") != API_VERSION or config.get("kind") != KIND:
        problems.append(f"apiVersion/kind must be {API_VERSION}/{KIND}")
    tree = {name: NESTED.get(name) for name in fields(minor)} | {"apiVersion": None, "kind": None}
    _walk(config, tree, "", minor, problems)
    return problems


def _walk(
    document: Mapping[str, Any], tree: Mapping[str, Any], path: str, minor: str, problems: list[str]
) -> None:
    for name, value in document.items():
        where = f"{path}{name}"
        if name not in tree:
            problems.append(f"{where}: not a field of {KIND} {API_VERSION} in Kubernetes {minor}")
        elif not path and name in DEPRECATED:
            problems.append(f"{where}: deprecated, no longer has any effect")
        elif isinstance(tree[name], Mapping) and isinstance(value, Mapping):
            _walk(value, tree[name], f"{where}.", minor, problems)
