"""One error for every failed call of the admin API, and one way to word it.

Error bodies are RFC 9457 problem details (`{"type", "title", "status", "detail", ...}`) or
the older `{"error", "detail"}`; both become one line, `METHOD PATH: STATUS TITLE (DETAIL)`.
An error is temporary (retry after a delay) when the server could not be reached or answered
429/502/503/504, else permanent.
"""

from __future__ import annotations

from typing import Any

from mayu_py.errors import MayuError

TEMPORARY_STATUSES = frozenset({429, 502, 503, 504})
UNREACHABLE = 503  # the status an unreachable server's error carries
_PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "error"})


class ApiError(MayuError):
    """The mayu server refused a call (`status` is its answer) or could not be reached."""

    def __init__(
        self, message: str, status: int, detail: Any = None, *, temporary: bool = False
    ) -> None:
        super().__init__(message, detail)
        self.status = status
        self.temporary = temporary


def describe(body: Any, fallback: str) -> str:
    """The text of an error body on one line: its title (or error) and its detail; members a
    problem document adds beyond the standard ones count as detail too."""
    if not isinstance(body, dict):
        return fallback
    title = body.get("title") or body.get("error") or fallback
    details = [body["detail"]] if body.get("detail") not in (None, "", {}, []) else []
    extra = {k: v for k, v in body.items() if k not in _PROBLEM_MEMBERS}
    if extra:
        details.append(extra)
    text = f"{title} ({'; '.join(map(str, details))})" if details else str(title)
    return " ".join(text.split())


def http_error(
    method: str, path: str, status: int, reason: str, body: Any, text: str = ""
) -> ApiError:
    """The error for an HTTP answer of 400 or more: `body` is its JSON (None when it had
    none), `text` its raw text."""
    message = f"{method} {path}: {status} {describe(body, reason or 'error')}"
    detail = body if body is not None else {"body": text[:500]}
    return ApiError(message, status, detail, temporary=status in TEMPORARY_STATUSES)


def unreachable(method: str, path: str, base_url: str, exc: Exception) -> ApiError:
    """The error for a call that got no answer (connection refused, timeout, DNS)."""
    message = f"cannot reach {base_url} ({method} {path}): {type(exc).__name__}"
    return ApiError(message, UNREACHABLE, {"error": str(exc)[:500]}, temporary=True)
