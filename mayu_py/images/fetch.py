"""Fetch pinned production images (Flatcar, Fedora CoreOS) into the asset store, verified.

For each file of the pinned version: learn the expected digest (pinned sha256, and/or a signed
DIGESTS file, and/or a JSON metadata document; every source given must agree), download into
`<assets>/.partial/<name>/<version>/<file>.part` (resuming with Range), check the digest and the
detached signature, then decompress if asked. Only when every file of the version passed are
they renamed into `<assets>/<name>/<version>/`, with a SHA256SUMS of what landed; a failed check
removes the partials, an interrupted transfer keeps them for the next run.
"""

from __future__ import annotations

import bz2
import contextlib
import logging
import lzma
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mayu_py.files import atomic_write, file_digest
from mayu_py.images.download import download, fetch_small
from mayu_py.images.errors import DownloadInterrupted, ImageFetchError, VerificationError
from mayu_py.images.pins import FilePin, ImagePin, load_catalog, select
from mayu_py.images.verify import json_digest, parse_digests, verify_signature

log = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
SUMS_FILE = "SHA256SUMS"


@dataclass(frozen=True)
class _Staged:
    """A verified file waiting in the partial directory to be renamed into place."""

    pin: FilePin
    path: Path


def fetch_image(
    catalog: Path,
    name: str,
    version: str | None,
    assets_root: Path,
    *,
    mirror: str | None = None,
    keyring: Path | None = None,
    progress: bool = True,
) -> list[Path]:
    """Download and verify one pinned image version; return the paths now in the store."""
    pin, chosen = select(load_catalog(catalog), name, version)
    base = _base_url(pin, chosen, mirror)
    final_dir = assets_root / name / chosen
    if present := _already_present(pin, final_dir):
        log.info("%s %s already in %s", name, chosen, final_dir)
        return present
    ring = _keyring(pin, keyring)
    stage_dir = assets_root / PARTIAL_DIR / name / chosen
    staged: list[_Staged] = []
    try:
        with _progress(progress) as bar, tempfile.TemporaryDirectory(prefix="mayu-fetch-") as tmp:
            for file in pin.files:
                staged.append(_stage(pin, chosen, file, base, stage_dir, ring, Path(tmp), bar))
    except (DownloadInterrupted, KeyboardInterrupt):
        raise  # keep the partials: the next run resumes them
    except BaseException:
        shutil.rmtree(stage_dir, ignore_errors=True)
        _prune_empty(stage_dir.parent, assets_root)
        raise
    landed = _publish(staged, final_dir)
    shutil.rmtree(stage_dir, ignore_errors=True)
    _prune_empty(stage_dir.parent, assets_root)
    return landed


def _keyring(pin: ImagePin, override: Path | None) -> Path:
    """The keyring signatures are checked against; it must exist before anything downloads."""
    ring = override or pin.keyring
    signed = any(f.signature or (f.checksums and f.checksums.signature) for f in pin.files)
    if not signed:
        return ring or Path("/nonexistent")
    if ring is None:
        raise ImageFetchError(f"{pin.name}: no keyring in the catalog; pass --keyring")
    if not ring.is_file():
        raise ImageFetchError(
            f"keyring {ring} not found: install the publisher's key (qemu_images/keys/README.md)"
            " or pass --keyring"
        )
    return ring


def _base_url(pin: ImagePin, version: str, mirror: str | None) -> str:
    """The URL files are relative to; a mirror without `{version}` gets `/<version>` added."""
    template = pin.base_url
    if mirror:
        template = mirror if "{version}" in mirror else mirror.rstrip("/") + "/{version}"
    return template.format(version=version, name=pin.name).rstrip("/")


def _url(base: str, relative: str, version: str) -> str:
    return f"{base}/{relative.format(version=version)}"


