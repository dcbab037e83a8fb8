"""What each HTTP operation takes and answers, declared once beside its handler.

`@operation(...)` attaches an `Operation` to a view function: its summary, who may call it, the
pydantic models of its query string and body, and its answers. The handler validates its input
with `body_of` / `query_of` against those same models, and openapi.py builds the OpenAPI
description from them: the description cannot drift from what the server checks.

A body that is not JSON is 400 (jsonbody); a JSON body that does not fit its model is the
operation's `invalid` status (400 for wire messages, 422 for resources), with field-level
messages in the problem's `context`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from mayu_py.errors import BadRequest, MayuError, Unprocessable
from mayu_py.server.context import services
from mayu_py.server.jsonbody import json_body

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
Auth = Literal["none", "admin", "admin-or-agent", "agent-of-host", "report", "metrics"]
JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    """One answer of an operation: its model (None: no body), media type(s), headers, links."""

    model: Any = None
    description: str = "OK"
    media: str | tuple[str, ...] = JSON
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description
    # name -> (operationId, {parameter: runtime expression}) for OpenAPI links
    links: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """An HTTP operation as the OpenAPI description shows it."""

    summary: str
    tags: tuple[str, ...]
    replies: Mapping[int, Reply]
    auth: Auth = "admin"
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    invalid: int = 400  # the status of a body or query that does not fit its model
    description: str = ""
    path_patterns: Mapping[str, str] = field(default_factory=dict)  # parameter -> regex
    head: bool = False  # HEAD is served on purpose (Flask adds it to every GET)


def operation(op: Operation) -> Callable[[F], F]:
    """Attach `op` to a view function (place it under the route decorator)."""

    def attach(fn: F) -> F:
        fn.openapi = op  # type: ignore[attr-defined]
        return fn

    return attach


def field_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as `a.b[0].c` (the form 422 answers name fields in)."""
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validation_failure(
    exc: ValidationError, status: int, message: str, prefix: str = ""
) -> MayuError:
    """The 400/422 for a model's ValidationError: `context` maps each field to its message."""
    fields = {prefix + field_path(tuple(e["loc"])): e["msg"] for e in exc.errors(include_url=False)}
    first, why = next(iter(fields.items()), ("", "invalid"))
    error = Unprocessable if status == 422 else BadRequest
    return error(f"{message}: {first}: {why}" if first else f"{message}: {why}", fields)


def validated(model: type[M], data: Any, *, status: int = 400, message: str = "invalid body") -> M:
    """`data` as `model`; BadRequest (400) or Unprocessable (422) naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failure(exc, status, message) from None


def body_of(model: type[M], *, status: int = 400, empty: Any = None) -> M:
    """The request's JSON body as `model` (an empty body counts as `empty`)."""
    data = json_body(services().settings.server.max_json_depth)
    return validated(model, empty if data is None else data, status=status)


def query_of(model: type[M], *, status: int = 400) -> M:
    """The query string as `model`: each parameter's first value."""
    return validated(model, request.args.to_dict(), status=status, message="invalid query")
