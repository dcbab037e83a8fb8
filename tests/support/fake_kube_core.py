"""A fake Kubernetes core API for the drain hook: nodes, pods bound to them, evictions.

No kube-apiserver runs on these machines (the CRD side has its fake in
tests/support/fake_kube.py). This one serves what a drain calls, over real HTTP for the
real `kubernetes` client: PATCH /api/v1/nodes/<name>, GET /api/v1/pods?fieldSelector=
spec.nodeName=<name>, POST /api/v1/namespaces/<ns>/pods/<pod>/eviction (the pod goes; a pod
under a PodDisruptionBudget is refused with 429 `budget` times first). Every request is
recorded in order as (method, path, body).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakePod:
    namespace: str
    name: str
    node: str
    owner_kind: str = "ReplicaSet"
    mirror: bool = False
    budget: int = 0  # evictions refused (429) before one is allowed

    def to_json(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": self.owner_kind, "name": "o", "uid": "u"}
            ],
        }
        if self.mirror:
            meta["annotations"] = {"kubernetes.io/config.mirror": "x"}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"nodeName": self.node, "containers": [{"name": "main", "image": "x"}]},
        }


@dataclass
class FakeCore:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: list[FakePod] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_node(self, name: str) -> None:
        self.nodes[name] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                            "spec": {}}  # fmt: skip


def _status(code: int, reason: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
            "code": code, "message": reason}  # fmt: skip


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler answering JSON: the base of the fake Kubernetes APIs."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _handler(core: FakeCore) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def _record(self) -> tuple[list[str], dict[str, str], Any]:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            url = urllib.parse.urlsplit(self.path)
            with core.lock:
                core.requests.append((self.command, self.path, body))
            return url.path.strip("/").split("/"), dict(urllib.parse.parse_qsl(url.query)), body

        def do_PATCH(self) -> None:  # noqa: N802
            parts, _, body = self._record()
            if parts[:3] != ["api", "v1", "nodes"] or parts[3] not in core.nodes:
                return self._send(404, _status(404, "NotFound"))
            node = core.nodes[parts[3]]
            node["spec"] = {**node["spec"], **(body or {}).get("spec", {})}
            self._send(200, node)

        def do_GET(self) -> None:  # noqa: N802
            parts, query, _ = self._record()
            if parts != ["api", "v1", "pods"]:
                return self._send(404, _status(404, "NotFound"))
            node = query.get("fieldSelector", "").removeprefix("spec.nodeName=")
            with core.lock:
                items = [p.to_json() for p in core.pods if p.node == node]
            self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {},
                             "items": items})  # fmt: skip

        def do_POST(self) -> None:  # noqa: N802
            parts, _, _ = self._record()
            if len(parts) != 7 or parts[-1] != "eviction":
                return self._send(404, _status(404, "NotFound"))
            namespace, name = parts[3], parts[5]
            with core.lock:
                pod = next((p for p in core.pods if (p.namespace, p.name) == (namespace, name)),
                           None)  # fmt: skip
                if pod is None:
                    return self._send(404, _status(404, "NotFound"))
                if pod.budget > 0:
                    pod.budget -= 1
                    return self._send(429, _status(429, "TooManyRequests"))
                core.pods.remove(pod)
            self._send(201, _status(201, "Success") | {"status": "Success"})

    return Handler


@contextmanager
def serve(core: FakeCore) -> Iterator[str]:
    """Serve `core` on 127.0.0.1; yields its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(core))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def kubeconfig(url: str) -> str:
    """A kubeconfig (YAML is JSON) for the fake at `url`."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": url}}],
        "users": [{"name": "t", "user": {"token": "fake"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    })  # fmt: skip
