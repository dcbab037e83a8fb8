"""HTTP client of the admin API used by mayuctl (MAYU_URL, MAYU_TOKEN)."""

from __future__ import annotations

import os
from typing import Any

import requests

from mayu_py.errors import MayuError


class ApiError(MayuError):
    """The server refused a request or could not be reached."""

    status = 502


class AdminClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        ca_file: str | None = None,
    ):
        self.url = (url or os.environ.get("MAYU_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.token = token if token is not None else os.environ.get("MAYU_TOKEN", "")
        self.timeout = timeout
        self.session = requests.Session()
        # HTTPS to a server whose CA is ours (<data-dir>/pki/server/ca.crt), not a public one.
        # Given per request: requests lets REQUESTS_CA_BUNDLE override a session's `verify`.
        self.verify: str | bool = ca_file or True

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = self.session.request(
                method,
                self.url + path,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise ApiError(f"cannot reach {self.url}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            # RFC 9457 problem details: `detail` says what went wrong, `context` carries fields.
            message = body.get("detail") or body.get("title") or response.reason
            context = body.get("context")
            suffix = f" ({context})" if context else ""
            raise ApiError(f"{response.status_code} {message}{suffix}", context)
        if response.headers.get("Content-Type", "").startswith("application/json"):
            return response.json()
        return response.text
