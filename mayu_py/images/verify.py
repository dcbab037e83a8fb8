"""Checksums and detached OpenPGP signatures of downloaded files.

Signatures are checked by `gpgv` (through mayu_py.command.run) against one keyring file; an
ASCII-armored keyring is dearmored into a temporary file first. When the catalog names the
signer's primary fingerprint, a good signature by any other key in the keyring is refused.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from mayu_py.command import run
from mayu_py.errors import CommandError
from mayu_py.images.errors import ImageFetchError, VerificationError

# Strongest first; weaker digests published beside these (MD5, SHA1) are ignored.
ALGORITHMS = ("sha512", "sha256")
_HEADER = re.compile(r"#\s*(\w+)\s+HASH", re.IGNORECASE)
_LINE = re.compile(r"^([0-9a-fA-F]+)\s+\*?(\S.*)$")


def parse_digests(text: str, filename: str) -> dict[str, str]:
    """Digests of `filename` in a DIGESTS/SHA*SUMS text, by algorithm (sha256, sha512)."""
    found: dict[str, str] = {}
    header: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if match := _HEADER.fullmatch(line):
            header = match.group(1).lower()
            continue
        match = _LINE.match(line)
        if not match or Path(match.group(2).strip()).name != filename:
            continue
        hexdigest = match.group(1).lower()
        algorithm = header or {64: "sha256", 128: "sha512"}.get(len(hexdigest))
        if algorithm in ALGORITHMS:
            found[algorithm] = hexdigest
    return found


def json_digest(document: bytes, key: str) -> str:
    """The hex digest at dotted `key` of a JSON document (e.g. images.live-kernel.sha256)."""
    try:
        node = json.loads(document)
        for part in key.split("."):
            node = node[part]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"checksum document has no {key}") from exc
    if not isinstance(node, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", node):
        raise VerificationError(f"checksum document: {key} is not a sha256")
    return node.lower()


def verify_signature(
    data: Path, signature: Path, keyring: Path, fingerprint: str | None = None
) -> str:
    """Check a detached signature with gpgv; return the signer's primary fingerprint."""
    if not keyring.is_file():
        raise ImageFetchError(
            f"keyring {keyring} not found: install the publisher's signing key there "
            "(see docs/images.md) or pass --keyring"
        )
    with tempfile.TemporaryDirectory(prefix="mayu-gpg-") as home:
        ring = _binary_keyring(keyring, Path(home))
        argv = ["gpgv", "--homedir", home, "--status-fd", "1", "--keyring", str(ring)]
        try:
            proc = run([*argv, str(signature), str(data)], timeout=600)
        except CommandError as exc:
            if exc.returncode == 127:
                raise ImageFetchError("gpgv not found: install the gpgv package") from exc
            raise VerificationError(
                f"{data.name}: bad or unknown signature ({_last_line(exc.stderr)})"
            ) from exc
    signer = _primary_fingerprint(proc.stdout)
    if fingerprint and signer.upper() != fingerprint.replace(" ", "").upper():
        raise VerificationError(f"{data.name}: signed by {signer}, expected {fingerprint}")
    return signer


def _binary_keyring(keyring: Path, home: Path) -> Path:
    if not keyring.read_bytes().lstrip().startswith(b"-----BEGIN PGP"):
        return keyring.resolve()
    out = home / "keyring.gpg"
    try:
        run(["gpg", "--homedir", str(home), "--batch", "-o", str(out), "--dearmor", str(keyring)])
    except CommandError as exc:
        raise ImageFetchError(f"keyring {keyring}: cannot dearmor: {exc.message}") from exc
    return out


def _primary_fingerprint(status: str) -> str:
    for line in status.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[:2] == ["[GNUPG:]", "VALIDSIG"]:
            return fields[-1]
    raise VerificationError("gpgv reported no valid signature")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
