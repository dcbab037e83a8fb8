"""The SQLite store's writer lock: writers of one store file take turns on a kernel lock
(threads here stand for gunicorn workers: each has its own connection and lock handle), the
lock file is private, and the WAL is checkpointed outside the lock so it stays bounded."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from mayu_py.model import Machine
from mayu_py.store import sqlite_writer
from mayu_py.store.sqlite import SqliteStore

MAC = "52:54:00:79:00:01"


def _machine(updated: float) -> Machine:
    return Machine(id=MAC, mac=MAC, created=1.0, updated=updated)


def test_a_writer_waits_for_the_one_holding_the_lock_and_goes_on_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "inv.sqlite3")
    holding, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def first(tx) -> None:  # type: ignore[no-untyped-def]
        tx.put_machine(_machine(1.0))
        holding.set()
        assert release.wait(10)

    def second(tx) -> None:  # type: ignore[no-untyped-def]
        second_in.set()
        tx.put_machine(_machine(2.0))

    threads = [
        threading.Thread(target=store.atomically, args=(first,)),
        threading.Thread(target=lambda: holding.wait(10) and store.atomically(second)),
    ]
    for thread in threads:
        thread.start()
    assert holding.wait(10)
    assert not second_in.wait(0.3), "a second writer ran inside the first one's transaction"
    release.set()
    assert second_in.wait(2)
    for thread in threads:
        thread.join(10)
    stored = store.get_machine(MAC)
    assert stored is not None and stored.updated == 2.0
    lock = sqlite_writer.lock_path(store.path)
    assert lock.stat().st_mode & 0o777 == 0o600
    store.close()


def test_the_wal_is_checkpointed_after_the_lock_so_it_stays_bounded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "inv.sqlite3")
    wal = Path(f"{store.path}-wal")
    for n in range(sqlite_writer.CHECKPOINT_EVERY):
        store.atomically(lambda tx, n=n: tx.put_machine(_machine(float(n))))
    first = wal.stat().st_size
    for n in range(3 * sqlite_writer.CHECKPOINT_EVERY):
        store.atomically(lambda tx, n=n: tx.put_machine(_machine(float(n))))
    assert wal.stat().st_size <= first * 1.2
    store.close()


def test_a_forked_child_opens_its_own_connection_and_lock(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "inv.sqlite3")
    store.atomically(lambda tx: tx.put_machine(_machine(1.0)))
    holding = store._local.writer  # type: ignore[attr-defined]
    holding.acquire()  # the parent holds the lock: a child sharing its handle would not wait
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports by exit code
        # Waiting on the parent's lock is right: the alarm ends the wait with exit code 0.
        signal.signal(signal.SIGALRM, lambda *_: os._exit(0))
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        try:
            store.atomically(lambda tx: tx.put_machine(_machine(2.0)))
        finally:
            os._exit(3)
    _, status = os.waitpid(child, 0)
    holding.release(False)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get_machine(MAC).updated == 1.0  # type: ignore[union-attr]
    store.close()
