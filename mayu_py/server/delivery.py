"""Delivering a machine's configuration inside its provisioning window, and its reports.

- `stub`: over plain HTTP, an Ignition config without any secret that merges the real one
  from the HTTPS listener, with the server CA pinned and the real config's SHA-512 named.
  The real config is rendered once per boot token and kept in the store, so the bytes the
  hash names are the bytes any worker (or replica) serves.
- `secret`: over HTTPS only, those exact bytes; spends the boot token and moves the machine
  to installing. The machine's new report credential (inside the config) becomes valid.
- `report`: phone-home events, with the boot token (inside the window, from the address it
  is bound to) or the machine's report credential (any time), each only for its own machine.

Every refusal looks the same whether the MAC is enrolled or not, so these endpoints cannot
be used to list the inventory; the reason is recorded for the operator.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mayu_py.bmc.records import BmcAction
from mayu_py.config import Settings
from mayu_py.errors import BadRequest, Conflict, Forbidden
from mayu_py.model import (
    REPORT_EVENTS,
    Event,
    Machine,
    MachineState,
    PendingConfig,
    canonical_mac,
    transition_allowed,
)
from mayu_py.server.addresses import same_address
from mayu_py.server.hosts import HostService, new_agent_token
from mayu_py.server.matching import match_group
from mayu_py.server.metrics import ServerMetrics
from mayu_py.server.power import PowerService
from mayu_py.server.provisioning import Provisioner
from mayu_py.server.scripts import url_mac
from mayu_py.server.tokens import new_token, token_hash, token_matches
from mayu_py.server.urls import ServerUrls
from mayu_py.store import Store, Tx

log = logging.getLogger(__name__)

IGNITION_SPEC = "3.3.0"
REFUSED = "invalid, expired or already used credentials"
# Reports that end the provisioning window (the boot token stops working for reports).
WINDOW_CLOSING_REPORTS = frozenset({"installed", "running", "failed"})


def _refused() -> Forbidden:
    return Forbidden(REFUSED)


class Delivery:
    """Stub, secret config and reports of machines inside (or after) their window."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        provisioner: Provisioner,
        hosts: HostService,
        server_ca_pem: str,
        power: PowerService | None = None,
        clock: Callable[[], float] = time.time,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.provisioner = provisioner
        self.hosts = hosts
        self.server_ca_pem = server_ca_pem
        self.power = power
        self.clock = clock
        self.metrics = metrics or ServerMetrics()

    # -- Ignition ---------------------------------------------------------------------------

    def stub(self, mac_raw: str, token: str | None, source: str | None, urls: ServerUrls) -> bytes:
        """The secret-free config served over HTTP that merges the real one over HTTPS."""
        machine, pending = self._pending(mac_raw, token, source, urls)
        ca = base64.b64encode(self.server_ca_pem.encode()).decode()
        stub = {
            "ignition": {
                "version": IGNITION_SPEC,
                "config": {
                    "merge": [
                        {
                            "source": f"{urls.https}/ignition?mac={url_mac(machine.mac)}"
                            f"&token={token}",
                            "verification": {"hash": f"sha512-{pending.sha512}"},
                        }
                    ]
                },
                "security": {
                    "tls": {
                        "certificateAuthorities": [
                            {"source": f"data:text/plain;charset=utf-8;base64,{ca}"}
                        ]
                    }
                },
            }
        }
        return json.dumps(stub, separators=(",", ":")).encode()

    def secret(
        self, mac_raw: str, token: str | None, source: str | None, urls: ServerUrls
    ) -> bytes:
        """The machine's real config (the bytes its stub names); spends the boot token.
        The common case is one transaction (on etcd: one read and the commit); when it
        serves nothing, `_pending` tells why (the refusal) or renders the config of a
        machine whose stub was never fetched, and the spend is tried once more."""
        mac = self._mac(mac_raw)
        body = self.store.atomically(lambda tx: self._spend(tx, mac, token, source))
        if body is None:
            self._pending(mac_raw, token, source, urls)
            body = self.store.atomically(lambda tx: self._spend(tx, mac, token, source))
        if body is None:
            raise self._refuse(mac, "ignition-refused", "boot token already spent", source)
        self.metrics.tokens_consumed.inc()
        return body

    def _spend(self, tx: Tx, mac: str, token: str | None, source: str | None) -> bytes | None:
        """Serve the pending config of the machine's current token and spend the token;
        None (and no write) unless the window, token and pending config all agree."""
        now = self.clock()
        current = tx.get_machine(mac)
        stored = tx.get_pending_config(mac)
        if current is None or stored is None or not self._window_ok(current, token, source, now):
            return None
        if stored.token_hash != current.token_hash:
            return None
        served = replace(
            current,
            token_consumed=True,
            ip=current.window_address,
            report_hash=stored.report_hash,
            state=MachineState.INSTALLING,
            updated=now,
        )
        tx.add_event(
            Event(
                current.id,
                now,
                "transition",
                "secret config served over HTTPS; boot token spent",
                source,
                str(current.state),
                str(MachineState.INSTALLING),
                {"sha512": stored.sha512},
            )
        )
        tx.delete_pending_config(current.id)
        tx.put_machine(served)
        self.hosts.issue_for_machine(tx, current.node_name, stored.agent_token_hash)
        return stored.body

    def _pending(
        self, mac_raw: str, token: str | None, source: str | None, urls: ServerUrls
    ) -> tuple[Machine, PendingConfig]:
        """The machine and the config rendered for its current token (rendered now if none)."""
        mac = self._mac(mac_raw)
        now = self.clock()
        machine, existing = self.store.machine_and_pending(mac)
        if machine is None:
            raise self._refuse(mac, "ignition-refused", "unknown machine", source)
        if not self._window_ok(machine, token, source, now):
            raise self._refuse(
                mac, "ignition-refused", self._why(machine, token, source, now), source
            )
        if existing is not None and existing.token_hash == machine.token_hash:
            return machine, existing
        group = match_group(self.settings.groups, machine.selector_view())
        if group is None or group.profile != machine.profile:
            raise self._refuse(
                mac, "ignition-refused", "machine no longer matches its group", source
            )
        credential, agent = new_token(), new_agent_token(machine.node_name)
        with self.metrics.render.labels("machine").time():
            body = self.provisioner.secret_config(
                machine, group, urls, credential, agent, self.server_ca_pem
            )
        rendered = PendingConfig(
            machine_id=mac,
            token_hash=machine.token_hash or "",
            body=body,
            sha512=hashlib.sha512(body).hexdigest(),
            report_hash=token_hash(credential),
            created=now,
            agent_token_hash=token_hash(agent),
        )

        def keep(tx: Tx) -> PendingConfig | None:
            current = tx.get_machine(mac)
            if current is None or current.token_hash != machine.token_hash:
                return None
            other = tx.get_pending_config(mac)
            if other is not None and other.token_hash == rendered.token_hash:
                return other  # another worker rendered first: serve the same bytes
            tx.put_pending_config(rendered)
            return rendered

        pending = self.store.atomically(keep)
        if pending is None:
            raise self._refuse(mac, "ignition-refused", "boot token replaced meanwhile", source)
        return machine, pending

    # -- reports ----------------------------------------------------------------------------

    def report(
        self,
        mac_raw: str,
        token: str | None,
        credential: str | None,
        event: str,
        details: dict[str, Any],
        source: str | None,
    ) -> Machine:
        """Apply a phone-home event of the machine the credential belongs to. `installed`
        after a reinstall that set PXE through the BMC queues "boot from disk" again."""
        mac = self._mac(mac_raw)
        if event not in REPORT_EVENTS:
            raise BadRequest(
                "unknown report event", {"event": event[:64], "allowed": sorted(REPORT_EVENTS)}
            )
        target = REPORT_EVENTS[event]

        queued: list[BmcAction] = []  # what the transaction queued for the BMC runner

        def txn(tx: Tx) -> tuple[Machine | None, str, MachineState | None]:
            now = self.clock()
            machine = tx.get_machine(mac)
            if machine is None:
                return None, "unknown machine", None
            # The boot token travels over plain HTTP: it reports only from the window's address.
            by_token = token is not None and self._window_ok(
                machine, token, source, now, spent_ok=True
            )
            by_credential = token_matches(credential, machine.report_hash)
            if not (by_token or by_credential):
                if self._repeated(machine, token, target, now):
                    return machine, "", machine.state  # its answer was lost: answer again
                return None, "report with invalid credentials", None
            if not transition_allowed(machine.state, target):
                tx.add_event(
                    Event(
                        mac,
                        now,
                        "transition-refused",
                        f"report {event}",
                        source,
                        str(machine.state),
                        str(target),
                        details,
                    )  # fmt: skip
                )
                return machine, "illegal", None
            moved = replace(machine, state=target, updated=now)
            if event in WINDOW_CLOSING_REPORTS:
                moved = moved.closed_window()
                tx.delete_pending_config(mac)
                if by_token:  # the spent token's hash stays: it only recognizes a repeat
                    moved = replace(moved, token_hash=machine.token_hash, token_consumed=True)
            via = "boot token" if by_token else "report credential"
            kind = "transition" if machine.state != target else "event"
            tx.add_event(
                Event(
                    mac,
                    now,
                    kind,
                    f"report {event} ({via})",
                    source,
                    str(machine.state),
                    str(target),
                    details,
                )  # fmt: skip
            )
            tx.put_machine(moved)
            if event == "installed" and self.power is not None:
                action = self.power.queue_disk_after_install(tx, mac, now)
                queued[:] = [action] if action else []
            return moved, "", machine.state

        machine, why, before = self.store.atomically(txn)
        if queued and self.power is not None:
            self.power.ring()
        if machine is None:
            raise self._refuse(mac, "report-refused", why, source)
        if why == "illegal":
            raise Conflict(
                f"illegal transition {machine.state} -> {target}",
                {"id": mac, "from": str(machine.state), "to": str(target)},
            )
        if target == MachineState.RUNNING and before != MachineState.RUNNING:
            self._provisioned(machine)
        return machine

    def _provisioned(self, machine: Machine) -> None:
        """Observe how long the machine took from its latest approval or reinstall (its last
        move to configured) to running."""
        started = next(
            (
                e.time
                for e in reversed(self.store.events(machine.id))
                if e.to_state == MachineState.CONFIGURED
            ),
            machine.created,
        )
        self.metrics.provisioning.observe(max(machine.updated - started, 0.0))

    # -- checks -----------------------------------------------------------------------------

    @staticmethod
    def _repeated(machine: Machine, token: str | None, target: MachineState, now: float) -> bool:
        """Is this the window-closing report the machine's token already made (the machine
        retried after the answer was lost, e.g. its server was killed)? It changes nothing;
        the token opens nothing else, since the window is closed."""
        return (
            token is not None
            and machine.state == target
            and machine.token_consumed
            and not machine.window_open(now)
            and token_matches(token, machine.token_hash)
        )

    def _window_ok(
        self,
        machine: Machine,
        token: str | None,
        source: str | None,
        now: float,
        spent_ok: bool = False,
    ) -> bool:
        """The token is the machine's, its window is open, it is unspent (unless spent_ok)
        and, when source is given, the request comes from the window's bound address."""
        return (
            machine.window_open(now)
            and token_matches(token, machine.token_hash)
            and (spent_ok or not machine.token_consumed)
            and (source is None or same_address(source, machine.window_address))
        )

    @staticmethod
    def _why(machine: Machine, token: str | None, source: str | None, now: float) -> str:
        if not machine.window_open(now):
            return "no provisioning window open"
        if not token_matches(token, machine.token_hash):
            return "wrong boot token"
        if machine.token_consumed:
            return "boot token already spent"
        return f"request from {source}, window bound to {machine.window_address}"

    @staticmethod
    def _mac(mac_raw: str) -> str:
        try:
            return canonical_mac(mac_raw)
        except BadRequest:
            raise _refused() from None

    def _refuse(self, mac: str, kind: str, why: str, source: str | None) -> Forbidden:
        """Record why (event of the machine, or an alert for an unknown MAC) and return the
        one refusal every caller sees."""
        now = self.clock()

        def record(tx: Tx) -> None:
            event = Event(mac, now, kind, why, source)
            if tx.get_machine(mac) is None:
                tx.add_alert(event)
            else:
                tx.add_event(event)

        self.store.atomically(record)
        self.metrics.tokens_refused.labels(kind.removesuffix("-refused")).inc()
        log.info("%s mac=%s source=%s: %s", kind, mac, source, why)
        return _refused()