def _expected(
    pin: ImagePin, version: str, file: FilePin, base: str, ring: Path, tmp: Path
) -> dict[str, str]:
    """Expected digests by algorithm, from every source the catalog names for this file."""
    expected: dict[str, str] = {}
    if pinned := pin.sha256_pin(version, file.name):
        expected["sha256"] = pinned
    source = file.checksums
    if source is not None:
        body = fetch_small(_url(base, source.url, version))
        if source.signature:
            doc = tmp / f"{file.name}.checksums"
            sig = tmp / f"{file.name}.checksums.sig"
            doc.write_bytes(body)
            sig.write_bytes(fetch_small(_url(base, source.signature, version)))
            verify_signature(doc, sig, ring, pin.signer_fingerprint)
        if source.type == "json":
            found = {"sha256": json_digest(body, source.key or "")}
        else:
            found = parse_digests(body.decode("utf-8", "replace"), _source_name(file, version))
            if not found:
                raise VerificationError(f"{file.name}: no sha256/sha512 in {source.url}")
        for algorithm, digest in found.items():
            if expected.get(algorithm, digest) != digest:
                raise VerificationError(
                    f"{file.name}: pinned {algorithm} differs from {source.url}"
                )
            expected[algorithm] = digest
    if not expected:
        raise ImageFetchError(
            f"{pin.name} {version} {file.name}: no checksum pinned and no checksums source; "
            "fill versions.<version>.sha256 in the catalog from the published metadata"
        )
    return expected


def _source_name(file: FilePin, version: str) -> str:
    return Path(file.source.format(version=version)).name


def _stage(
    pin: ImagePin,
    version: str,
    file: FilePin,
    base: str,
    stage_dir: Path,
    ring: Path,
    tmp: Path,
    bar: Progress | None,
) -> _Staged:
    expected = _expected(pin, version, file, base, ring, tmp)
    partial = stage_dir / f"{_source_name(file, version)}.part"
    download(_url(base, file.source, version), partial, progress=bar)
    for algorithm, digest in expected.items():
        actual = file_digest(partial, algorithm)
        if actual != digest:
            raise VerificationError(
                f"{file.name}: {algorithm} mismatch: expected {digest[:16]}.., got {actual[:16]}.."
            )
    if file.signature:
        sig = tmp / f"{file.name}.sig"
        sig.write_bytes(fetch_small(_url(base, file.signature, version)))
        verify_signature(partial, sig, ring, pin.signer_fingerprint)
    elif file.checksums is None or file.checksums.signature is None:
        log.warning(
            "%s %s %s: no signature in the catalog; checksum only", pin.name, version, file.name
        )
    if file.decompress is None:
        return _Staged(file, partial)
    out = stage_dir / f"{file.name}.unpacked"
    _decompress(partial, out, file.decompress)
    partial.unlink()
    return _Staged(file, out)


def _decompress(src: Path, dst: Path, kind: str) -> None:
    opener = bz2.open if kind == "bz2" else lzma.open
    try:
        with opener(src, "rb") as inp, dst.open("wb") as out:
            shutil.copyfileobj(inp, out, 1 << 20)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        dst.unlink(missing_ok=True)
        raise VerificationError(f"{src.name}: cannot decompress ({kind}): {exc}") from exc


def _publish(staged: list[_Staged], final_dir: Path) -> list[Path]:
    """Rename every verified file into place (same filesystem), then write SHA256SUMS."""
    final_dir.mkdir(parents=True, exist_ok=True)
    sums = [f"{file_digest(item.path, 'sha256')}  {item.pin.name}\n" for item in staged]
    landed = []
    for item in staged:
        target = final_dir / item.pin.name
        os.replace(item.path, target)
        landed.append(target)
    atomic_write(final_dir / SUMS_FILE, "".join(sums), 0o644)
    return landed


def _already_present(pin: ImagePin, final_dir: Path) -> list[Path] | None:
    """The files, when a previous fetch landed all of them and they still match SHA256SUMS."""
    sums = final_dir / SUMS_FILE
    if not sums.is_file():
        return None
    text = sums.read_text()
    paths = []
    for file in pin.files:
        path = final_dir / file.name
        want = parse_digests(text, file.name).get("sha256")
        if not path.is_file() or want is None or file_digest(path, "sha256") != want:
            return None
        paths.append(path)
    return paths


def _prune_empty(directory: Path, stop: Path) -> None:
    """Remove empty partial directories up to (not including) the assets root."""
    while directory != stop and directory.is_relative_to(stop):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        yield bar
