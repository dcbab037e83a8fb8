"""`mayu images fetch` logic against a local Range-capable HTTP mirror (no gpg here).

The mirror (MirrorServer) is also used by tests/peers/test_images_fetch.py, which adds real
OpenPGP signatures checked by gpgv.
"""

from __future__ import annotations

import bz2
import hashlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from mayu_py.images.download import download
from mayu_py.images.errors import DownloadInterrupted, ImageFetchError, VerificationError
from mayu_py.images.fetch import fetch_image
from mayu_py.images.pins import DEFAULT_CATALOG, load_catalog, select
from mayu_py.images.verify import json_digest, parse_digests

VERSION = "1.2.3"


@dataclass
class Hit:
    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class MirrorState:
    """What the mirror serves and how it misbehaves; `hits` records every GET."""

    root: Path
    hits: list[Hit] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> close after N bytes (once)
    ignore_range: bool = False
    delay: float = 0.0  # seconds per 4 KiB chunk

    def sent(self, path: str) -> int:
        return sum(h.sent for h in self.hits if h.path == path)


class _Handler(BaseHTTPRequestHandler):
    state: MirrorState

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        target = state.root / path.lstrip("/")
        header = self.headers.get("Range")
        # Every hit is recorded before the response goes out: a client may assert right after.
        if not target.is_file():
            state.hits.append(Hit(path, header, 404, 0))
            self.send_error(404)
            return
        data = target.read_bytes()
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", header or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                state.hits.append(Hit(path, header, 416, 0))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        hit = Hit(path, header, status, 0)
        state.hits.append(hit)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        limit = state.cut_after.pop(path, None)
        if limit is not None:
            body = body[:limit]
        try:
            for offset in range(0, len(body), 4096):
                chunk = body[offset : offset + 4096]
                self.wfile.write(chunk)
                hit.sent += len(chunk)
                if state.delay:
                    time.sleep(state.delay)
        except (BrokenPipeError, ConnectionResetError):
            return
        if limit is not None:
            self.close_connection = True


class MirrorServer:
    """A threaded HTTP server on 127.0.0.1 serving `root` with Range support."""

    def __init__(self, root: Path) -> None:
        self.state = MirrorState(root)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.state = self.state  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> MirrorServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def make_payloads() -> dict[str, bytes]:
    """Deterministic, incompressible-ish files of a few hundred KiB."""
    seed = hashlib.sha256(b"mayu").digest()
    blob = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(20000))
    return {"kernel": blob[:300_000], "initrd": blob[300_000:500_000], "disk": blob[:123_456]}


def write_mirror(root: Path, payloads: dict[str, bytes]) -> Path:
    """Mirror layout <root>/img/<version>/: kernel, initrd, disk.img.bz2, SHA256SUMS."""
    vdir = root / "img" / VERSION
    vdir.mkdir(parents=True)
    (vdir / "kernel").write_bytes(payloads["kernel"])
    (vdir / "initrd").write_bytes(payloads["initrd"])
    (vdir / "disk.img.bz2").write_bytes(bz2.compress(payloads["disk"]))
    sums = [
        f"{hashlib.sha256((vdir / n).read_bytes()).hexdigest()}  {n}\n"
        for n in ("kernel", "initrd", "disk.img.bz2")
    ]
    (vdir / "SHA256SUMS").write_text("".join(sums))
    return vdir


def write_catalog(path: Path, *, signed: bool = False, pins: dict | None = None) -> Path:
    def entry(name: str, source: str, **extra: object) -> dict:
        item: dict = {"name": name, "source": source, **extra}
        item["checksums"] = {"type": "digests", "url": "SHA256SUMS"}
        if signed:
            item["signature"] = f"{source}.sig"
            item["checksums"]["signature"] = "SHA256SUMS.sig"
        return item

    catalog = {
        "schema": 1,
        "images": {
            "img": {
                "base_url": "https://upstream.invalid/img/{version}",
                "default_version": VERSION,
                "versions": {VERSION: {"sha256": pins or {}}},
                "files": [
                    entry("kernel", "kernel"),
                    entry("initrd", "initrd"),
                    entry("disk.img", "disk.img.bz2", decompress="bz2"),
                ],
            }
        },
    }
    path.write_text(yaml.safe_dump(catalog))
    return path


