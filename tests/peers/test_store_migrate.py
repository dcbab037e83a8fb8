"""`mayu store migrate|backup|restore` as an operator runs them: an SQLite inventory of 1000
machines with their events (and a few that went through the real boot conversation)
migrates into a real 3-member etcd cluster, verified, twice (idempotent), and the admin API
answers the same on either store; backups of etcd restore into SQLite; mistakes are one
line and exit 2."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from mayu_py.lab.etcd import EtcdCluster
from mayu_py.store import open_store
from tests.support.flask_app import AUTH, Machine, approve, make_app
from tests.support.inventory import fill, mac_of

pytestmark = pytest.mark.peer

MAYU = str(Path(sys.executable).parent / "mayu")
BOOTED = ["52:54:00:aa:00:01", "52:54:00:aa:00:02"]


def _mayu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAYU, *args], capture_output=True, text=True, timeout=120)


def _answers(client: FlaskClient) -> dict[str, Any]:
    """What the admin API says about the inventory (alerts without their backend's seq)."""

    def get(path: str) -> Any:
        response = client.get(path, headers=AUTH)
        assert response.status_code == 200, (path, response.data)
        return response.get_json()

    sample = [*BOOTED, *(mac_of(i) for i in range(0, 1000, 37))]
    alerts = get("/api/v1/events")["items"]
    return {
        "machines": get("/api/v1/machines"),
        "detail": {mac: get(f"/api/v1/machines/{mac}") for mac in sample},
        "actions": get(f"/api/v1/machines/{mac_of(1)}/actions"),
        "tenants": get("/api/v1/tenants"),
        "hosts": get("/api/v1/hosts"),
        "alerts": [a | {"seq": None} for a in alerts],
    }


def test_a_thousand_machines_migrate_to_etcd_and_the_api_answers_the_same(
    tmp_path: Path, etcd_cluster: EtcdCluster
) -> None:
    sqlite_app = make_app(tmp_path)
    client = sqlite_app.test_client()
    for mac in BOOTED:  # machines that went through the real conversation
        machine = Machine(client, mac)
        assert machine.ipxe()[0] == 200
        assert approve(client, mac).status_code == 200
        machine.provision()
    store = open_store(tmp_path / "data")
    fill(store, 1000, events_each=4)
    store.close()
    before = _answers(client)
    assert len(before["machines"]["items"]) == 1002

    source = f"sqlite:{tmp_path / 'data' / 'inventory.sqlite3'}"
    target = etcd_cluster.url(f"/mayu-migrate-{uuid.uuid4().hex[:8]}/")
    started = time.monotonic()
    first = _mayu("store", "migrate", "--from", source, "--to", target)
    took = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    counts = {kind: n for n, kind in re.findall(r"(\d+) (\w+)[,;]", first.stdout)}
    assert counts["machine"] == "1002" and int(counts["event"]) > 4000, first.stdout
    print(f"migrated 1002 machines, {counts['event']} events in {took:.1f} s")
    again = _mayu("store", "migrate", "--from", source, "--to", target)
    assert again.returncode == 0 and again.stdout == first.stdout  # idempotent, same checksum

    etcd_client = make_app(tmp_path, {("store", "url"): target}).test_client()
    assert _answers(etcd_client) == before

    backup = tmp_path / "etcd.backup"
    saved = _mayu("store", "backup", "--store", target, "-o", str(backup))
    assert saved.returncode == 0, saved.stderr
    assert backup.stat().st_mode & 0o777 == 0o600
    copy = f"sqlite:{tmp_path / 'copy.sqlite3'}"
    restored = _mayu("store", "restore", "--store", copy, "-i", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.split(": ", 1)[1] == saved.stdout.split(": ", 1)[1]
    copy_client = make_app(tmp_path, {("store", "url"): copy}).test_client()
    assert _answers(copy_client) == before


_SOON = ("--config", "{tmp}/soon.yaml")  # an unreachable store: give up after 1 s


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("migrate", "--from", "sqlite:/nonexistent/x.db", "--to", "sqlite:/tmp/y"), "no such"),
        (("migrate", "--from", "mysql://x", "--to", "sqlite:/tmp/y"), "store.url"),
        (("backup", "--store", "etcd://127.0.0.1:1/", "-o", "/tmp/b", *_SOON), "unavailable"),
        (("restore", "--store", "sqlite:{tmp}/r.db", "-i", "/etc/hostname"), "backup"),
        (("restore", "--store", "sqlite:{tmp}/r.db", "-i", "{tmp}/none"), "cannot read"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    (tmp_path / "soon.yaml").write_text("store:\n  unavailable_after_seconds: 1\n")
    done = _mayu("store", *(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr
