"""Property-based: random and hostile values for every field, query parameter, header and path
segment of every endpoint (boot plane, admin API, tenants, hosts), through Flask's test client
on a real SQLite store. Whatever arrives: never a 5xx, every error is problem+json with status,
title and detail, and a 4xx changes nothing in the store (refusals only leave their audit
record).

Every example starts from the same seeded store (restored with SQLite's backup API), so a
request that deletes or provisions something does not change what the next one sees.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mayu_py.server.boot import TLS_ENVIRON_KEY
from mayu_py.store import inventory_path
from tests.support.flask_app import AUTH, Machine, approve, file_of, make_app, services_of
from tests.support.hostile import (
    REMOVE,
    StoreCopy,
    changes,
    hostile_json,
    hostile_text,
    mutated,
    paths,
    raw_bodies,
    removed,
    replaced,
    snapshot,
)
from tests.support.tenants import tenant_doc

# Per endpoint part; MAYU_FUZZ_EXAMPLES=500 explores further (CI keeps the default).
EXAMPLES = int(os.environ.get("MAYU_FUZZ_EXAMPLES", "10"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass
class World:
    """The seeded app, a copy of its store, and the secrets a legitimate caller holds."""

    client: FlaskClient
    db: Path
    seed: StoreCopy
    seeded: dict[str, list[tuple[Any, ...]]]
    boot_token: str
    boot_address: str
    credential: str
    agent_token: str

    def secret(self, text: str) -> str:
        """`text` with $admin, $token, $credential and $agent replaced by the real ones."""
        return (
            text.replace("$admin", AUTH["Authorization"])
            .replace("$token", self.boot_token)
            .replace("$credential", self.credential)
            .replace("$agent", self.agent_token)
        )


def _seed(client: FlaskClient) -> dict[str, str]:
    """Machines in each kind of state, a tenant with placed nodes, one being deleted, a host."""
    svc = services_of(client)
    now = time.time()
    for service in (svc.boot, svc.delivery, svc.machines, svc.tenants):
        service.clock = lambda: now
    Machine(client, DISCOVERED, address="10.0.0.21").ipxe()
    configured = Machine(client, CONFIGURED, address="10.0.0.22")
    configured.ipxe()
    approve(client, configured.mac)
    token = configured.token()
    running = Machine(client, RUNNING, address="10.0.0.23")
    running.ipxe()
    approve(client, running.mac)
    config = running.provision()
    credential = file_of(config, "/etc/mayu/report.token").strip()
    assert running.report("running", credential=credential).status_code == 200
    host = {"name": HOST, "cpus": 8, "memory_mib": 16384, "address": "10.0.0.23"}
    assert client.post("/api/v1/hosts", headers=AUTH, json=host).status_code == 200
    for name, cidr, vni in (("acme", "10.100.0.0/24", 100), ("old", "10.101.0.0/24", 101)):
        created = client.post("/api/v1/tenants", headers=AUTH, json=tenant_doc(name, cidr, vni))
        assert created.status_code == 201, created.get_json()
    report = {"state": "running", "ip": "10.101.0.10", "host": HOST, "generation": 1}
    url = "/api/v1/tenants/old/nodes/old-master-0/status"
    assert client.put(url, headers=AUTH, json=report).status_code == 200
    assert client.delete("/api/v1/tenants/old", headers=AUTH).status_code == 202
    return {
        "boot_token": token,
        "boot_address": configured.address,
        "credential": credential,
        "agent_token": file_of(config, "/etc/mayu/agent.token").strip(),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("hostile")
    client = make_app(tmp).test_client()
    values = _seed(client)
    db = inventory_path(tmp / "data")
    seed = StoreCopy(db)
    yield World(client, db, seed, snapshot(db), **values)
    seed.close()


# -- requests ---------------------------------------------------------------------------------

M = "/api/v1/machines"
T = "/api/v1/tenants"
HOST = "node-525400000003"  # the running machine: an agent host with its agent token
DISCOVERED, CONFIGURED, RUNNING, UNKNOWN = (
    "52-54-00-00-00-01",
    "52-54-00-00-00-02",
    "52-54-00-00-00-03",
    "52-54-00-00-00-99",
)


@dataclass(frozen=True)
class Endpoint:
    """One endpoint and a valid request to it: path segments, query parameters and body (the
    first value of each list is the valid default; `$name` is a seeded secret of the World)."""

    method: str
    template: str
    segments: dict[str, list[str]] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    body: Any = None
    authorization: str = "$admin"

    def targets(self) -> list[str]:
        """Each part an attacker controls, one at a time, and all of them at once."""
        found = ["method", "headers", "header:Authorization", "query:unknown", "all"]
        found += [f"segment:{name}" for name in self.segments]
        found += [f"query:{name}" for name in self.query]
        if self.body is not None:
            found += ["body:raw", "body:add"]
            found += [f"body:{json.dumps(path)}" for path in paths(self.body)]
        return found


IDS = {"id": [CONFIGURED, DISCOVERED, RUNNING, UNKNOWN]}
TENANTS = {"name": ["acme", "old", "nope"]}
NODE = {"tenant": ["acme", "old"], "node": ["acme-master-0", "acme-worker-0", "old-master-0"]}
CREDENTIALS = {"mac": [CONFIGURED, RUNNING, UNKNOWN], "token": ["$token", "x" * 32]}
ENDPOINTS: dict[str, Endpoint] = {
    "boot.ipxe": Endpoint("GET", "/boot.ipxe", authorization=""),
    "ipxe": Endpoint(
        "GET",
        "/ipxe",
        query={
            "mac": [CONFIGURED, DISCOVERED, RUNNING, UNKNOWN],
            "uuid": ["", "5f1b8b1e-0c39-4b0b-9e5c-6a8c3f1d2e4a"],
            "serial": ["", "SN-1"],
            "platform": ["pcbios", "efi"],
            "arch": ["x86_64"],
        },
        authorization="",
    ),
    "ignition": Endpoint("GET", "/ignition", query=CREDENTIALS, authorization=""),
    "report": Endpoint(
        "POST",
        "/report",
        query=CREDENTIALS,
        body={"event": "booted", "details": {"log": "ok", "n": 1}},
        authorization="Bearer $credential",
    ),
    "assets": Endpoint("GET", "/assets/{path}", {"path": ["lab/vmlinuz"]}, authorization=""),
    "health": Endpoint("GET", "/{path}", {"path": ["healthz", "readyz"]}, authorization=""),
    "machines": Endpoint("GET", M, query={"state": ["running", "discovered"]}),
    "machine": Endpoint("GET", M + "/{id}", IDS),
    "machine events": Endpoint("GET", M + "/{id}/events", IDS),
    "machine patch": Endpoint(
        "PATCH", M + "/{id}", IDS, body={"hostname": "node-x", "rack": "r1", "state": "failed"}
    ),
    "machine delete": Endpoint("DELETE", M + "/{id}", IDS),
    "approve": Endpoint(
        "POST",
        M + "/{id}/approve",
        {"id": [DISCOVERED, CONFIGURED]},
        body={"role": "worker", "labels": {"rack": "r1"}},
    ),
    "reinstall": Endpoint("POST", M + "/{id}/reinstall", IDS),
    "boot-complete": Endpoint("POST", M + "/{id}/boot-complete", IDS),
    "admin reads": Endpoint(
        "GET",
        "/api/v1/{what}",
        {"what": ["events", "profiles", "groups", "kubeconfig", "hosts", "tenants"]},
    ),
    "tenant create": Endpoint("POST", T, body=tenant_doc("beta", "10.102.0.0/24", 102)),
    "tenant": Endpoint("GET", T + "/{name}", TENANTS),
    "tenant patch": Endpoint(
        "PATCH",
        T + "/{name}",
        TENANTS,
        body={"spec": {"workers": [{"cpus": 1, "memory": "256Mi", "disk": "1Gi"}] * 2}},
    ),
    "tenant delete": Endpoint("DELETE", T + "/{name}", TENANTS),
    "tenant kubeconfig": Endpoint("GET", T + "/{name}/kubeconfig", TENANTS),
    "node ignition": Endpoint("GET", T + "/{tenant}/nodes/{node}/ignition", NODE),
    "node status": Endpoint(
        "PUT",
        T + "/{tenant}/nodes/{node}/status",
        NODE,
        body={
            "state": "running",
            "ip": "10.100.0.10",
            "host": HOST,
            "message": "m",
            "generation": 2,
        },
    ),
    "heartbeat": Endpoint(
        "POST",
        "/api/v1/hosts",
        body={"name": HOST, "cpus": 4, "memory_mib": 8192, "address": "10.0.0.5"},
        authorization="Bearer $agent",
    ),
    "host nodes": Endpoint("GET", "/api/v1/hosts/{host}/nodes", {"host": [HOST, "h2"]}),
    "anything": Endpoint("GET", "/{a}/{b}", {"a": ["api", "ipxe"], "b": ["v1", "x"]}, body={}),
}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: bytes | None
    content_type: str | None
    tls: bool


HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HEADER_NAMES = ["Content-Type", "If-None-Match", "Range", "Host", "X-Forwarded-For", "Accept"]
JSON_TRAPS = st.sampled_from(
    [
        None,
        True,
        0,
        -1,
        2**63,
        -(2**63) - 1,
        10**400,
        0.5,
        math.nan,
        math.inf,
        -math.inf,
        "",
        "x" * 5000,
        [],
        {},
        [[[[[]]]]],
    ]  # fmt: skip
)


def _authorization_values(world: World) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([world.secret("$admin"), "Bearer " + world.agent_token, ""]),
        HEADER_TEXT,
        HEADER_TEXT.map(lambda t: f"Bearer {t}"),
    )


@st.composite
def calls(draw: st.DrawFn, world: World, endpoint: Endpoint, target: str) -> Call:
    """A valid request to `endpoint`, with the part named by `target` hostile."""
    hostile = target == "all"
    segments = {}
    for name, valid in endpoint.segments.items():
        bad = hostile or target == f"segment:{name}"
        value = draw(hostile_text() if bad else st.sampled_from(valid))
        segments[name] = quote(value, safe="") or "%20"
    query: dict[str, Any] = {}
    for name, valid in endpoint.query.items():
        if hostile or target == f"query:{name}":
            choice = draw(st.sampled_from(["text", "text", "absent", "repeated"]))
            if choice == "text":
                query[name] = draw(hostile_text())
            elif choice == "repeated":
                query[name] = draw(st.lists(hostile_text(), min_size=2, max_size=3))
        else:
            query[name] = world.secret(valid[0])
    if hostile or target == "query:unknown":
        query[draw(hostile_text())] = draw(hostile_text())
    headers = {}
    if endpoint.authorization:
        headers["Authorization"] = world.secret(endpoint.authorization)
    if hostile or target == "header:Authorization":
        headers["Authorization"] = draw(_authorization_values(world))
    if hostile or target == "headers":
        headers |= draw(st.dictionaries(st.sampled_from(HEADER_NAMES), HEADER_TEXT, max_size=4))
    body, ctype = None, None
    if endpoint.body is not None:
        doc = endpoint.body
        if target.startswith("body:") and target not in ("body:raw", "body:add"):
            path = tuple(json.loads(target.removeprefix("body:")))
            doc = draw(st.one_of(JSON_TRAPS, hostile_json(), st.just(REMOVE)))
            doc = (
                removed(endpoint.body, path)
                if doc is REMOVE
                else replaced(endpoint.body, path, doc)
            )
        elif target == "body:add" or hostile:
            doc = draw(mutated(endpoint.body))
        if target == "body:raw":
            body, ctype = draw(raw_bodies()), draw(st.sampled_from(["application/json", None]))
        else:
            body, ctype = json.dumps(doc).encode(), "application/json"
    if "Content-Type" in headers:
        ctype = headers.pop("Content-Type")
    method = endpoint.method
    if hostile or target == "method":
        method = draw(st.sampled_from(METHODS))
    return Call(method, endpoint.template.format(**segments), query, headers, body, ctype,
                tls=draw(st.booleans()))  # fmt: skip


def check(world: World, call: Call) -> None:
    """Send `call` on the seeded store; assert the properties."""
    world.seed.restore()
    environ: dict[str, Any] = {"REMOTE_ADDR": world.boot_address}
    if call.tls:
        environ[TLS_ENVIRON_KEY] = True
    response = world.client.open(
        call.path,
        method=call.method,
        query_string=call.query,
        headers=call.headers,
        data=call.body,
        content_type=call.content_type,
        environ_base=environ,
    )
    status = response.status_code
    assert status < 500, (call, response.get_data(as_text=True)[:500])
    if status >= 400:
        assert response.mimetype == "application/problem+json", (call, response.data[:300])
        if call.method != "HEAD":
            problem = json.loads(response.data)
            assert problem["status"] == status and problem["title"] and problem["detail"], call
        assert not changes(world.seeded, snapshot(world.db)), call


CASES = [(name, target) for name, endpoint in ENDPOINTS.items() for target in endpoint.targets()]


@pytest.mark.parametrize(("endpoint", "target"), CASES, ids=[f"{n}-{t}" for n, t in CASES])
def test_hostile_requests_are_refused_cleanly_and_change_nothing(
    world: World, endpoint: str, target: str
) -> None:
    @PROPERTY
    @given(call=calls(world, ENDPOINTS[endpoint], target))
    def property_(call: Call) -> None:
        check(world, call)

    property_()
