"""mayuctl's kubectl-like output (RFC 3339 times, ages, formats, JSONPath) and its watch loop
(ETags, changed machines only, bounded), against a scripted client."""

from __future__ import annotations

from typing import Any

import click
import pytest

from mayu_py.api_client import ApiError
from mayu_py.cli.entry import exit_code
from mayu_py.cli.follow import FollowError
from mayu_py.cli.output import OutputFormat, age, rfc3339, rfc3339_times, with_age
from mayu_py.cli.watch import watch_machines
from mayu_py.errors import BadRequest, ConfigError


def test_epoch_members_become_rfc3339_utc() -> None:
    assert rfc3339(0.25) == "1970-01-01T00:00:00.250Z"
    doc = {"created": 86400, "labels": {"time": "x"}, "events": [{"time": 1.5, "seq": 3}],
           "flag": True, "updated": None}  # fmt: skip
    assert rfc3339_times(doc) == {
        "created": "1970-01-02T00:00:00.000Z",
        "labels": {"time": "x"},
        "events": [{"time": "1970-01-01T00:00:01.500Z", "seq": 3}],
        "flag": True,
        "updated": None,
    }


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (180, "3m"),
        (3600, "60m"),
        (4 * 3600, "4h"),
        (3 * 86400, "3d"),
        (-5, "0s"),
    ],  # fmt: skip
)
def test_ages_read_like_kubectl(seconds: float, shown: str) -> None:
    assert age(seconds) == shown


def test_age_comes_from_created() -> None:
    item = {"id": "m", "created": rfc3339(1000.0)}
    assert with_age([item], now=1042.0) == [item | {"age": "42s"}]
    assert with_age({"id": "no creation time"}, now=5.0) == {"id": "no creation time"}


@pytest.mark.parametrize("good", ["table", "wide", "json", "yaml", "jsonpath={.items[*].id}"])
def test_output_formats_accepted(good: str) -> None:
    assert OutputFormat().convert(good, None, None) == good


@pytest.mark.parametrize("bad", ["xml", "jsonpath=$.items[[", "JSON"])
def test_output_formats_refused(bad: str) -> None:
    with pytest.raises(click.BadParameter):
        OutputFormat().convert(bad, None, None)


def test_exit_codes_split_runtime_failures_from_bad_input() -> None:
    assert exit_code(ApiError("GET /x: 503", 503, temporary=True)) == 1
    assert exit_code(ApiError("GET /x: 500", 500)) == 1
    assert exit_code(FollowError("power on failed")) == 1
    assert exit_code(ApiError("GET /x: 404", 404)) == 2
    assert exit_code(ApiError("GET /x: 409", 409)) == 2
    assert exit_code(BadRequest("bad")) == 2
    assert exit_code(ConfigError("bad config")) == 2


class Pages:
    """A scripted machine list: each poll answers the next listing, 304 if it is the same."""

    def __init__(self, *listings: list[dict[str, Any]]) -> None:
        self.listings = list(listings)
        self.sent: list[str | None] = []

    def machine_page(
        self, query: dict[str, str], etag: str | None = None
    ) -> tuple[dict[str, Any] | None, str | None]:
        self.sent.append(etag)
        index = min(len(self.sent) - 1, len(self.listings) - 1)
        current = repr(self.listings[index])  # the same listing, the same ETag
        if current == etag:
            return None, etag
        return {"items": self.listings[index], "continue": None}, current


def test_watch_prints_the_listing_then_only_what_changed_until_its_bound() -> None:
    a, b = {"id": "a", "state": "discovered"}, {"id": "b", "state": "discovered"}
    pages = Pages([a], [a], [a, b], [a | {"state": "configured"}, b])
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    rounds = list(watch_machines(pages, {}, 10.0, 1.0, sleep, lambda: now[0]))  # type: ignore[arg-type]
    assert rounds == [[a], [b], [a | {"state": "configured"}]]
    assert pages.sent[0] is None and all(tag is not None for tag in pages.sent[1:])
    assert len(pages.sent) == 11  # polled every second for 10 s, then stopped
