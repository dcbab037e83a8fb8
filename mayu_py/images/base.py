"""Base images the agent boots tenant VMs from: a manifest per image, verified by checksum.

IMAGES_DIR/<name>.json names versioned, read-only files in the same directory:
{"name", "version", "kernel", "initrd", "disk", "cmdline", "min_memory_mib",
 "sha256": {file name: hex digest}}. A file whose digest does not match is never used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mayu_py.command import run
from mayu_py.errors import MayuError, NotFound
from mayu_py.files import atomic_copy, atomic_write, file_digest, replacing

READ_ONLY = 0o444


class ImageCorrupt(MayuError):
    """A base image file does not match its recorded checksum."""

    status = 500


class ImageMissing(NotFound):
    """No manifest of this base image in the images directory."""

    def __init__(self, name: str, images_dir: Path) -> None:
        super().__init__(f"unknown base image {name!r}", {"images_dir": str(images_dir)})
        self.image = name


@dataclass(frozen=True)
class ImageSummary:
    """What a host tells the server of a base image: name, version, its manifest's sha256
    (the manifest holds the digests of the image's files, so this names them all)."""

    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class BaseImage:
    name: str
    version: str
    kernel: Path
    initrd: Path
    disk: Path
    cmdline: str
    min_memory_mib: int
    sha256: dict[str, str]


class BaseImages:
    """Looks up and verifies base images; verification is cached per file identity."""

    def __init__(self, images_dir: Path | str) -> None:
        self.dir = Path(images_dir)
        self._verified: dict[tuple[str, int, int, int], str] = {}

    def _load(self, name: str) -> BaseImage:
        manifest = self.dir / f"{name}.json"
        if "/" in name or not manifest.is_file():
            raise ImageMissing(name, self.dir)
        data = json.loads(manifest.read_text())
        return BaseImage(
            name=data["name"],
            version=str(data["version"]),
            kernel=self.dir / data["kernel"],
            initrd=self.dir / data["initrd"],
            disk=self.dir / data["disk"],
            cmdline=data.get("cmdline", "console=ttyS0"),
            min_memory_mib=int(data.get("min_memory_mib", 256)),
            sha256=dict(data["sha256"]),
        )

    def _verify(self, path: Path, expected: str | None) -> None:
        if expected is None:
            raise ImageCorrupt(f"{path.name}: no checksum recorded", {"file": str(path)})
        st = path.stat()
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if self._verified.get(key) == expected:
            return
        actual = file_digest(path)
        if actual != expected:
            raise ImageCorrupt(
                f"{path.name} fails its checksum: refusing to use it",
                {"file": str(path), "expected": expected, "actual": actual},
            )
        self._verified[key] = expected

    def get(self, name: str) -> BaseImage:
        """The image with every file verified against its checksum."""
        image = self._load(name)
        for path in (image.kernel, image.initrd, image.disk):
            self._verify(path, image.sha256.get(path.name))
        return image

    def known(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json"))

    def summaries(self) -> list[ImageSummary]:
        """Each image whose manifest reads, without hashing its files (cheap: a heartbeat
        carries them); a file that fails its checksum is still refused when used."""
        found = []
        for manifest in sorted(self.dir.glob("*.json")):
            try:
                data = json.loads(manifest.read_bytes())
                found.append(
                    ImageSummary(manifest.stem, str(data["version"]), file_digest(manifest))
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not an image manifest: `get` reports it when a node needs it
        return found


def install_base_image(
    images_dir: Path | str,
    name: str,
    version: str,
    kernel: Path | str,
    initrd: Path | str,
    *,
    disk: Path | str | None = None,
    cmdline: str = "console=ttyS0",
    min_memory_mib: int = 256,
) -> BaseImage:
    """Copy kernel/initrd (and a disk, else an empty 1 GiB qcow2) into versioned read-only
    files and write the manifest that names them."""
    target = Path(images_dir)
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o755)
    files = {
        "kernel": target / f"{name}-{version}.vmlinuz",
        "initrd": target / f"{name}-{version}.initrd",
        "disk": target / f"{name}-{version}.qcow2",
    }
    for key, source in (("kernel", kernel), ("initrd", initrd), ("disk", disk)):
        dest = files[key]
        if dest.exists():
            continue
        if source is None:
            with replacing(dest, READ_ONLY) as tmp:
                run(["qemu-img", "create", "-f", "qcow2", tmp, "1G"])
        else:
            atomic_copy(source, dest, READ_ONLY)
    manifest = {
        "name": name,
        "version": version,
        "kernel": files["kernel"].name,
        "initrd": files["initrd"].name,
        "disk": files["disk"].name,
        "cmdline": cmdline,
        "min_memory_mib": min_memory_mib,
        "sha256": {p.name: file_digest(p) for p in files.values()},
    }
    atomic_write(target / f"{name}.json", json.dumps(manifest, indent=2), 0o644)
    return BaseImages(target).get(name)


LAB_TENANT_CMDLINE = "console=ttyS0 mayu.after=stay"  # no quiet: the agent reads the banner


def install_lab_base_image(
    images_dir: Path | str, kernel: Path, initrd: Path, version: str
) -> BaseImage:
    """The lab kernel + initrd as tenant base image `lab`: it stays up after Ignition and
    prints MAYU-READY, which the agent reads as the node's readiness."""
    return install_base_image(
        images_dir,
        "lab",
        version.replace("+", "-"),
        kernel,
        initrd,
        cmdline=LAB_TENANT_CMDLINE,
        min_memory_mib=128,
    )