@pytest.fixture
def payloads() -> dict[str, bytes]:
    return make_payloads()


@pytest.fixture
def mirror(tmp_path: Path, payloads: dict[str, bytes]) -> Iterator[MirrorServer]:
    write_mirror(tmp_path / "mirror", payloads)
    with MirrorServer(tmp_path / "mirror") as server:
        yield server


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_happy_path_over_http_lands_exact_bytes(tmp_path, mirror, payloads) -> None:
    catalog = write_catalog(tmp_path / "pins.yaml")
    assets = tmp_path / "assets"
    paths = fetch_image(catalog, "img", None, assets, mirror=mirror.url + "/img", progress=False)
    final = assets / "img" / VERSION
    assert paths == [final / "kernel", final / "initrd", final / "disk.img"]
    assert (final / "kernel").read_bytes() == payloads["kernel"]
    assert (final / "initrd").read_bytes() == payloads["initrd"]
    assert (final / "disk.img").read_bytes() == payloads["disk"]  # bz2 unpacked
    assert files_under(assets) == [
        f"img/{VERSION}/{n}" for n in ("SHA256SUMS", "disk.img", "initrd", "kernel")
    ]


def test_second_fetch_reuses_store_without_downloading(tmp_path, mirror) -> None:
    catalog = write_catalog(tmp_path / "pins.yaml")
    assets = tmp_path / "assets"
    fetch_image(catalog, "img", None, assets, mirror=mirror.url + "/img", progress=False)
    before = len(mirror.state.hits)
    fetch_image(catalog, "img", None, assets, mirror=mirror.url + "/img", progress=False)
    assert len(mirror.state.hits) == before


def test_file_mirror_works(tmp_path, payloads) -> None:
    write_mirror(tmp_path / "mirror", payloads)
    catalog = write_catalog(tmp_path / "pins.yaml")
    assets = tmp_path / "assets"
    fetch_image(
        catalog,
        "img",
        VERSION,
        assets,
        mirror=f"file://{tmp_path}/mirror/img/{{version}}",
        progress=True,
    )
    assert (assets / "img" / VERSION / "kernel").read_bytes() == payloads["kernel"]


def test_wrong_checksum_leaves_nothing(tmp_path, mirror) -> None:
    vdir = mirror.state.root / "img" / VERSION
    data = bytearray((vdir / "initrd").read_bytes())
    data[1000] ^= 0xFF
    (vdir / "initrd").write_bytes(bytes(data))
    catalog = write_catalog(tmp_path / "pins.yaml")
    assets = tmp_path / "assets"
    with pytest.raises(VerificationError, match="initrd: sha256 mismatch"):
        fetch_image(catalog, "img", None, assets, mirror=mirror.url + "/img", progress=False)
    assert files_under(assets) == []  # neither the good kernel nor any partial
    assert not (assets / ".partial").exists()


def test_pinned_sha256_must_agree_with_digests(tmp_path, mirror) -> None:
    catalog = write_catalog(tmp_path / "pins.yaml", pins={"kernel": "0" * 64})
    assets = tmp_path / "assets"
    with pytest.raises(VerificationError, match="pinned sha256 differs"):
        fetch_image(catalog, "img", None, assets, mirror=mirror.url + "/img", progress=False)
    assert files_under(assets) == []


def test_truncated_download_fails_and_lands_nothing_then_resumes(
    tmp_path, mirror, payloads
) -> None:
    path = f"/img/{VERSION}/kernel"
    mirror.state.cut_after[path] = 100_000
    catalog = write_catalog(tmp_path / "pins.yaml")
    assets = tmp_path / "assets"
    with pytest.raises(DownloadInterrupted, match="run again to resume"):
        fetch_image(catalog, "img", None, assets, mirror=mirror.url + "/img", progress=False)
    assert not (assets / "img").exists()
    partial = assets / ".partial" / "img" / VERSION / "kernel.part"
    kept = partial.stat().st_size
    assert 0 < kept <= 100_000

    fetch_image(catalog, "img", None, assets, mirror=mirror.url + "/img", progress=False)
    assert (assets / "img" / VERSION / "kernel").read_bytes() == payloads["kernel"]
    ranged = [h for h in mirror.state.hits if h.path == path and h.range]
    assert ranged and ranged[0].status == 206 and ranged[0].range == f"bytes={kept}-"
    assert mirror.state.sent(path) < 2 * len(payloads["kernel"])
    assert not (assets / ".partial").exists()


