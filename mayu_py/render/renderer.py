"""IgnitionRenderer: node context -> Ignition 3.3.0 config (dict or compact JSON).

One renderer holds two sandboxed environments: one for the Ignition templates, one for the
static pod manifest templates that controller (and agent) hosts receive as files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from mayu_py.errors import RenderError
from mayu_py.model import FileSpec
from mayu_py.render.environment import create_environment, render_text
from mayu_py.render.ignition import assemble, parse_output, take_extensions
from mayu_py.render.paths import default_manifests_dir, default_templates_dir
from mayu_py.render.releases import RELEASES, release_for
from mayu_py.render.sample import sample_context

TEMPLATE_SUFFIX = ".yaml.j2"
MANIFEST_DIR = "/etc/kubernetes/manifests"
MANIFEST_MODE = 0o600
ROLES = ("controller", "worker")
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
        self, template: str, context: dict[str, Any], files: Iterable[FileSpec] = ()
    ) -> dict[str, Any]:
        """The Ignition config for `context` from `template`, with `files` appended."""
        text = render_text(self._templates, template, _template_context(context))
        document = parse_output(template, text)
        options = take_extensions(template, document)
        extra = self.static_manifests(context) if options.get("static_manifests") else []
        return assemble(template, document, [*extra, *files])

    def render_json(
        self, template: str, context: dict[str, Any], files: Iterable[FileSpec] = ()
    ) -> bytes:
        """`render` serialised as compact JSON bytes, as served to Ignition."""
        config = self.render(template, context, files)
        return json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()

    def static_manifests(self, context: dict[str, Any]) -> list[FileSpec]:
        """Static pod manifests for the node; a template rendering to nothing is skipped."""
        full = _template_context(context)
        specs = []
        for name in self.manifest_names():
            text = render_text(self._manifests, name, full)
            if not text.strip():
                continue
            document = parse_output(name, text)
            if document.get("kind") != "Pod":
                raise RenderError(f"template {name}: a static manifest must be a Pod")
            path = f"{MANIFEST_DIR}/{name.removesuffix('.j2')}"
            specs.append(
                FileSpec(path, MANIFEST_MODE, yaml.dump(document, Dumper=_DUMPER, sort_keys=False))
            )
        return specs

    def template_names(self) -> list[str]:
        """The renderable Ignition templates (partials excluded)."""
        return _listing(self.templates_dir)

    def manifest_names(self) -> list[str]:
        """The static manifest templates, in file name order."""
        return _listing(self.manifests_dir)

    def check_templates(self) -> None:
        """Render every template for both roles and each supported minor; RenderError on failure."""
        names = self.template_names()
        if not names:
            raise RenderError(f"no *{TEMPLATE_SUFFIX} templates in {self.templates_dir}")
        for release in RELEASES.values():
            version = f"{release.minor}.0"
            for role in ROLES:
                for name in names:
                    self.render(name, sample_context(role, version))


def _template_context(context: dict[str, Any]) -> dict[str, Any]:
    """The caller's context plus `release`; the role must be one the templates know."""
    try:
        minor = context["cluster"]["kubernetes_minor"]
        role = context["node"]["role"]
    except (KeyError, TypeError):
        raise RenderError("render context needs cluster.kubernetes_minor and node.role") from None
    if role not in ROLES:
        raise RenderError(f"node.role must be one of {', '.join(ROLES)}, not {role!r}")
    return {**context, "release": release_for(minor)}


def _listing(directory: Path) -> list[str]:
    return sorted(
        p.name
        for p in directory.glob(f"*{TEMPLATE_SUFFIX}")
        if p.is_file() and not p.name.startswith("_")
    )
