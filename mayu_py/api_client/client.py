"""`AdminClient`: the one HTTP client of the admin API, for mayuctl, the lab and the agent.

It knows the API's paths and message shapes (the agent's wire types from mayu_py.tenants), sends
the bearer token, and turns every failure into an `ApiError`. Where a request runs is the
transport's business: by default in the calling thread; the lab passes one that runs it on a
thread inside its network namespace (lab/netns.py), where the server's address is reachable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from mayu_py.api_client.errors import ApiError, http_error, unreachable
from mayu_py.tenants import HostRegistration, NodeReport, TenantNode

Send = Callable[[], requests.Response]
Transport = Callable[[Send], requests.Response]
JSON_TYPES = ("application/json", "application/problem+json")
HEALTH_TIMEOUT_S = 2.0


def in_this_thread(send: Send) -> requests.Response:
    """The default transport: send the request from the calling thread."""
    return send()


class AdminClient:
    """Calls of the admin API on `url` with a bearer `token`; every failure is an ApiError."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: Transport = in_this_thread,
        trust_env: bool = True,
        ca_file: str | None = None,
    ) -> None:
        """`trust_env=False`: no proxy (nor .netrc) from the environment. `ca_file`: the CA of
        an https:// server (the server's own is <data-dir>/pki/server/ca.crt)."""
        self.url = url.rstrip("/")
        # Given per request: requests lets REQUESTS_CA_BUNDLE override a session's `verify`.
        self.verify: str | bool = ca_file or True
        self.timeout = timeout
        self.transport = transport
        self.session = requests.Session()
        self.session.trust_env = trust_env
        self.session.headers["Authorization"] = f"Bearer {token}"

    # -- generic ------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """One request; an answer of 400 or more, or none at all, raises ApiError."""

        def send() -> requests.Response:
            return self.session.request(
                method,
                self.url + path,
                json=json,
                params=params,
                headers=headers,
                timeout=self.timeout if timeout is None else timeout,
                verify=self.verify,
            )

        try:
            response = self.transport(send)
        except requests.RequestException as exc:
            raise unreachable(method, path, self.url, exc) from exc
        if response.status_code >= 400:
            status, reason = response.status_code, response.reason
            raise http_error(method, path, status, reason, _json(response), response.text)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """`call`, decoded: the JSON of a JSON answer, else its text."""
        response = self.call(method, path, **kwargs)
        if response.headers.get("Content-Type", "").startswith(JSON_TYPES):
            return response.json()
        return response.text

    def healthy(self) -> bool:
        """Does the server answer /healthz?"""
        try:
            self.call("GET", "/healthz", timeout=HEALTH_TIMEOUT_S)
        except ApiError:
            return False
        return True

    # -- machines, tenants, hosts (operators) ---------------------------------------------

    def list_machines(self, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else None
        return list(self.call("GET", "/api/v1/machines", params=params).json()["items"])

    def machine_page(
        self, query: dict[str, str], etag: str | None = None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """One page of machines (`query`: state, selector, limit, continue) and its ETag;
        None for the page when it is unchanged since `etag` (304)."""
        headers = {"If-None-Match": etag} if etag else None
        response = self.call("GET", "/api/v1/machines", params=query, headers=headers)
        fresh = None if response.status_code == 304 else response.json()
        return fresh, response.headers.get("ETag", etag)

    def machine(self, machine_id: str) -> dict[str, Any]:
        """One machine with its events."""
        return self.call("GET", f"/api/v1/machines/{machine_id}").json()

    def events(self, machine_id: str) -> list[dict[str, Any]]:
        """A machine's events, oldest first."""
        return list(self.call("GET", f"/api/v1/machines/{machine_id}/events").json()["items"])

    def reinstall(self, machine_id: str) -> dict[str, Any]:
        """Provision again; with a BMC the answer's `action` is the queued BMC action."""
        return self.call("POST", f"/api/v1/machines/{machine_id}/reinstall").json()

    # -- BMC ----------------------------------------------------------------------------

    def set_bmc(self, machine_id: str, coordinates: dict[str, Any]) -> dict[str, Any]:
        """Set a machine's BMC (protocol, address, username, password, ...); the answer
        never holds the password."""
        return self.call("PUT", f"/api/v1/machines/{machine_id}/bmc", json=coordinates).json()

    def power(self, machine_id: str, action: str) -> dict[str, Any]:
        """Queue power on|off|cycle|status; returns the queued action (follow with `action`)."""
        body = {"action": action}
        return self.call("POST", f"/api/v1/machines/{machine_id}/power", json=body).json()["action"]

    def boot_device(self, machine_id: str, device: str) -> dict[str, Any]:
        """Queue next boot pxe|disk; returns the queued action."""
        body = {"device": device}
        path = f"/api/v1/machines/{machine_id}/bootdev"
        return self.call("POST", path, json=body).json()["action"]

    def action(self, action_id: int) -> dict[str, Any]:
        """A BMC action as it is now (state queued, running, done or failed)."""
        return self.call("GET", f"/api/v1/actions/{action_id}").json()

    # -- tenants ------------------------------------------------------------------------

    def tenants(self) -> list[dict[str, Any]]:
        """Every TenantCluster with its status."""
        return list(self.call("GET", "/api/v1/tenants").json()["items"])

    def tenant(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/api/v1/tenants/{name}").json()

    def create_tenant(self, doc: Any) -> dict[str, Any]:
        return self.call("POST", "/api/v1/tenants", json=doc).json()

    def patch_tenant_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Merge `spec` into the tenant's spec."""
        return self.call("PATCH", f"/api/v1/tenants/{name}", json={"spec": spec}).json()

    def delete_tenant(self, name: str) -> dict[str, Any]:
        return self.call("DELETE", f"/api/v1/tenants/{name}").json()

    def hosts(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/v1/hosts").json()["items"])

    # -- agents -------------------------------------------------------------------------

    def register_host(self, host: HostRegistration) -> None:
        """Register an agent host, or refresh its heartbeat."""
        self.call("POST", "/api/v1/hosts", json=host.to_json())

    def host_nodes(self, host: str) -> list[TenantNode]:
        """The nodes placed on `host`."""
        items = self.call("GET", f"/api/v1/hosts/{host}/nodes").json()
        return [TenantNode.from_json(item) for item in items]

    def host_nodes_etag(self, host: str, etag: str) -> str:
        """The ETag of `host`'s nodes now; costs the server a 304 when it is still `etag`."""
        path = f"/api/v1/hosts/{host}/nodes"
        response = self.call("GET", path, headers={"If-None-Match": etag})
        return etag if response.status_code == 304 else response.headers.get("ETag", "")

    def node_ignition(self, tenant: str, node: str) -> bytes:
        return self.call("GET", f"/api/v1/tenants/{tenant}/nodes/{node}/ignition").content

    def report_node(self, report: NodeReport) -> dict[str, Any]:
        """Report a node's observed state (as its agent; the admin token may too)."""
        path = f"/api/v1/tenants/{report.tenant}/nodes/{report.node}/status"
        return self.call("PUT", path, json=report.to_json()).json()


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
