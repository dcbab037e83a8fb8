"""The server's boot-plane, admin and BMC power tests, in-process (Flask test client), on the
etcd backend against a real 3-member cluster: the same assertions as on SQLite in
tests/unit/test_server_boot.py and tests/unit/test_power_api.py, plus a discovery sweep of
more stale records than one etcd transaction may hold."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from mayu_py.lab.etcd import EtcdCluster
from tests.support.flask_app import AUTH, Machine, make_app, set_clock
from tests.unit.test_power_api import (  # noqa: F401  (collected here, on etcd)
    fleet,
    test_bmc_before_first_boot_events_carry_over_and_delete_forgets_the_bmc,
    test_late_actions_expire_and_interrupted_ones_fail_on_restart,
    test_one_action_per_machine_at_a_time_and_a_bounded_pool,
    test_power_actions_are_202_then_acknowledged_events,
    test_reinstall_sets_pxe_cycles_then_disk_again_once_installed,
    test_reinstall_with_a_dead_bmc_keeps_the_record_consistent_and_retries,
)
from tests.unit.test_server_boot import (  # noqa: F401  (collected here, on etcd)
    test_another_identity_for_a_known_mac_is_recorded_not_applied,
    test_approved_machine_gets_installer_with_token,
    test_health_and_ready,
    test_installed_machine_boots_its_disk_with_no_token_and_no_write,
    test_maintenance_revokes_the_outstanding_token,
    test_patch_is_all_or_nothing_and_hostnames_are_unique,
    test_refusals_look_the_same_for_known_and_unknown_machines,
    test_reinstall_opens_exactly_one_new_window,
    test_reports_with_token_then_with_the_machines_own_credential,
    test_same_address_may_boot_again_inside_the_window,
    test_stub_has_no_secret_and_merges_the_exact_secret_over_https,
    test_token_is_bound_to_the_address_that_asked,
    test_unknown_machines_are_discovered_without_role_or_token,
    test_window_that_runs_out_fails_the_machine,
)

pytestmark = pytest.mark.peer


def _on_etcd(
    cluster: EtcdCluster, more: dict[tuple[str, ...], Any] | None = None
) -> dict[tuple[str, ...], Any]:
    return {("store", "url"): cluster.url(f"/mayu-test-{uuid.uuid4().hex[:8]}/"), **(more or {})}


@pytest.fixture
def client(tmp_path: Path, etcd_cluster: EtcdCluster) -> Iterator[FlaskClient]:
    yield make_app(tmp_path, _on_etcd(etcd_cluster)).test_client()


def test_discovery_sweeps_stale_records_in_bounded_transactions(
    tmp_path: Path, etcd_cluster: EtcdCluster
) -> None:
    """25 stale discovered records: each new discovery sweeps a bounded batch in its own
    transaction (which stays under etcd's default --max-txn-ops of 128), until none is left."""
    discovery = {"per_source_per_minute": 100, "per_minute": 1000, "ttl_seconds": 600}
    overrides = _on_etcd(etcd_cluster, {("server", "discovery"): discovery})
    client = make_app(tmp_path, overrides).test_client()
    now = [1_000_000.0]
    set_clock(client, lambda: now[0])
    for i in range(25):
        assert Machine(client, f"52-54-00-00-04-{i:02x}").ipxe()[0] == 200
    now[0] += 601
    remaining = []
    for i in range(4):
        assert Machine(client, f"52-54-00-00-05-{i:02x}").ipxe()[0] == 200
        items = client.get("/api/v1/machines", headers=AUTH).get_json()["items"]
        remaining.append(sum(1 for m in items if m["id"].startswith("52:54:00:00:04")))
    assert remaining[0] < 25 and remaining[-1] == 0
    assert remaining == sorted(remaining, reverse=True)
