"""The lab's HTTP calls to its server; each runs on the thread inside the lab namespace."""

from __future__ import annotations

from typing import Any

import requests

from mayu_py.lab.netns import InNamespace


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never through a proxy from the environment
    return session


def _get_json(url: str, token: str | None, timeout: float) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with _session() as session:
        response = session.get(url, headers=headers, timeout=timeout)
        response.raise_for_status()
        return response.json()


def _healthy(url: str) -> bool:
    try:
        with _session() as session:
            return session.get(f"{url}/healthz", timeout=2).ok
    except requests.RequestException:
        return False


class LabClient:
    """Admin-plane reads of the lab server from inside its namespace."""

    def __init__(self, ns: InNamespace, url: str, token: str) -> None:
        self.ns = ns
        self.url = url
        self.token = token

    def healthy(self) -> bool:
        return self.ns.call(_healthy, self.url)

    def machines(self) -> dict[str, dict[str, Any]]:
        """Machines by MAC, from /api/v1/machines."""
        body = self.ns.call(_get_json, f"{self.url}/api/v1/machines", self.token, 10.0)
        return {m["mac"]: m for m in body["items"]}

    def machine(self, mac: str) -> dict[str, Any]:
        """One machine with its events."""
        return self.ns.call(_get_json, f"{self.url}/api/v1/machines/{mac}", self.token, 10.0)

    def get_text(self, path: str) -> str:
        """A boot-plane GET (no credentials), e.g. /ipxe?mac=..; raises on HTTP errors."""
        return self.ns.call(_get_text, f"{self.url}{path}")


def _get_text(url: str) -> str:
    with _session() as session:
        response = session.get(url, timeout=10)
        response.raise_for_status()
        return response.text
