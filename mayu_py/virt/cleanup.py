"""Remove every libvirt domain and network an `Ownership` covers; one line per outcome.

It uses the agent's own deletions (`LibvirtHost.delete_domain`, `delete_network`), which check
ownership again right before they act. One object's failure is reported and the rest go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mayu_py.errors import MayuError
from mayu_py.virt.host import LibvirtHost
from mayu_py.virt.ownership import Ownership

log = logging.getLogger(__name__)


def remove_owned(host: LibvirtHost, owner: Ownership, what: str = "") -> list[str]:
    """Delete owner's domains, then owner's networks; `what` names them in the lines
    (e.g. "tenant ": "removed tenant VM demo-1-master-0")."""
    done: list[str] = []
    for dom in host.list_domains(owner.ns):
        if owner.owns_domain(dom.meta):
            done.append(_attempt(f"{what}VM {dom.name}", host.delete_domain, dom.name, owner))
    for net in host.list_networks():
        if owner.owns_network(net.facts):
            name = net.facts.name
            done.append(_attempt(f"{what}network {name}", host.delete_network, name, owner))
    return done


def _attempt(
    subject: str, delete: Callable[[str, Ownership], None], name: str, owner: Ownership
) -> str:
    try:
        delete(name, owner)
    except MayuError as exc:
        log.warning("could not remove %s: %s", subject, exc.message)
        return f"could not remove {subject}: {exc.message}"
    return f"removed {subject}"
