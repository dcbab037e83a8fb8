"""An in-process server app on a real SQLite store and PKI, for Flask test-client tests, and
the machine's side of the boot conversation through that client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from mayu_py.config import load_settings
from mayu_py.pki import server_tls
from mayu_py.server.app import create_app
from mayu_py.server.boot import TLS_ENVIRON_KEY
from mayu_py.server.context import Services
from mayu_py.store import open_store
from tests.support.boot import boot_token
from tests.support.ignition import file_text

ADMIN_TOKEN = "test-admin-token-0123456789abcdef-long"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MACHINE_ADDRESS = "10.0.0.11"


def make_app(
    tmp_path: Path,
    overrides: dict[tuple[str, ...], Any] | None = None,
    lease_of: Callable[[str], str | None] | None = None,
) -> Flask:
    flat: dict[tuple[str, ...], Any] = {("data_dir",): str(tmp_path / "data")}
    flat.update(overrides or {})
    settings = load_settings(None, flat, environ={})
    server = settings.server
    store = open_store(
        settings.data_path, server.events_per_machine, server.alerts_kept, settings.store
    )
    tls = server_tls.load_or_create(settings.data_path / "pki" / "server", ["127.0.0.1"])
    return create_app(settings, store, ADMIN_TOKEN, tls, lease_of)


def services_of(client: FlaskClient) -> Services:
    return client.application.extensions["mayu"]


def set_clock(client: FlaskClient, clock: Callable[[], float]) -> None:
    svc = services_of(client)
    for service in (svc.boot, svc.delivery, svc.machines, svc.power):
        service.clock = clock


@dataclass
class Machine:
    """A machine on the provisioning network, talking to the server through a test client."""

    client: FlaskClient
    mac: str
    address: str = MACHINE_ADDRESS
    uuid: str | None = None
    platform: str = "pcbios"

    def _env(self, tls: bool = False) -> dict[str, Any]:
        env: dict[str, Any] = {"REMOTE_ADDR": self.address}
        if tls:
            env[TLS_ENVIRON_KEY] = True
        return env

    def ipxe(self) -> tuple[int, str]:
        query = {"mac": self.mac, "platform": self.platform}
        if self.uuid:
            query["uuid"] = self.uuid
        response = self.client.get("/ipxe", query_string=query, environ_base=self._env())
        return response.status_code, response.get_data(as_text=True)

    def token(self) -> str:
        status, script = self.ipxe()
        assert status == 200, script
        return boot_token(script)

    def stub(self, token: str) -> Any:
        return self.client.get(
            "/ignition", query_string={"mac": self.mac, "token": token}, environ_base=self._env()
        )

    def secret(self, token: str) -> Any:
        return self.client.get(
            "/ignition",
            query_string={"mac": self.mac, "token": token},
            environ_base=self._env(tls=True),
        )

    def report(self, event: str, token: str | None = None, credential: str | None = None) -> Any:
        query = {"mac": self.mac} | ({"token": token} if token else {})
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        return self.client.post(
            "/report",
            query_string=query,
            json={"event": event},
            headers=headers,
            environ_base=self._env(),
        )

    def provision(self) -> dict[str, Any]:
        """Boot, fetch stub and secret config, report installed; returns the secret config."""
        token = self.token()
        stub = self.stub(token)
        assert stub.status_code == 200, stub.data
        secret = self.secret(token)
        assert secret.status_code == 200, secret.data
        expected = json.loads(stub.data)["ignition"]["config"]["merge"][0]["verification"]
        assert expected["hash"] == "sha512-" + hashlib.sha512(secret.data).hexdigest()
        assert self.report("installed", token=token).status_code == 200
        return json.loads(secret.data)


def approve(
    client: FlaskClient, mac: str, role: str = "worker", labels: dict[str, str] | None = None
) -> Any:
    body = {"role": role} | ({"labels": labels} if labels else {})
    return client.post(f"/api/v1/machines/{mac}/approve", headers=AUTH, json=body)


def events(client: FlaskClient, mac: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/machines/{mac}/events", headers=AUTH)
    assert response.status_code == 200, response.data
    return response.get_json()["items"]


def file_of(config: dict[str, Any], path: str) -> str:
    """The text of one file of an Ignition config."""
    files = {entry["path"]: entry for entry in config["storage"]["files"]}
    assert path in files, f"{path} not in the config"
    return file_text(files[path])


def has_private_key(body: bytes) -> bool:
    """True when an Ignition config (JSON bytes) carries a private key in any file."""
    config = json.loads(body)
    files = config.get("storage", {}).get("files", [])
    return any("PRIVATE KEY" in file_text(entry) for entry in files)
