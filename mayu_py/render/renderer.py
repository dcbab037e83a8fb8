"""IgnitionRenderer: node context -> Ignition 3.3.0 config (dict or compact JSON).

One renderer holds two sandboxed environments: one for the Ignition templates, one for the
static pod manifest templates that controller (and agent) hosts receive as files. At start-up
`check_templates` renders everything for each supported Kubernetes minor and refuses flags and
kubelet configuration fields that minor's components no longer accept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from mayu_py.errors import RenderError
from mayu_py.kubernetes_releases import RELEASES, Release, release_for
from mayu_py.model import FileSpec
from mayu_py.render.context import RenderContext
from mayu_py.render.environment import create_environment, render_text
from mayu_py.render.flags import removed_flags
from mayu_py.render.ignition import assemble, file_text, parse_output, take_extensions
from mayu_py.render.kubelet_config import kubelet_config_problems
from mayu_py.render.paths import default_manifests_dir, default_templates_dir
from mayu_py.render.sample import sample_context

TEMPLATE_SUFFIX = ".yaml.j2"
MANIFEST_DIR = "/etc/kubernetes/manifests"
MANIFEST_MODE = 0o600
ROLES = ("controller", "worker")
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
DEFAULT_AGENT_IMAGE = "ghcr.io/mayu-io/mayu:0.1.0"

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class IgnitionRenderer:
    """Renders Ignition templates (`*.yaml.j2`; names starting with `_` are partials)."""

    def __init__(
        self,
        templates_dir: Path | None = None,
        manifests_dir: Path | None = None,
        agent_image: str = DEFAULT_AGENT_IMAGE,
    ) -> None:
        self.templates_dir = Path(templates_dir or default_templates_dir())
        self.manifests_dir = Path(manifests_dir or default_manifests_dir())
        self._templates = create_environment(self.templates_dir)
        self._manifests = create_environment(self.manifests_dir)
        self._manifests.globals["agent_image"] = agent_image

    def render(
        self, template: str, context: RenderContext, files: Iterable[FileSpec] = ()
    ) -> dict[str, Any]:
        """The Ignition config for `context` from `template`, with `files` appended."""
        return self._render(template, context, list(files), may_install=True)

    def _render(
        self, template: str, context: dict[str, Any], files: list[FileSpec], may_install: bool
    ) -> dict[str, Any]:
        text = render_text(self._templates, template, _template_context(context))
        document = parse_output(template, text)
        options = take_extensions(template, document)
        extra = self.static_manifests(context) if options.get("static_manifests") else []
        if "install_target" in options:
            if not may_install:
                raise RenderError(f"template {template}: an install target cannot install")
            extra.append(self._install_target(template, options["install_target"], context, files))
        return assemble(template, document, [*extra, *files])

    def _install_target(
        self, template: str, target: Any, context: dict[str, Any], files: list[FileSpec]
    ) -> FileSpec:
        """The config of the installed system (template `target.template`, same context and
        files) as the 0600 JSON file `target.path` of an installer's config."""
        if not isinstance(target, dict) or set(target) != {"template", "path"}:
            raise RenderError(f"template {template}: install_target needs template and path")
        name, path = target["template"], target["path"]
        if name not in self.template_names():
            raise RenderError(f"template {template}: install_target {name!r} is not a template")
        if not isinstance(path, str) or not path.startswith("/"):
            raise RenderError(f"template {template}: install_target path must be absolute")
        config = self._render(name, context, files, may_install=False)
        return FileSpec(path, 0o600, json.dumps(config, separators=(",", ":")))

    def render_json(
        self, template: str, context: RenderContext, files: Iterable[FileSpec] = ()
    ) -> bytes:
        """`render` serialised as compact JSON bytes, as served to Ignition."""
        config = self.render(template, context, files)
        return json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()

    def static_manifests(self, context: RenderContext) -> list[FileSpec]:
        """Static pod manifests for the node; a template rendering to nothing is skipped."""
        return [
            FileSpec(
                f"{MANIFEST_DIR}/{name.removesuffix('.j2')}",
                MANIFEST_MODE,
                yaml.dump(pod, Dumper=_DUMPER, sort_keys=False),
            )
            for name, pod in self._pods(context)
        ]

    def _pods(self, context: RenderContext) -> list[tuple[str, dict[str, Any]]]:
        full = _template_context(context)
        pods = []
        for name in self.manifest_names():
            text = render_text(self._manifests, name, full)
            if not text.strip():
                continue
            document = parse_output(name, text)
            if document.get("kind") != "Pod":
                raise RenderError(f"template {name}: a static manifest must be a Pod")
            pods.append((name, document))
        return pods

    def template_names(self) -> list[str]:
        """The renderable Ignition templates (partials excluded)."""
        return _listing(self.templates_dir)

    def manifest_names(self) -> list[str]:
        """The static manifest templates, in file name order."""
        return _listing(self.manifests_dir)

    def check_templates(self) -> None:
        """Render every template for both roles and each supported minor and check the output
        against what that minor's components accept; RenderError on the first problem."""
        names = self.template_names()
        if not names:
            raise RenderError(f"no *{TEMPLATE_SUFFIX} templates in {self.templates_dir}")
        for release in RELEASES.values():
            for role in ROLES:
                context = sample_context(role, f"{release.minor}.0")
                for name in names:
                    _check_kubelet_config(name, self.render(name, context), release)
                for name, pod in self._pods(context):
                    _check_flags(name, pod, release)


def _template_context(context: RenderContext) -> dict[str, Any]:
    """The context's template values plus `release`; the role must be one templates know."""
    role = context.node.role
    if role not in ROLES:
        raise RenderError(f"node.role must be one of {', '.join(ROLES)}, not {role!r}")
    release = release_for(context.cluster.kubernetes_minor)
    return {**context.template_values(), "release": asdict(release)}


def _check_kubelet_config(name: str, config: dict[str, Any], release: Release) -> None:
    text = file_text(config, KUBELET_CONFIG)
    if text is None:
        return
    document = parse_output(f"{name} ({KUBELET_CONFIG})", text)
    problems = kubelet_config_problems(document, release.minor)
    if problems:
        raise RenderError(f"template {name}: {KUBELET_CONFIG} for {release.minor}: {problems[0]}")


def _check_flags(name: str, pod: dict[str, Any], release: Release) -> None:
    for container in pod.get("spec", {}).get("containers", []):
        command = [*container.get("command", []), *container.get("args", [])]
        problems = removed_flags(command[0], command, release) if command else []
        if problems:
            raise RenderError(f"template {name} for Kubernetes {release.minor}: {problems[0]}")


def _listing(directory: Path) -> list[str]:
    return sorted(
        p.name
        for p in directory.glob(f"*{TEMPLATE_SUFFIX}")
        if p.is_file() and not p.name.startswith("_")
    )
