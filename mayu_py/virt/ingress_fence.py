"""Keeps each tenant's ingress address local to one host's side of the tenant's VXLAN overlay:
nftables bridge-family rules drop every frame to or from it at the tenant's VXLAN device, both
ways (ARP whose sender or target address it is, IPv4 whose source or destination it is).

Why one ingress address per tenant network is right although several hosts hold it: each
host's HAProxy routes only to the masters among its own desired nodes (mayu_py.agent.ingress),
which sit on its own side of the overlay, behind the same bridge as its ingress address. So a
host's ingress never needs the VXLAN, and fencing the address off the tunnels turns one L2
segment with N copies of an address (ARP across hosts: a master on host B could resolve the
address to host A's bridge and answer A for B's connections) into N host-local copies, each
answering only its own side. Masters keep one filter parameter (the address), one per tenant.
IPv6 carries no copy of it (the ingress is IPv4; the bridges' link-local addresses come from
their own MACs), so neighbour discovery needs no rule.

One table `bridge mayu_<host tag>` in the overlay's network namespace (None: the caller's)
holds, per tenant, the rules of its VXLAN device, tagged by comment `<device> <address> <kind>`
so the table reads back as {device: address}. It is rebuilt in one atomic `nft -j` batch when
it differs from the wanted one and deleted when no tenant wants it: what a host owns is found
by its tag, so an agent restarted after kill -9 keeps or removes it like the overlay's devices.
The rules match device names, not indexes: they may be laid before the device exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from mayu_py.command import in_namespace, run
from mayu_py.errors import CommandError

Rule = tuple[str, str, str, str]  # chain, VXLAN device, ingress address, kind (_MATCHES)
_PRIORITY = -200  # the bridge family's filter priority
# chain: (its hook, the meta key naming the VXLAN device in it)
_CHAINS = {"in": ("prerouting", "iifname"), "out": ("postrouting", "oifname")}
# kind: (protocol, field) of the payload holding the ingress address
_MATCHES = {
    "arp-sender": ("arp", "saddr ip"),
    "arp-target": ("arp", "daddr ip"),
    "ip-source": ("ip", "saddr"),
    "ip-destination": ("ip", "daddr"),
}


class IngressFence:
    """The ingress-address rules of one host (`tag`) in one network namespace (None: ours)."""

    def __init__(self, tag: str, netns: str | None = None) -> None:
        self.table = f"mayu_{tag}"
        self.netns = netns

    def current(self, rules: set[Rule] | None = None) -> dict[str, str]:
        """{VXLAN device: ingress address} the table fences now (empty: no table), from
        `rules` when the caller has just read them (`rules()`)."""
        rules = self.rules() if rules is None else rules
        return {device: address for _chain, device, address, _kind in rules}

    def fence(self, device: str, address: str | None) -> None:
        """Fence `address` (None: nothing) off `device`, the other devices as they are."""
        have = self.rules()
        wanted = {d: a for _chain, d, a, _kind in have if d != device}
        if address is not None:
            wanted[device] = address
        self._make(wanted, have)

    def set_all(self, wanted: dict[str, str], have: set[Rule] | None = None) -> None:
        """Exactly these {VXLAN device: ingress address}: nothing when `have` (the rules as
        last read; None: read them now) already are, else one atomic batch (or the table's
        deletion when nothing is wanted)."""
        self._make(wanted, self.rules() if have is None else have)

    def _make(self, wanted: dict[str, str], have: set[Rule]) -> None:
        if have == set(_rule_keys(wanted)):
            return
        if not wanted:
            self._nft({"delete": {"table": self._table()}})
            return
        commands: list[dict[str, object]] = [
            {"add": {"table": self._table()}},
            {"flush": {"table": self._table()}},
        ]
        for chain, (hook, _key) in _CHAINS.items():
            commands.append({"add": {"chain": self._chain(chain, hook)}})
        for chain, device, address, kind in _rule_keys(wanted):
            commands.append({"add": {"rule": self._rule(chain, device, address, kind)}})
        self._nft(*commands)

    def _table(self) -> dict[str, str]:
        return {"family": "bridge", "name": self.table}

    def _chain(self, name: str, hook: str) -> dict[str, object]:
        return {"family": "bridge", "table": self.table, "name": name, "type": "filter",
                "hook": hook, "prio": _PRIORITY, "policy": "accept"}  # fmt: skip

    def _rule(self, chain: str, device: str, address: str, kind: str) -> dict[str, object]:
        protocol, field = _MATCHES[kind]
        expr = [
            _match({"meta": {"key": _CHAINS[chain][1]}}, device),
            _match({"payload": {"protocol": protocol, "field": field}}, address),
            {"drop": None},
        ]
        return {"family": "bridge", "table": self.table, "chain": chain,
                "comment": f"{device} {address} {kind}", "expr": expr}  # fmt: skip

    def rules(self) -> set[Rule]:
        """(chain, device, address, kind) of each rule of the table, from its comment."""
        argv = in_namespace(self.netns, ["nft", "-j", "list", "table", "bridge", self.table])
        proc = run(argv, check=False)
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return set()
            raise CommandError(argv, proc.returncode, proc.stderr)
        found = set()
        for item in json.loads(proc.stdout)["nftables"]:
            rule = item.get("rule")
            if rule and len(words := str(rule.get("comment", "")).split()) == 3:
                device, address, kind = words
                found.add((str(rule["chain"]), device, address, kind))
        return found

    def _nft(self, *commands: dict[str, object]) -> None:
        batch = json.dumps({"nftables": list(commands)})
        run(in_namespace(self.netns, ["nft", "-j", "-f", "-"]), input_text=batch)


def _match(left: dict[str, object], right: str) -> dict[str, object]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _rule_keys(wanted: dict[str, str]) -> Iterator[tuple[str, str, str, str]]:
    for device, address in sorted(wanted.items()):
        for chain in _CHAINS:
            for kind in _MATCHES:
                yield chain, device, address, kind
