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
from tests.support.boot import enroll, fetch_config
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer


def _serve(data: Path, *args: str, env: dict | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MAYU_TOKEN"} | (env or {})
    tls = () if "--tls-listen" in args else ("--tls-listen", f"127.0.0.1:{free_port()}")
    return subprocess.Popen(
        [str(BIN / "mayu"), "serve", "--data-dir", str(data), *tls, *args],
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
        ({"cluster": {"kubernetes_version": "1.31.2"}}, "Kubernetes 1.31 is not supported"),
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


def test_pki_rotate_reissues_leaves_and_keeps_ca(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        token = enroll(server, "52-54-00-40-00-01")
        fetch_config(server.url, "52-54-00-40-00-01", token, server.ca_file)
    finally:
        server.kill()
    ca = sorted((data / "pki").rglob("ca.crt"))
    assert data / "pki" / "server" / "ca.crt" in ca
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
        token = enroll(server, "52-54-00-40-00-02", role="controller")
        response = requests.get(
            f"{server.url}/ignition",
            params={"mac": "52-54-00-40-00-02", "token": token},
            timeout=30,
        )
        assert response.status_code == 500
        assert response.headers["Content-Type"] == "application/problem+json"
        body = response.json()
        assert re.search(r"template \S+\.j2 line \d+", body["detail"]), body
        assert "Traceback" not in response.text
        assert "RenderError" in server.log_path.read_text()
    finally:
        server.kill()


def _fails_at_start(data: Path, *args: str, env: dict | None = None) -> str:
    """Run `mayu serve`, expect exit 2 with exactly one line on stderr; returns it."""
    proc = _serve(data, "--listen", f"127.0.0.1:{free_port()}", *args, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "admin token" not in out  # printed only after a successful start
    return lines[0]


@pytest.mark.parametrize(
    ("token", "needle"),
    [("", "blank"), ("short-token", "11 characters"), ("   ", "blank")],
)
def test_weak_admin_token_is_refused(tmp_path: Path, token: str, needle: str) -> None:
    line = _fails_at_start(tmp_path / "data", env={"MAYU_TOKEN": token})
    assert needle in line and "at least 32" in line


def test_admin_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin.token").write_text("x" * 40 + "\n")
    (data / "admin.token").chmod(0o644)
    assert "readable by others" in _fails_at_start(data)


def _stored(data: Path) -> Path:
    from mayu_py.store import open_store

    open_store(data).close()
    return data / "inventory.sqlite3"


def test_corrupt_store_is_one_line_naming_it(tmp_path: Path) -> None:
    path = _stored(tmp_path / "data")
    path.write_bytes(b"not a database at all" * 200)
    line = _fails_at_start(tmp_path / "data")
    assert str(path) in line and "corrupt" in line


def test_locked_store_is_one_line(tmp_path: Path) -> None:
    import sqlite3

    path = _stored(tmp_path / "data")
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        line = _fails_at_start(tmp_path / "data")  # within _serve's 60 s: no 30 s waits
        assert str(path) in line and "locked" in line
    finally:
        blocker.rollback()
        blocker.close()


def test_read_only_store_is_one_line(tmp_path: Path) -> None:
    path = _stored(tmp_path / "data")
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        line = _fails_at_start(tmp_path / "data")
        assert str(path) in line and "read-only" in line
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_assets_root_containing_the_data_dir_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"assets": {"root": str(tmp_path)}}))
    line = _fails_at_start(tmp_path / "data", "--config", str(config))
    assert "assets.root" in line and "data dir" in line


def test_taken_tls_port_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _fails_at_start(tmp_path / "data", "--tls-listen", f"127.0.0.1:{port}")
    assert "server.tls.listen" in line and str(port) in line and "in use" in line
