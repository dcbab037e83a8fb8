"""The node agent: reconciles the tenant VMs a host should run with what libvirt has.

Layers: `source` (desired state from the server), `observe` (actual state from libvirt and the
state directory), `plan` (pure diff -> actions), `apply` (idempotent actions through the
`host.LibvirtHost` wrapper), `loop` (the level-triggered `Agent`). The CLI calls `run_agent`.
"""
