"""`mayu lab`: a rack in a box. qemu VMs PXE-boot from a real `mayu serve` (level 1), then the
lab's `mayu agent` runs demo tenant clusters as libvirt domains (level 2).

Everything lives inside the network namespace `mayu-lab` (bridge, taps, server, dnsmasq, VMs,
agent; with `--dhcp proxy` also `mayu-lab-site`, the site's own DHCP server), which has no
route out, so no lab packet can leave the machine. Modules: `topology` (names and addresses,
in one place), `netns` (namespaces, bridge, taps; running Python code inside a namespace),
`processes` (starting programs inside a namespace, recognising and stopping them by pid),
`site` (the server's config, with one group per machine, and the site DHCP server's),
`vm` (qemu command lines, the KVM probe), `fleet` (the VMs as processes), `watch` (what
happened during this run, the reboot policy, the outcome), `display` (tables and lines),
`state` (the state file that lets `status` and `down` work from another process),
`inventory` (the lab machines' records, which the lab owns), `tenants` (level 2: agent,
demo tenants, their libvirt cleanup through `mayu_py.virt`), `api` (the admin API from
inside the namespace), `runner` (up), `status`, `restart` (network-boot machines again),
`teardown` (down).
"""

from __future__ import annotations
