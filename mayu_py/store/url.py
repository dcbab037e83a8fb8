"""Store locations: `sqlite:PATH` or `etcd[s]://HOST:PORT[,HOST:PORT...][/PREFIX][?ca=&cert=&key=]`,
parsed into typed locations; a malformed URL is one ConfigError line naming `store.url`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote

from mayu_py.config import StoreConfig
from mayu_py.errors import ConfigError

DEFAULT_PREFIX = "/mayu/"
DEFAULT_ETCD_PORT = 2379
_TLS_PARAMS = {"ca": "ca_file", "cert": "cert_file", "key": "key_file"}


@dataclass(frozen=True)
class SqliteLocation:
    path: Path


@dataclass(frozen=True)
class EtcdLocation:
    """The members of one etcd cluster, the key prefix and the TLS material (etcds://)."""

    endpoints: tuple[tuple[str, int], ...]
    prefix: str = DEFAULT_PREFIX
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def describe(self) -> str:
        """The cluster as a log line names it (no credentials in it)."""
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://{','.join(f'{h}:{p}' for h, p in self.endpoints)}{self.prefix}"


StoreLocation = SqliteLocation | EtcdLocation


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(f"config error at store.url: {url!r}: {why}")


def _endpoint(url: str, text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(DEFAULT_ETCD_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(url, f"{text!r} is not HOST:PORT")
    return host, int(port)


def _prefix(url: str, path: str) -> str:
    prefix = unquote(path) or DEFAULT_PREFIX
    if not prefix.endswith("/"):
        prefix += "/"
    if not prefix.isascii() or not prefix.isprintable() or "//" in prefix:
        raise _bad(url, f"the key prefix {prefix!r} must be printable ASCII without '//'")
    return prefix


def parse_store_url(url: str, config: StoreConfig | None = None) -> StoreLocation:
    """The location `url` names; TLS files come from the URL's query or from `config`."""
    config = config or StoreConfig()
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:")
        if path.startswith("//"):  # sqlite:///abs/path, URL style
            path = path[2:]
        if not path:
            raise _bad(url, "sqlite: needs a PATH")
        return SqliteLocation(Path(path))
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("etcd", "etcds"):
        raise _bad(url, "use sqlite:PATH, etcd://HOST:PORT[,HOST:PORT...][/PREFIX] or etcds://")
    rest, _, query = rest.partition("?")
    hosts, slash, path = rest.partition("/")
    endpoints = tuple(_endpoint(url, h) for h in hosts.split(",") if h)
    if not endpoints:
        raise _bad(url, "no etcd endpoint")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(params) - set(_TLS_PARAMS))
    if unknown:
        raise _bad(url, f"unknown parameter(s) {', '.join(unknown)} (known: ca, cert, key)")
    tls = {field: params.get(name) or getattr(config, field) for name, field in _TLS_PARAMS.items()}
    if scheme == "etcd" and any(tls.values()):
        raise _bad(url, "CA and client certificates need etcds://")
    if bool(tls["cert_file"]) != bool(tls["key_file"]):
        raise _bad(url, "a client certificate needs both cert and key")
    return EtcdLocation(endpoints, _prefix(url, slash + path), scheme == "etcds", **tls)
