"""Rendering layer: strict sandboxed Jinja2 templates -> Ignition 3.3.0 configs and manifests."""

from __future__ import annotations

from mayu_py.render.context import ClusterContext, NodeFacts, RenderContext
from mayu_py.render.paths import default_manifests_dir, default_templates_dir
from mayu_py.render.renderer import IgnitionRenderer
from mayu_py.render.sample import sample_context

__all__ = [
    "ClusterContext",
    "IgnitionRenderer",
    "NodeFacts",
    "RenderContext",
    "default_manifests_dir",
    "default_templates_dir",
    "sample_context",
]
