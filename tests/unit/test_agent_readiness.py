"""Readiness from a node's serial log: the last boot's MAYU-READY marker, read incrementally."""

from __future__ import annotations

from pathlib import Path

from mayu_py.agent.readiness import ReadinessTracker


def _append(log: Path, text: str) -> None:
    with log.open("a") as handle:
        handle.write(text)


def test_ready_after_marker_with_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "n.log"
    tracker = ReadinessTracker()
    _append(log, "[    0.0] Linux version 6.1.0\nMAYU: stage files ok\nMAYU-RE")
    assert not tracker.check("n", log).ready
    assert tracker.booting("n")
    _append(log, "ADY ip=10.210.1.10\n")
    verdict = tracker.check("n", log)
    assert verdict.ready and verdict.ip == "10.210.1.10"
    assert not tracker.booting("n")


def test_new_boot_banner_resets_the_verdict(tmp_path: Path) -> None:
    log = tmp_path / "n.log"
    tracker = ReadinessTracker()
    _append(log, "Linux version 6.1\nMAYU-READY ip=10.0.0.10\n")
    assert tracker.check("n", log).ready
    _append(log, "Linux version 6.1\nbooting again\n")
    assert not tracker.check("n", log).ready


def test_started_ignores_earlier_output(tmp_path: Path) -> None:
    log = tmp_path / "n.log"
    _append(log, "Linux version 6.1\nMAYU-READY ip=10.0.0.10\n")
    tracker = ReadinessTracker()
    tracker.started("n", log)
    assert not tracker.check("n", log).ready
    _append(log, "MAYU-READY ip=10.0.0.11\n")
    assert tracker.check("n", log).ip == "10.0.0.11"


def test_failed_stage_and_missing_ip_are_failures(tmp_path: Path) -> None:
    log = tmp_path / "n.log"
    tracker = ReadinessTracker()
    _append(log, "Linux version 6.1\nMAYU: stage fetch FAILED\nMAYU-READY ip=10.0.0.10\n")
    verdict = tracker.check("n", log)
    assert not verdict.ready and "fetch" in verdict.failed
    other = tmp_path / "m.log"
    _append(other, "Linux version 6.1\nMAYU-READY ip=none\n")
    assert "no DHCP lease" in tracker.check("m", other).failed


def test_truncated_log_starts_over(tmp_path: Path) -> None:
    log = tmp_path / "n.log"
    tracker = ReadinessTracker()
    _append(log, "Linux version 6.1\n" + "x" * 1000 + "\nMAYU-READY ip=10.0.0.10\n")
    assert tracker.check("n", log).ready
    log.write_text("Linux version 6.1\n")
    assert not tracker.check("n", log).ready
