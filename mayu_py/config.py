"""Typed configuration with embedded defaults that work with no file at all.

Precedence: embedded defaults < YAML file (--config / MAYU_CONFIG) < MAYU_* environment <
command-line flags. A bad value stops start-up with one line naming the field.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mayu_py.errors import ConfigError
from mayu_py.kubernetes_releases import DEFAULT_KUBERNETES_VERSION, check_version, minor_of

SELECTOR_HARDWARE_KEYS = ("mac", "uuid", "serial", "hostname")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EtcdMember(_Strict):
    name: str
    address: str


class ClusterConfig(_Strict):
    """The level-1 Kubernetes cluster the hosts form."""

    name: str = Field(default="mayu", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    domain: str = "cluster.local"
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    cluster_dns: str = "10.96.0.10"
    controller_count: int = Field(default=3, ge=1, le=7)
    etcd_members: list[EtcdMember] = Field(default_factory=list)
    api_endpoint: str | None = None

    @field_validator("kubernetes_version")
    @classmethod
    def _supported_version(cls, value: str) -> str:
        version = check_version(value)
        if version.count(".") != 2:
            raise ValueError(
                f"use a full version such as {DEFAULT_KUBERNETES_VERSION} (it tags the images)"
            )
        return version

    @field_validator("pod_cidr", "service_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return str(ipaddress.ip_network(value, strict=True))

    @field_validator("cluster_dns")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))

    @property
    def kubernetes_minor(self) -> str:
        return minor_of(self.kubernetes_version)

    @property
    def service_ip(self) -> str:
        """The first address of the service CIDR: the `kubernetes` service."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))


FIRST_DISK = "first"


class InstallConfig(_Strict):
    """Install to disk with the OS's own installer instead of running from RAM.

    - `lab`: the lab image's installer writes the disk image `image` (a path under the
      assets, e.g. lab/disk.img, checked against `<image>.sha256`) to `disk`.
    - `flatcar-install`: the PXE-booted Flatcar runs `flatcar-install -d DISK -i CONFIG`
      (profile template flatcar-install.yaml.j2).
    - `coreos-installer`: the Fedora CoreOS live system installs from its kernel arguments
      `coreos.inst.install_dev` and `coreos.inst.ignition_url`.

    `disk` is a device path, or `first`: the machine's first disk (not for coreos-installer,
    whose install_dev is mandatory)."""

    tool: Literal["lab", "flatcar-install", "coreos-installer"]
    disk: str = Field(default=FIRST_DISK, pattern=rf"^({FIRST_DISK}|/dev/[A-Za-z0-9._/:-]+)$")
    image: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")

    @field_validator("image")
    @classmethod
    def _inside_the_assets(cls, value: str | None) -> str | None:
        if value is not None and ".." in value.split("/"):
            raise ValueError("install.image: a path under the assets, without '..'")
        return value

    @model_validator(mode="after")
    def _tool_needs(self) -> InstallConfig:
        if self.tool == "lab" and self.image is None:
            raise ValueError("install.image: the lab installer needs its disk image (lab/disk.img)")
        if self.tool != "lab" and self.image is not None:
            raise ValueError(f"install.image: {self.tool} brings its own image; leave it out")
        if self.tool == "coreos-installer" and self.disk == FIRST_DISK:
            raise ValueError("install.disk: coreos-installer needs a device such as /dev/sda")
        return self


class Profile(_Strict):
    """What a machine boots (kernel, initrd, args), how it is configured (template, role)
    and, with `install`, how it installs to disk."""

    kernel: str
    initrd: list[str]
    args: list[str] = Field(default_factory=list)
    ignition_template: str
    role: Literal["controller", "worker"]
    install: InstallConfig | None = None


class Group(_Strict):
    """Maps machines matching every selector key to a profile; the most specific match wins."""

    name: str
    profile: str
    selector: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)


class DhcpConfig(_Strict):
    """dnsmasq supervision: off, proxyDHCP beside an existing server, or full DHCP."""

    mode: Literal["off", "proxy", "full"] = "off"
    interface: str | None = None
    server_ip: str | None = None
    subnet: str | None = None
    range_start: str | None = None
    range_end: str | None = None
    lease_time: str = "1h"
    reservations: dict[str, str] = Field(default_factory=dict)
    # Full DHCP with the store on etcd: one replica, elected, runs dnsmasq; when it dies,
    # another runs it within this many seconds (its etcd lease lasts two seconds less).
    leader_ttl_seconds: int = Field(default=10, ge=5, le=300)


