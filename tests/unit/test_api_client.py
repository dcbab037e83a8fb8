"""The admin API client: one error type, one wording of error bodies (problem+json and the
older {"error", "detail"}), temporary vs permanent, and an injectable transport."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from mayu_py.api_client import AdminClient, ApiError
from mayu_py.api_client.errors import describe

PROBLEM = {
    "type": "about:blank",
    "title": "invalid TenantCluster",
    "status": 422,
    "detail": "spec.masters: at least one master",
}
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/api/v1/tenants": (422, "application/problem+json", json.dumps(PROBLEM).encode()),
    "/api/v1/tenants/gone": (
        404,
        "application/json",
        json.dumps({"error": "no such tenant", "detail": {"name": "gone"}}).encode(),
    ),
    "/api/v1/hosts": (503, "text/html", b"<html>\nbusy\n</html>"),
    "/api/v1/kubeconfig": (200, "application/yaml", b"apiVersion: v1\n"),
    "/healthz": (200, "application/json", b'{"status": "ok"}'),
}


@pytest.fixture
def url() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            code, kind, body = ANSWERS[self.path]
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_problem_json_and_legacy_bodies_read_alike() -> None:
    assert describe(PROBLEM, "Unprocessable") == (
        "invalid TenantCluster (spec.masters: at least one master)"
    )
    legacy = {"error": "invalid TenantCluster", "detail": {"spec.masters": "at least one"}}
    assert describe(legacy, "x") == "invalid TenantCluster ({'spec.masters': 'at least one'})"
    extended = {"title": "invalid TenantCluster", "status": 422, "errors": {"a": "b"}}
    assert describe(extended, "x") == "invalid TenantCluster ({'errors': {'a': 'b'}})"
    assert describe(None, "Bad Gateway") == "Bad Gateway"
    assert describe({"title": "two\nlines", "detail": ""}, "x") == "two lines"


def test_errors_are_one_type_with_a_one_line_message(url: str) -> None:
    client = AdminClient(url, "t")
    with pytest.raises(ApiError) as info:
        client.create_tenant({"kind": "TenantCluster"})
    assert info.value.message == (
        "POST /api/v1/tenants: 422 invalid TenantCluster (spec.masters: at least one master)"
    )
    assert info.value.status == 422 and not info.value.temporary
    assert info.value.detail == PROBLEM
    with pytest.raises(ApiError) as info:
        client.tenant("gone")
    assert info.value.message == "GET /api/v1/tenants/gone: 404 no such tenant ({'name': 'gone'})"
    with pytest.raises(ApiError) as info:
        client.hosts()
    assert info.value.message == "GET /api/v1/hosts: 503 Service Unavailable"
    assert info.value.temporary and info.value.detail == {"body": "<html>\nbusy\n</html>"}
    assert client.request("GET", "/api/v1/kubeconfig") == "apiVersion: v1\n"
    assert client.request("GET", "/healthz") == {"status": "ok"}


def test_an_unreachable_server_is_a_temporary_error() -> None:
    client = AdminClient("http://127.0.0.1:9", "t", timeout=2)
    assert not client.healthy()
    with pytest.raises(ApiError) as info:
        client.tenants()
    assert info.value.temporary and info.value.status == 503
    assert info.value.message.startswith("cannot reach http://127.0.0.1:9 (GET /api/v1/tenants)")


def test_the_transport_decides_where_requests_run(url: str) -> None:
    """The lab's way: every request runs on one worker thread (there: inside a namespace)."""
    ran_on: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="elsewhere") as pool:

        def transport(send):  # type: ignore[no-untyped-def]
            def on_worker() -> requests.Response:
                ran_on.append(threading.current_thread().name)
                return send()

            return pool.submit(on_worker).result()

        client = AdminClient(url, "t", transport=transport, trust_env=False)
        assert client.healthy()
        with pytest.raises(ApiError, match="404 no such tenant"):
            client.tenant("gone")
    assert len(ran_on) == 2 and all(name.startswith("elsewhere") for name in ran_on)
