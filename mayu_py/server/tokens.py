"""One-time boot tokens and the admin token: generated here, stored only as hashes or 0600 files."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from mayu_py.errors import ConfigError


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str | None, expected_hash: str | None) -> bool:
    """Constant-time check of a presented token against a stored hash."""
    if not token or not expected_hash:
        return False
    return hmac.compare_digest(token_hash(token), expected_hash)


MIN_ADMIN_TOKEN_LENGTH = 32


def check_admin_token(token: str, origin: str) -> str:
    """The token, unless it is too weak to guard the admin API (ConfigError naming origin)."""
    token = token.strip()
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        what = "blank" if not token else f"{len(token)} characters long"
        raise ConfigError(
            f"admin token from {origin} is {what}; it needs at least "
            f"{MIN_ADMIN_TOKEN_LENGTH} characters (e.g. `openssl rand -base64 32`)"
        )
    return token


def load_or_create_admin_token(path: Path) -> tuple[str, bool]:
    """Return (token, created). A new token is written with mode 0600 before use; an existing
    file must be readable by its owner only."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(
                f"admin token file {path} is readable by others: chmod 600 {path} and rotate "
                "the token"
            )
        return check_admin_token(path.read_text(), str(path)), False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, True


AGENT_TOKEN_FILE = "/etc/mayu/agent.token"


def load_or_create_key(path: Path) -> bytes:
    """A 32-byte server secret kept in a 0600 file (the BMC passwords' sealing key, the
    dashboard's session key). Processes starting at once agree on one key: the file appears
    whole (written aside, then hard-linked into place, which fails if another was first), so
    no process ever reads a half-written one."""
    if path.exists():
        return _read_key(path)
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(aside, path)
    except FileExistsError:
        return _read_key(path)  # another process made it first: use that one
    finally:
        aside.unlink(missing_ok=True)
    return key


def _read_key(path: Path) -> bytes:
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != 32:
        raise ConfigError(f"{path}: not a 32-byte key (remove it to make a new one)")
    return key
