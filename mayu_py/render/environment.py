"""The strict, sandboxed Jinja2 environment and template rendering with located errors.

Templates see only the context they are given: a missing key is an error (StrictUndefined),
attribute access is sandboxed, nothing is HTML-escaped. Every failure becomes a RenderError
whose message names the template and line, never a traceback.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mayu_py.errors import RenderError


class TemplateFailure(Exception):
    """Raised by `fail(message)` inside a template: the template refuses its context."""


def _fail(message: str) -> None:
    raise TemplateFailure(message)


@jinja2.pass_eval_context
def _tojson(eval_ctx: jinja2.nodes.EvalContext, value: Any, indent: int | None = None) -> str:
    """Jinja's tojson, but a missing key is reported as such (json.dumps would hide it)."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return jinja2.filters.do_tojson(eval_ctx, value, indent)


def create_environment(search_dir: Path) -> SandboxedEnvironment:
    """A sandboxed environment over one directory, with a `fail()` global and a strict tojson."""
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(search_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["fail"] = _fail
    env.filters["tojson"] = _tojson
    return env


def render_text(env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> str:
    """Render template `name` with `context`; raise RenderError naming template and line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.name or name
        raise RenderError(
            f"template {where} line {exc.lineno}: syntax error: {exc.message}",
            {"template": where, "line": exc.lineno},
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {exc.name} not found", {"template": exc.name}) from None
    except Exception as exc:  # any runtime failure inside a template is the template's fault
        where, line = _template_frame(env, exc, name)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        at = f"template {where}" if line is None else f"template {where} line {line}"
        raise RenderError(f"{at}: {message}", {"template": where, "line": line}) from None


def _template_frame(env: SandboxedEnvironment, exc: Exception, name: str) -> tuple[str, int | None]:
    """The innermost traceback frame that belongs to a template file (Jinja rewrites frames)."""
    roots = [Path(p).resolve() for p in env.loader.searchpath]  # type: ignore[union-attr]
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        for root in roots:
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix(), frame.lineno
    return name, None