class DiscoveryConfig(_Strict):
    """Bounds on recording unknown machines as `discovered` (fake MACs cannot fill the store:
    at most `per_minute` x `ttl_seconds` / 60 records exist at any time)."""

    per_source_per_minute: int = Field(default=20, ge=1, le=100_000)
    per_minute: int = Field(default=600, ge=1, le=1_000_000)
    ttl_seconds: int = Field(default=3600, ge=60)
    retry_seconds: int = Field(default=30, ge=1, le=3600)


class TlsConfig(_Strict):
    """The HTTPS listener that carries every secret. Without cert/key files the server makes
    its own CA and serving certificate under <data-dir>/pki/server at first start."""

    listen: str | None = None  # default: the host of server.listen, port 8443
    public_url: str | None = None  # default: https://<tls listen>
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None  # the CA machines pin; required with an operator's cert
    extra_sans: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _operator_files_together(self) -> TlsConfig:
        given = [f for f in (self.cert_file, self.key_file, self.ca_file) if f]
        if given and len(given) != 3:
            raise ValueError("tls: cert_file, key_file and ca_file go together")
        return self


DEFAULT_TLS_PORT = 8443


class ServerConfig(_Strict):
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    unknown_machines: Literal["discover", "deny"] = "discover"
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_json_depth: int = Field(default=32, ge=4, le=256)
    provisioning_window_seconds: int = Field(default=900, ge=60)
    events_per_machine: int = Field(default=200, ge=10)
    alerts_kept: int = Field(default=1000, ge=10)
    report_details_max_bytes: int = Field(default=16384, ge=256)
    # Serve configs with private keys over plain HTTP (no stub, no TLS): never in production.
    insecure_secrets_over_http: bool = False
    # A scrape-only bearer token for /metrics (the admin token works too); env MAYU_METRICS_TOKEN.
    metrics_token: str | None = Field(default=None, min_length=32)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    # Addresses of TCP balancers whose PROXY protocol (v1) header names the machine's address
    # (it binds boot tokens), on both listeners. Empty: off, a PROXY header is refused.
    proxy_protocol_from: list[str] = Field(default_factory=list)

    @field_validator("proxy_protocol_from")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_address(address)) for address in value]

    @property
    def tls_listen(self) -> str:
        """Where the HTTPS listener binds: tls.listen, or the host of `listen` on port 8443."""
        if self.tls.listen:
            return self.tls.listen
        host = self.listen.rpartition(":")[0]
        return f"{host}:{DEFAULT_TLS_PORT}"


class StoreConfig(_Strict):
    """Where the inventory lives. `url`: `sqlite:PATH` (default: <data_dir>/inventory.sqlite3)
    or `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (`etcds://` for TLS, with the CA and client
    certificate below or as `?ca=&cert=&key=` in the URL). See docs/store.md."""

    url: str | None = None
    # The 32-byte key (hex, 0600) that seals the private keys every replica shares in the
    # store (the CAs, bmc.key); default <data_dir>/replica.key, created by the first replica.
    # Every replica needs the same file; losing it loses those keys (docs/store.md).
    replica_key_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # One etcd request waits this long for an answer before trying the next member.
    request_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # A call keeps trying the members this long before the store is unavailable (503); longer
    # than etcd's own 7 s request timeout, so a leader election is waited out.
    unavailable_after_seconds: float = Field(default=15.0, gt=0, le=300)
    # Optimistic transactions that lose a race are run again up to this many times (then 503).
    max_attempts: int = Field(default=8, ge=1, le=100)

    @model_validator(mode="after")
    def _client_cert_together(self) -> StoreConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("store: cert_file and key_file go together")
        return self


class AssetsConfig(_Strict):
    """Where kernels, initrds and images live; `base_url` defaults to this server's /assets
    (on the asset listener when `listen` is set). `listen`: HOST:PORT of an asset listener of
    its own (gthread workers, `threads` per worker) so that slow downloads never hold the
    workers serving scripts and configs (docs/benchmarks.md, "Asset plane")."""

    root: str | None = None
    base_url: str | None = None
    listen: str | None = None
    threads: int = Field(default=64, ge=1, le=1024)
    versions: dict[str, str] = Field(default_factory=lambda: {"lab": "1", "flatcar": "4081.2.0"})


class TenantImage(_Strict):
    """A base image agents boot tenant nodes from (files under the agent's images dir)."""

    min_memory_mib: int = Field(default=128, ge=64)


