from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mayu_py.config import load_settings
from mayu_py.errors import ConfigError


def test_embedded_defaults_need_no_file() -> None:
    settings = load_settings(environ={})
    assert settings.cluster.service_ip == "10.96.0.1"
    assert set(settings.profiles) == {"controller", "worker"}
    assert settings.server.unknown_machines == "discover"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"listen": "127.0.0.1:1111"}, "data_dir": "/a"}))
    env = {"MAYU_DATA_DIR": "/b"}
    settings = load_settings(cfg, {("server", "listen"): "127.0.0.1:2222"}, environ=env)
    assert settings.data_dir == "/b"
    assert settings.server.listen == "127.0.0.1:2222"


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"cluster": {"kubernetes_version": "1.12.0"}}, "cluster.kubernetes_version"),
        ({"cluster": {"pod_cidr": "10.0.0.1/8"}}, "cluster.pod_cidr"),
        ({"server": {"unknown_machines": "maybe"}}, "server.unknown_machines"),
        ({"bogus": 1}, "bogus"),
        ({"groups": [{"name": "g", "profile": "nope"}]}, "unknown profile"),
        ({"groups": [{"name": "g", "profile": "controller"}]}, "controllers are never chosen"),
        ({"server": {"tls": {"cert_file": "/x.pem"}}}, "go together"),
        ({"server": {"discovery": {"per_minute": 0}}}, "server.discovery.per_minute"),
        ({"server": {"proxy_protocol_from": ["balancer"]}}, "server.proxy_protocol_from"),
    ],
)
def test_config_errors_are_one_line_naming_the_field(
    tmp_path: Path, data: dict, field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, data), environ={})
    message = info.value.message
    assert "\n" not in message
    assert field in message


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.31.2", "Kubernetes 1.31 is not supported (supported: 1.35, 1.36, 1.37)"),
        ("1.38.0", "Kubernetes 1.38 is not supported (supported: 1.35, 1.36, 1.37)"),
        ("1.37", "use a full version such as 1.37.1"),
        ("latest", "not a Kubernetes version: 'latest'"),
    ],
)
def test_an_unsupported_kubernetes_version_is_a_start_up_error(
    tmp_path: Path, version: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, {"cluster": {"kubernetes_version": version}}), environ={})
    assert info.value.message.startswith("config error at cluster.kubernetes_version: ")
    assert expected in info.value.message


@pytest.mark.parametrize("version", ["1.35.0", "v1.36.3", "1.37.1"])
def test_every_supported_minor_is_accepted(tmp_path: Path, version: str) -> None:
    settings = load_settings(
        _write(tmp_path, {"cluster": {"kubernetes_version": version}}), environ={}
    )
    assert settings.cluster.kubernetes_version == version.removeprefix("v")
    assert settings.cluster.kubernetes_minor == version.removeprefix("v")[:4]


def test_the_default_version_is_a_current_1_37_patch() -> None:
    assert load_settings(environ={}).cluster.kubernetes_version == "1.37.1"


def test_tied_groups_are_a_config_error(tmp_path: Path) -> None:
    groups = [
        {"name": "a", "profile": "worker", "selector": {"rack": "r1"}},
        {"name": "b", "profile": "controller", "selector": {"room": "x"}},
    ]
    with pytest.raises(ConfigError, match="tie"):
        load_settings(_write(tmp_path, {"groups": groups}), environ={})


def test_disjoint_groups_of_equal_size_are_fine(tmp_path: Path) -> None:
    groups = [
        {"name": "a", "profile": "worker", "selector": {"rack": "r1"}},
        {"name": "b", "profile": "controller", "selector": {"rack": "r2"}},
        {
            "name": "c",
            "profile": "controller",
            "selector": {"rack": "r1", "mac": "52:54:00:00:00:01"},
        },
    ]
    settings = load_settings(_write(tmp_path, {"groups": groups}), environ={})
    assert len(settings.groups) == 3


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_settings(tmp_path / "absent.yaml", environ={})
