"""The lab's client of its server: the admin API client, run on the thread inside the lab
namespace (lab/netns.py), the only place the server's address is reachable from."""

from __future__ import annotations

from typing import Any

from mayu_py.api_client import AdminClient
from mayu_py.lab.netns import InNamespace

TIMEOUT_S = 20.0
NAMESPACE_SLACK_S = 5.0  # the namespace thread waits this much longer than a request


class LabClient(AdminClient):
    """An AdminClient whose requests run inside the lab namespace, never through a proxy."""

    def __init__(self, ns: InNamespace, url: str, token: str) -> None:
        super().__init__(
            url,
            token,
            timeout=TIMEOUT_S,
            transport=lambda send: ns.call(send, timeout=TIMEOUT_S + NAMESPACE_SLACK_S),
            trust_env=False,
        )

    def machines(self) -> dict[str, dict[str, Any]]:
        """Machines by MAC."""
        return {m["mac"]: m for m in self.list_machines()}

    def get_text(self, path: str) -> str:
        """The text of a GET, e.g. a boot-plane /ipxe?mac=.. script."""
        return self.call("GET", path).text
