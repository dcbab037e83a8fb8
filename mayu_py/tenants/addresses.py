"""A tenant network's addresses: the reserved ones (gateway, ingress) and each node's own.

The server assigns every node an address of the tenant's CIDR and stores it with the tenant
(`spec.network.addresses`, node name -> address, like the VNI it allocates): a node keeps its
address for as long as it exists (a replaced node comes back with it, adding masters shifts no
worker), a removed node's address is free again once nothing holds it, and an address still
held is never handed out. Nodes get addresses from `.FIRST_NODE_OFFSET` up; below that are the
reserved ones: `.GATEWAY_OFFSET` (the host's address on an isolated network) and
`.INGRESS_OFFSET`, the tenant's ingress address (`spec.network.ingress`), from which each
host's HAProxy reaches the tenant's masters on their API port and nothing else (the tenant's
nwfilter, mayu_py.agent.libvirt_xml). A tenant stored before addresses were (no
`addresses`) has the ones its nodes always had: `.FIRST_NODE_OFFSET + index`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence

from mayu_py.errors import Conflict

GATEWAY_OFFSET = 1  # the host's address on an isolated tenant network (libvirt's DHCP)
INGRESS_OFFSET = 2  # the tenant's ingress address
FIRST_NODE_OFFSET = 10  # nodes get .10, .11, ... unless those are held


def gateway_ip(cidr: str) -> str:
    return str(ipaddress.IPv4Network(cidr)[GATEWAY_OFFSET])


def default_ingress(cidr: str) -> str:
    return str(ipaddress.IPv4Network(cidr)[INGRESS_OFFSET])


def legacy_addresses(cidr: str, names: Sequence[str]) -> dict[str, str]:
    """What nodes of a tenant stored without addresses have: `.FIRST_NODE_OFFSET + index`."""
    net = ipaddress.IPv4Network(cidr)
    return {name: str(net[FIRST_NODE_OFFSET + i]) for i, name in enumerate(names)}


def check_addresses(
    cidr: str, names: Collection[str], addresses: Mapping[str, str], ingress: str | None
) -> dict[str, str]:
    """Field errors of addresses a document names: each a node's, inside the CIDR, not the
    network, broadcast, gateway or ingress address, none twice; the ingress address likewise."""
    net = ipaddress.IPv4Network(cidr)
    reserved = {net.network_address, net.broadcast_address, net[GATEWAY_OFFSET]}
    errors: dict[str, str] = {}
    if ingress is not None:
        where = "spec.network.ingress"
        address = _address(ingress, where, errors)
        if address is not None and (address not in net or address in reserved):
            errors[where] = f"{ingress} is not a usable address of {cidr}"
        reserved.add(address or net[INGRESS_OFFSET])
    else:
        reserved.add(net[INGRESS_OFFSET])
    seen: dict[ipaddress.IPv4Address, str] = {}
    for node, text in sorted(addresses.items()):
        where = f"spec.network.addresses.{node}"
        address = _address(text, where, errors) if node in names else None
        if address is None:
            continue  # not an address, or a removed node's (freed)
        elif address not in net or address in reserved:
            errors[where] = f"{text} is not a usable node address of {cidr}"
        elif address in seen:
            errors[where] = f"{text} is also {seen[address]}'s"
        else:
            seen[address] = node
    return errors


def _address(text: str, where: str, errors: dict[str, str]) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        errors[where] = f"not an IPv4 address: {text!r}"
        return None


def allocate(
    cidr: str,
    names: Sequence[str],
    kept: Mapping[str, str],
    held: Collection[str] = (),
    ingress: str | None = None,
) -> dict[str, str]:
    """Every node of `names` with an address: its own in `kept` (checked: `check_addresses`),
    else the lowest free one from `.FIRST_NODE_OFFSET` that no node of `kept` and nothing of
    `held` (addresses of removed nodes that still exist) has; Conflict when none is left.
    Entries of `kept` for nodes not in `names` are dropped: a removed node's address is free."""
    net = ipaddress.IPv4Network(cidr)
    kept = {name: kept[name] for name in names if name in kept}
    ingress = ingress or default_ingress(cidr)
    taken = {ipaddress.IPv4Address(a) for a in (*kept.values(), *held, ingress)}
    free = (a for a in net.hosts() if int(a) - int(net.network_address) >= FIRST_NODE_OFFSET)
    result = {}
    for name in names:
        if name in kept:
            result[name] = kept[name]
            continue
        address = next((a for a in free if a not in taken), None)
        if address is None:
            raise Conflict(
                "no free address left", {"spec.network.cidr": f"{cidr} has no address for {name}"}
            )
        result[name] = str(address)
    return result
