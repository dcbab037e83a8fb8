"""dnsmasq's lease changes as the lease script journals them, read back in order, and the lease
file a new DHCP leader writes from the store's leases (docs/ha.md)."""

from __future__ import annotations

from pathlib import Path

from mayu_py.dhcp import read_leases
from mayu_py.dhcp.lease_journal import LeaseJournal, write_lease_script
from mayu_py.dhcp.leases import Lease, LeaseChange, lease_file_text, parse_change
from tests.unit.test_dhcp_conf import full, render


def test_the_lease_script_appends_to_the_journal_it_names(tmp_path: Path) -> None:
    journal = tmp_path / "odd dir" / "lease-changes"
    script = write_lease_script(tmp_path / "lease-script", journal)
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n") and script.stat().st_mode & 0o777 == 0o755
    assert f">> '{journal}'" in text  # quoted for the shell
    assert '"${DNSMASQ_LEASE_EXPIRES:-0}"' in text and '"${4:-*}"' in text


def test_journal_reads_complete_new_lines_once(tmp_path: Path) -> None:
    journal = LeaseJournal(tmp_path / "lease-changes")
    assert journal.read_new() == []
    with journal.path.open("a") as out:
        out.write("add 02:5D:00:00:00:01 10.77.0.150 1795617250 node1 01:02:5d:00:00:00:01\n")
        out.write("tftp 1234 10.77.0.150 /undionly.kpxe * *\n")  # not a lease change
        out.write("add 00:01:00:01:2c fd77::10 1795617250 * *\n")  # DHCPv6: not ours
        out.write("del 02:5d:00:00:00:02 10.77.0.151 0 * *\nold 02:5d:00:00:00:03 10.77.0")
    first = journal.read_new()
    assert first == [
        LeaseChange(
            "add",
            Lease("02:5d:00:00:00:01", "10.77.0.150", 1795617250, "node1", "01:02:5d:00:00:00:01"),
        ),
        LeaseChange("del", Lease("02:5d:00:00:00:02", "10.77.0.151", 0)),
    ]
    with journal.path.open("a") as out:
        out.write(".152 1795617300 * *\n")  # the torn line completed
    assert journal.read_new() == [
        LeaseChange("old", Lease("02:5d:00:00:00:03", "10.77.0.152", 1795617300))
    ]
    assert journal.read_new() == []
    journal.reset()
    assert not journal.path.exists() and journal.read_new() == []


def test_parse_change_refuses_what_is_not_a_v4_lease_change() -> None:
    for line in ("", "add", "add zz:zz 10.0.0.1 1 * *", "add 02:00:00:00:00:01 10.0.0.1 soon * *"):
        assert parse_change(line) is None


def test_lease_file_from_the_store_keeps_unexpired_leases_dnsmasq_reads(tmp_path: Path) -> None:
    leases = [
        Lease("02:5d:00:00:00:02", "10.77.0.151", 2000, "node2", "*"),
        Lease("02:5d:00:00:00:01", "10.77.0.150", 0),  # infinite
        Lease("02:5d:00:00:00:09", "10.77.0.159", 999),  # expired
    ]
    text = lease_file_text(leases, now=1000)
    assert text == (
        "0 02:5d:00:00:00:01 10.77.0.150 * *\n2000 02:5d:00:00:00:02 10.77.0.151 node2 *\n"
    )
    (tmp_path / "leases").write_text(text)
    assert read_leases(tmp_path / "leases") == {
        "02:5d:00:00:00:01": "10.77.0.150",
        "02:5d:00:00:00:02": "10.77.0.151",
    }


def test_full_mode_runs_the_lease_script_on_renewals_too() -> None:
    lines = render(full(), lease_script=Path("/var/lib/mayu/dhcp/lease-script"))
    assert "dhcp-script=/var/lib/mayu/dhcp/lease-script" in lines
    assert "script-on-renewal" in lines
    assert not any(line.startswith("dhcp-script") for line in render(full()))
