"""GET /metrics (Prometheus text format) and the hooks that time every request.

/metrics needs a bearer token: the admin token, or `server.metrics_token`, a scrape-only
credential that opens nothing else. It is never open: the listener that serves it is also the
boot network, where any machine that PXE-boots can reach it, and machine counts by state and
the rates of boot tokens issued and refused are inventory and activity data that the boot plane
otherwise keeps to itself (its refusals look alike on purpose). Prometheus sends a bearer token
with one line of scrape config (`authorization: {credentials_file: ...}`).
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request

from mayu_py.server.auth import require_metrics_token
from mayu_py.server.context import services
from mayu_py.server.metrics import CONTENT_TYPE, ServerMetrics
from mayu_py.server.operations import Operation, Reply, operation

bp = Blueprint("monitoring", __name__)
bp.before_request(require_metrics_token)


@bp.get("/metrics")
@operation(
    Operation(
        "Prometheus metrics (text exposition format)",
        ("health",),
        {200: Reply({"type": "string"}, media=CONTENT_TYPE.split(";")[0])},
        auth="metrics",
    )
)
def metrics() -> Response:
    svc = services()
    return Response(svc.metrics.exposition(svc.store), content_type=CONTENT_TYPE)


def instrument(app: Flask, metrics: ServerMetrics) -> None:
    """Count and time every request of `app` by its endpoint name and status."""

    @app.before_request
    def _started() -> None:
        g.metrics_started = time.perf_counter()
        metrics.http_in_progress.inc()

    @app.after_request
    def _answered(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            elapsed = time.perf_counter() - started
            metrics.request_done(request.endpoint, request.method, response.status_code, elapsed)
        return response

    @app.teardown_request
    def _finished(_exc: BaseException | None) -> None:
        if g.pop("metrics_started", None) is not None:
            metrics.http_in_progress.dec()
