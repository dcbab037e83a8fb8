"""Unit tests of the rendering layer: structure, located errors, injection safety, files."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from mayu_py.errors import RenderError, Unprocessable
from mayu_py.kubernetes_releases import DEFAULT_KUBERNETES_VERSION
from mayu_py.model import FileSpec
from mayu_py.render import (
    IgnitionRenderer,
    RenderContext,
    default_manifests_dir,
    default_templates_dir,
    sample_context,
)

TEMPLATES = default_templates_dir()


def decode(source: str) -> str:
    prefix = "data:;base64,"
    assert source.startswith(prefix), source[:40]
    return base64.b64decode(source[len(prefix) :]).decode()


def files_of(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["path"]: entry for entry in config["storage"]["files"]}


def text_of(config: dict[str, Any], path: str) -> str:
    return decode(files_of(config)[path]["contents"]["source"])


def unit_of(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(u for u in config["systemd"]["units"] if u["name"] == name)


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


@pytest.fixture
def renderer() -> IgnitionRenderer:
    return IgnitionRenderer()


@pytest.fixture
def context() -> RenderContext:
    return sample_context("controller")


def with_node(context: RenderContext, **changes: Any) -> RenderContext:
    return replace(context, node=replace(context.node, **changes))


def with_cluster(context: RenderContext, **changes: Any) -> RenderContext:
    return replace(context, cluster=replace(context.cluster, **changes))


def custom(tmp_path: Path, **templates: str) -> IgnitionRenderer:
    """A renderer over a temporary templates dir holding `templates` (name -> text)."""
    tdir = tmp_path / "templates"
    tdir.mkdir()
    for name, text in templates.items():
        (tdir / name).write_text(text)
    return IgnitionRenderer(tdir, default_manifests_dir())


# --- structure -------------------------------------------------------------------------


def test_default_dirs_hold_the_shipped_templates() -> None:
    assert (default_templates_dir() / "controller.yaml.j2").is_file()
    assert (default_manifests_dir() / "etcd.yaml.j2").is_file()
    assert IgnitionRenderer().template_names() == [
        "controller.yaml.j2",
        "flatcar-install.yaml.j2",
        "worker.yaml.j2",
    ]


def test_controller_config_structure(renderer: IgnitionRenderer, context: RenderContext) -> None:
    config = renderer.render("controller.yaml.j2", context)
    assert list(config)[0] == "ignition"
    assert config["ignition"] == {"version": "3.3.0"}
    assert "x-mayu" not in config
    assert config["passwd"]["users"] == [
        {"name": "core", "sshAuthorizedKeys": list(context.ssh_authorized_keys)}
    ]
    kubelet = unit_of(config, "kubelet.service")
    assert kubelet["enabled"] is True
    for flag in (
        "ExecStart=/usr/bin/kubelet",
        "--config=/var/lib/kubelet/config.yaml",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
    ):
        assert flag in kubelet["contents"]
    assert "--container-runtime-endpoint" not in kubelet["contents"]
    assert unit_of(config, "containerd.service")["enabled"] is True

    files = files_of(config)
    for entry in files.values():
        assert entry["overwrite"] is True
        assert isinstance(entry["mode"], int)
    assert text_of(config, "/etc/hostname") == "node-525400000001\n"
    assert files["/etc/hostname"]["mode"] == 0o644

    kubelet_config = yaml.safe_load(text_of(config, "/var/lib/kubelet/config.yaml"))
    assert kubelet_config["kind"] == "KubeletConfiguration"
    assert kubelet_config["clusterDNS"] == ["10.96.0.10"]
    assert kubelet_config["clusterDomain"] == "cluster.local"
    assert kubelet_config["staticPodPath"] == "/etc/kubernetes/manifests"
    assert kubelet_config["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"
    assert kubelet_config["tlsCertFile"] == "/var/lib/kubelet/pki/kubelet.crt"
    assert kubelet_config["tlsPrivateKeyFile"] == "/var/lib/kubelet/pki/kubelet.key"
    assert kubelet_config["authentication"]["x509"]["clientCAFile"] == "/etc/kubernetes/pki/ca.crt"

    assert "SystemdCgroup = true" in text_of(config, "/etc/containerd/config.toml")
    assert 'pause:3.10.2"' in text_of(config, "/etc/containerd/config.toml")
    assert text_of(config, "/etc/modules-load.d/k8s.conf").split() == ["overlay", "br_netfilter"]
    sysctl = text_of(config, "/etc/sysctl.d/k8s.conf")
    assert "net.ipv4.ip_forward = 1" in sysctl
    assert "net.bridge.bridge-nf-call-iptables = 1" in sysctl

    assert text_of(config, "/etc/mayu/report-url").strip() == context.report_url
    # The URL names no credential: it is public (0644); the credential file comes separately.
    assert files["/etc/mayu/report-url"]["mode"] == 0o644
    assert "token" not in context.report_url
    report = text_of(config, "/opt/mayu/bin/report")
    assert "--cacert /etc/mayu/server-ca.crt" in report and "/etc/mayu/report.token" in report
    assert unit_of(config, "mayu-report.service")["enabled"] is True

    manifests = sorted(p for p in files if p.startswith("/etc/kubernetes/manifests/"))
    assert manifests == [
        f"/etc/kubernetes/manifests/{name}.yaml"
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    ] + ["/etc/kubernetes/manifests/mayu-agent.yaml"]
    assert all(files[p]["mode"] == 0o600 for p in manifests)
    dirs = {d["path"]: d["mode"] for d in config["storage"]["directories"]}
    assert dirs == {"/etc/kubernetes/manifests": 0o755, "/var/lib/etcd": 0o700}


def test_worker_gets_only_the_agent_manifest(renderer: IgnitionRenderer) -> None:
    config = renderer.render("worker.yaml.j2", sample_context("worker"))
    manifests = [p for p in files_of(config) if p.startswith("/etc/kubernetes/manifests/")]
    assert manifests == ["/etc/kubernetes/manifests/mayu-agent.yaml"]
    assert (
        "--node-labels=node.mayu.io/role=worker" in unit_of(config, "kubelet.service")["contents"]
    )
    assert [d["path"] for d in config["storage"]["directories"]] == ["/etc/kubernetes/manifests"]


def test_tenant_vms_get_no_agent(renderer: IgnitionRenderer, context: RenderContext) -> None:
    context = with_node(context, labels={"mayu.io/tenant": "acme"})
    names = [Path(s.path).stem for s in renderer.static_manifests(context)]
    assert names == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    assert renderer.static_manifests(with_node(context, role="worker")) == []


def test_optional_server_url_reaches_the_agent(
    renderer: IgnitionRenderer, context: RenderContext
) -> None:
    context = replace(context, server_url="http://192.0.2.1:8080")
    agent = next(s for s in renderer.static_manifests(context) if "mayu-agent" in s.path)
    command = yaml.safe_load(agent.contents)["spec"]["containers"][0]["command"]
    assert command[-2:] == ["--server", "http://192.0.2.1:8080"]


def test_no_report_url_means_no_phone_home(
    renderer: IgnitionRenderer, context: RenderContext
) -> None:
    context = replace(context, report_url=None)
    config = renderer.render("worker.yaml.j2", context)
    assert "/etc/mayu/report-url" not in files_of(config)
    assert "mayu-report.service" not in {u["name"] for u in config["systemd"]["units"]}


def test_render_json_is_compact_and_equal(
    renderer: IgnitionRenderer, context: RenderContext
) -> None:
    data = renderer.render_json("controller.yaml.j2", context)
    assert isinstance(data, bytes)
    assert b"\n" not in data and b'": ' not in data
    assert json.loads(data) == renderer.render("controller.yaml.j2", context)


def test_files_are_appended_with_mode(renderer: IgnitionRenderer, context: RenderContext) -> None:
    specs = [
        FileSpec("/etc/kubernetes/pki/ca.crt", 0o644, "-----BEGIN CERTIFICATE-----\nü\n"),
        FileSpec("/etc/kubernetes/pki/ca.key", 0o600, "KEY\n"),
    ]
    config = renderer.render("controller.yaml.j2", context, specs)
    entries = config["storage"]["files"]
    assert [e["path"] for e in entries[-2:]] == [s.path for s in specs]
    key = files_of(config)["/etc/kubernetes/pki/ca.key"]
    assert key["mode"] == 384 and key["overwrite"] is True
    assert text_of(config, "/etc/kubernetes/pki/ca.crt") == specs[0].contents


def test_a_path_written_twice_is_refused(
    renderer: IgnitionRenderer, context: RenderContext
) -> None:
    with pytest.raises(RenderError, match="/etc/hostname is written twice"):
        renderer.render("worker.yaml.j2", context, [FileSpec("/etc/hostname", 0o644, "x\n")])


def test_static_manifests_follow_the_release(renderer: IgnitionRenderer) -> None:
    def etcd(version: str) -> dict[str, Any]:
        specs = renderer.static_manifests(sample_context("controller", version))
        spec = next(s for s in specs if s.path.endswith("/etcd.yaml"))
        return yaml.safe_load(spec.contents)["spec"]["containers"][0]

    old, new = etcd("1.35.4"), etcd("1.37.1")
    assert old["image"] == "registry.k8s.io/etcd:3.6.11-0"
    assert new["image"] == "registry.k8s.io/etcd:3.7.0-0"
    for container in (old, new):
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert "--feature-gates=InitialCorruptCheck=true" in container["command"]
        assert not [f for f in container["command"] if f.startswith("--experimental-")]


@pytest.mark.parametrize(("version", "pause"), [("1.35.0", "3.10.1"), ("1.37.1", "3.10.2")])
def test_sandbox_image_follows_the_release(
    renderer: IgnitionRenderer, version: str, pause: str
) -> None:
    config = renderer.render("worker.yaml.j2", sample_context("worker", version))
    assert f'sandbox_image = "registry.k8s.io/pause:{pause}"' in text_of(
        config, "/etc/containerd/config.toml"
    )


def test_control_plane_images_and_flags(renderer: IgnitionRenderer, context: RenderContext) -> None:
    members = (("a", "192.0.2.1"), (context.node.name, "192.0.2.11"), ("c", "192.0.2.3"))
    context = with_cluster(context, etcd_members=members)
    pods = {
        Path(s.path).stem: yaml.safe_load(s.contents) for s in renderer.static_manifests(context)
    }
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        container = pods[name]["spec"]["containers"][0]
        assert container["image"] == f"registry.k8s.io/{name}:v{DEFAULT_KUBERNETES_VERSION}"
        assert pods[name]["metadata"]["namespace"] == "kube-system"
    etcd_cmd = pods["etcd"]["spec"]["containers"][0]["command"]
    assert (
        "--initial-cluster=a=https://192.0.2.1:2380,node-525400000001=https://192.0.2.11:2380,"
        "c=https://192.0.2.3:2380"
    ) in etcd_cmd
    api = pods["kube-apiserver"]["spec"]["containers"][0]["command"]
    assert "--service-cluster-ip-range=10.96.0.0/12" in api
    assert "--advertise-address=192.0.2.11" in api
    for path in (
        "/etc/kubernetes/pki/apiserver.crt",
        "/etc/kubernetes/pki/sa.pub",
        "/etc/kubernetes/pki/front-proxy-client.crt",
        "/etc/kubernetes/pki/etcd/ca.crt",
    ):
        assert any(arg.endswith("=" + path) for arg in api), path
    agent = pods["mayu-agent"]["spec"]
    assert agent["hostNetwork"] is True
    assert agent["containers"][0]["command"] == [
        "mayu",
        "agent",
        "--host-name",
        "node-525400000001",
        "--token-file",
        "/etc/mayu/agent.token",
    ]
    assert {"path": "/var/run/libvirt", "type": "Directory"} in [
        v["hostPath"] for v in agent["volumes"]
    ]


def test_controller_missing_from_etcd_members_names_the_line(
    renderer: IgnitionRenderer, context: RenderContext
) -> None:
    context = with_cluster(context, etcd_members=(("other", "192.0.2.9"),))
    line = line_of(default_manifests_dir() / "etcd.yaml.j2", "fail(")
    with pytest.raises(RenderError) as err:
        renderer.static_manifests(context)
    assert str(err.value) == (
        f"template etcd.yaml.j2 line {line}: controller node-525400000001 is not listed "
        "in cluster.etcd_members"
    )


def test_no_ip_omits_advertise_address(renderer: IgnitionRenderer, context: RenderContext) -> None:
    context = with_cluster(with_node(context, ip=None), etcd_members=())
    pods = {Path(s.path).stem: s.contents for s in renderer.static_manifests(context)}
    assert "--advertise-address" not in pods["kube-apiserver"]
    assert "--initial-cluster=node-525400000001=https://127.0.0.1:2380" in pods["etcd"]


def test_check_templates_passes_on_shipped_templates(renderer: IgnitionRenderer) -> None:
    renderer.check_templates()


# --- errors --------------------------------------------------------------------------


def assert_clean(err: RenderError) -> None:
    assert "Traceback" not in str(err) and 'File "' not in str(err)


def test_undefined_variable_in_custom_template(tmp_path: Path, context: RenderContext) -> None:
    renderer = custom(tmp_path, **{"x.yaml.j2": "storage:\n  files: []\n# {{ node.nope }}\n"})
    with pytest.raises(RenderError, match=r"^template x\.yaml\.j2 line 3: .*nope") as err:
        renderer.render("x.yaml.j2", context)
    assert_clean(err.value)


def test_syntax_error_names_template_and_line(tmp_path: Path, context: RenderContext) -> None:
    renderer = custom(
        tmp_path,
        **{
            "x.yaml.j2": "storage: {}\n{% include '_part.j2' %}\n",
            "_part.j2": "# ok\n# ok\n{% if %}\n",
        },
    )
    with pytest.raises(RenderError, match=r"^template _part\.j2 line 3: syntax error") as err:
        renderer.render("x.yaml.j2", context)
    assert_clean(err.value)


def test_yaml_error_names_template_and_output_line(tmp_path: Path, context: RenderContext) -> None:
    renderer = custom(tmp_path, **{"x.yaml.j2": "storage:\n  files: []\n bad: [\n"})
    with pytest.raises(RenderError, match=r"^template x\.yaml\.j2: rendered output line \d+"):
        renderer.render("x.yaml.j2", context)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus: 1\n", "unknown top-level key"),
        ("x-mayu: {nope: true}\n", "unknown x-mayu option"),
        ("ignition: {version: 3.4.0}\n", "must be 3.3.0"),
        ("- a\n", "must be a YAML mapping"),
        ("storage:\n  files: [{path: /a, mode: '0644'}]\n", "mode must be an integer"),
        ("storage:\n  files: [{path: /a, contents: {inline: 1}}]\n", "must be a string"),
        ("x-mayu: {install_target: {template: x.yaml.j2}}\n", "needs template and path"),
        ("x-mayu: {install_target: {template: no.yaml.j2, path: /t}}\n", "is not a template"),
        ("x-mayu: {install_target: {template: t.yaml.j2, path: t.ign}}\n", "must be absolute"),
        ("x-mayu: {install_target: {template: x.yaml.j2, path: /t}}\n", "cannot install"),
    ],
)
def test_malformed_output_is_refused(
    tmp_path: Path, context: RenderContext, text: str, message: str
) -> None:
    renderer = custom(tmp_path, **{"x.yaml.j2": text, "t.yaml.j2": "storage: {}\n"})
    with pytest.raises(RenderError, match=message):
        renderer.render("x.yaml.j2", context)


def test_check_templates_reports_a_broken_template(tmp_path: Path) -> None:
    renderer = custom(tmp_path, **{"ok.yaml.j2": "storage: {}\n", "z.yaml.j2": "{{ nope }}\n"})
    with pytest.raises(RenderError, match=r"^template z\.yaml\.j2 line 1"):
        renderer.check_templates()


def test_sandbox_blocks_unsafe_attributes(tmp_path: Path, context: RenderContext) -> None:
    text = "# {{ node.__class__.__mro__[1].__subclasses__() }}\n"
    with pytest.raises(RenderError, match=r"^template x\.yaml\.j2 line 1: "):
        custom(tmp_path, **{"x.yaml.j2": text}).render("x.yaml.j2", context)


def test_a_role_templates_do_not_know_is_refused(
    renderer: IgnitionRenderer, context: RenderContext
) -> None:
    with pytest.raises(RenderError, match="node.role must be one of"):
        renderer.render("worker.yaml.j2", with_node(context, role="admin"))


@pytest.mark.parametrize("minor", ["1.31", "1.38", "latest"])
def test_an_unsupported_minor_is_a_422_not_a_render_error(
    renderer: IgnitionRenderer, context: RenderContext, minor: str
) -> None:
    with pytest.raises(Unprocessable) as err:
        renderer.render("worker.yaml.j2", with_cluster(context, kubernetes_version=f"{minor}.0"))
    assert err.value.status == 422
    assert (
        "1.35, 1.36, 1.37" in err.value.message or "not a Kubernetes version" in err.value.message
    )


def test_check_templates_refuses_a_flag_a_supported_release_removed(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "etcd.yaml.j2").write_text(
        "{% if node.role == 'controller' %}kind: Pod\nspec:\n  containers:\n"
        "    - {name: etcd, command: [etcd, --experimental-initial-corrupt-check=true]}\n"
        "{% endif %}"
    )
    renderer = IgnitionRenderer(default_templates_dir(), manifests)
    with pytest.raises(
        RenderError,
        match=r"for Kubernetes 1\.37: etcd 3\.7 does not accept "
        r"--experimental-initial-corrupt-check .*InitialCorruptCheck=true",
    ):
        renderer.check_templates()


def test_check_templates_refuses_an_unknown_kubelet_field(tmp_path: Path) -> None:
    kubelet_config = (
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        "containerRuntime: remote\n"
    )
    template = (
        "storage:\n  files:\n    - path: /var/lib/kubelet/config.yaml\n"
        f"      contents: {{inline: {json.dumps(kubelet_config)}}}\n"
    )
    renderer = custom(tmp_path, **{"x.yaml.j2": template})
    with pytest.raises(RenderError, match=r"containerRuntime: not a field of KubeletConfiguration"):
        renderer.check_templates()


# --- injection -----------------------------------------------------------------------

NASTY = {
    "jinja": "{{ 7*7 }}",
    "statement": "{% raw %}x{% endraw %}{% if true %}",
    "quotes": "it's \"quoted\" 'twice'",
    "newline": "a\nstorage: {files: []}\n- b",
    "yaml": "]: &x *y ! | > #",
    "html": "<script>&amp;</script>",
}


def test_injected_values_are_rendered_literally(
    renderer: IgnitionRenderer, context: RenderContext
) -> None:
    plain = renderer.render("controller.yaml.j2", context)
    name = 'evil"{{ 7*7 }}\n{% raw %}'
    context = with_node(
        context,
        labels=dict(NASTY),
        metadata={f"m-{k}": v for k, v in NASTY.items()},
        serial=NASTY["quotes"] + NASTY["jinja"],
        name=name,
    )
    context = with_cluster(context, etcd_members=((name, "192.0.2.11"),))
    node = context.template_values()["node"]
    config = renderer.render("controller.yaml.j2", context)

    assert set(files_of(config)) == set(files_of(plain))
    assert [u["name"] for u in config["systemd"]["units"]] == [
        u["name"] for u in plain["systemd"]["units"]
    ]
    assert text_of(config, "/etc/hostname") == node["name"] + "\n"
    assert json.loads(text_of(config, "/etc/mayu/node.json")) == node
    agent = yaml.safe_load(text_of(config, "/etc/kubernetes/manifests/mayu-agent.yaml"))
    command = agent["spec"]["containers"][0]["command"]
    assert command[command.index("--host-name") + 1] == node["name"]
    etcd = yaml.safe_load(text_of(config, "/etc/kubernetes/manifests/etcd.yaml"))
    assert "--name=" + node["name"] in etcd["spec"]["containers"][0]["command"]
    written = [decode(f["contents"]["source"]) for f in config["storage"]["files"]]
    assert not [text for text in written if "49" in text]


def test_injected_ssh_keys_stay_keys(renderer: IgnitionRenderer, context: RenderContext) -> None:
    keys = ["ssh-ed25519 AAAA x\nusers: []", "{{ 7*7 }}"]
    config = renderer.render("worker.yaml.j2", replace(context, ssh_authorized_keys=tuple(keys)))
    assert config["passwd"]["users"] == [{"name": "core", "sshAuthorizedKeys": keys}]
