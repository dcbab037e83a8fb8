"""The etcd key layout (docs/store.md): every key under one prefix, printable ASCII, each
name segment percent-encoded (so a `/` in a name cannot reach another key), times as
zero-padded microseconds and sequence numbers as zero-padded integers (key order is time or
sequence order, which etcd's sorted ranges use)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from mayu_py.model import Machine, MachineState
from mayu_py.store.etcd_gateway import prefix_end

Range = tuple[str, str]
_SAFE = "-._~:@"
_NOTHING_TO_QUOTE = re.compile(r"[A-Za-z0-9\-._~:@]*")


def segment(name: str) -> str:
    if _NOTHING_TO_QUOTE.fullmatch(name):  # MACs, DNS names, addresses: the usual case
        return name
    return quote(name, safe=_SAFE)


def stamp(seconds: float) -> str:
    """A time as a key segment: microseconds, 20 digits (sorts as numbers do)."""
    return f"{max(0, round(seconds * 1_000_000)):020d}"


def number(value: int) -> str:
    return f"{value:020d}"


def last_segment(key: str) -> str:
    """The name at the end of an index key (the machine id)."""
    return unquote(key.rsplit("/", 1)[1])


@dataclass(frozen=True)
class KeyLayout:
    """Every key the etcd backend uses, under `prefix` (e.g. `/mayu/`)."""

    prefix: str

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def under(self, *parts: str) -> Range:
        """Every key below the folder parts/ (etcd's prefix range)."""
        start = self.key(*parts, "")
        return start, prefix_end(start)

    @property
    def schema(self) -> str:
        return self.key("schema")

    @property
    def probe(self) -> str:
        return self.key("probe")

    # -- machines and what hangs off them ---------------------------------------------------

    def machine(self, machine_id: str) -> str:
        return self.key("machines", segment(machine_id))

    @property
    def machines(self) -> Range:
        return self.under("machines")

    def machine_data(self, machine_id: str) -> Range:
        """The pending config, event counter and events of one machine."""
        return self.under("machine-data", segment(machine_id))

    def pending(self, machine_id: str) -> str:
        return self.key("machine-data", segment(machine_id), "pending")

    def event_seq(self, machine_id: str) -> str:
        return self.key("machine-data", segment(machine_id), "seq")

    def event(self, machine_id: str, number_: int, refusal: bool = False) -> str:
        """An event by its number in its budget: refusals (`events/r/<n>`, which sort after
        every other event key) are counted and trimmed apart from the rest (`events/<n>`)."""
        budget = ("r", number(number_)) if refusal else (number(number_),)
        return self.key("machine-data", segment(machine_id), "events", *budget)

    def events(self, machine_id: str) -> Range:
        """Every event of a machine, both budgets."""
        return self.under("machine-data", segment(machine_id), "events")

    def events_before(self, machine_id: str, number_: int, refusal: bool = False) -> Range:
        """The events of one budget numbered below `number_`."""
        start = self.event(machine_id, 0, refusal)
        return start, self.event(machine_id, number_, refusal)

    # -- alerts and named records -----------------------------------------------------------

    def alert(self, micros: int, txid: str, position: int) -> str:
        return self.key("alerts", f"{micros:020d}-{txid}-{position:03d}")

    @property
    def alerts(self) -> Range:
        return self.under("alerts")

    def record(self, kind: str, name: str) -> str:
        """One named record of a kind (`agents`, `hosts`, `tenants`, ...)."""
        return self.key(kind, segment(name))

    def records(self, kind: str) -> Range:
        return self.under(kind)

    # -- secondary indexes of machines ------------------------------------------------------

    def hostname(self, hostname: str) -> str:
        return self.key("index", "hostname", segment(hostname))

    def role(self, role: str) -> Range:
        return self.under("index", "role", segment(role))

    def windows_until(self, now: float) -> Range:
        """Window index keys of windows expiring at or before `now`."""
        start = self.under("index", "window")[0]
        return start, self.key("index", "window", stamp(now)) + "0"  # '0' sorts after '/'

    def created_after(self, since: float, source: str | None) -> Range:
        """Registration index keys of machines created after `since` (from `source`)."""
        parts = ("index", "created") if source is None else ("index", "source", segment(source))
        start = self.key(*parts, stamp(since)) + "0"
        return start, self.under(*parts)[1]

    def discovered_before(self, before: float) -> Range:
        return self.under("index", "discovered")[0], self.key("index", "discovered", stamp(before))

    # -- full DHCP: the leader running it and the leases it handed out ----------------------

    @property
    def dhcp_leader(self) -> str:
        """Held, under an etcd lease, by the replica running full DHCP (docs/ha.md)."""
        return self.key("dhcp", "leader")

    def dhcp_lease(self, mac: str) -> str:
        return self.key("dhcp", "leases", segment(mac))

    @property
    def dhcp_leases(self) -> Range:
        return self.under("dhcp", "leases")

    # -- BMCs and BMC actions ---------------------------------------------------------------

    def bmc(self, machine_id: str) -> str:
        return self.key("bmcs", segment(machine_id))

    @property
    def bmcs(self) -> Range:
        return self.under("bmcs")

    @property
    def actions(self) -> Range:
        return self.under("bmc-actions")

    @property
    def action_seq(self) -> str:
        return self.key("bmc-action-seq")

    def action(self, action_id: int) -> str:
        return self.key("bmc-actions", number(action_id))

    def open_action(self, action_id: int) -> str:
        return self.key("index", "open-action", number(action_id))

    @property
    def open_actions(self) -> Range:
        return self.under("index", "open-action")

    def machine_action(self, machine_id: str, action_id: int) -> str:
        return self.key("index", "machine-action", segment(machine_id), number(action_id))

    def machine_actions(self, machine_id: str) -> Range:
        return self.under("index", "machine-action", segment(machine_id))

    def machine_index(self, machine: Machine | None, has_bmc: bool = False) -> dict[str, str]:
        """The index keys a machine record implies, each with the machine id as data. A
        discovered machine with a BMC is left out of the discovered index: the expiry sweep
        never forgets a machine an operator registered a BMC for."""
        if machine is None:
            return {}
        mid, keys = segment(machine.id), []
        if machine.hostname:
            keys.append(self.hostname(machine.hostname))
        if machine.role:
            keys.append(self.key("index", "role", segment(machine.role), mid))
        if machine.window_expires is not None:
            keys.append(self.key("index", "window", stamp(machine.window_expires), mid))
        keys.append(self.key("index", "created", stamp(machine.created), mid))
        if machine.registered_from is not None:
            source = segment(machine.registered_from)
            keys.append(self.key("index", "source", source, stamp(machine.created), mid))
        if machine.state == MachineState.DISCOVERED and not has_bmc:
            keys.append(self.key("index", "discovered", stamp(machine.updated), mid))
        return dict.fromkeys(keys, machine.id)
