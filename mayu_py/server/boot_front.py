"""Cached boot reads, answered in front of Flask.

An installed machine asking to boot from its disk (or a failed one waiting for its reinstall)
gets an answer that follows from its record alone. The /ipxe handler keeps the response it
served for such an answer under the store's state version read before that record
(boot_cache.py), keyed by the request's exact query string. This WSGI front answers a
`GET /ipxe` whose query string it holds at the current version with those same bytes and
headers before Flask builds a request: one version check (on SQLite one PRAGMA), one lookup,
the request counted and timed in the HTTP metrics under the handler's endpoint like any other
answer. Anything else, and every request after a commit by anyone, goes on to the app. The
requests-in-progress gauge does not count these answers (microseconds each, in the worker
that answers them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from mayu_py.server.boot_cache import VersionedCache
from mayu_py.server.metrics import ServerMetrics
from mayu_py.store import Store

PATH = "/ipxe"
ENDPOINT = "boot.machine_boot_script"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class KeptResponse:
    """A response as served: status code and line, headers, body."""

    code: int
    status: str
    headers: list[tuple[str, str]]
    body: bytes


class BootReads:
    """The kept responses of boot reads, and the front that serves them."""

    def __init__(self, store: Store, metrics: ServerMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self.cache: VersionedCache[KeptResponse] = VersionedCache()

    def keep(self, version: Hashable | None, environ: dict[str, Any], response: Any) -> None:
        """Keep the response served to this request (a Flask response whose body is in
        memory) for as long as the state stays at `version`."""
        kept = KeptResponse(
            response.status_code,
            response.status,
            list(response.headers.items()),
            response.get_data(),
        )
        self.cache.put(version, environ.get("QUERY_STRING", ""), kept)

    def front(self, app: WsgiApp) -> WsgiApp:
        """`app` behind a front that answers the kept reads."""

        def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "GET":
                started = time.perf_counter()
                kept = self.cache.get(self.store.state_version(), environ.get("QUERY_STRING", ""))
                if kept is not None:
                    start_response(kept.status, kept.headers)
                    elapsed = time.perf_counter() - started
                    self.metrics.request_done(ENDPOINT, "GET", kept.code, elapsed)
                    return [kept.body]
            return app(environ, start_response)

        return answer
