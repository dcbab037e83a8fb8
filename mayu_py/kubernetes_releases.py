"""The Kubernetes minors mayu supports and the per-minor facts the templates need.

This is the one list: config validation (a start-up error), tenant validation (a 422 naming
the field) and rendering (a 422, never a 500) all ask this module.

Sources, read with the search tool (kubernetes/sig-release release notes, kubernetes.io release
pages, kubernetes/kubernetes pull requests); none of them could be run here:
- Supported minors: those upstream supports today, 1.35-1.37 (1.29-1.31 are past end of life).
  DEFAULT_KUBERNETES_VERSION is the latest 1.37 patch on kubernetes.io/releases/1.37 (1.37.1).
- etcd: the table of the newest kubeadm (1.37), which covers every supported minor: 1.35 and 1.36
  on 3.6.11 (kubernetes#138746, "v3.6.11 for supported control plane versions v1.34, v1.35 and
  v1.36"), 1.37 on 3.7.0 (kubernetes#140333, "Updated the default etcd version to 3.7.0").
  The image revision suffix `-0` follows kubeadm's convention for registry.k8s.io/etcd.
- pause: kubeadm's PauseVersion; 3.10.1 in kubeadm 1.35, 3.10.2 from 1.36 (kubernetes#138199).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mayu_py.errors import Unprocessable


@dataclass(frozen=True)
class Release:
    """What differs between the supported Kubernetes minors."""

    minor: str
    etcd_version: str  # tag of registry.k8s.io/etcd
    pause_version: str  # tag of registry.k8s.io/pause

    @property
    def etcd_series(self) -> str:
        """The etcd minor ("3.6"), which decides the flags etcd accepts."""
        return ".".join(self.etcd_version.split(".")[:2])


RELEASES: dict[str, Release] = {
    "1.35": Release("1.35", etcd_version="3.6.11-0", pause_version="3.10.1"),
    "1.36": Release("1.36", etcd_version="3.6.11-0", pause_version="3.10.2"),
    "1.37": Release("1.37", etcd_version="3.7.0-0", pause_version="3.10.2"),
}
SUPPORTED_MINORS: tuple[str, ...] = tuple(RELEASES)
DEFAULT_KUBERNETES_VERSION = "1.37.1"
_VERSION = re.compile(r"^v?([0-9]+\.[0-9]+)(\.[0-9]+)?$")


def minor_of(version: str) -> str:
    """The minor of a version ("1.37.1", "v1.37" -> "1.37"); the text itself if not a version."""
    match = _VERSION.match(version.strip())
    return match.group(1) if match else version


def unsupported_reason(version: str) -> str | None:
    """Why `version` (a minor or a full version) is not supported; None when it is."""
    if not _VERSION.match(version.strip()):
        return f"not a Kubernetes version: {version!r} (use e.g. {DEFAULT_KUBERNETES_VERSION})"
    minor = minor_of(version)
    if minor in RELEASES:
        return None
    return f"Kubernetes {minor} is not supported (supported: {', '.join(SUPPORTED_MINORS)})"


def version_key(version: str) -> tuple[int, ...]:
    """A dotted version ("1.37", "3.6") as a tuple that compares numerically."""
    return tuple(int(part) for part in version.split("."))


def check_version(version: str) -> str:
    """`version` without a leading "v"; ValueError with the reason when it is not supported."""
    reason = unsupported_reason(version)
    if reason is not None:
        raise ValueError(reason)
    return version.strip().removeprefix("v")


def release_for(version: str) -> Release:
    """The facts for a minor or version; Unprocessable (422) naming the supported minors."""
    reason = unsupported_reason(version)
    if reason is not None:
        raise Unprocessable(reason, {"kubernetesVersion": reason})
    return RELEASES[minor_of(version)]
