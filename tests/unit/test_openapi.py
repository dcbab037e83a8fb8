"""The OpenAPI 3.1 description: a valid document (openapi-spec-validator), every route of the
app in it, every error answer an RFC 9457 problem, and served as the app builds it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from openapi_spec_validator import validate

from mayu_py.server.openapi import PROBLEM_MEDIA, describe
from mayu_py.server.schemas import Problem
from tests.support.flask_app import AUTH, make_app

# A probe's "not ready" carries the readiness report itself (what Kubernetes probes read), and
# gunicorn refuses an overlong request line before the app sees it: the two answers that are
# not problem documents, each described as what it is.
READINESS_NOT_READY = ("/readyz", "503")
NOT_FROM_THE_APP = "414"
DASHBOARD = "ui."
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path)


def test_description_is_valid_openapi_3_1(app: Flask) -> None:
    description = describe(app)
    assert description["openapi"] == "3.1.0"
    validate(description)  # raises OpenAPIValidationError on a document that is not one


def test_every_route_and_method_is_described(app: Flask) -> None:
    """Every route but the dashboard's (HTML pages for people, docs/dashboard.md)."""
    paths = describe(app)["paths"]
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(DASHBOARD):
            continue
        path = _ARGUMENT.sub(r"{\1}", rule.rule)
        for method in sorted(set(rule.methods or ()) - {"OPTIONS", "HEAD"}):
            if method.lower() not in paths.get(path, {}):
                missing.append(f"{method} {path}")
    assert missing == []
    assert len(paths) >= 30  # the whole API, not an empty map that passes trivially


def test_every_error_answer_is_a_problem_document(app: Flask) -> None:
    description = describe(app)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    assert set(description["components"]["schemas"]["Problem"]["required"]) >= {
        "type",
        "title",
        "status",
        "detail",
    }
    for path, methods in description["paths"].items():
        for method, op in methods.items():
            responses = op["responses"]
            assert "500" in responses and "503" in responses, f"{method} {path}"
            for status, response in responses.items():
                if status == NOT_FROM_THE_APP or (path, status) == READINESS_NOT_READY:
                    continue
                if int(status) >= 400:
                    assert response["content"] == {PROBLEM_MEDIA: {"schema": problem_ref}}, (
                        f"{method} {path} {status}"
                    )


def test_served_description_and_docs(app: Flask) -> None:
    client = app.test_client()
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200
    assert served.get_json() == describe(app)
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert client.get("/api/v1/docs/swagger-ui-bundle.js").mimetype == "text/javascript"
    assert client.get("/api/v1/docs/../admin.token").status_code == 404


def test_real_errors_fit_the_problem_model(app: Flask) -> None:
    client = app.test_client()
    for answer in (
        client.get("/api/v1/machines"),  # no token: 401
        client.get("/api/v1/machines?limit=0", headers=AUTH),  # 400
        client.get("/api/v1/machines/52:54:00:00:00:99", headers=AUTH),  # 404
    ):
        assert answer.status_code >= 400 and answer.mimetype == PROBLEM_MEDIA
        doc = Problem.model_validate(answer.get_json())
        assert doc.status == answer.status_code


def test_machine_list_answers_304_to_its_own_etag(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/api/v1/machines", headers=AUTH)
    etag = first.headers["ETag"]
    again = client.get("/api/v1/machines", headers=AUTH | {"If-None-Match": etag})
    assert again.status_code == 304
    client.get("/ipxe?mac=52-54-00-fa-01-01")
    changed = client.get("/api/v1/machines", headers=AUTH | {"If-None-Match": etag})
    assert changed.status_code == 200 and len(changed.get_json()["items"]) == 1
