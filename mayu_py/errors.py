"""Error types shared by every layer; each carries the HTTP status the server maps it to.

Errors are split into permanent ones (bad input, conflicts: retrying will not help) and
temporary ones (a peer is down: retry after a delay).
"""

from __future__ import annotations

from typing import Any


class MayuError(Exception):
    """Base error: a message a user can act on plus optional structured detail."""

    status = 500
    temporary = False

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "detail": self.detail}


class ConfigError(MayuError):
    """The configuration is invalid; start-up stops with one line naming the field."""

    status = 500


class BadRequest(MayuError):
    status = 400


class Unauthorized(MayuError):
    status = 401


class Forbidden(MayuError):
    status = 403


class NotFound(MayuError):
    status = 404


class Conflict(MayuError):
    status = 409


class Unprocessable(MayuError):
    """Well-formed input that fails validation; detail holds field-level messages."""

    status = 422


class RenderError(MayuError):
    """A template failed to render; names the template and line, never a traceback."""

    status = 500


class CommandError(MayuError):
    """An external command failed or timed out."""

    status = 500

    def __init__(self, argv: list[str], returncode: int | None, stderr: str) -> None:
        where = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(
            f"{argv[0]} {where}: {stderr.strip()[-500:]}",
            {"argv": argv, "returncode": returncode},
        )
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class PeerUnavailable(MayuError):
    """A peer (libvirtd, the mayu server, dnsmasq) is not reachable right now."""

    status = 503
    temporary = True
