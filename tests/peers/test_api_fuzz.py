"""schemathesis against a live `mayu serve`, from the server's own /api/v1/openapi.json: every
operation, with the admin token, a few generated requests each (valid and invalid ones); no
answer is a 5xx and every answer conforms to the description (status, media type, headers,
body schema), and a request the description forbids is refused. Bounded in examples and in
time so it fits CI.

Not checked: that every request the schema allows is accepted. The server also refuses what
no JSON Schema says (an unknown image, a MAC that already has another BMC, a state transition
the state machine forbids) with a documented 4xx problem."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.conftest import RunningServer, start_server
from tests.support.boot import ipxe

pytestmark = pytest.mark.peer

SEEDED = ("52-54-00-fa-00-01", "52-54-00-fa-00-02")  # machines the fuzzed requests can meet
EXAMPLES = 4  # generated requests per operation and mode
BUDGET_S = 60.0  # the whole run
# gunicorn refuses a request line over 4094 bytes itself with 414 (documented): a rejection,
# though not one of the statuses schemathesis counts as refusing invalid data.
URI_TOO_LONG = 414
RUN = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,  # the same requests on every run: CI failures reproduce
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("fuzz") / "data")
    try:
        for mac in SEEDED:
            ipxe(server.url, mac)
        yield server
    finally:
        server.kill()


def _excluded(response: Any) -> list[Any]:
    """The checks not applied to this answer (see the module docstring and URI_TOO_LONG)."""
    if response.status_code == URI_TOO_LONG:
        return [positive_data_acceptance, negative_data_rejection]
    return [positive_data_acceptance]


def _fuzz(op: APIOperation, mode: GenerationMode, server: RunningServer) -> list[str]:
    """The failures of a few generated requests to one operation."""
    failures: list[str] = []
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {server.token}"

    @RUN
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        try:
            response = case.call(session=session, timeout=30)
            case.validate_response(
                response,
                excluded_checks=_excluded(response),
                transport_kwargs={"session": session, "timeout": 30},
            )
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
        except (AssertionError, FailureGroup) as exc:  # schemathesis' checks
            failures.append(f"{op.label} ({mode.value}): {exc}")

    try:
        run()
    except Unsatisfiable:
        # No invalid request exists for an operation without parameters or body.
        assert mode is GenerationMode.NEGATIVE, f"{op.label}: no valid request generated"
    return failures


def test_every_operation_conforms_and_none_fails(live: RunningServer) -> None:
    api = schemathesis.openapi.from_url(f"{live.url}/api/v1/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 30  # the whole API, not an empty description
    started, failures = time.monotonic(), []
    for op in operations:
        for mode in GenerationMode:
            failures += _fuzz(op, mode, live)
    elapsed = time.monotonic() - started
    assert failures == [], "\n\n".join(failures)
    assert elapsed < BUDGET_S, f"fuzzing took {elapsed:.0f}s"
