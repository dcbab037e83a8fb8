"""BMC passwords at rest: sealed with AES-256-GCM under a key kept outside the store.

The store file is 0600 already; sealing adds that a copy of the store alone (a backup, a
`sqlite3 .dump`, a later etcd backend's snapshot) holds no usable BMC password: the key lives
in its own 0600 file (`<data-dir>/bmc.key`), which a backup of the store does not include
unless taken with it. The machine's id is the associated data, so a sealed password moved to
another machine's row does not open. Format: `v1:` + urlsafe base64 of nonce (12 bytes) and
ciphertext with its tag.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mayu_py.errors import MayuError

_VERSION = "v1:"
_NONCE = 12


class SealError(MayuError):
    """A sealed password that does not open with this key (the key file changed, or the
    row was tampered with): set the BMC again."""

    status = 500


def _associated(machine_id: str) -> bytes:
    return f"mayu-bmc-password:{machine_id}".encode()


class PasswordSealer:
    """Seals and opens BMC passwords with one 32-byte key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the BMC key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, machine_id: str, password: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, password.encode(), _associated(machine_id))
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, machine_id: str, sealed: str) -> str:
        """The password; SealError (one line) when it does not open."""
        why = "cannot open the stored BMC password of " + machine_id
        if not sealed.startswith(_VERSION):
            raise SealError(f"{why}: unknown format; set the BMC again") from None
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_VERSION) :])
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _associated(machine_id))
        except (InvalidTag, ValueError):
            raise SealError(
                f"{why}: bmc.key changed or the record was altered; set the BMC again"
            ) from None
        return plain.decode()
