"""Which underlay addresses may send VXLAN (UDP 4789) to this host: iptables chains per host
and tenant, built atomically with `iptables-restore --noflush`.

INPUT jumps UDP 4789 to the host's chain `MO-<tag>`, which sends the packets of each tenant's
VNI (matched in the VXLAN header with u32) to that tenant's chain `MO-<tag>-<vni hex>` (ACCEPT
from each of the tenant's enrolled peers, else RETURN) and ends in DROP: a host enrolled for
one tenant cannot inject frames into another. The chains are named after the host tag, so an
agent restarted after kill -9 finds exactly its own (`owned_vnis`) and no one else's.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable

from mayu_py.command import in_namespace, run

VXLAN_PORT = 4789
_WAIT = ["-w", "5"]  # wait for the xtables lock instead of failing
# u32: the 24-bit VNI of the VXLAN header (IP header length, then 8 UDP + 4 VXLAN bytes)
_VNI_AT = "0>>22&0x3C@12>>8"


class VxlanFirewall:
    """The VXLAN accept rules of one host (`tag`) in one network namespace (None: ours)."""

    def __init__(self, tag: str, netns: str | None = None) -> None:
        self.tag = tag
        self.netns = netns
        self.host_chain = f"MO-{tag}"
        self._tenant_chain = re.compile(rf"^-N {re.escape(self.host_chain)}-([0-9a-f]+)$")

    def tenant_chain(self, vni: int) -> str:
        return f"{self.host_chain}-{vni:x}"

    def owned_vnis(self) -> set[int]:
        """The VNIs that have a chain of this host."""
        found = set()
        for line in self._iptables("-S").stdout.splitlines():
            if match := self._tenant_chain.match(line):
                found.add(int(match.group(1), 16))
        return found

    def allow(self, vni: int, sources: Iterable[str]) -> None:
        """Accept the tenant's VXLAN from exactly `sources` (replacing what it had)."""
        chains = self.owned_vnis() | {vni}
        rules = [f"-A {self.tenant_chain(vni)} -s {s}/32 -j ACCEPT" for s in sorted(set(sources))]
        self._restore(chains, {vni: rules})
        self._jump_from_input()

    def forget(self, vni: int) -> None:
        """Remove the tenant's chain; the host chain and its INPUT jump go with the last."""
        chains = self.owned_vnis()
        if vni not in chains:
            return
        chains.discard(vni)
        if chains:
            self._restore(chains, {})
        else:
            self._drop_host_chain()
        self._iptables("-F", self.tenant_chain(vni))
        self._iptables("-X", self.tenant_chain(vni))

    def remove_all(self) -> None:
        """Every chain of this host and its INPUT jump (also a host chain left alone by a
        crash between two steps)."""
        for vni in self.owned_vnis():
            self.forget(vni)
        self._drop_host_chain()

    def _restore(self, vnis: set[int], tenant_rules: dict[int, list[str]]) -> None:
        """Rebuild the host chain (a jump per tenant, then DROP) and the tenant chains given
        rules, in one atomic iptables-restore."""
        lines = ["*filter", f":{self.host_chain} - [0:0]"]
        lines += [f":{self.tenant_chain(v)} - [0:0]" for v in sorted(tenant_rules)]
        for rules in tenant_rules.values():
            lines += rules
        lines += [
            f'-A {self.host_chain} -m u32 --u32 "{_VNI_AT}={v:#x}" -j {self.tenant_chain(v)}'
            for v in sorted(vnis)
        ]
        lines += [f"-A {self.host_chain} -j DROP", "COMMIT", ""]
        run(in_namespace(self.netns, ["iptables-restore", *_WAIT, "--noflush"]),
            input_text="\n".join(lines))  # fmt: skip

    def _input_jump(self) -> list[str]:
        return ["INPUT", "-p", "udp", "--dport", str(VXLAN_PORT), "-j", self.host_chain]

    def _jump_from_input(self) -> None:
        if self._iptables("-C", *self._input_jump(), check=False).returncode != 0:
            self._iptables("-I", *self._input_jump())

    def _drop_host_chain(self) -> None:
        while self._iptables("-D", *self._input_jump(), check=False).returncode == 0:
            pass
        self._iptables("-F", self.host_chain, check=False)
        self._iptables("-X", self.host_chain, check=False)

    def _iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(in_namespace(self.netns, ["iptables", *_WAIT, *args]), check=check)
