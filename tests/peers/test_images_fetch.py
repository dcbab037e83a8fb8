"""`mayu images fetch` end to end: real gpg signatures checked by gpgv, the real CLI.

A throw-away signing key is generated in a temporary GNUPGHOME; the local mirror (from the
unit tests) serves files, SHA256SUMS and detached signatures on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.unit.test_images_fetch import (
    VERSION,
    MirrorServer,
    files_under,
    make_payloads,
    write_catalog,
    write_mirror,
)

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("gpgv")), reason="needs gnupg"),
]

MAYU = Path(sys.executable).parent / "mayu"


@dataclass
class Signer:
    home: Path
    fingerprint: str

    def gpg(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        argv = ["gpg", "--homedir", str(self.home), "--batch", "--yes", *args]
        return subprocess.run(argv, check=True, capture_output=True, timeout=60)

    def sign(self, path: Path, out: Path | None = None) -> None:
        out = out or path.with_name(path.name + ".sig")
        self.gpg("-u", self.fingerprint, "--detach-sign", "-o", str(out), str(path))

    def export(self, out: Path, *, armor: bool) -> Path:
        out.write_bytes(
            self.gpg(*(["--armor"] if armor else []), "--export", self.fingerprint).stdout
        )
        return out


def make_signer(home: Path, uid: str) -> Signer:
    home.mkdir(mode=0o700)
    argv = ["gpg", "--homedir", str(home), "--batch", "--passphrase", ""]
    subprocess.run(
        [*argv, "--quick-gen-key", uid, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    listing = subprocess.run(
        [*argv, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True
    ).stdout
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    return Signer(home, fpr)


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Signer, Signer]]:
    base = tmp_path_factory.mktemp("gpg")
    good = make_signer(base / "good", "Mayu Test Images <images@mayu.invalid>")
    evil = make_signer(base / "evil", "Somebody Else <evil@mayu.invalid>")
    yield good, evil
    for signer in (good, evil):
        subprocess.run(
            ["gpgconf", "--homedir", str(signer.home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )


@dataclass
class Setup:
    root: Path
    vdir: Path
    catalog: Path
    keyring: Path
    assets: Path
    server: MirrorServer
    payloads: dict[str, bytes]

    def fetch(self, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [
            str(MAYU), "images", "fetch", "img", "--catalog", str(self.catalog),
            "--assets-root", str(self.assets), "--mirror", self.server.url + "/img",
            "--keyring", str(self.keyring), *extra,
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def sign_all(signer: Signer, vdir: Path) -> None:
    for name in ("kernel", "initrd", "disk.img.bz2", "SHA256SUMS"):
        signer.sign(vdir / name)


@pytest.fixture
def setup(tmp_path: Path, signers: tuple[Signer, Signer]) -> Iterator[Setup]:
    good, _ = signers
    payloads = make_payloads()
    vdir = write_mirror(tmp_path / "mirror", payloads)
    sign_all(good, vdir)
    catalog = write_catalog(tmp_path / "pins.yaml", signed=True)
    data = yaml.safe_load(catalog.read_text())
    data["images"]["img"]["signer_fingerprint"] = good.fingerprint
    catalog.write_text(yaml.safe_dump(data))
    keyring = good.export(tmp_path / "keyring.asc", armor=True)
    with MirrorServer(tmp_path / "mirror") as server:
        yield Setup(tmp_path, vdir, catalog, keyring, tmp_path / "assets", server, payloads)


def assert_failed_cleanly(
    proc: subprocess.CompletedProcess[str], assets: Path, pattern: str
) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mayu:")]
    assert len(lines) == 1 and pattern in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    if assets.exists():
        assert files_under(assets) == []
    assert not (assets / ".partial").exists()
    assert not (assets / "img").exists()


def test_signed_fetch_lands_files(setup: Setup) -> None:
    proc = setup.fetch()
    assert proc.returncode == 0, proc.stderr
    final = setup.assets / "img" / VERSION
    assert proc.stdout.split() == [str(final / n) for n in ("kernel", "initrd", "disk.img")]
    assert (final / "kernel").read_bytes() == setup.payloads["kernel"]
    assert (final / "initrd").read_bytes() == setup.payloads["initrd"]
    assert (final / "disk.img").read_bytes() == setup.payloads["disk"]
    assert files_under(setup.assets) == [
        f"img/{VERSION}/{n}" for n in ("SHA256SUMS", "disk.img", "initrd", "kernel")
    ]


def test_binary_keyring_works(setup: Setup, signers: tuple[Signer, Signer]) -> None:
    setup.keyring = signers[0].export(setup.root / "keyring.gpg", armor=False)
    assert setup.fetch("--no-progress").returncode == 0


def test_wrong_checksum_exits_2_and_leaves_nothing(
    setup: Setup, signers: tuple[Signer, Signer]
) -> None:
    # The file changes (and is even re-signed), but the signed SHA256SUMS still has the old sum.
    (setup.vdir / "initrd").write_bytes(setup.payloads["initrd"][::-1])
    signers[0].sign(setup.vdir / "initrd")
    assert_failed_cleanly(setup.fetch(), setup.assets, "initrd: sha256 mismatch")


def test_file_signed_by_unknown_key_exits_2_and_leaves_nothing(
    setup: Setup, signers: tuple[Signer, Signer]
) -> None:
    signers[1].sign(setup.vdir / "disk.img.bz2")
    assert_failed_cleanly(
        setup.fetch(), setup.assets, "disk.img.bz2.part: bad or unknown signature"
    )


def test_corrupt_signature_exits_2(setup: Setup) -> None:
    sig = setup.vdir / "kernel.sig"
    data = bytearray(sig.read_bytes())
    data[-10] ^= 0x55
    sig.write_bytes(bytes(data))
    assert_failed_cleanly(setup.fetch(), setup.assets, "kernel.part: bad or unknown signature")


def test_tampered_sums_with_invalid_signature_refused(setup: Setup) -> None:
    # An attacker swaps file and SHA256SUMS consistently but cannot re-sign SHA256SUMS.
    (setup.vdir / "kernel").write_bytes(b"evil kernel")
    write_sums = setup.vdir / "SHA256SUMS"
    lines = write_sums.read_text().splitlines()
    lines[0] = f"{hashlib.sha256(b'evil kernel').hexdigest()}  kernel"
    write_sums.write_text("\n".join(lines) + "\n")
    assert_failed_cleanly(setup.fetch(), setup.assets, "bad or unknown signature")
    assert setup.server.state.sent(f"/img/{VERSION}/kernel") == 0  # refused before downloading


def test_signature_by_other_key_in_keyring_refused_by_fingerprint(
    setup: Setup, signers: tuple[Signer, Signer]
) -> None:
    good, evil = signers
    both = setup.root / "both.gpg"
    both.write_bytes(
        good.export(setup.root / "g.gpg", armor=False).read_bytes()
        + evil.export(setup.root / "e.gpg", armor=False).read_bytes()
    )
    setup.keyring = both
    sign_all(evil, setup.vdir)
    assert_failed_cleanly(setup.fetch(), setup.assets, f"expected {good.fingerprint}")


def test_missing_keyring_fails_before_download(setup: Setup) -> None:
    setup.keyring = setup.root / "nope.gpg"
    proc = setup.fetch()
    assert proc.returncode == 2
    assert "nope.gpg" in proc.stderr
    assert setup.server.state.hits == []


def test_killed_fetch_resumes_with_range(setup: Setup) -> None:
    path = f"/img/{VERSION}/kernel"
    size = len(setup.payloads["kernel"])
    setup.server.state.delay = 0.02  # ~200 KiB/s: slow enough to kill mid-file
    argv = [
        str(MAYU), "images", "fetch", "img", "--catalog", str(setup.catalog),
        "--assets-root", str(setup.assets), "--mirror", setup.server.url + "/img",
        "--keyring", str(setup.keyring), "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while setup.server.state.sent(path) < 120_000:
            assert time.monotonic() < deadline, "the first attempt never got going"
            assert proc.poll() is None, "the first attempt ended by itself"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, 9)
        proc.wait(timeout=30)
    partial = setup.assets / ".partial" / "img" / VERSION / "kernel.part"
    kept = partial.stat().st_size
    assert 0 < kept < size
    assert not (setup.assets / "img").exists()

    setup.server.state.delay = 0.0
    done = setup.fetch("--no-progress")
    assert done.returncode == 0, done.stderr
    assert (setup.assets / "img" / VERSION / "kernel").read_bytes() == setup.payloads["kernel"]
    ranged = [h for h in setup.server.state.hits if h.path == path and h.range]
    assert [(h.range, h.status) for h in ranged] == [(f"bytes={kept}-", 206)]
    assert setup.server.state.sent(path) < 2 * size
    assert not (setup.assets / ".partial").exists()
