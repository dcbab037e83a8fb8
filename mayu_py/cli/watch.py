"""`mayuctl list -w`: the machine list, then each machine again whenever it changes.

Polls the list every `interval` s with the ETag of the last answer (If-None-Match): an
unchanged inventory costs the server a 304 and no body. It stops after `timeout` s (a watch is
always bounded) or at Ctrl-C. A machine is printed when it is new or any of its members
changed; one that disappears is not printed (as kubectl without --output-watch-events).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from mayu_py.api_client import AdminClient

Items = list[dict[str, Any]]


def watch_machines(
    client: AdminClient,
    query: dict[str, str],
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Items]:
    """The first listing, then the machines that changed at each poll, until `timeout`."""
    deadline = clock() + timeout
    seen: dict[str, dict[str, Any]] = {}
    etag: str | None = None
    first = True
    while True:
        page, etag = client.machine_page(query, etag)
        if page is not None:
            items = page["items"]
            changed = [item for item in items if seen.get(item["id"]) != item]
            seen = {item["id"]: item for item in items}
            if changed or first:
                yield changed
            first = False
        left = deadline - clock()
        if left <= 0:
            return
        sleep(min(interval, left))