class TenantsConfig(_Strict):
    """Site-wide settings of tenant clusters (level 2).

    - `ingress_domain`: tenant API servers are reached at `<tenant>.api.<ingress_domain>`,
      port `ingress_port`, through each host's HAProxy (`mayu agent --ingress-listen HOST:PORT
      --ingress-domain` the same domain); their certificates name it and admin kubeconfigs
      point there. Unset: admin kubeconfigs point
      at the first master's address (reachable only from its host).
    - `cni_manifest`: a file of YAML documents that replaces mayu's flannel manifests as the
      tenants' in-cluster networking."""

    ingress_domain: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$",
        max_length=200,
    )
    ingress_port: int = Field(default=6443, ge=1, le=65535)
    cni_manifest: str | None = None


def _default_profiles() -> dict[str, Profile]:
    lab_boot = {
        "kernel": "lab/vmlinuz",
        "initrd": ["lab/initrd.img"],
        "args": ["console=ttyS0", "quiet", "mayu.after=poweroff"],
    }
    return {
        "controller": Profile(
            **lab_boot, ignition_template="controller.yaml.j2", role="controller"
        ),
        "worker": Profile(**lab_boot, ignition_template="worker.yaml.j2", role="worker"),
    }


def _default_groups() -> list[Group]:
    return [
        Group(name="controllers", profile="controller", selector={"role": "controller"}),
        Group(name="workers", profile="worker", selector={"role": "worker"}),
    ]


class Settings(_Strict):
    """The whole configuration."""

    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    assets: AssetsConfig = Field(default_factory=AssetsConfig)
    dhcp: DhcpConfig = Field(default_factory=DhcpConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    ssh_authorized_keys: list[str] = Field(default_factory=list)
    profiles: dict[str, Profile] = Field(default_factory=_default_profiles)
    groups: list[Group] = Field(default_factory=_default_groups)
    tenant_images: dict[str, TenantImage] = Field(default_factory=lambda: {"lab": TenantImage()})
    tenants: TenantsConfig = Field(default_factory=TenantsConfig)
    data_dir: str = "/var/lib/mayu"

    @model_validator(mode="after")
    def _groups_consistent(self) -> Settings:
        for index, group in enumerate(self.groups):
            if group.profile not in self.profiles:
                raise ValueError(f"groups.{index}.profile: unknown profile {group.profile!r}")
            if not group.selector and self.profiles[group.profile].role == "controller":
                raise ValueError(
                    f"groups.{index}: a controller group must name its machines (a selector);"
                    " controllers are never chosen by arrival"
                )
        check_group_ties(self.groups)
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def assets_root(self) -> Path:
        """Where kernels, initrds and images are served from: `assets.root`, else
        `<data_dir>/assets`."""
        return Path(self.assets.root) if self.assets.root else self.data_path / "assets"


def check_group_ties(groups: list[Group]) -> None:
    """Refuse two groups of equal specificity that could both match one machine."""
    for i, first in enumerate(groups):
        for second in groups[i + 1 :]:
            if len(first.selector) != len(second.selector):
                continue
            shared = first.selector.keys() & second.selector.keys()
            if all(first.selector[k] == second.selector[k] for k in shared):
                raise ValueError(
                    f"groups {first.name!r} and {second.name!r} tie: equally specific selectors "
                    "that can match the same machine; make one more specific"
                )


_ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "MAYU_DATA_DIR": ("data_dir",),
    "MAYU_LISTEN": ("server", "listen"),
    "MAYU_PUBLIC_URL": ("server", "public_url"),
    "MAYU_UNKNOWN_MACHINES": ("server", "unknown_machines"),
    "MAYU_CLUSTER_NAME": ("cluster", "name"),
    "MAYU_ASSETS_ROOT": ("assets", "root"),
    "MAYU_DHCP": ("dhcp", "mode"),
    "MAYU_STORE": ("store", "url"),
    "MAYU_METRICS_TOKEN": ("server", "metrics_token"),
    "MAYU_INGRESS_DOMAIN": ("tenants", "ingress_domain"),
}


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def load_settings(
    path: str | Path | None = None,
    overrides: dict[tuple[str, ...], Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build Settings from defaults, an optional YAML file, MAYU_* env and flag overrides."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path = path or env.get("MAYU_CONFIG")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: invalid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        data = loaded
    for name, key_path in _ENV_OVERRIDES.items():
        if env.get(name):
            _set_path(data, key_path, env[name])
    for key_path, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, key_path, value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from exc


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"config error at {where}: {message}{more}"
