"""Install-to-disk profiles (docs/examples/install-profiles.yaml): the iPXE script of each
carries its installer's documented kernel arguments, and the stub stays the way in."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import ValidationError

from mayu_py.config import InstallConfig
from mayu_py.render import IgnitionRenderer, sample_context
from mayu_py.render.ignition import file_text
from tests.support.boot import boot_token
from tests.support.flask_app import Machine, approve, make_app
from tests.support.install_profiles import approved_machine, install_profiles_client

SERVER = "http://localhost"  # the test client's host URL


def _install_script(client: FlaskClient, mac: str, os_label: str) -> str:
    status, script = approved_machine(client, mac, os_label).ipxe()
    assert status == 200, script
    return script


def _kernel_args(script: str) -> list[str]:
    line = next(line for line in script.splitlines() if line.startswith("kernel "))
    return line.split()[2:]


def _arg(args: list[str], key: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{key}=")]
    assert len(values) == 1, (key, args)
    return values[0]


def test_fedora_coreos_installs_from_its_kernel_arguments_with_the_stub_url(
    tmp_path: Path,
) -> None:
    client = install_profiles_client(tmp_path)
    mac = "52-54-00-00-0f-01"
    script = _install_script(client, mac, "fcos")
    args = _kernel_args(script)
    token = boot_token(script)
    # coreos-installer's documented service arguments (getting-started, "Kernel command line
    # options for coreos-installer running as a service").
    assert _arg(args, "coreos.inst.install_dev") == "/dev/sda"
    stub_url = _arg(args, "coreos.inst.ignition_url")
    assert stub_url == f"{SERVER}/ignition?mac={mac}&token={token}"
    # The live system runs no Ignition of ours: it would spend the token the installed
    # system's first boot needs.
    assert not [a for a in args if a.startswith(("ignition.config.url=", "mayu."))]
    assert "initrd=fedora-coreos-live-initramfs.x86_64.img" in args
    assert "initrd=fedora-coreos-live-rootfs.x86_64.img" in args
    assert re.search(r"^initrd .*/fedora-coreos-live-rootfs\.x86_64\.img$", script, re.M)

    # What coreos-installer fetches is the secret-free stub; the token stays unspent.
    machine = Machine(client, mac)
    stub = machine.stub(token)
    assert stub.status_code == 200
    merge = json.loads(stub.data)["ignition"]["config"]["merge"][0]
    assert merge["source"].startswith("https://") and f"token={token}" in merge["source"]
    assert "PRIVATE KEY" not in stub.get_data(as_text=True)
    assert machine.secret(token).status_code == 200  # the installed system's first boot


def test_flatcar_boots_pxe_with_the_stub_and_the_install_disk(tmp_path: Path) -> None:
    client = install_profiles_client(tmp_path)
    mac = "52-54-00-00-0f-02"
    script = _install_script(client, mac, "flatcar")
    args = _kernel_args(script)
    token = boot_token(script)
    # "Booting Flatcar Container Linux via iPXE": flatcar.first_boot=1 and
    # ignition.config.url; mayu.install names the disk for flatcar-install.
    assert "flatcar.first_boot=1" in args
    assert _arg(args, "ignition.config.url") == f"{SERVER}/ignition?mac={mac}&token={token}"
    assert _arg(args, "mayu.install") == "/dev/sda"
    assert _arg(args, "mayu.report") == f"{SERVER}/report?mac={mac}&token={token}"
    assert "initrd=flatcar_production_pxe_image.cpio.gz" in args


def test_lab_installs_its_disk_image_from_the_assets(tmp_path: Path) -> None:
    client = install_profiles_client(tmp_path)
    mac = "52-54-00-00-0f-03"
    args = _kernel_args(_install_script(client, mac, "lab"))
    assert _arg(args, "mayu.install") == "first"
    assert _arg(args, "mayu.image") == f"{SERVER}/assets/lab/disk.img"
    assert _arg(args, "ignition.config.url").startswith(f"{SERVER}/ignition?mac={mac}&token=")


def test_a_profile_without_install_runs_from_ram_as_before(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    machine = Machine(client, "52-54-00-00-0f-04")
    machine.ipxe()
    assert approve(client, machine.mac).status_code == 200
    names = {a.split("=", 1)[0] for a in _kernel_args(machine.ipxe()[1])}
    assert {"ignition.config.url", "mayu.report"} <= names
    assert not {"mayu.install", "mayu.image", "coreos.inst.install_dev"} & names


@pytest.mark.parametrize(
    ("install", "message"),
    [
        ({"tool": "lab"}, "needs its disk image"),
        ({"tool": "flatcar-install", "image": "x.img"}, "brings its own image"),
        ({"tool": "coreos-installer"}, "needs a device"),
        ({"tool": "lab", "image": "lab/disk.img", "disk": "/dev/sda quiet"}, "pattern"),
        ({"tool": "lab", "image": "../disk.img"}, "without"),
        ({"tool": "anaconda"}, "tool"),
    ],
)
def test_install_settings_are_checked(install: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InstallConfig(**install)


@pytest.mark.parametrize("role", ["worker", "controller"])
def test_flatcar_installer_config_carries_the_installed_systems_config(role: str) -> None:
    renderer = IgnitionRenderer()
    context = sample_context(role)
    outer = renderer.render("flatcar-install.yaml.j2", context)
    files = {entry["path"]: entry for entry in outer["storage"]["files"]}
    assert files["/etc/mayu/install.ign"]["mode"] == 0o600
    target = json.loads(file_text(outer, "/etc/mayu/install.ign") or "")
    assert target == renderer.render(f"{role}.yaml.j2", context)
    unit = next(u for u in outer["systemd"]["units"] if u["name"] == "mayu-install.service")
    assert "ConditionKernelCommandLine=mayu.install" in unit["contents"]
    script = file_text(outer, "/opt/mayu/bin/install-to-disk") or ""
    assert 'flatcar-install -d "$disk" -i /etc/mayu/install.ign' in script
    assert script.index("report installed") < script.index("systemctl reboot")
    # The installed system reports once installed, then running; never on the installer.
    report = next(u for u in target["systemd"]["units"] if u["name"] == "mayu-report.service")
    assert "ConditionKernelCommandLine=!mayu.install" in report["contents"]
    assert report["contents"].index("report installed") < report["contents"].index("report running")
