"""The admin API's client (`AdminClient`) and its one error type (`ApiError`).

Shared by `mayuctl`, the lab and the agent's API source; it sits above `tenants` (it speaks the
agent's wire types) and below every one of its users.
"""

from __future__ import annotations

from mayu_py.api_client.client import AdminClient, Transport
from mayu_py.api_client.errors import ApiError

__all__ = ["AdminClient", "ApiError", "Transport"]
