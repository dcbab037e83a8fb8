"""Per-minor Kubernetes facts the templates need: etcd and pause images, etcd probe paths.

The etcd versions follow kubeadm's table of the same minor. kubeadm 1.31 switched the etcd
probes to the /livez and /readyz endpoints of etcd >= 3.5.11; older minors use /health.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mayu_py.errors import RenderError


@dataclass(frozen=True)
class Release:
    """What differs between the supported Kubernetes minors."""

    minor: str
    etcd_version: str
    pause_version: str
    etcd_liveness_path: str
    etcd_startup_path: str
    etcd_readiness_path: str | None


_HEALTH_LIVE = "/health?exclude=NOSPACE&serializable=true"
_HEALTH_START = "/health?serializable=false"

RELEASES: dict[str, Release] = {
    "1.29": Release("1.29", "3.5.10-0", "3.9", _HEALTH_LIVE, _HEALTH_START, None),
    "1.30": Release("1.30", "3.5.12-0", "3.9", _HEALTH_LIVE, _HEALTH_START, None),
    "1.31": Release("1.31", "3.5.15-0", "3.10", "/livez", "/readyz", "/readyz"),
}


def release_for(minor: str) -> dict[str, Any]:
    """The release facts for a minor as a plain mapping for templates; RenderError if unknown."""
    try:
        return asdict(RELEASES[minor])
    except KeyError:
        supported = ", ".join(RELEASES)
        raise RenderError(
            f"Kubernetes minor {minor!r} is not supported by the templates (supported: {supported})"
        ) from None
