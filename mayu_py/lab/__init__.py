"""`mayu lab`: a rack in a box. qemu VMs PXE-boot from a real `mayu serve --dhcp full`.

Everything lives inside the network namespace `mayu-lab` (bridge, taps, server, dnsmasq,
VMs), which has no route out, so no lab packet can leave the machine. Modules: `topology`
(names and addresses, in one place), `netns` (namespace, bridge, taps; running code inside
the namespace), `vm` (qemu command lines, the KVM probe), `state` (the state file that lets
`status` and `down` work from another process), `runner` (up/status/down).
"""

from __future__ import annotations
