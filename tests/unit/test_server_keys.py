"""Server secrets in 0600 files (the dashboard's session key, the BMC sealing key): processes
that start at once (both listeners, every gunicorn worker) agree on one key, and never read a
half-written file (an empty key would sign sessions the other workers refuse)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from mayu_py.errors import ConfigError
from mayu_py.server.tokens import load_or_create_key

RACERS = 8


def _race(
    path: Path, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue
) -> None:  # type: ignore[name-defined]
    start.wait()
    out.put(load_or_create_key(path))


def test_processes_starting_at_once_agree_on_one_whole_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        path = tmp_path / f"k{attempt}" / "ui-session.key"
        start, out = context.Barrier(RACERS), context.Queue()
        racers = [context.Process(target=_race, args=(path, start, out)) for _ in range(RACERS)]
        for racer in racers:
            racer.start()
        keys = {out.get(timeout=30) for _ in racers}
        for racer in racers:
            racer.join(30)
            assert racer.exitcode == 0
        assert len(keys) == 1 and len(next(iter(keys))) == 32, keys
        assert bytes.fromhex(path.read_text()) in keys
        assert path.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # nothing left aside


def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bmc.key"
    path.write_text("\n")
    with pytest.raises(ConfigError, match="not a 32-byte key"):
        load_or_create_key(path)
