"""The real Ignition binary applies a rendered controller config to a directory (RECIPES 2)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mayu_py.model import FileSpec
from mayu_py.render import IgnitionRenderer, sample_context

pytestmark = pytest.mark.peer

IGNITION = Path("/usr/lib/dracut/modules.d/30ignition/ignition")
SKELETON = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\n",
    "etc/gshadow": "root:*::\n",
    "etc/selinux/config": "SELINUX=disabled\nSELINUXTYPE=targeted\n",
}
FAKE_FILES = [
    FileSpec("/etc/kubernetes/pki/ca.crt", 0o644, "-----BEGIN CERTIFICATE-----\nfake\n"),
    FileSpec("/etc/kubernetes/pki/ca.key", 0o600, "-----BEGIN PRIVATE KEY-----\nfake\n"),
]


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A world-traversable scratch dir: Ignition writes SSH keys as the user `core`."""
    if not IGNITION.is_file() or shutil.which("useradd") is None:
        pytest.skip("needs the real Ignition binary (package `ignition`) and useradd")
    if os.geteuid() != 0:
        pytest.skip("Ignition's files stage needs root (useradd --root, chown)")
    path = Path(tempfile.mkdtemp(prefix="mayu-ignition-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path)


def ignition(work: Path, config: Path, stage: str) -> subprocess.CompletedProcess[str]:
    run = work / "run"
    env = {**os.environ, "IGNITION_CONFIG_FILE": str(config)}
    env["PATH"] = f"{work / 'bin'}:{env.get('PATH', '')}:/usr/sbin:/sbin"
    argv = [
        str(IGNITION), "-platform", "file", "-stage", stage, "-root", str(work / "sysroot"),
        "-log-to-stdout", "-config-cache", str(run / "cache.json"),
        "-state-file", str(run / "state"), "-neednet", str(run / "neednet"),
    ]  # fmt: skip
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def test_real_ignition_applies_controller_config(workdir: Path) -> None:
    sysroot = workdir / "sysroot"
    for rel, text in SKELETON.items():
        (sysroot / rel).parent.mkdir(parents=True, exist_ok=True)
        (sysroot / rel).write_text(text)
    sysroot.chmod(0o755)
    (workdir / "run").mkdir()
    (workdir / "bin").mkdir()
    setfiles = workdir / "bin" / "setfiles"
    setfiles.write_text("#!/bin/sh\nexit 0\n")
    setfiles.chmod(0o755)
    context = sample_context("controller")
    config = workdir / "controller.ign"
    config.write_bytes(IgnitionRenderer().render_json("controller.yaml.j2", context, FAKE_FILES))

    for stage in ("fetch", "files"):
        result = ignition(workdir, config, stage)
        assert result.returncode == 0, f"{stage}: {result.stdout[-3000:]}{result.stderr[-2000:]}"

    unit = sysroot / "etc/systemd/system/kubelet.service"
    assert "ExecStart=/usr/bin/kubelet" in unit.read_text()
    preset = (sysroot / "etc/systemd/system-preset/20-ignition.preset").read_text()
    assert "enable kubelet.service" in preset.splitlines()
    manifests = sorted(p.name for p in (sysroot / "etc/kubernetes/manifests").iterdir())
    assert manifests == [
        "etcd.yaml",
        "kube-apiserver.yaml",
        "kube-controller-manager.yaml",
        "kube-scheduler.yaml",
        "mayu-agent.yaml",
    ]
    key = sysroot / "etc/kubernetes/pki/ca.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text() == FAKE_FILES[1].contents
    assert stat.S_IMODE((sysroot / "etc/kubernetes/pki/ca.crt").stat().st_mode) == 0o644
    assert (sysroot / "etc/hostname").read_text() == context["node"]["name"] + "\n"
    keys = (sysroot / "home/core/.ssh/authorized_keys.d/ignition").read_text()
    assert context["ssh_authorized_keys"][0] in keys
    assert stat.S_IMODE((sysroot / "var/lib/etcd").stat().st_mode) == 0o700
