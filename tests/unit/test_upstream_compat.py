"""What the shipped templates render, for every supported minor, is what upstream accepts.

Every `--flag` of every static manifest and of the kubelet unit is checked against the table in
mayu_py/render/flags.py, and the kubelet configuration against the KubeletConfiguration field
table in mayu_py/render/kubelet_config.py (kubernetes-validate has no schema for it).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from mayu_py.kubernetes_releases import RELEASES, SUPPORTED_MINORS, Release, release_for
from mayu_py.render import IgnitionRenderer, sample_context
from mayu_py.render.flags import ACCEPTED, accepted_flags, flag_names, removed_flags
from mayu_py.render.ignition import file_text
from mayu_py.render.kubelet_config import kubelet_config_problems

ROLES = ("controller", "worker")
CASES = [(minor, role) for minor in RELEASES for role in ROLES]


def render(minor: str, role: str) -> dict[str, Any]:
    return IgnitionRenderer().render(f"{role}.yaml.j2", sample_context(role, f"{minor}.1"))


def pods(minor: str, role: str) -> dict[str, dict[str, Any]]:
    specs = IgnitionRenderer().static_manifests(sample_context(role, f"{minor}.1"))
    return {Path(s.path).stem: yaml.safe_load(s.contents) for s in specs}


def kubelet_command(config: dict[str, Any]) -> list[str]:
    unit = next(u for u in config["systemd"]["units"] if u["name"] == "kubelet.service")
    exec_start = next(
        line for line in unit["contents"].replace("\\\n", " ").splitlines() if "ExecStart=" in line
    )
    return shlex.split(exec_start.split("=", 1)[1])


def test_the_supported_minors_are_exactly_1_35_to_1_37() -> None:
    assert SUPPORTED_MINORS == ("1.35", "1.36", "1.37")


@pytest.mark.parametrize(("minor", "role"), CASES)
def test_every_manifest_flag_is_accepted_by_its_component(minor: str, role: str) -> None:
    release = RELEASES[minor]
    components = {}
    for name, pod in pods(minor, role).items():
        for container in pod["spec"]["containers"]:
            component = container["command"][0]
            if component not in ACCEPTED:  # the mayu agent: our own CLI
                assert component == "mayu", name
                continue
            components[component] = flag_names(container["command"])
    expected = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    assert set(components) == (expected if role == "controller" else set())
    for component, flags in components.items():
        rejected = sorted(set(flags) - accepted_flags(component, release))
        assert not rejected, f"{component} for Kubernetes {minor} does not accept {rejected}"


@pytest.mark.parametrize(("minor", "role"), CASES)
def test_every_kubelet_flag_is_accepted(minor: str, role: str) -> None:
    command = kubelet_command(render(minor, role))
    assert command[0] == "/usr/bin/kubelet"
    flags = flag_names(command)
    assert flags == ["config", "kubeconfig", "node-labels"]
    assert set(flags) <= accepted_flags("kubelet", RELEASES[minor])


@pytest.mark.parametrize(("minor", "role"), CASES)
def test_the_kubelet_configuration_has_only_current_fields(minor: str, role: str) -> None:
    text = file_text(render(minor, role), "/var/lib/kubelet/config.yaml")
    assert text is not None
    config = yaml.safe_load(text)
    assert kubelet_config_problems(config, minor) == []
    assert config["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"


@pytest.mark.parametrize(
    ("minor", "field", "problem"),
    [
        ("1.35", "tlsCurvePreferences", "not a field of KubeletConfiguration"),
        ("1.37", "containerRuntime", "not a field of KubeletConfiguration"),
        ("1.37", "streamingConnectionIdleTimeout", "deprecated"),
    ],
)
def test_the_field_table_catches_added_removed_and_deprecated_fields(
    minor: str, field: str, problem: str
) -> None:
    config = yaml.safe_load(file_text(render(minor, "worker"), "/var/lib/kubelet/config.yaml"))
    config[field] = "x"
    [only] = kubelet_config_problems(config, minor)
    assert only.startswith(f"{field}: ") and problem in only


def test_a_nested_unknown_field_is_named_by_its_path() -> None:
    config = yaml.safe_load(file_text(render("1.36", "worker"), "/var/lib/kubelet/config.yaml"))
    config["authentication"]["x509"]["clientCertFile"] = "/x"
    assert kubelet_config_problems(config, "1.36") == [
        "authentication.x509.clientCertFile: not a field of KubeletConfiguration "
        "kubelet.config.k8s.io/v1beta1 in Kubernetes 1.36"
    ]


def test_tls_curve_preferences_is_accepted_from_1_36() -> None:
    config = yaml.safe_load(file_text(render("1.36", "worker"), "/var/lib/kubelet/config.yaml"))
    config["tlsCurvePreferences"] = ["X25519"]
    assert kubelet_config_problems(config, "1.36") == []


@pytest.mark.parametrize(
    ("component", "flag", "last_minor_accepting"),
    [
        ("etcd", "experimental-initial-corrupt-check", "1.36"),
        ("etcd", "experimental-watch-progress-notify-interval", "1.36"),
        ("kube-controller-manager", "concurrent-service-syncs", "1.36"),
        ("kubelet", "storage-driver-host", "1.36"),
        ("kubelet", "pod-infra-container-image", None),
    ],
)
def test_removed_flags_are_accepted_only_before_their_removal(
    component: str, flag: str, last_minor_accepting: str | None
) -> None:
    accepting = [m for m, r in RELEASES.items() if flag in accepted_flags(component, r)]
    expected = [m for m in RELEASES if last_minor_accepting and m <= last_minor_accepting]
    assert accepting == expected
    refusing = [m for m, r in RELEASES.items() if removed_flags(component, [f"--{flag}=1"], r)]
    assert refusing == [m for m in RELEASES if m not in expected]


def test_etcd_flags_follow_the_etcd_version_not_the_kubernetes_minor() -> None:
    on_3_6 = Release("1.37", etcd_version="3.6.11-0", pause_version="3.10.2")
    command = ["etcd", "--experimental-initial-corrupt-check=true"]
    assert removed_flags("etcd", command, on_3_6) == []
    assert removed_flags("etcd", command, release_for("1.37")) == [
        "etcd 3.7 does not accept --experimental-initial-corrupt-check (removed in 3.7; "
        "use --feature-gates=InitialCorruptCheck=true)"
    ]
