"""`mayu serve` and `mayu pki rotate` as a user runs them: start-up errors, token, rotation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import BIN, free_port, start_server
from tests.support.boot import register
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer


def _serve(data: Path, *args: str, env: dict | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MAYU_TOKEN"} | (env or {})
    return subprocess.Popen(
        [str(BIN / "mayu"), "serve", "--data-dir", str(data), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        start_new_session=True,
    )


def _healthy(proc: subprocess.Popen[str], listen: str) -> bool:
    assert proc.poll() is None, f"mayu serve exited: {proc.communicate()}"
    try:
        return requests.get(f"http://{listen}/healthz", timeout=1).ok
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"cluster": {"service_cidr": "10.96.0.0/33"}}, "cluster.service_cidr"),
        (
            {
                "groups": [
                    {"name": "a", "profile": "worker", "selector": {"x": "1"}},
                    {"name": "b", "profile": "worker", "selector": {"y": "1"}},
                ]
            },
            "tie",
        ),
        ({"profiles": {"worker": {"kernel": "k"}}}, "profiles.worker"),
    ],
)
def test_config_error_stops_startup_with_one_line(tmp_path: Path, config: dict, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = _serve(tmp_path / "data", "--config", str(path), "--listen", f"127.0.0.1:{free_port()}")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], err


def test_admin_token_created_0600_and_printed_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    listen = f"127.0.0.1:{free_port()}"
    tokens = []
    for _ in range(2):
        proc = _serve(data, "--listen", listen)
        wait_for(f"mayu serve healthy on {listen}", lambda proc=proc: _healthy(proc, listen), 30)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        tokens.append(re.findall(r"admin token .*: (\S+)", out))
        assert "admin token" not in err
    stored = (data / "admin.token").read_text().strip()
    assert tokens[0] == [stored] and tokens[1] == []
    assert (data / "admin.token").stat().st_mode & 0o777 == 0o600
    assert (data / "agent.key").stat().st_mode & 0o777 == 0o600


def test_pki_rotate_reissues_leaves_and_keeps_ca(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        token = register(server.url, "52-54-00-40-00-01")
        first = requests.get(
            f"{server.url}/ignition",
            params={"mac": "52-54-00-40-00-01", "token": token},
            timeout=30,
        )
        assert first.status_code == 200
    finally:
        server.kill()
    ca = sorted((data / "pki").rglob("ca.crt"))
    before = {p: p.read_bytes() for p in ca}
    leaves = sorted(p for p in (data / "pki").rglob("*.pem") if "nodes" in p.parts)
    assert leaves, "no cached leaf certificates after an Ignition request"
    old = {p: p.read_bytes() for p in leaves}
    result = subprocess.run(
        [str(BIN / "mayu"), "pki", "rotate", "--data-dir", str(data), "--force"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"re-issued [1-9]\d* certificate", result.stdout)
    assert all(p.read_bytes() != old[p] for p in leaves)
    assert all(p.read_bytes() == before[p] for p in ca)
    quiet = subprocess.run(
        [str(BIN / "mayu"), "pki", "rotate", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "re-issued 0 certificate" in quiet.stdout


def test_render_error_is_json_500_naming_template(tmp_path: Path) -> None:
    config = {"cluster": {"etcd_members": [{"name": "elsewhere", "address": "192.0.2.9"}]}}
    server = start_server(tmp_path / "data", config=config)
    try:
        token = register(server.url, "52-54-00-40-00-02")
        response = requests.get(
            f"{server.url}/ignition",
            params={"mac": "52-54-00-40-00-02", "token": token},
            timeout=30,
        )
        assert response.status_code == 500
        body = response.json()
        assert re.search(r"template \S+\.j2 line \d+", body["error"]), body
        assert "Traceback" not in response.text
        assert "RenderError" in server.log_path.read_text()
    finally:
        server.kill()
