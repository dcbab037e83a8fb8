"""Runs the Flask app under gunicorn (the production WSGI server) from inside `mayu serve`."""

from __future__ import annotations

import ctypes
import os
import signal
import ssl
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from mayu_py.server.metrics import forget_worker


def server_options(bind: str, workers: int, proc_name: str, **extra: Any) -> dict[str, Any]:
    """gunicorn settings both listeners share; `extra` adds or overrides (a TLS listener,
    with `certfile`, reuses its TLS context: `reused_ssl_context`)."""
    tls = {"ssl_context": reused_ssl_context} if "certfile" in extra else {}
    return {
        **tls,
        "bind": bind,
        "workers": workers,
        "worker_class": "sync",
        # No X-Forwarded-* from anyone: the request's own address binds boot tokens.
        "forwarded_allow_ips": "",
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "timeout": 60,
        "graceful_timeout": 5,
        "proc_name": proc_name,
        **extra,
    }


_CONTEXTS: dict[tuple[Any, ...], ssl.SSLContext] = {}


def reused_ssl_context(
    config: Any, default_factory: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """gunicorn's `ssl_context` hook: the context gunicorn would build, built once per
    process and again only when the certificate or key file changes. gunicorn's own builds
    one for every connection, reading and parsing both files each time (~2 ms of CPU per
    HTTPS request here)."""
    key = tuple(
        (path, os.stat(path).st_mtime_ns, os.stat(path).st_size)
        for path in (config.certfile, config.keyfile)
    )
    context = _CONTEXTS.get(key)
    if context is None:
        context = default_factory()
        _CONTEXTS.clear()
        _CONTEXTS[key] = context
    return context


def proxy_protocol_options(balancers: list[str]) -> dict[str, Any]:
    """gunicorn settings for PROXY headers: accepted only from `balancers` (never from
    anyone when empty, whatever gunicorn's own default list says)."""
    return {"proxy_protocol": bool(balancers), "proxy_allow_ips": ",".join(balancers)}


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application around an already-built Flask app (preloaded in the master)."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        # Workers die with their master: a SIGKILLed server leaves no worker holding its port.
        self.cfg.set("post_fork", lambda _arbiter, worker: die_with_parent(worker.ppid))
        # Metrics: a dead worker's live gauges (requests in progress) leave the sums.
        self.cfg.set("child_exit", lambda _arbiter, worker: forget_worker(worker.pid))
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._app


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (and exit at once if the
    parent is already gone)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(0)
