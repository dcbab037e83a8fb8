"""Several `mayu serve` replicas on one store, as the peer tests and benchmarks run them: each
with its own data dir (under one work dir) and ports on 127.0.0.1, every one after the first
given the first's replica key (so they decrypt the same CAs); on failure none is left running."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import RunningServer, start_server


def start_replicas(
    work: Path,
    count: int,
    config: dict,
    *,
    workers: int = 1,
    extra_args: tuple[str, ...] = (),
) -> list[RunningServer]:
    """`count` replicas of the store `config` names (store.url), in work/r0, work/r1, ..."""
    started: list[RunningServer] = []
    try:
        for index in range(count):
            data_dir = work / f"r{index}"
            if started:
                data_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(started[0].data_dir / "replica.key", data_dir / "replica.key")
            started.append(
                start_server(data_dir, config=config, workers=workers, extra_args=extra_args)
            )
    except BaseException:
        for server in started:
            server.kill()
        raise
    return started
