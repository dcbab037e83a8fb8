"""The lease book against a lease file rewritten in place the way dnsmasq does it (truncate,
then write): a lookup caught mid-rewrite waits for the rewrite instead of missing."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from mayu_py.dhcp import LeaseBook, read_leases

MAC = "52:54:00:77:00:31"
LINE = f"1795617250 {MAC} 10.77.0.123 node1 01:{MAC}\n"
OTHER = "1795617251 52:54:00:77:00:32 10.77.0.124 node2 *\n"
REWRITE_AFTER_S = 0.2  # how long "dnsmasq" takes to write after truncating, in the race test


def rewrite_in_place(path: Path, text: str) -> None:
    """dnsmasq's lease_update_file: the same inode, truncated, then written."""
    with path.open("r+" if path.exists() else "w") as out:
        out.truncate(0)
        out.write(text)


def test_a_lookup_in_a_truncated_lease_file_waits_for_the_rewrite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leases = tmp_path / "leases"
    leases.write_text(OTHER)
    book = LeaseBook(leases)
    assert book.address_of("52:54:00:77:00:32") == "10.77.0.124"
    caplog.set_level(logging.INFO, logger="mayu_py.dhcp.leases")
    rewrite_in_place(leases, "")  # dnsmasq truncated the file for another client's lease...
    writer = threading.Timer(REWRITE_AFTER_S, rewrite_in_place, (leases, OTHER + LINE))
    started = time.monotonic()
    writer.start()  # ...and writes it a moment later, after the machine's /ipxe arrived
    try:
        assert book.address_of(MAC) == "10.77.0.123"
    finally:
        writer.join()
    assert REWRITE_AFTER_S <= time.monotonic() - started < book.wait_s
    assert f"lease of {MAC} read as 10.77.0.123 after 0." in caplog.text


def test_a_torn_last_line_is_not_read(tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    cut = LINE.index("10.77.0.1") + len("10.77.0.1")
    leases.write_text(OTHER + LINE[:cut])  # dnsmasq's write cut at a block boundary
    assert read_leases(leases) == {"52:54:00:77:00:32": "10.77.0.124"}  # not 10.77.0.1
    book = LeaseBook(leases, wait_s=0.1)
    assert book.address_of(MAC) is None
    with leases.open("a") as out:
        out.write(LINE[cut:])
    assert book.address_of(MAC) == "10.77.0.123"


def test_a_miss_in_a_settled_lease_file_answers_at_once(tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text(OTHER)
    an_hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(leases, ns=(an_hour_ago, an_hour_ago))
    book = LeaseBook(leases)
    started = time.monotonic()
    assert book.address_of(MAC) is None
    assert LeaseBook(tmp_path / "none yet").address_of(MAC) is None
    assert time.monotonic() - started < book.wait_s / 2


def test_a_miss_in_a_file_being_rewritten_gives_up_after_the_wait(tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text(OTHER)
    book = LeaseBook(leases, wait_s=0.5)
    os.utime(leases)  # just written: leases are changing
    started = time.monotonic()
    assert book.address_of(MAC) is None
    assert 0.5 <= time.monotonic() - started < 1.5
