"""A fake Kubernetes API server for TenantCluster objects, for KubernetesSource tests.

No kube-apiserver is available on these machines, so the peer is a small threaded HTTP server
implementing only what the client calls for a cluster-scoped custom resource: list (with a
resourceVersion), watch (chunked JSON lines, ERROR 410 for an expired resourceVersion), get,
and PATCH (merge patch, resourceVersion precondition) / PUT of the status subresource. Every
request is recorded (method, path+query, content type), every write is an event.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client

from tests.support.fake_kube_core import JsonHandler

BASE = "/apis/mayu.io/v1alpha1/tenantclusters"


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeKube:
    """The API server's state: objects, a resourceVersion counter and the event history."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 100
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.floor = 0  # a watch from an older resourceVersion is 410 Gone
        self.expiry = 0  # bumped to end every open watch with 410
        self.closing = False
        self.requests: list[tuple[str, str, str | None]] = []  # method, path+query, type

    # -- what a user (kubectl) does ----------------------------------------------------

    def _emit(self, kind: str, obj: dict[str, Any], silent: bool = False) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if not silent:
            self.events.append((self.rv, kind, copy.deepcopy(obj)))
        self.cond.notify_all()

    def create(self, doc: dict[str, Any]) -> None:
        with self.cond:
            obj = copy.deepcopy(doc)
            meta = obj["metadata"]
            meta.update(generation=1, uid=f"uid-{meta['name']}")
            meta["creationTimestamp"] = f"2024-01-01T00:00:{len(self.objects):02d}Z"
            self.objects[meta["name"]] = obj
            self._emit("ADDED", obj)

    def update_spec(self, name: str, spec: dict[str, Any], silent: bool = False) -> None:
        with self.cond:
            obj = self.objects[name]
            if spec != obj["spec"]:
                obj["spec"] = copy.deepcopy(spec)
                obj["metadata"]["generation"] += 1
            self._emit("MODIFIED", obj, silent)

    def mark_deleting(self, name: str) -> None:
        """A delete held by a finalizer someone else owns."""
        with self.cond:
            obj = self.objects[name]
            obj["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
            obj["metadata"]["finalizers"] = ["example.com/hold"]
            self._emit("MODIFIED", obj)

    def delete(self, name: str) -> None:
        with self.cond:
            obj = self.objects.pop(name)
            self._emit("DELETED", obj)

    def expire(self) -> None:
        """Compact the history: open watches end with 410 and cannot resume from before now
        (a list gives the current resourceVersion, from which a watch can start)."""
        with self.cond:
            self.floor = self.rv
            self.events.clear()
            self.expiry += 1
            self.cond.notify_all()

    def get(self, name: str) -> dict[str, Any]:
        with self.cond:
            return copy.deepcopy(self.objects[name])

    def status_writes(self) -> int:
        return sum(1 for m, p, _ in self.requests if m in ("PATCH", "PUT"))


def _handler(kube: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else None

        def _route(self) -> tuple[str | None, str, dict[str, str]]:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            with kube.cond:
                kube.requests.append((self.command, self.path, self.headers.get("Content-Type")))
            if not url.path.startswith(BASE):
                return None, "", query
            rest = url.path[len(BASE) :].strip("/").split("/")
            name = rest[0] or None
            sub = rest[1] if len(rest) > 1 else ""
            return name, sub, query

        def do_GET(self) -> None:  # noqa: N802
            name, _, query = self._route()
            if name is not None:
                with kube.cond:
                    obj = kube.objects.get(name)
                    if obj is None:
                        return self._send(404, _status(404, "NotFound", f"{name} not found"))
                    return self._send(200, obj)
            if query.get("watch") in ("true", "True", "1"):
                return self._watch(query)
            with kube.cond:
                items = [copy.deepcopy(o) for _, o in sorted(kube.objects.items())]
                body = {
                    "apiVersion": "mayu.io/v1alpha1",
                    "kind": "TenantClusterList",
                    "metadata": {"resourceVersion": str(kube.rv)},
                    "items": items,
                }
            self._send(200, body)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _watch(self, query: dict[str, str]) -> None:
            since = int(query.get("resourceVersion") or 0)
            deadline = time.monotonic() + float(query.get("timeoutSeconds") or 60)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                with kube.cond:
                    expiry = kube.expiry
                    while not kube.closing:
                        if since < kube.floor or kube.expiry != expiry:
                            gone = _status(410, "Expired", "too old resource version")
                            line = json.dumps({"type": "ERROR", "object": gone}) + "\n"
                            self._chunk(line.encode())
                            break
                        for rv, kind, obj in kube.events:
                            if rv > since:
                                line = json.dumps({"type": kind, "object": obj}) + "\n"
                                self._chunk(line.encode())
                                since = rv
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        kube.cond.wait(min(left, 0.5))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client went away
            self.close_connection = True

        def _write_status(self, replace: bool) -> None:
            name, sub, _ = self._route()
            body = self._body()
            with kube.cond:
                obj = kube.objects.get(name or "")
                if obj is None or sub != "status":
                    return self._send(404, _status(404, "NotFound", f"{name} not found"))
                wanted = (body.get("metadata") or {}).get("resourceVersion")
                if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
                    message = "the object has been modified; please apply your changes again"
                    return self._send(409, _status(409, "Conflict", message))
                if replace:
                    obj["status"] = body.get("status") or {}
                else:
                    patched = _merge(obj, body)
                    obj["status"] = patched.get("status") or {}
                kube._emit("MODIFIED", obj)
                self._send(200, obj)

        def do_PATCH(self) -> None:  # noqa: N802
            if self.headers.get("Content-Type") != "application/merge-patch+json":
                self._body()
                return self._send(415, _status(415, "UnsupportedMediaType", "merge only"))
            self._write_status(replace=False)

        def do_PUT(self) -> None:  # noqa: N802
            self._write_status(replace=True)

    return Handler


@contextmanager
def serve_kube() -> Iterator[tuple[FakeKube, client.ApiClient]]:
    """A FakeKube served on 127.0.0.1, and a `kubernetes` API client for it."""
    state = FakeKube()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{httpd.server_address[1]}"
    api = client.ApiClient(configuration)
    try:
        yield state, api
    finally:
        with state.cond:
            state.closing = True
            state.cond.notify_all()
        httpd.shutdown()
        httpd.server_close()