def test_resume_restarts_when_server_ignores_range(tmp_path, mirror, payloads) -> None:
    url = f"{mirror.url}/img/{VERSION}/kernel"
    partial = tmp_path / "kernel.part"
    partial.write_bytes(b"garbage that must not survive")
    mirror.state.ignore_range = True
    assert download(url, partial) == len(payloads["kernel"])
    assert partial.read_bytes() == payloads["kernel"]
    assert mirror.state.hits[-1].status == 200


def test_complete_partial_gets_416_and_is_kept(tmp_path, mirror, payloads) -> None:
    url = f"{mirror.url}/img/{VERSION}/kernel"
    partial = tmp_path / "kernel.part"
    partial.write_bytes(payloads["kernel"])
    assert download(url, partial) == len(payloads["kernel"])
    assert mirror.state.hits[-1].status == 416


def test_http_404_is_a_clear_error_and_removes_partials(tmp_path, mirror) -> None:
    (mirror.state.root / "img" / VERSION / "initrd").unlink()
    catalog = write_catalog(tmp_path / "pins.yaml")
    assets = tmp_path / "assets"
    with pytest.raises(ImageFetchError, match=r"initrd: HTTP 404"):
        fetch_image(catalog, "img", None, assets, mirror=mirror.url + "/img", progress=False)
    assert files_under(assets) == []


def test_unpinned_version_is_refused(tmp_path) -> None:
    catalog = write_catalog(tmp_path / "pins.yaml")
    with pytest.raises(ImageFetchError, match="9.9.9 is not pinned"):
        fetch_image(catalog, "img", "9.9.9", tmp_path / "assets", progress=False)
    with pytest.raises(ImageFetchError, match="unknown image 'nope'"):
        fetch_image(catalog, "nope", None, tmp_path / "assets", progress=False)


def test_parse_flatcar_digests_prefers_sha512() -> None:
    text = (
        "# MD5 HASH\n" + "a" * 32 + "  flatcar_production_pxe.vmlinuz\n"
        "# SHA1 HASH\n" + "b" * 40 + "  flatcar_production_pxe.vmlinuz\n"
        "# SHA512 HASH\n"
        + "c" * 128
        + "  flatcar_production_pxe.vmlinuz\n"
        + "d" * 128
        + "  other\n"
    )
    assert parse_digests(text, "flatcar_production_pxe.vmlinuz") == {"sha512": "c" * 128}
    assert parse_digests("e" * 64 + " *./x.img\n", "x.img") == {"sha256": "e" * 64}


def test_json_digest_from_fcos_meta() -> None:
    doc = b'{"images": {"live-kernel": {"sha256": "' + b"A" * 64 + b'"}}}'
    assert json_digest(doc, "images.live-kernel.sha256") == "a" * 64
    with pytest.raises(VerificationError):
        json_digest(doc, "images.qemu.sha256")


def test_shipped_catalog_pins_flatcar_and_fcos() -> None:
    catalog = load_catalog(DEFAULT_CATALOG)
    flatcar, version = select(catalog, "flatcar", None)
    assert version == "4081.2.0"
    names = [f.name for f in flatcar.files]
    assert names == [
        "flatcar_production_pxe.vmlinuz",
        "flatcar_production_pxe_image.cpio.gz",
        "flatcar_production_qemu_image.img",
    ]
    assert all(f.signature and f.checksums and f.checksums.signature for f in flatcar.files)
    assert flatcar.signer_fingerprint == "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A"
    fcos, _ = select(catalog, "fedora-coreos", None)
    assert all(f.signature and f.checksums for f in fcos.files)
