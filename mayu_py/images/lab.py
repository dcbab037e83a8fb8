"""Build the lab node image: a Debian kernel plus a busybox initramfs that runs real Ignition.

The initramfs holds busybox-static with its applet links, the Ignition binary and the OpenSSL
command line tool with exactly their `ldd` libraries (openssl serves a master's API port with
the apiserver certificate Ignition wrote: /init, `serve_api`), the virtio/fw_cfg kernel
modules with a modules.dep, and the recipe in `qemu_images/lab/` (`/init`, stand-ins for
useradd/usermod/groupadd/setfiles, the udhcpc script). It is packed as a reproducible newc
cpio (owner 0:0, mtime 0, sorted) and gzipped, so unchanged inputs give identical bytes; a
hash of every input is kept in `.build-id` beside the outputs and a rebuild with the same
hash touches nothing.

Beside kernel and initrd goes the bootable disk image the lab installer writes to a
machine's disk (`disk.img` and `disk.img.sha256`, see disk.py), built from the same kernel and
initrd, so one build id versions all three.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import lzma
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from mayu_py.command import run
from mayu_py.errors import ConfigError
from mayu_py.files import atomic_copy, atomic_write, file_digest
from mayu_py.images.disk import (
    DISK_NAME,
    SHA256_SUFFIX,
    build_boot_disk,
    read_sha256_file,
    recipe_fingerprint,
)

log = logging.getLogger(__name__)

# Bump when the layout of the image changes in a way the input hash cannot see.
BUILDER_VERSION = "2"
BUILD_ID_FILE = ".build-id"
KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.img"

# Loaded by /init (modprobe resolves the rest from modules.dep); Ignition's qemu platform
# runs `modprobe qemu_fw_cfg` itself. vfat and the code pages its mount needs (the kernel's
# defaults: codepage 437, iocharset ascii, utf8) serve the disk install and the disk boot.
MODULES = (
    "virtio_pci", "virtio_net", "virtio_blk", "qemu_fw_cfg",
    "vfat", "nls_cp437", "nls_ascii", "nls_utf8",
)  # fmt: skip

_REPO_ROOT = Path(__file__).resolve().parents[2]

# Recipe file -> (path in the image, mode).
RECIPE_FILES = {
    "init": ("init", 0o755),
    "useradd": ("usr/sbin/useradd", 0o755),
    "usermod": ("usr/sbin/usermod", 0o755),
    "groupadd": ("usr/sbin/groupadd", 0o755),
    "setfiles": ("usr/sbin/setfiles", 0o755),
    "mayu-passwd-lib": ("usr/sbin/mayu-passwd-lib", 0o644),
    "udhcpc.script": ("usr/share/mayu/udhcpc.script", 0o755),
    "mayu-disk-lib": ("usr/share/mayu/mayu-disk-lib", 0o644),
}

DIRECTORIES = (
    "bin", "dev", "etc", "etc/ssl/certs", "home", "lib", "lib64", "proc", "root", "run", "sbin",
    "sys", "sysroot", "tmp", "usr", "usr/bin", "usr/sbin", "usr/share", "usr/share/mayu", "var",
)  # fmt: skip


@dataclass(frozen=True)
class LabImage:
    """The built image: kernel, initrd, the bootable disk image made of both (and its
    sha256), and a version naming this exact build."""

    kernel: Path
    initrd: Path
    version: str
    kernel_version: str = ""
    build_id: str = ""
    disk: Path | None = None
    disk_sha256: str = ""


@dataclass(frozen=True)
class LabInputs:
    """Where the builder takes its inputs from (the Debian packages, the recipe directory)."""

    boot_dir: Path = Path("/boot")
    modules_root: Path = Path("/lib/modules")
    ignition: Path = Path("/usr/lib/dracut/modules.d/30ignition/ignition")
    openssl: Path = Path("/usr/bin/openssl")
    busybox: Path = Path("/bin/busybox")
    recipe_dir: Path = _REPO_ROOT / "qemu_images" / "lab"
    ca_bundle: Path | None = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass
class _Tree:
    """The image contents before packing: path in the image -> (mode, payload)."""

    files: dict[str, tuple[int, Path | bytes]] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)

    def add_file(self, path: str, source: Path | bytes, mode: int = 0o644) -> None:
        path = path.lstrip("/")
        self.files[path] = (mode, source)
        self._parents(path)

    def add_symlink(self, path: str, target: str) -> None:
        path = path.lstrip("/")
        self.symlinks[path] = target
        self._parents(path)

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        while parent:
            self.dirs.add(parent)
            parent = os.path.dirname(parent)


def default_kernel_version(inputs: LabInputs | None = None) -> str:
    """The newest kernel in /lib/modules that also has /boot/vmlinuz-VERSION."""
    inputs = inputs or LabInputs()
    dirs = list(inputs.modules_root.iterdir()) if inputs.modules_root.is_dir() else []
    candidates = [
        d.name for d in dirs if d.is_dir() and (inputs.boot_dir / f"vmlinuz-{d.name}").is_file()
    ]
    if not candidates:
        raise ConfigError(
            f"no kernel found: need {inputs.modules_root}/VERSION and {inputs.boot_dir}/"
            "vmlinuz-VERSION (apt-get install linux-image-amd64)"
        )
    return max(candidates, key=_version_key)


def _version_key(version: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-+~]", version)]


def build_lab_image(
    out_dir: Path, kernel_version: str | None = None, *, inputs: LabInputs | None = None
) -> LabImage:
    """Build (or reuse) out_dir/vmlinuz and out_dir/initrd.img; writes are atomic."""
    inputs = inputs or LabInputs()
    out_dir = Path(out_dir)
    kver = kernel_version or default_kernel_version(inputs)
    kernel = inputs.boot_dir / f"vmlinuz-{kver}"
    _require(kernel, "the kernel (apt-get install linux-image-amd64)")
    _require(inputs.ignition, "the Ignition binary (apt-get install ignition)")
    _require(inputs.busybox, "busybox (apt-get install busybox-static)")
    _require(inputs.openssl, "the OpenSSL command line tool (apt-get install openssl)")
    for name in RECIPE_FILES:
        _require(inputs.recipe_dir / name, "a file of the lab image recipe")

    tree = _collect(inputs, kver)
    build_id = _build_id(kver, kernel, tree)
    image = LabImage(
        kernel=out_dir / KERNEL_NAME,
        initrd=out_dir / INITRD_NAME,
        version=f"{kver}+{build_id[:12]}",
        kernel_version=kver,
        build_id=build_id,
        disk=out_dir / DISK_NAME,
    )
    recorded_disk = _up_to_date(out_dir, build_id)
    if recorded_disk:
        log.debug("lab image in %s is up to date (%s)", out_dir, image.version)
        return replace(image, disk_sha256=recorded_disk)

    log.info("building lab image %s into %s", image.version, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mayu-lab-") as tmp:
        modules_dep = _modules_dep(Path(tmp), tree, kver, inputs.busybox)
        tree.add_file(f"lib/modules/{kver}/modules.dep", modules_dep)
        atomic_write(image.initrd, _gzip(_cpio(tree)), 0o644)
    atomic_copy(kernel, image.kernel, 0o644)
    disk = build_boot_disk(image.kernel, image.initrd, out_dir / DISK_NAME)
    atomic_write(
        out_dir / BUILD_ID_FILE,
        json.dumps({"build_id": build_id, "version": image.version}) + "\n",
        0o644,
    )
    return replace(image, disk_sha256=disk.sha256)


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise ConfigError(f"lab image: {path} is missing ({what})")


def _up_to_date(out_dir: Path, build_id: str) -> str | None:
    """The disk image's recorded sha256 when every output of build_id is in place."""
    try:
        recorded = json.loads((out_dir / BUILD_ID_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not (
        isinstance(recorded, dict)
        and recorded.get("build_id") == build_id
        and (out_dir / KERNEL_NAME).is_file()
        and (out_dir / INITRD_NAME).is_file()
        and (out_dir / DISK_NAME).is_file()
    ):
        return None
    return read_sha256_file(out_dir / f"{DISK_NAME}{SHA256_SUFFIX}")


# ---- what goes in ---------------------------------------------------------------------------


def _collect(inputs: LabInputs, kver: str) -> _Tree:
    tree = _Tree()
    tree.dirs.update(DIRECTORIES)
    for name, (dest, mode) in RECIPE_FILES.items():
        tree.add_file(dest, inputs.recipe_dir / name, mode)

    tree.add_file("bin/busybox", inputs.busybox, 0o755)
    for applet in sorted(_busybox_applets(inputs.busybox)):
        if applet in ("busybox", "init", "linuxrc") or "/" in applet:
            continue
        tree.add_symlink(f"bin/{applet}", "busybox")

    _add_program(tree, "usr/bin/ignition", inputs.ignition)
    _add_program(tree, "usr/bin/openssl", inputs.openssl)

    for path in _module_closure(inputs.modules_root, kver, MODULES):
        rel = path.resolve().relative_to((inputs.modules_root / kver).resolve())
        if path.suffix == ".xz":
            data = lzma.decompress(path.read_bytes())
            tree.add_file(f"lib/modules/{kver}/{rel.with_suffix('')}", data)
        else:
            tree.add_file(f"lib/modules/{kver}/{rel}", path)

    if inputs.ca_bundle is not None and inputs.ca_bundle.is_file():
        tree.add_file("etc/ssl/certs/ca-certificates.crt", inputs.ca_bundle.resolve())
    tree.add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    tree.add_file("etc/group", b"root:x:0:\n")
    tree.add_file("etc/hostname", b"mayu-lab\n")
    return tree


def _add_program(tree: _Tree, dest: str, binary: Path) -> None:
    """binary at dest with exactly the libraries `ldd` resolves for it."""
    tree.add_file(dest, binary, 0o755)
    for lib in _shared_libraries(binary):
        tree.add_file(str(lib), lib.resolve(), 0o755)


def _busybox_applets(busybox: Path) -> list[str]:
    return run([busybox, "--list"], timeout=30).stdout.split()


def _shared_libraries(binary: Path) -> list[Path]:
    """The libraries `ldd` resolves for binary, including the dynamic loader."""
    out = run(["ldd", binary], timeout=30).stdout
    libs: list[Path] = []
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def _module_closure(modules_root: Path, kver: str, names: tuple[str, ...]) -> list[Path]:
    """Files of the named modules and everything they depend on (builtins are skipped)."""
    # modinfo looks in BASE/lib/modules/KVER.
    modinfo = ["modinfo", "-b", modules_root.parent.parent, "-k", kver]
    seen: dict[str, Path] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        filename = run([*modinfo, "-n", name], timeout=30).stdout.strip()
        if filename.startswith("(builtin)") or not filename.startswith("/"):
            seen[name] = Path()
            continue
        seen[name] = Path(filename)
        depends = run([*modinfo, "-F", "depends", name], timeout=30).stdout
        todo.extend(d for d in depends.strip().split(",") if d)
    return sorted(p for p in seen.values() if p != Path())


def _modules_dep(tmp: Path, tree: _Tree, kver: str, busybox: Path) -> bytes:
    """modules.dep for the modules in tree, written by busybox depmod (its modprobe reads it)."""
    base = tmp / "depmod"
    for path, (_mode, source) in tree.files.items():
        if path.startswith(f"lib/modules/{kver}/") and path.endswith(".ko"):
            dest = base / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(source if isinstance(source, bytes) else source.read_bytes())
    run([busybox, "depmod", "-b", base, kver], timeout=60)
    return (base / "lib" / "modules" / kver / "modules.dep").read_bytes()


def _build_id(kver: str, kernel: Path, tree: _Tree) -> str:
    h = hashlib.sha256()
    h.update(f"builder {BUILDER_VERSION}\nkernel {kver}\ndisk {recipe_fingerprint()}\n".encode())
    h.update(file_digest(kernel).encode())
    for path in sorted(tree.files):
        mode, source = tree.files[path]
        payload = (
            hashlib.sha256(source).hexdigest() if isinstance(source, bytes) else file_digest(source)
        )
        h.update(f"f {path} {mode:o} {payload}\n".encode())
    for path in sorted(tree.symlinks):
        h.update(f"l {path} {tree.symlinks[path]}\n".encode())
    for path in sorted(tree.dirs):
        h.update(f"d {path}\n".encode())
    return h.hexdigest()


# ---- packing ------------------------------------------------------------------------------


def _cpio(tree: _Tree) -> bytes:
    """A newc archive of tree: sorted, owner 0:0, mtime 0, so equal trees give equal bytes."""
    out = bytearray()
    ino = 0

    def entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nonlocal ino
        ino += 1
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw), 0)
        out.extend(b"070701" + b"".join(b"%08X" % v for v in fields) + raw)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    entries: list[tuple[str, int, Path | bytes | str]] = []
    entries += [(d, stat.S_IFDIR | 0o755, b"") for d in tree.dirs]
    entries += [(p, stat.S_IFREG | m, s) for p, (m, s) in tree.files.items()]
    entries += [(p, stat.S_IFLNK | 0o777, t) for p, t in tree.symlinks.items()]
    entry(".", stat.S_IFDIR | 0o755)  # the image root must be 0755 (RECIPES section 3)
    for name, mode, source in sorted(entries, key=lambda e: e[0]):
        if name in ("root", "tmp"):
            mode = stat.S_IFDIR | (0o700 if name == "root" else 0o1777)
        data = source.encode() if isinstance(source, str) else _read(source)
        entry(name, mode, data)
    # The kernel opens /dev/console for /init before anything is mounted.
    entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    entry("TRAILER!!!", 0)
    return bytes(out)


def _read(source: Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else source.read_bytes()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)
