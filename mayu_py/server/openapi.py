"""The OpenAPI 3.1 description of the server, built from the app itself.

Every route whose view function carries an `Operation` (operations.py) is described: its path
and path parameters from Flask's URL map, its query parameters, body and answers from the same
pydantic models the handler validates with and answers in (their JSON Schema 2020-12 is what
OpenAPI 3.1 uses). Every error answer is an RFC 9457 problem document. Nothing here is written
by hand a second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import IntegerConverter, Rule

from mayu_py.server.operations import Operation, Reply
from mayu_py.server.schemas import Problem

PROBLEM_MEDIA = "application/problem+json"
REF = "#/components/schemas/{model}"
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_ERRORS = {
    400: "The request is malformed: not JSON, or a parameter or member of the wrong form",
    401: "Missing or wrong bearer token",
    403: "The token may not do this",
    404: "No such object",
    405: "Method not allowed here",
    409: "Conflicts with the object's current state",
    413: "Body larger than server.max_body_bytes",
    416: "The Range asked for lies outside the file",
    422: "Well-formed, but invalid: `context` maps each bad field to its message",
    500: "A bug in the server (logged there; `context` names the error class)",
    503: "The inventory store is unavailable (retry later)",
}
# gunicorn answers a request line over its limit itself, before the app: its own HTML page.
URI_TOO_LONG = {
    "description": "The request line is longer than gunicorn takes (gunicorn's own page)",
    "content": {"text/html": {"schema": {"type": "string"}}},
}
SECURITY_SCHEMES = {
    "adminToken": "The operator's admin token (<data-dir>/admin.token or MAYU_TOKEN).",
    "agentToken": "A host agent's token (`<host>.<random>`): only its own host's nodes.",
    "reportCredential": "A machine's report credential (/etc/mayu/report.token).",
    "metricsToken": "server.metrics_token, a scrape-only credential.",
}
SECURITY = {
    "none": [],
    "admin": [{"adminToken": []}],
    "admin-or-agent": [{"adminToken": []}, {"agentToken": []}],
    "agent-of-host": [{"adminToken": []}, {"agentToken": []}],
    "report": [{"reportCredential": []}, {}],
    "metrics": [{"adminToken": []}, {"metricsToken": []}],
}


def documented(app: Flask) -> Iterator[tuple[Rule, str, Operation]]:
    """Each (rule, method, operation) of `app` that carries an Operation, in path order."""
    rules = sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))
    for rule in rules:
        op: Operation | None = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if op is None:
            continue
        # Flask adds HEAD to every GET: only operations that serve it on purpose show it.
        methods = set(rule.methods or ()) - {"OPTIONS"} - (set() if op.head else {"HEAD"})
        for method in sorted(methods):
            yield rule, method, op


def describe(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`."""
    entries = list(documented(app))
    models = _models(op for _, _, op in entries)
    keys, defs = models_json_schema(models, ref_template=REF)
    schema_of = {model: keys[(model, mode)] for model, mode in models}
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, op in entries:
        path = _ARGUMENT.sub(r"{\1}", rule.rule)
        described = _operation(rule, op, schema_of, defs)
        if method == "HEAD":
            described["operationId"] += ".head"
        paths.setdefault(path, {})[method.lower()] = described
    components = {
        "schemas": defs.get("$defs", {}),
        "securitySchemes": {
            name: {"type": "http", "scheme": "bearer", "description": text}
            for name, text in SECURITY_SCHEMES.items()
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mayu_py",
            "version": _version(),
            "description": (
                "Boot plane (machines, no credentials), admin plane (`/api/v1`, bearer token) "
                "and agent plane of `mayu serve`. Every error is an RFC 9457 problem document "
                f"(`{PROBLEM_MEDIA}`)."
            ),
        },
        "paths": paths,
        "components": components,
    }


def _version() -> str:
    try:
        return metadata.version("mayu_py")
    except metadata.PackageNotFoundError:
        return "0"


def _models(ops: Iterator[Operation]) -> list[tuple[type[BaseModel], Any]]:
    found: dict[tuple[type[BaseModel], str], None] = {(Problem, "serialization"): None}
    for op in ops:
        for model in (op.body, op.query):
            if model is not None:
                found[(model, "validation")] = None
        for reply in op.replies.values():
            if isinstance(reply.model, type) and issubclass(reply.model, BaseModel):
                found[(reply.model, "serialization")] = None
    return list(found)


def _operation(
    rule: Rule,
    op: Operation,
    schema_of: dict[type[BaseModel], dict[str, Any]],
    defs: dict[str, Any],
) -> dict[str, Any]:
    parameters = _path_parameters(rule, op)
    if op.query is not None:
        parameters += _query_parameters(op.query, defs)
    described: dict[str, Any] = {
        "operationId": rule.endpoint,
        "summary": op.summary,
        "tags": list(op.tags),
        "security": SECURITY[op.auth],
        "responses": _responses(op, schema_of, bool(parameters)),
    }
    if op.description:
        described["description"] = op.description
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schema_of[op.body]}},
        }
    return described


def _path_parameters(rule: Rule, op: Operation) -> list[dict[str, Any]]:
    parameters = []
    for name in rule.arguments:
        converter = rule._converters[name]  # noqa: SLF001 - werkzeug keeps them only here
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if isinstance(converter, IntegerConverter):
            schema = {"type": "integer", "minimum": 0, "maximum": (1 << 63) - 1}
        elif name in op.path_patterns:
            schema["pattern"] = op.path_patterns[name]
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return sorted(parameters, key=lambda p: rule.rule.index(f"{p['name']}>"))


def _query_parameters(model: type[BaseModel], defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = defs["$defs"][model.__name__]
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _responses(
    op: Operation, schema_of: dict[type[BaseModel], dict[str, Any]], has_parameters: bool
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): _reply(reply, schema_of) for status, reply in op.replies.items()
    }
    errors = set(op.errors) | {500, 503}
    if has_parameters:
        responses["414"] = URI_TOO_LONG
    if op.body is not None or has_parameters:
        errors |= {400, op.invalid}
    if op.body is not None:
        errors.add(413)
    if op.auth != "none":
        errors.add(401)
    if op.auth == "agent-of-host":
        errors.add(403)
    problem = {PROBLEM_MEDIA: {"schema": schema_of[Problem]}}
    for status in sorted(errors - set(op.replies)):
        responses[str(status)] = {"description": _ERRORS.get(status, "Error"), "content": problem}
    return responses


def _reply(reply: Reply, schema_of: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.model is not None:
        schema = schema_of[reply.model] if isinstance(reply.model, type) else reply.model
        medias = (reply.media,) if isinstance(reply.media, str) else reply.media
        answer["content"] = {media: {"schema": schema} for media in medias}
    if reply.headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in reply.headers.items()
        }
    if reply.links:
        answer["links"] = {
            name: {"operationId": target, "parameters": dict(parameters)}
            for name, (target, parameters) in reply.links.items()
        }
    return answer
