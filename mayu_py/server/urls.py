"""The URLs a machine is told to use: plain HTTP for scripts and stubs, HTTPS for secrets."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mayu_py.config import Settings

_WILDCARD_HOSTS = ("0.0.0.0", "[::]", "::", "")


@dataclass(frozen=True)
class ServerUrls:
    """Base URLs of this server as machines reach it."""

    http: str
    https: str
    assets: str


def server_urls(settings: Settings, request_host_url: str) -> ServerUrls:
    """Configured public URLs, else the address the request came in on (and, for HTTPS and
    the asset listener, their port on that host when they bind a wildcard address)."""
    server = settings.server
    http = (server.public_url or request_host_url).rstrip("/")
    https = server.tls.public_url or f"https://{_reachable(server.tls_listen, http)}"
    assets = settings.assets.base_url
    if not assets:
        listener = settings.assets.listen
        assets = f"http://{_reachable(listener, http)}/assets" if listener else f"{http}/assets"
    return ServerUrls(http, https.rstrip("/"), assets.rstrip("/"))


def _reachable(listen: str, http: str) -> str:
    """HOST:PORT of a listener as machines reach it: a wildcard bind is reached on the host
    they reached the plain listener on."""
    host, _, port = listen.rpartition(":")
    if host in _WILDCARD_HOSTS:
        netloc = urlsplit(http).netloc
        host = netloc.rpartition(":")[0] if netloc.rpartition(":")[0] else netloc
    return f"{host}:{port}"
