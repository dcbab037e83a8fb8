"""The lab image builder on this machine's packages: what goes into the initramfs, and that
rebuilds are cached."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from mayu_py.cli.images import build_lab
from mayu_py.command import run
from mayu_py.images.disk import DISK_CMDLINE
from mayu_py.images.lab import LabImage, LabInputs, build_lab_image
from tests.support.peers import require_peers

IGNITION = Path("/usr/lib/dracut/modules.d/30ignition/ignition")
OPENSSL = Path("/usr/bin/openssl")

pytestmark = pytest.mark.peer


@pytest.fixture(autouse=True, scope="module")
def _packages() -> None:
    """ignition, openssl, busybox-static and linux-image-amd64 (a kernel with its modules)."""
    kernel = max(Path("/boot").glob("vmlinuz-*"), default=Path("/boot/vmlinuz-*"))
    require_peers(
        "cpio",
        "zcat",
        "ldd",
        "modinfo",
        "mdir",
        "mcopy",
        "syslinux",
        files=(IGNITION, OPENSSL, Path("/bin/busybox"), kernel),
    )


def _cpio_entries(initrd: Path) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data), parsed independently of the builder's writer."""
    raw = gzip.decompress(initrd.read_bytes())
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert raw[pos : pos + 6] == b"070701", f"bad cpio magic at {pos}"
        fields = [int(raw[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = raw[name_start : name_start + namesize - 1].decode()
        data_start = (name_start + namesize + 3) & ~3
        data = raw[data_start : data_start + size]
        pos = (data_start + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LabImage:
    return build_lab_image(tmp_path_factory.mktemp("lab"))


def test_outputs_and_version(built: LabImage) -> None:
    assert built.kernel.name == "vmlinuz" and built.initrd.name == "initrd.img"
    assert built.kernel.read_bytes() == Path(f"/boot/vmlinuz-{built.kernel_version}").read_bytes()
    assert built.version.startswith(built.kernel_version + "+")
    assert (built.kernel.parent / ".build-id").is_file()
    # Atomic writes leave no temporaries behind.
    assert sorted(p.name for p in built.kernel.parent.iterdir()) == [
        ".build-id",
        "disk.img",
        "disk.img.sha256",
        "initrd.img",
        "vmlinuz",
    ]
    assert built.disk == built.kernel.parent / "disk.img"
    assert built.disk_sha256 == hashlib.sha256(built.disk.read_bytes()).hexdigest()
    sums = (built.kernel.parent / "disk.img.sha256").read_text()
    assert sums == f"{built.disk_sha256}  disk.img\n"  # sha256sum -c format


def test_disk_image_boots_both_ways_into_the_disk_path(built: LabImage, tmp_path: Path) -> None:
    assert built.disk is not None
    disk = str(built.disk)
    listing = run(["mdir", "-a", "-b", "-i", disk, "::/"]).stdout.split()
    assert {"::/vmlinuz", "::/initrd.img", "::/syslinux.cfg", "::/ldlinux.sys"} <= set(listing)
    assert "MAYUBOOT" in run(["mlabel", "-s", "-i", disk, "::"]).stdout
    for name, source in (("vmlinuz", built.kernel), ("initrd.img", built.initrd)):
        run(["mcopy", "-i", disk, f"::/{name}", tmp_path / name])
        assert (tmp_path / name).read_bytes() == source.read_bytes(), name
    syslinux = run(["mtype", "-i", disk, "::/syslinux.cfg"]).stdout
    assert f"APPEND {DISK_CMDLINE}" in syslinux and "INITRD /initrd.img" in syslinux
    run(["mcopy", "-i", disk, "::/EFI/BOOT/BOOTX64.EFI", tmp_path / "BOOTX64.EFI"])
    loader = (tmp_path / "BOOTX64.EFI").read_bytes()
    assert loader[:2] == b"MZ"  # a PE image, what UEFI firmware runs from the removable path
    assert b"mayu.boot=disk" in loader  # grub.cfg is inside the standalone GRUB
    # Room for the installer's files (the machine's Ignition config).
    free = re.search(r"([\d ]+) bytes free", run(["mdir", "-i", disk, "::/"]).stdout)
    assert free and int(free.group(1).replace(" ", "")) >= 2 << 20


def test_initrd_contents(built: LabImage) -> None:
    entries = _cpio_entries(built.initrd)
    # GNU cpio agrees with our own parser on the listing.
    names = set(run(["sh", "-c", f"zcat '{built.initrd}' | cpio -t --quiet"]).stdout.split())
    assert names == set(entries)

    mode, init = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111, "/init must be an executable file"
    assert init.startswith(b"#!/bin/sh")
    assert stat.S_IMODE(entries["."][0]) == 0o755  # RECIPES: Ignition needs a 0755 root
    assert stat.S_ISCHR(entries["dev/console"][0])

    assert entries["bin/busybox"][1] == Path("/bin/busybox").read_bytes()
    assert stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][1] == b"busybox"
    for applet in ("ping", "udhcpc", "wget", "modprobe", "sha256sum", "poweroff", "setsid"):
        assert f"bin/{applet}" in entries, applet
    for tool in ("useradd", "usermod", "groupadd", "setfiles"):
        assert entries[f"usr/sbin/{tool}"][0] & 0o111, tool
    assert "usr/share/mayu/udhcpc.script" in entries
    assert (
        entries["usr/share/mayu/mayu-disk-lib"][1]
        == (LabInputs().recipe_dir / "mayu-disk-lib").read_bytes()
    )

    for program, dest in ((IGNITION, "usr/bin/ignition"), (OPENSSL, "usr/bin/openssl")):
        assert entries[dest][1] == program.read_bytes() and entries[dest][0] & 0o111, dest
        ldd = run(["ldd", program]).stdout
        libs = [w for w in ldd.split() if w.startswith("/")]
        assert libs, ldd
        for lib in libs:
            assert lib.lstrip("/") in entries, f"{lib} (needed by {program.name}) missing"
            assert entries[lib.lstrip("/")][1] == Path(lib).read_bytes()

    kdir = f"lib/modules/{built.kernel_version}"
    modules = {Path(n).name for n in entries if n.startswith(kdir) and n.endswith(".ko")}
    for m in ("virtio_ring", "virtio", "virtio_pci", "virtio_pci_modern_dev", "failover",
              "net_failover", "virtio_net", "qemu_fw_cfg", "virtio_blk", "fat", "vfat",
              "nls_cp437", "nls_ascii", "nls_utf8"):  # fmt: skip
        assert f"{m}.ko" in modules, m
    dep = entries[f"{kdir}/modules.dep"][1].decode()
    virtio_net = next(line for line in dep.splitlines() if "/virtio_net.ko:" in line)
    assert "net_failover.ko" in virtio_net and "virtio_ring.ko" in virtio_net


def test_rebuild_with_unchanged_inputs_is_a_noop(built: LabImage) -> None:
    assert built.disk is not None
    outputs = (built.kernel, built.initrd, built.disk)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs}
    again = build_lab_image(built.kernel.parent)
    assert again == built
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs}
    assert after == before


def test_builds_are_reproducible_and_follow_the_recipe(built: LabImage, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe"
    shutil.copytree(LabInputs().recipe_dir, recipe)
    inputs = LabInputs(recipe_dir=recipe)

    same = build_lab_image(tmp_path / "a", inputs=inputs)
    assert same.build_id == built.build_id
    assert same.initrd.read_bytes() == built.initrd.read_bytes()

    (recipe / "init").write_text((recipe / "init").read_text() + "# changed\n")
    changed = build_lab_image(tmp_path / "a", inputs=inputs)
    assert changed.build_id != built.build_id
    assert _cpio_entries(changed.initrd)["init"][1].endswith(b"# changed\n")


def test_a_lost_output_is_rebuilt(tmp_path: Path, built: LabImage) -> None:
    out = tmp_path / "lab"
    shutil.copytree(built.kernel.parent, out)
    (out / "initrd.img").unlink()
    image = build_lab_image(out)
    assert image.initrd.read_bytes() == built.initrd.read_bytes()


def test_cli_build_lab_names_the_disk_image_and_its_checksum(built: LabImage) -> None:
    result = CliRunner().invoke(build_lab, ["--out", str(built.kernel.parent)])
    assert result.exit_code == 0, result.output
    assert f"disk {built.disk} sha256 {built.disk_sha256}\n" in result.output
    assert f"version {built.version}\n" in result.output
