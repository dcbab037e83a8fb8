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


def _send_json(method: str, url: str, token: str, body: Any, timeout: float) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    with _session() as session:
        response = session.request(method, url, headers=headers, json=body, timeout=timeout)
        if not response.ok:
            raise LabApiError(method, url, response.status_code, response.text[:500])
        return response.json()


class LabApiError(Exception):
    """A non-2xx answer of the admin API, with the server's error body."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url}: {status} {body}")
        self.status = status


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

    def tenants(self) -> list[dict[str, Any]]:
        """Every TenantCluster with its status, from /api/v1/tenants."""
        body = self.ns.call(_get_json, f"{self.url}/api/v1/tenants", self.token, 10.0)
        return list(body["items"])

    def hosts(self) -> list[dict[str, Any]]:
        body = self.ns.call(_get_json, f"{self.url}/api/v1/hosts", self.token, 10.0)
        return list(body["items"])

    def create_tenant(self, doc: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.url}/api/v1/tenants"
        return self.ns.call(_send_json, "POST", url, self.token, doc, 30.0)

    def delete_tenant(self, name: str) -> dict[str, Any]:
        url = f"{self.url}/api/v1/tenants/{name}"
        return self.ns.call(_send_json, "DELETE", url, self.token, None, 30.0)

    def report_node(self, tenant: str, node: str, state: str, host: str) -> dict[str, Any]:
        """Report a node's state as its agent would (the admin token may)."""
        url = f"{self.url}/api/v1/tenants/{tenant}/nodes/{node}/status"
        body = {"state": state, "host": host}
        return self.ns.call(_send_json, "PUT", url, self.token, body, 30.0)

    def get_text(self, path: str) -> str:
        """A boot-plane GET (no credentials), e.g. /ipxe?mac=..; raises on HTTP errors."""
        return self.ns.call(_get_text, f"{self.url}{path}")


def _get_text(url: str) -> str:
    with _session() as session:
        response = session.get(url, timeout=10)
        response.raise_for_status()
        return response.text
