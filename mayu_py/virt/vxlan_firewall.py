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
        chain = re.escape(self.host_chain)
        self._declared = re.compile(rf"^-N {chain}-([0-9a-f]+)$")
        self._accept = re.compile(rf"^-A {chain}-([0-9a-f]+) -s ([0-9.]+)/32 -j ACCEPT$")
        self._jump = re.compile(rf"^-A {chain} .*-j {chain}-([0-9a-f]+)$")

    def tenant_chain(self, vni: int) -> str:
        return f"{self.host_chain}-{vni:x}"

    def owned_vnis(self) -> set[int]:
        """The VNIs that have a chain of this host."""
        return set(self._current()[0])

    def allow(self, vni: int, sources: Iterable[str]) -> None:
        """Accept the tenant's VXLAN from exactly `sources` (replacing what it had)."""
        wanted = self._current()[0]
        wanted[vni] = set(sources)
        self.set_all(wanted)

    def forget(self, vni: int) -> None:
        """Remove the tenant's chain; the host chain and its INPUT jump go with the last."""
        wanted = self._current()[0]
        if wanted.pop(vni, None) is not None:
            self.set_all(wanted)

    def set_all(self, wanted: dict[int, set[str]]) -> None:
        """Exactly these tenants' chains, each accepting from its sources; one iptables call
        when nothing changes, else one atomic iptables-restore and the stale chains' removal."""
        if not wanted:
            self.remove_all()
            return
        have, jumps, ends_in_drop = self._current()
        if have == wanted and jumps == set(wanted) and ends_in_drop:
            self._jump_from_input()
            return
        self._restore(wanted)
        self._jump_from_input()
        for vni in set(have) - set(wanted):
            self._iptables("-F", self.tenant_chain(vni))
            self._iptables("-X", self.tenant_chain(vni))

    def remove_all(self) -> None:
        """Every chain of this host and its INPUT jump (also a host chain left alone by a
        crash between two steps)."""
        while self._iptables("-D", *self._input_jump(), check=False).returncode == 0:
            pass
        self._iptables("-F", self.host_chain, check=False)
        self._iptables("-X", self.host_chain, check=False)
        for vni in self._current()[0]:
            self._iptables("-F", self.tenant_chain(vni))
            self._iptables("-X", self.tenant_chain(vni))

    def _current(self) -> tuple[dict[int, set[str]], set[int], bool]:
        """From `iptables -S`: {vni: sources} of this host's tenant chains, the VNIs its host
        chain jumps to, and whether the host chain ends in DROP."""
        chains: dict[int, set[str]] = {}
        jumps: set[int] = set()
        last = ""
        for line in self._iptables("-S").stdout.splitlines():
            if match := self._declared.match(line):
                chains.setdefault(int(match.group(1), 16), set())
            elif match := self._accept.match(line):
                chains.setdefault(int(match.group(1), 16), set()).add(match.group(2))
            elif match := self._jump.match(line):
                jumps.add(int(match.group(1), 16))
            if line.startswith(f"-A {self.host_chain} "):
                last = line
        return chains, jumps, last == f"-A {self.host_chain} -j DROP"

    def _restore(self, wanted: dict[int, set[str]]) -> None:
        """Rebuild the host chain (a jump per tenant's VNI, then DROP) and the wanted tenant
        chains in one atomic iptables-restore."""
        lines = ["*filter", f":{self.host_chain} - [0:0]"]
        lines += [f":{self.tenant_chain(v)} - [0:0]" for v in sorted(wanted)]
        for vni, sources in sorted(wanted.items()):
            chain = self.tenant_chain(vni)
            lines += [f"-A {chain} -s {s}/32 -j ACCEPT" for s in sorted(sources)]
        lines += [
            f'-A {self.host_chain} -m u32 --u32 "{_VNI_AT}={v:#x}" -j {self.tenant_chain(v)}'
            for v in sorted(wanted)
        ]
        lines += [f"-A {self.host_chain} -j DROP", "COMMIT", ""]
        run(in_namespace(self.netns, ["iptables-restore", *_WAIT, "--noflush"]),
            input_text="\n".join(lines))  # fmt: skip

    def _input_jump(self) -> list[str]:
        return ["INPUT", "-p", "udp", "--dport", str(VXLAN_PORT), "-j", self.host_chain]

    def _jump_from_input(self) -> None:
        if self._iptables("-C", *self._input_jump(), check=False).returncode != 0:
            self._iptables("-I", *self._input_jump())

    def _iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(in_namespace(self.netns, ["iptables", *_WAIT, *args]), check=check)
