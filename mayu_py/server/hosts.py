"""Agent hosts' credentials: who may heartbeat, pull tenant nodes and read their Ignition.

An agent token is `<host>.<random>`, stored only as a hash, per host. It is minted inside an
enrolled machine's config when that config is served (origin `machine`), or by an operator's
`hosts approve` / `rotate-token` (origin `operator`, shown once). A heartbeat is accepted only
from a host whose credential is valid and that is either operator-approved or an enrolled
machine that is running. Revoking a host invalidates its token at once and re-places its
tenant nodes on other hosts.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace

from mayu_py.errors import Conflict, Forbidden, NotFound
from mayu_py.model import AgentCredential, Event, MachineState, clean_hostname
from mayu_py.server.tokens import token_hash, token_matches
from mayu_py.store import Store, Tx

MACHINE = "machine"
OPERATOR = "operator"


def new_agent_token(host: str) -> str:
    return f"{host}.{secrets.token_urlsafe(32)}"


class HostService:
    """Approve, rotate, revoke and authenticate agent hosts."""

    def __init__(
        self,
        store: Store,
        on_revoke: Callable[[Tx, str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.on_revoke = on_revoke  # re-places the host's tenant nodes
        self.clock = clock

    def authenticate(self, token: str) -> str | None:
        """The host a presented agent token belongs to, or None."""
        host, sep, _ = token.rpartition(".")
        if not sep or not host:
            return None
        credential = self.store.get_agent_credential(host)
        if credential is None or credential.revoked:
            return None
        return host if token_matches(token, credential.token_hash) else None

    def admit(self, host: str) -> None:
        """Forbidden unless `host` may heartbeat: operator-approved, or a running machine."""
        credential = self.store.get_agent_credential(host)
        if credential is None or credential.revoked:
            raise Forbidden("host is not approved", {"host": host})
        if credential.origin == OPERATOR:
            return
        machine = self.store.machine_named(host)
        if machine is None or machine.state != MachineState.RUNNING:
            state = machine.state if machine else "no machine"
            raise Forbidden(
                "an agent host must be a running, enrolled machine or approved by the operator",
                {"host": host, "machine": str(state)},
            )

    def approve(self, host: str, source: str | None, underlay: str = "") -> str:
        """Approve a host that is not an enrolled machine; returns its new token (shown once).
        `underlay` (an IP address, validated by the caller) is its enrolled VXLAN endpoint."""
        clean_hostname(host)

        def txn(tx: Tx) -> str:
            machine = tx.machine_named(host)
            if machine is not None:
                raise Conflict(
                    "a machine has this hostname: its agent token comes with its config",
                    {"host": host, "machine": machine.id},
                )
            return self._mint(tx, host, OPERATOR, "approved by the operator", source, underlay)

        return self.store.atomically(txn)

    def rotate(self, host: str, source: str | None) -> str:
        """A new token for a known host; the old one stops working at once."""

        def txn(tx: Tx) -> str:
            current = self._existing(tx, host)
            return self._mint(tx, host, current.origin, "token rotated", source, current.underlay)

        return self.store.atomically(txn)

    def revoke(self, host: str, source: str | None) -> AgentCredential:
        """Revoke a host's token and re-place its tenant nodes on other hosts."""

        def txn(tx: Tx) -> AgentCredential:
            return self._revoke(tx, self._existing(tx, host), "operator revoked the agent token",
                                source)  # fmt: skip

        return self.store.atomically(txn)

    def revoke_deleted_machine(self, tx: Tx, host: str, source: str | None) -> bool:
        """Inside the transaction that deletes a machine: revoke the agent token its config
        carried (True when there was one still valid)."""
        credential = tx.get_agent_credential(host)
        if credential is None or credential.revoked or credential.origin != MACHINE:
            return False
        self._revoke(tx, credential, "its machine was deleted", source)
        return True

    def _revoke(
        self, tx: Tx, credential: AgentCredential, cause: str, source: str | None
    ) -> AgentCredential:
        revoked = replace(credential, revoked=True, updated=self.clock())
        tx.put_agent_credential(revoked)
        tx.delete_host(credential.host)
        self.on_revoke(tx, credential.host)
        self._record(tx, credential.host, "host-revoked", cause, source)
        return revoked

    def issue_for_machine(self, tx: Tx, host: str, hashed: str) -> None:
        """Inside the transaction that serves a machine its config: the agent token in that
        config (given by its hash) becomes the host's one valid token."""
        now = self.clock()
        tx.put_agent_credential(AgentCredential(host, hashed, MACHINE, False, now, now))

    def list(self) -> list[AgentCredential]:
        return self.store.list_agent_credentials()

    def _mint(
        self, tx: Tx, host: str, origin: str, cause: str, source: str | None, underlay: str
    ) -> str:
        now = self.clock()
        token = new_agent_token(host)
        previous = tx.get_agent_credential(host)
        created = previous.created if previous else now
        tx.put_agent_credential(
            AgentCredential(host, token_hash(token), origin, False, created, now, underlay)
        )
        self._record(tx, host, "host-token", cause, source)
        return token

    @staticmethod
    def enrolled_underlay(store: Store | Tx, host: str) -> str | None:
        """The address other hosts accept `host`'s VXLAN from, taken from its enrolled record
        (never from its heartbeats): the underlay an operator approved it with, or the address
        an enrolled machine fetched its config from (`Machine.ip`). None for a revoked or
        unknown host or one approved without an underlay."""
        credential = store.get_agent_credential(host)
        if credential is None or credential.revoked:
            return None
        if credential.origin == OPERATOR:
            return credential.underlay or None
        machine = store.machine_named(host)
        return machine.ip if machine is not None and machine.ip else None

    @staticmethod
    def _existing(tx: Tx, host: str) -> AgentCredential:
        credential = tx.get_agent_credential(host)
        if credential is None:
            raise NotFound("no such host", {"host": host})
        return credential

    def _record(self, tx: Tx, host: str, kind: str, cause: str, source: str | None) -> None:
        machine = tx.machine_named(host)
        event = Event(machine.id if machine else host, self.clock(), kind, cause, source)
        if machine is not None:
            tx.add_event(event)
        else:
            tx.add_alert(event)
