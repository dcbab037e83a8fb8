"""Several `mayu serve` replicas on one store, as the peer tests and benchmarks run them: each
with its own data dir (under one work dir) and ports on 127.0.0.1, every one after the first
given the first's replica key (so they decrypt the same CAs) and started alongside the others
(a replica's start is mostly Python starting its processes); on failure none is left
running."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
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

    def start(index: int) -> RunningServer:
        data_dir = work / f"r{index}"
        if index:
            data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(work / "r0" / "replica.key", data_dir / "replica.key")
        return start_server(data_dir, config=config, workers=workers, extra_args=extra_args)

    first = start(0)  # creates the CAs and the replica key in the store
    with ThreadPoolExecutor(max(count - 1, 1)) as pool:
        futures = [pool.submit(start, index) for index in range(1, count)]
    started = [first] + [f.result() for f in futures if f.exception() is None]
    if len(started) < count:
        for server in started:
            server.kill()
        next(f for f in futures if f.exception() is not None).result()
    return started
