"""Unit tests for mayu_py.pki: CA persistence, leaf caching, SANs, chains, rotation, locking."""

from __future__ import annotations

import base64
import multiprocessing
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mayu_py.errors import BadRequest, MayuError
from mayu_py.model import FileSpec
from mayu_py.pki import ClusterFacts, ClusterPKI, NodeIdentity

PKI = "/etc/kubernetes/pki"
FACTS = ClusterFacts(
    name="mayu",
    domain="cluster.local",
    service_ip="10.96.0.1",
    api_endpoint="https://api.mayu.example:6443",
    etcd_members=(("c1", "https://10.0.0.5:2380"),),
)
CONTROLLER = NodeIdentity(name="c1", role="controller", ips=("10.0.0.5",))
WORKER = NodeIdentity(name="w1", role="worker", ips=("10.0.0.20",))

ETCD_LEAVES = ("etcd/server.crt", "etcd/peer.crt", "etcd/healthcheck-client.crt")
ETCD_LEAVES += ("apiserver-etcd-client.crt",)
KUBERNETES_LEAVES = ("apiserver.crt", "apiserver-kubelet-client.crt")


def by_path(specs: list[FileSpec]) -> dict[str, FileSpec]:
    return {spec.path: spec for spec in specs}


def cert(text: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(text.encode())


def sans(certificate: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def public_der(key_or_cert: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a certificate or a private key."""
    return key_or_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_key(text: str) -> Any:
    return serialization.load_pem_private_key(text.encode(), password=None)


def issued_by(child: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError):
        return False
    return True


@pytest.fixture
def pki(tmp_path: Path) -> ClusterPKI:
    return ClusterPKI.load_or_create(tmp_path / "pki", "mayu")


def test_cas_created_once_and_reused(tmp_path: Path) -> None:
    first = ClusterPKI.load_or_create(tmp_path / "pki", "mayu")
    etcd_ca = (tmp_path / "pki/ca/etcd.crt").read_bytes()
    sa_key = (tmp_path / "pki/ca/sa.key").read_bytes()
    second = ClusterPKI.load_or_create(tmp_path / "pki", "mayu")
    assert (
        cert(first.ca_certificate_pem).serial_number
        == cert(second.ca_certificate_pem).serial_number
    )
    assert (tmp_path / "pki/ca/etcd.crt").read_bytes() == etcd_ca
    assert (tmp_path / "pki/ca/sa.key").read_bytes() == sa_key
    ca = cert(first.ca_certificate_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert 3649 <= lifetime.days <= 3651


def test_directory_of_another_cluster_is_refused(tmp_path: Path) -> None:
    ClusterPKI.load_or_create(tmp_path / "pki", "mayu")
    with pytest.raises(MayuError, match="belongs to cluster 'mayu'"):
        ClusterPKI.load_or_create(tmp_path / "pki", "other")


def test_ca_key_that_does_not_match_is_refused(tmp_path: Path) -> None:
    ClusterPKI.load_or_create(tmp_path / "pki", "mayu")
    ca_dir = tmp_path / "pki/ca"
    (ca_dir / "kubernetes.key").write_bytes((ca_dir / "etcd.key").read_bytes())
    with pytest.raises(MayuError, match="inconsistent"):
        ClusterPKI.load_or_create(tmp_path / "pki", "mayu")


def test_private_files_0600_and_directories_0700(pki: ClusterPKI) -> None:
    pki.node_files(CONTROLLER, FACTS)
    pki.admin_kubeconfig(FACTS)
    seen_keys = 0
    for root, dirs, names in os.walk(pki.directory):
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700, root
        for name in names:
            mode = stat.S_IMODE(os.stat(Path(root) / name).st_mode)
            if name.endswith((".key", ".pem", ".conf", ".lock")):
                seen_keys += 1
                assert mode == 0o600, (root, name, oct(mode))
            else:
                assert mode == 0o644, (root, name, oct(mode))
        assert all(not d.startswith(".") for d in dirs)
    # 3 CA keys and sa.key, 12 node leaves (admin.conf's too), the admin leaf, admin.conf and
    # 3 lock files
    assert seen_keys == 21


def test_file_modes_and_kubeadm_paths(pki: ClusterPKI) -> None:
    files = by_path(pki.node_files(CONTROLLER, FACTS))
    expected = {
        f"{PKI}/{name}"
        for name in (
            "ca.crt",
            "ca.key",
            "apiserver.crt",
            "apiserver.key",
            "apiserver-kubelet-client.crt",
            "apiserver-kubelet-client.key",
            "apiserver-etcd-client.crt",
            "apiserver-etcd-client.key",
            "front-proxy-ca.crt",
            "front-proxy-client.crt",
            "front-proxy-client.key",
            "sa.key",
            "sa.pub",
            "etcd/ca.crt",
            "etcd/server.crt",
            "etcd/server.key",
            "etcd/peer.crt",
            "etcd/peer.key",
            "etcd/healthcheck-client.crt",
            "etcd/healthcheck-client.key",
        )
    } | {
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/controller-manager.conf",
        "/etc/kubernetes/scheduler.conf",
        "/etc/kubernetes/kubelet.conf",
        "/var/lib/kubelet/pki/kubelet.crt",
        "/var/lib/kubelet/pki/kubelet.key",
    }
    assert set(files) == expected
    for path, spec in files.items():
        secret = path.endswith((".key", ".conf"))
        assert spec.mode == (0o600 if secret else 0o644), path
        assert spec.secret == secret
        assert "PRIVATE KEY" not in spec.contents or secret, path


def test_worker_gets_only_its_files(pki: ClusterPKI) -> None:
    files = by_path(pki.node_files(WORKER, FACTS))
    assert set(files) == {
        f"{PKI}/ca.crt",
        "/etc/kubernetes/kubelet.conf",
        "/var/lib/kubelet/pki/kubelet.crt",
        "/var/lib/kubelet/pki/kubelet.key",
    }
    assert files[f"{PKI}/ca.crt"].contents == pki.ca_certificate_pem


def test_every_key_matches_its_certificate(pki: ClusterPKI) -> None:
    files = by_path(pki.node_files(CONTROLLER, FACTS))
    pairs = [p for p in files if p.endswith(".crt") and p.replace(".crt", ".key") in files]
    assert len(pairs) == 9  # the Kubernetes CA and 8 leaves
    for path in pairs:
        key = load_key(files[path.replace(".crt", ".key")].contents)
        assert public_der(cert(files[path].contents)) == public_der(key), path
    sa_public = serialization.load_pem_public_key(files[f"{PKI}/sa.pub"].contents.encode())
    assert public_der(load_key(files[f"{PKI}/sa.key"].contents)) == sa_public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_leaves_are_cached_and_not_signed_again(
    pki: ClusterPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = pki.node_files(CONTROLLER, FACTS)

    def no_signing(*args: object, **kwargs: object) -> None:
        raise AssertionError("signed again although the cached leaves match")

    monkeypatch.setattr("mayu_py.pki.leafcache.issue", no_signing)
    assert pki.node_files(CONTROLLER, FACTS) == first
    # A new instance (another worker process) reads the same leaves from disk.
    other = ClusterPKI.load_or_create(tmp_path / "pki", "mayu")
    assert other.node_files(CONTROLLER, FACTS) == first


def test_changed_ips_reissue_only_what_names_them(pki: ClusterPKI) -> None:
    before = by_path(pki.node_files(CONTROLLER, FACTS))
    moved = NodeIdentity(name="c1", role="controller", ips=("10.0.0.6",))
    after = by_path(pki.node_files(moved, FACTS))
    apiserver = cert(after[f"{PKI}/apiserver.crt"].contents)
    assert sans(apiserver)[1] == {"10.0.0.6", "10.96.0.1", "127.0.0.1"}
    assert after[f"{PKI}/apiserver.crt"].contents != before[f"{PKI}/apiserver.crt"].contents
    assert after[f"{PKI}/apiserver.key"].contents != before[f"{PKI}/apiserver.key"].contents
    assert sans(cert(after["/var/lib/kubelet/pki/kubelet.crt"].contents)) == ({"c1"}, {"10.0.0.6"})
    # Leaves that do not name addresses are still the cached ones; the CA never changes.
    for unchanged in (f"{PKI}/front-proxy-client.crt", f"{PKI}/ca.crt", f"{PKI}/ca.key"):
        assert after[unchanged].contents == before[unchanged].contents


def apiserver_names(domain: str) -> set[str]:
    """The DNS SANs of node c1's API server certificate in a cluster with this domain."""
    service = ("kubernetes", "kubernetes.default", "kubernetes.default.svc")
    return {"c1", "localhost", *service, f"kubernetes.default.svc.{domain}"}


def test_apiserver_sans(pki: ClusterPKI) -> None:
    files = by_path(pki.node_files(CONTROLLER, FACTS))
    dns, ips = sans(cert(files[f"{PKI}/apiserver.crt"].contents))
    assert dns == apiserver_names("cluster.local") | {"api.mayu.example"}
    assert ips == {"10.0.0.5", "10.96.0.1", "127.0.0.1"}


def test_api_endpoint_ip_is_an_ip_san(pki: ClusterPKI) -> None:
    facts = ClusterFacts("mayu", "corp.internal", "10.32.0.1", "https://[fd00::5]:6443")
    files = by_path(pki.node_files(CONTROLLER, facts))
    dns, ips = sans(cert(files[f"{PKI}/apiserver.crt"].contents))
    assert ips == {"fd00::5", "10.32.0.1", "10.0.0.5", "127.0.0.1"}
    assert dns == apiserver_names("corp.internal")


def test_etcd_and_kubelet_sans(pki: ClusterPKI) -> None:
    files = by_path(pki.node_files(CONTROLLER, FACTS))
    for name in ("etcd/server.crt", "etcd/peer.crt"):
        certificate = cert(files[f"{PKI}/{name}"].contents)
        dns, ips = sans(certificate)
        assert dns == {"c1", "localhost"}
        assert ips == {"127.0.0.1", "::1", "10.0.0.5"}
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in usages
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    dns, ips = sans(cert(files["/var/lib/kubelet/pki/kubelet.crt"].contents))
    assert dns == {"c1"} and ips == {"10.0.0.5"}


def test_etcd_member_address_is_a_san(pki: ClusterPKI) -> None:
    facts = ClusterFacts(
        "mayu", "cluster.local", "10.96.0.1", "https://10.0.0.5:6443", (("c1", "etcd-c1.lan"),)
    )
    files = by_path(pki.node_files(CONTROLLER, facts))
    for name in ("etcd/server.crt", "etcd/peer.crt"):
        dns, ips = sans(cert(files[f"{PKI}/{name}"].contents))
        assert dns == {"c1", "localhost", "etcd-c1.lan"}, name
        assert ips == {"127.0.0.1", "::1", "10.0.0.5"}, name


def test_chains_to_the_right_ca(pki: ClusterPKI) -> None:
    files = by_path(pki.node_files(CONTROLLER, FACTS))
    kubernetes = cert(files[f"{PKI}/ca.crt"].contents)
    etcd = cert(files[f"{PKI}/etcd/ca.crt"].contents)
    front_proxy = cert(files[f"{PKI}/front-proxy-ca.crt"].contents)
    assert len({public_der(ca) for ca in (kubernetes, etcd, front_proxy)}) == 3
    for name in ETCD_LEAVES:
        leaf = cert(files[f"{PKI}/{name}"].contents)
        assert issued_by(leaf, etcd), name
        assert not issued_by(leaf, kubernetes), name
    for name in KUBERNETES_LEAVES:
        leaf = cert(files[f"{PKI}/{name}"].contents)
        assert issued_by(leaf, kubernetes) and not issued_by(leaf, etcd), name
    assert issued_by(cert(files["/var/lib/kubelet/pki/kubelet.crt"].contents), kubernetes)
    proxy_client = cert(files[f"{PKI}/front-proxy-client.crt"].contents)
    assert issued_by(proxy_client, front_proxy) and not issued_by(proxy_client, kubernetes)


def test_leaf_lifetime_is_a_year(pki: ClusterPKI) -> None:
    files = by_path(pki.node_files(CONTROLLER, FACTS))
    leaf = cert(files[f"{PKI}/apiserver.crt"].contents)
    assert 364 <= (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days <= 366
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def kubeconfig(text: str) -> tuple[dict, x509.Certificate]:
    document = yaml.safe_load(text)
    user = document["users"][0]["user"]
    certificate = cert(base64.b64decode(user["client-certificate-data"]).decode())
    key = load_key(base64.b64decode(user["client-key-data"]).decode())
    assert public_der(certificate) == public_der(key)
    return document, certificate


def subject(certificate: x509.Certificate) -> tuple[str, list[str]]:
    cn = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(cn), [str(o.value) for o in orgs]


def test_kubeconfigs(pki: ClusterPKI) -> None:
    files = by_path(pki.node_files(CONTROLLER, FACTS))
    expected = {
        "/etc/kubernetes/controller-manager.conf": ("system:kube-controller-manager", []),
        "/etc/kubernetes/scheduler.conf": ("system:kube-scheduler", []),
        "/etc/kubernetes/kubelet.conf": ("system:node:c1", ["system:nodes"]),
    }
    for path, identity in expected.items():
        document, client = kubeconfig(files[path].contents)
        assert subject(client) == identity
        cluster = document["clusters"][0]["cluster"]
        assert base64.b64decode(cluster["certificate-authority-data"]).decode() == (
            pki.ca_certificate_pem
        )
        assert cluster["server"].startswith("https://")
        assert document["current-context"] == document["contexts"][0]["name"]
    kubelet, _ = kubeconfig(files["/etc/kubernetes/kubelet.conf"].contents)
    assert kubelet["clusters"][0]["cluster"]["server"] == FACTS.api_endpoint
    _, client = kubeconfig(files["/etc/kubernetes/kubelet.conf"].contents)
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert subject(cert(files[f"{PKI}/apiserver-kubelet-client.crt"].contents))[1] == [
        "system:masters"
    ]


def test_admin_kubeconfig_written_0600(pki: ClusterPKI) -> None:
    text = pki.admin_kubeconfig(FACTS)
    path = pki.directory / "admin.conf"
    assert path.read_text() == text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document, client = kubeconfig(text)
    assert subject(client) == ("kubernetes-admin", ["system:masters"])
    assert document["clusters"][0]["cluster"]["server"] == FACTS.api_endpoint
    assert pki.admin_kubeconfig(FACTS) == text


def test_rotate_reissues_leaves_and_keeps_cas(pki: ClusterPKI) -> None:
    before = by_path(pki.node_files(CONTROLLER, FACTS))
    worker_before = by_path(pki.node_files(WORKER, FACTS))
    admin_before = pki.admin_kubeconfig(FACTS)
    ca_files = {p: s for p, s in before.items() if "/ca." in p or p.endswith(("sa.key", "sa.pub"))}

    assert pki.rotate(within_days=30) == []  # fresh leaves are a year away from expiry
    rotated = pki.rotate(force=True)
    assert "nodes/c1/apiserver" in rotated and "nodes/w1/kubelet-serving" in rotated
    assert "users/admin/admin" in rotated
    assert len(rotated) == 12 + 2 + 1

    after = by_path(pki.node_files(CONTROLLER, FACTS))
    for path, spec in ca_files.items():
        assert after[path] == spec
    for path in (f"{PKI}/apiserver.crt", f"{PKI}/etcd/peer.crt", "/etc/kubernetes/kubelet.conf"):
        assert after[path].contents != before[path].contents, path
    renewed = cert(after[f"{PKI}/apiserver.crt"].contents)
    assert sans(renewed) == sans(cert(before[f"{PKI}/apiserver.crt"].contents))
    assert issued_by(renewed, cert(pki.ca_certificate_pem))
    worker_after = by_path(pki.node_files(WORKER, FACTS))
    assert (
        worker_after["/var/lib/kubelet/pki/kubelet.crt"]
        != (worker_before["/var/lib/kubelet/pki/kubelet.crt"])
    )
    admin_after = (pki.directory / "admin.conf").read_text()
    assert admin_after != admin_before
    assert subject(kubeconfig(admin_after)[1]) == ("kubernetes-admin", ["system:masters"])


def later_by(monkeypatch: pytest.MonkeyPatch, delta: timedelta) -> None:
    """Move the PKI's clock forward."""
    later = datetime.now(UTC) + delta
    monkeypatch.setattr("mayu_py.pki.leafcache.utcnow", lambda: later)


def in_days(monkeypatch: pytest.MonkeyPatch, days: int) -> None:
    later_by(monkeypatch, timedelta(days=days))


def test_rotate_reissues_leaves_close_to_expiry(
    pki: ClusterPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki.node_files(WORKER, FACTS)
    in_days(monkeypatch, 300)
    assert pki.rotate(within_days=30) == []
    in_days(monkeypatch, 340)
    assert pki.rotate(within_days=30) == ["nodes/w1/kubelet-client", "nodes/w1/kubelet-serving"]
    assert pki.rotate(within_days=30) == []


def test_expired_leaf_is_not_served(pki: ClusterPKI, monkeypatch: pytest.MonkeyPatch) -> None:
    before = by_path(pki.node_files(WORKER, FACTS))
    in_days(monkeypatch, 400)
    after = by_path(pki.node_files(WORKER, FACTS))
    path = "/var/lib/kubelet/pki/kubelet.crt"
    assert cert(after[path].contents).not_valid_after_utc > datetime.now(UTC) + timedelta(days=700)
    assert after[path] != before[path]


def test_a_leaf_in_its_last_30_days_is_issued_anew(
    pki: ClusterPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = "/var/lib/kubelet/pki/kubelet.crt"
    first = by_path(pki.node_files(WORKER, FACTS))[path]
    in_days(monkeypatch, 330)
    assert by_path(pki.node_files(WORKER, FACTS))[path] == first
    in_days(monkeypatch, 340)  # 25 days left: the same rule as the server's own certificate
    assert by_path(pki.node_files(WORKER, FACTS))[path] != first


def test_a_drain_certificate_lives_an_hour_and_is_renewed_near_its_end(
    pki: ClusterPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    _, first = kubeconfig(pki.drainer_kubeconfig("h1", FACTS))
    assert subject(first) == ("mayu:drainer:h1", ["mayu:drainers"])
    # notBefore is back-dated 5 minutes for clock skew, notAfter an hour from issue
    assert first.not_valid_after_utc - first.not_valid_before_utc == timedelta(hours=1, minutes=5)
    assert timedelta(minutes=59) < first.not_valid_after_utc - start <= timedelta(hours=1)
    later_by(monkeypatch, timedelta(minutes=29))  # 31 minutes left: served again
    assert kubeconfig(pki.drainer_kubeconfig("h1", FACTS))[1] == first
    later_by(
        monkeypatch, timedelta(minutes=31)
    )  # 29 minutes left: too little for a drain, issued anew
    _, renewed = kubeconfig(pki.drainer_kubeconfig("h1", FACTS))
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc - first.not_valid_after_utc >= timedelta(minutes=30)
    assert subject(renewed) == subject(first)

    assert "users/drainer-h1/drainer" in pki.rotate(force=True)  # stays short-lived
    bundle = (pki.directory / "users" / "drainer-h1" / "drainer.pem").read_text()
    rotated = cert(bundle[: bundle.index("-----END CERTIFICATE-----") + 25])
    assert rotated.not_valid_after_utc - rotated.not_valid_before_utc == timedelta(
        hours=1, minutes=5
    )


def test_two_tenants_have_different_cas(tmp_path: Path) -> None:
    acme = ClusterPKI.load_or_create(tmp_path / "acme", "acme")
    globex = ClusterPKI.load_or_create(tmp_path / "globex", "globex")
    assert acme.ca_certificate_pem != globex.ca_certificate_pem
    acme_files = by_path(acme.node_files(WORKER, FACTS))
    leaf = cert(acme_files["/var/lib/kubelet/pki/kubelet.crt"].contents)
    assert issued_by(leaf, cert(acme.ca_certificate_pem))
    assert not issued_by(leaf, cert(globex.ca_certificate_pem))


def test_role_change_drops_controller_leaves(pki: ClusterPKI) -> None:
    pki.node_files(NodeIdentity("n1", "controller", ("10.0.0.9",)), FACTS)
    files = pki.node_files(NodeIdentity("n1", "worker", ("10.0.0.9",)), FACTS)
    assert len(files) == 4
    assert sorted(p.name for p in (pki.directory / "nodes/n1").glob("*.pem")) == [
        "kubelet-client.pem",
        "kubelet-serving.pem",
    ]


def test_corrupt_cached_leaf_is_issued_again(pki: ClusterPKI) -> None:
    before = by_path(pki.node_files(WORKER, FACTS))
    (pki.directory / "nodes/w1/kubelet-serving.pem").write_text("garbage")
    other = ClusterPKI.load_or_create(pki.directory, "mayu")
    after = by_path(other.node_files(WORKER, FACTS))
    assert after["/var/lib/kubelet/pki/kubelet.crt"] != before["/var/lib/kubelet/pki/kubelet.crt"]
    assert after["/etc/kubernetes/kubelet.conf"] == before["/etc/kubernetes/kubelet.conf"]


@pytest.mark.parametrize("name", ["../escape", "C1", "", "a/b", "-x"])
def test_bad_node_names_are_refused(name: str) -> None:
    with pytest.raises(BadRequest):
        NodeIdentity(name=name, role="worker")


def test_bad_facts_are_refused() -> None:
    with pytest.raises(BadRequest):
        NodeIdentity(name="n", role="worker", ips=("10.0.0.300",))
    with pytest.raises(BadRequest):
        NodeIdentity(name="n", role="master")  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        ClusterFacts("mayu", "cluster.local", "10.96.0.1", "http://10.0.0.5:6443")


def _ask_concurrently(directory: str, barrier: Any, queue: Any) -> None:
    try:
        barrier.wait()
        pki = ClusterPKI.load_or_create(Path(directory), "mayu")
        files = pki.node_files(CONTROLLER, FACTS)
        queue.put((pki.ca_certificate_pem, {spec.path: spec.contents for spec in files}))
    except Exception as exc:  # reported to the test instead of hanging it
        queue.put(("error", repr(exc)))


@pytest.mark.parametrize("cas_exist", [False, True], ids=["fresh", "cas-exist"])
def test_processes_asking_at_once_agree(tmp_path: Path, cas_exist: bool) -> None:
    directory = tmp_path / "pki"
    if cas_exist:
        ClusterPKI.load_or_create(directory, "mayu")
    context = multiprocessing.get_context("spawn")
    count = 6
    barrier = context.Barrier(count)
    queue = context.Queue()
    workers = [
        context.Process(target=_ask_concurrently, args=(str(directory), barrier, queue))
        for _ in range(count)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert [r for r in results if r[0] == "error"] == []
    assert len({ca for ca, _ in results}) == 1
    first = results[0][1]
    assert all(files == first for _, files in results)
    # What is on disk afterwards is that same set.
    again = ClusterPKI.load_or_create(directory, "mayu").node_files(CONTROLLER, FACTS)
    assert {spec.path: spec.contents for spec in again} == first
