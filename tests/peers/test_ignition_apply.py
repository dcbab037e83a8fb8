"""The real Ignition binary applies a rendered controller config to a directory (RECIPES 2)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mayu_py.model import FileSpec
from mayu_py.render import IgnitionRenderer, sample_context
from tests.support.ignition import run_ignition

pytestmark = pytest.mark.peer

FAKE_FILES = [
    FileSpec("/etc/kubernetes/pki/ca.crt", 0o644, "-----BEGIN CERTIFICATE-----\nfake\n"),
    FileSpec("/etc/kubernetes/pki/ca.key", 0o600, "-----BEGIN PRIVATE KEY-----\nfake\n"),
]


def test_real_ignition_applies_controller_config(tmp_path: Path) -> None:
    context = sample_context("controller")
    config = IgnitionRenderer().render("controller.yaml.j2", context, FAKE_FILES)
    result = run_ignition(tmp_path, config)
    assert result.returncode == 0, result.log[-3000:]
    sysroot = result.sysroot

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
    assert (sysroot / "etc/hostname").read_text() == context.node.name + "\n"
    keys = (sysroot / "home/core/.ssh/authorized_keys.d/ignition").read_text()
    assert context.ssh_authorized_keys[0] in keys
    assert stat.S_IMODE((sysroot / "var/lib/etcd").stat().st_mode) == 0o700
