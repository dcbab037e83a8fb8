"""Make pyghmi log in with RAKP-HMAC-SHA1 (IPMI cipher suite 3) to chosen BMC endpoints.

Why: pyghmi opens every RMCP+ session asking for cipher suite 17 (SHA-256) and falls back
to suite 3 only when the BMC refuses 17. virtualbmc, whose IPMI server is pyghmi's own
server side, accepts the suite-17 request and then answers RAKP2 with a 20-byte SHA-1 HMAC,
so the client dies in `struct.error: pack expected 32 items for packing (got 20)` (RECIPES
15; reproduced with pyghmi 1.6.19 and virtualbmc 3.3.0). Real BMCs that only speak suite 3
refuse 17 properly and need nothing.

How: pyghmi has no option for the suite. `Session._initsession` resets a session's
algorithms before every login and re-login; it is wrapped once so that, right after it
ran, sessions whose (host, port) was registered here ask for SHA-1 (`attemptedhash = 1`,
the value pyghmi itself falls back to). Sessions to every other BMC in the process keep
pyghmi's negotiation untouched. The registry is process-wide because pyghmi's sessions
are: it shares one session per BMC among all its callers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pyghmi.ipmi.private import session as pyghmi_session

_SHA1_ONLY: set[tuple[str, int]] = set()
_LOCK = threading.Lock()
_MARK = "_mayu_sha1_wrapper"


def force_sha1(host: str, port: int) -> None:
    """Log in to host:port with cipher suite 3 from now on (idempotent)."""
    with _LOCK:
        _SHA1_ONLY.add((host, port))
        original = pyghmi_session.Session._initsession
        if not getattr(original, _MARK, False):
            pyghmi_session.Session._initsession = _wrap(original)


def _wrap(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def _initsession(self: Any) -> None:
        original(self)
        if (self.bmc, self.port) in _SHA1_ONLY:
            self.attemptedhash = 1

    setattr(_initsession, _MARK, True)
    return _initsession
