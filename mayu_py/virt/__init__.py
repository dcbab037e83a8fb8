"""libvirt, one layer below the agent and the lab, which both use it.

Modules: `host` (a reconnecting connection that translates libvirtError into MayuError, with
the handful of operations mayu needs), `ownership` (the marks that make a domain or network
mayu's, and `Ownership`, which narrows what one caller may delete), `cleanup` (remove every
object an `Ownership` covers through the same `LibvirtHost` deletions the agent uses).
"""

from __future__ import annotations
