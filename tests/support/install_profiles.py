"""The install-to-disk profiles of docs/examples/install-profiles.yaml in a test app, and a
machine approved into one of them (their groups select on the label `os`)."""

from __future__ import annotations

from pathlib import Path

import yaml
from flask.testing import FlaskClient

from tests.support.flask_app import Machine, approve, make_app

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "install-profiles.yaml"


def install_profiles_client(tmp_path: Path) -> FlaskClient:
    example = yaml.safe_load(EXAMPLE.read_text())
    overrides = {("profiles",): example["profiles"], ("groups",): example["groups"]}
    return make_app(tmp_path, overrides).test_client()


def approved_machine(client: FlaskClient, mac: str, os_label: str) -> Machine:
    """A machine that booted once (discovered) and was approved as a worker running os."""
    machine = Machine(client, mac)
    machine.ipxe()
    response = approve(client, mac, labels={"os": os_label})
    assert response.status_code == 200, response.data
    return machine
