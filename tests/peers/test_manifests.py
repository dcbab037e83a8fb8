"""Every static manifest, for each supported minor, passes kubernetes-validate (strict) with that
minor's schemas (kubernetes-validate >= 1.37 carries 1.35-1.37)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mayu_py.kubernetes_releases import RELEASES
from mayu_py.render import IgnitionRenderer, sample_context

pytestmark = pytest.mark.peer

CASES = [(minor, role) for minor in RELEASES for role in ("controller", "worker")]


def manifests(minor: str, role: str) -> dict[str, dict]:
    specs = IgnitionRenderer().static_manifests(sample_context(role, f"{minor}.0"))
    return {Path(s.path).stem: yaml.safe_load(s.contents) for s in specs}


@pytest.mark.parametrize(("minor", "role"), CASES)
def test_static_manifests_validate_strictly(minor: str, role: str) -> None:
    pods = manifests(minor, role)
    expected = {"mayu-agent"}
    if role == "controller":
        expected |= {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    assert set(pods) == expected
    for name, pod in pods.items():
        try:
            kubernetes_validate.validate(pod, f"{minor}.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} for {minor}: {exc}")


def test_the_installed_package_has_every_supported_minor() -> None:
    known = set(kubernetes_validate.utils.all_versions())
    assert {f"{minor}.0" for minor in RELEASES} <= known


def test_strict_validation_catches_a_bogus_field() -> None:
    pod = manifests("1.37", "controller")["kube-apiserver"]
    pod["spec"]["containers"][0]["bogusField"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, "1.37.0", strict=True)
