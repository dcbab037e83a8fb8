"""Reading a /metrics answer in tests, with prometheus-client's own text parser."""

from __future__ import annotations

from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a text exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series is absent (a labelled metric never observed)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def assert_matches_store(samples: Samples, events: list[dict[str, Any]]) -> None:
    """The boot-plane counters of a server equal what its store's events (each machine's and
    the alerts, as the admin API lists them) record."""
    kinds = Counter(e["kind"] for e in events)
    assert value(samples, "mayu_boot_tokens_issued_total") == kinds["token-issued"]
    spent = sum("boot token spent" in e["cause"] for e in events)
    assert value(samples, "mayu_boot_tokens_consumed_total") == spent
    for endpoint in ("ignition", "report"):
        refused = value(samples, "mayu_boot_tokens_refused_total", endpoint=endpoint)
        assert refused == kinds[f"{endpoint}-refused"], endpoint
    running = sum(e["kind"] == "transition" and e["to"] == "running" for e in events)
    assert value(samples, "mayu_provisioning_duration_seconds_count") == running
