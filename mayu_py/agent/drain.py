"""The drain hook: before a node's VM is deleted, cordon the node and evict its pods through
the tenant's own Kubernetes API (the `kubernetes` client, with this host's drain credential:
a client certificate in group mayu:drainers, which the tenant's RBAC lets get/list/patch nodes,
list pods and create evictions, nothing more; mayu_py.render.addons).

Steps: PATCH the Node `spec.unschedulable: true`; list the pods bound to it; POST an Eviction
for each one that a drain evicts (not mirror pods, not DaemonSet pods: `kubectl drain
--ignore-daemonsets`), retrying the ones a PodDisruptionBudget refuses (429); then wait for
them to be gone. All of it within `timeout_s`.

Never silent: the hook returns one line saying what happened, which the agent logs and
reports as the node's message (so `mayuctl tenants show` has it). A tenant API that cannot be
reached within the timeout (no apiserver answering yet, as in the tests' lab image) skips the
drain with that said; a node that does not exist in the tenant's API is deleted undrained,
with that said, too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)
KubeconfigFetcher = Callable[[str], str]  # tenant -> this host's drain kubeconfig (YAML)
POLL_S = 0.5
_MIRROR = "kubernetes.io/config.mirror"


class Unreachable(Exception):
    """The tenant's API server did not answer."""


def _skippable(pod: Any) -> bool:
    """Pods a drain leaves alone: mirror (static) pods and DaemonSet pods."""
    meta = pod.metadata
    if _MIRROR in (meta.annotations or {}):
        return True
    return any(ref.kind == "DaemonSet" for ref in meta.owner_references or ())


class KubeDrain:
    """A DrainHook (tenant, node) -> what happened, through the tenant's Kubernetes API."""

    def __init__(
        self,
        kubeconfig: KubeconfigFetcher,
        timeout_s: float = 60.0,
        request_timeout_s: float = 5.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s

    def __call__(self, tenant: str, node: str) -> str:
        started = time.monotonic()
        deadline = started + self.timeout_s
        try:
            api = _api_client(self.kubeconfig(tenant))
        except Exception as exc:  # noqa: BLE001 — any failure to get a client is reported
            return self._said(tenant, node, f"drain skipped: no tenant kubeconfig ({exc})")
        try:
            evicted = self._drain(client.CoreV1Api(api), node, deadline)
        except Unreachable as exc:
            waited = time.monotonic() - started
            reason = f"tenant API unreachable after {waited:.1f}s ({exc})"
            return self._said(tenant, node, f"drain skipped: {reason}")
        except _NoSuchNode:
            return self._said(tenant, node, "drain skipped: the tenant API has no such node")
        except TimeoutError as exc:
            return self._said(tenant, node, f"drain incomplete: {exc}")
        finally:
            api.close()
        return self._said(tenant, node, f"drained: cordoned, {evicted} pods evicted")

    @staticmethod
    def _said(tenant: str, node: str, what: str) -> str:
        log.warning("drain %s/%s: %s", tenant, node, what)
        return what

    def _call(self, deadline: float, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """One API call, retried while the server cannot be reached, until `deadline`."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unreachable("deadline passed")
            try:
                return fn(*args, _request_timeout=min(self.request_timeout_s, left), **kw)
            except ApiException as exc:
                if exc.status == 0 or exc.status >= 500 or exc.status == 429:
                    last = f"HTTP {exc.status} {exc.reason}"
                else:
                    raise
            except (HTTPError, OSError) as exc:
                last = type(exc).__name__
            if deadline - time.monotonic() <= POLL_S:
                raise Unreachable(last)
            time.sleep(POLL_S)

    def _drain(self, core: client.CoreV1Api, node: str, deadline: float) -> int:
        try:
            self._call(deadline, core.patch_node, node, {"spec": {"unschedulable": True}})
        except ApiException as exc:
            if exc.status == 404:
                raise _NoSuchNode from exc
            raise Unreachable(f"HTTP {exc.status} {exc.reason}") from exc
        selector = f"spec.nodeName={node}"
        pods = self._call(deadline, core.list_pod_for_all_namespaces, field_selector=selector)
        victims = [p for p in pods.items if not _skippable(p)]
        for pod in victims:
            self._evict(core, pod, deadline)
        while True:
            pods = self._call(deadline, core.list_pod_for_all_namespaces, field_selector=selector)
            left = [p for p in pods.items if not _skippable(p)]
            if not left:
                return len(victims)
            if time.monotonic() + POLL_S > deadline:
                raise TimeoutError(f"{len(left)} pods still on the node")
            time.sleep(POLL_S)

    def _evict(self, core: client.CoreV1Api, pod: Any, deadline: float) -> None:
        meta = pod.metadata
        body = client.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=client.V1ObjectMeta(name=meta.name, namespace=meta.namespace),
        )
        try:
            self._call(
                deadline, core.create_namespaced_pod_eviction, meta.name, meta.namespace, body
            )
        except ApiException as exc:
            if exc.status != 404:  # gone already: evicted
                raise Unreachable(f"HTTP {exc.status} {exc.reason}") from exc
        except Unreachable as exc:
            raise TimeoutError(f"pod {meta.namespace}/{meta.name} not evicted: {exc}") from exc


class _NoSuchNode(Exception):
    pass


def _api_client(kubeconfig: str) -> client.ApiClient:
    return config.new_client_from_config_dict(yaml.safe_load(kubeconfig))
