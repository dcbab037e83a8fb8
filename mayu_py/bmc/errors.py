"""BMC errors: one family, each a one-line message naming the BMC (never its password).

`kind` is a short word for events and API bodies. Unreachable is temporary (retry later);
the others need an operator: fix the credentials, the system id, or the BMC's capabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mayu_py.errors import MayuError

log = logging.getLogger(__name__)

_MAX_REASON = 240


def one_line(text: object) -> str:
    """Collapse whitespace and cut a library's message to something a log line can carry."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _MAX_REASON else flat[: _MAX_REASON - 3] + "..."


class BmcError(MayuError):
    """A BMC call failed: the BMC refused or answered something unusable."""

    status = 502
    kind = "failed"

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"BMC {label}: {one_line(reason)}", {"bmc": label, "kind": self.kind})


class BmcUnreachable(BmcError):
    """No answer: refused, timed out, name not resolved, emulator down."""

    status = 503
    temporary = True
    kind = "unreachable"


class BmcAuthFailed(BmcError):
    kind = "auth"


class BmcUnsupported(BmcError):
    """The BMC does not offer the action or value asked for."""

    kind = "unsupported"


class BmcSystemNotFound(BmcError):
    kind = "not-found"


@contextmanager
def library_boundary(label: str, translate: Callable[[Exception], BmcError]) -> Iterator[None]:
    """Let BmcError through; turn anything else a BMC library raised into one BmcError.

    The traceback goes to the debug log only: a user sees the one line.
    """
    try:
        yield
    except BmcError:
        raise
    except Exception as exc:  # the library boundary: nothing else escapes
        mapped = translate(exc)
        log.debug("%s: %s", label, mapped.message, exc_info=True)
        raise mapped from None
