"""The pinned image catalog (`qemu_images/pins.yaml`) as frozen dataclasses.

Every URL in the catalog is relative to the image's `base_url` (a template with `{version}`),
so a mirror replaces one base URL and serves the same relative layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mayu_py.images.errors import ImageFetchError

DEFAULT_CATALOG = Path(__file__).resolve().parents[2] / "qemu_images" / "pins.yaml"
_HEX = re.compile(r"^[0-9a-f]{64}$")
Decompress = Literal["bz2", "xz"] | None


@dataclass(frozen=True)
class ChecksumSource:
    """Where the expected digest comes from besides a sha256 pinned in the catalog.

    `digests`: a text file of `<hex>  <file>` lines (Flatcar's `.DIGESTS`, or SHA256SUMS),
    optionally with `# SHA512 HASH` style headers, whose detached `signature` is verified.
    `json`: a JSON document (Fedora CoreOS `meta.json`) and a dotted `key` to the hex digest.
    """

    type: Literal["digests", "json"]
    url: str
    signature: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class FilePin:
    """One artifact: stored as `name`, downloaded from `source` (relative to the base URL)."""

    name: str
    source: str
    signature: str | None = None
    checksums: ChecksumSource | None = None
    decompress: Decompress = None


@dataclass(frozen=True)
class ImagePin:
    """One image family (flatcar, fedora-coreos): its base URL, keyring and pinned versions."""

    name: str
    base_url: str
    default_version: str
    files: tuple[FilePin, ...]
    versions: dict[str, dict[str, str | None]] = field(default_factory=dict)
    keyring: Path | None = None
    signer_fingerprint: str | None = None

    def sha256_pin(self, version: str, file: str) -> str | None:
        return (self.versions.get(version) or {}).get(file)


def _file_pin(image: str, raw: dict[str, Any]) -> FilePin:
    try:
        checks = raw.get("checksums")
        source = ChecksumSource(**checks) if checks else None
        if source and source.type == "json" and not source.key:
            raise ImageFetchError(f"catalog: {image}/{raw['name']}: json checksums need a key")
        pin = FilePin(
            name=raw["name"],
            source=raw.get("source", raw["name"]),
            signature=raw.get("signature"),
            checksums=source,
            decompress=raw.get("decompress"),
        )
    except (KeyError, TypeError) as exc:
        raise ImageFetchError(f"catalog: {image}: bad file entry {raw!r}: {exc}") from exc
    if pin.decompress not in (None, "bz2", "xz"):
        raise ImageFetchError(f"catalog: {image}/{pin.name}: unknown decompress {pin.decompress}")
    if "/" in pin.name or pin.name.startswith("."):
        raise ImageFetchError(f"catalog: {image}: file name {pin.name!r} must be a plain name")
    return pin


def _versions(image: str, raw: Any) -> dict[str, dict[str, str | None]]:
    versions: dict[str, dict[str, str | None]] = {}
    for version, body in (raw or {}).items():
        sums = (body or {}).get("sha256") or {}
        for file, digest in sums.items():
            if digest is not None and not _HEX.match(str(digest).lower()):
                raise ImageFetchError(f"catalog: {image} {version} {file}: sha256 is not 64 hex")
        versions[str(version)] = {f: (str(d).lower() if d else None) for f, d in sums.items()}
    return versions


def load_catalog(path: Path) -> dict[str, ImagePin]:
    """Parse the catalog; a relative `keyring` is taken relative to the catalog's directory."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ImageFetchError(f"catalog {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ImageFetchError(f"catalog {path}: invalid YAML: {exc}") from exc
    images: dict[str, ImagePin] = {}
    for name, raw in (data.get("images") or {}).items():
        try:
            keyring = raw.get("keyring")
            images[name] = ImagePin(
                name=name,
                base_url=raw["base_url"],
                default_version=str(raw["default_version"]),
                files=tuple(_file_pin(name, f) for f in raw["files"]),
                versions=_versions(name, raw.get("versions")),
                keyring=(path.parent / keyring) if keyring else None,
                signer_fingerprint=(raw.get("signer_fingerprint") or None),
            )
        except KeyError as exc:
            raise ImageFetchError(f"catalog {path}: image {name}: missing {exc}") from exc
    return images


def select(catalog: dict[str, ImagePin], name: str, version: str | None) -> tuple[ImagePin, str]:
    """The pin and the version to fetch; only versions listed under `versions` are allowed."""
    if name not in catalog:
        known = ", ".join(sorted(catalog)) or "none"
        raise ImageFetchError(f"unknown image {name!r} (catalog has: {known})")
    pin = catalog[name]
    chosen = version or pin.default_version
    if chosen not in pin.versions:
        pinned = ", ".join(sorted(pin.versions)) or "none"
        raise ImageFetchError(f"{name} {chosen} is not pinned (pinned: {pinned})")
    return pin, chosen
