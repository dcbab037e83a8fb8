"""The node agent: reconciles the tenant VMs a host should run with what libvirt has.

Desired state comes from a `source.DesiredSource`: `source.ApiSource` (the mayu server's admin
API through mayu_py.api_client, with an ETag watch) or `kube_source.KubernetesSource`
(TenantCluster objects; renders Ignition locally with mayu_py.tenants.ignition). Nodes are
`tenants.TenantNode`s; `desired` derives one libvirt network per tenant. `actual.observe` reads
what libvirt and the state directory (`statedir`) hold, `plan` is the pure diff to actions,
`apply` carries them out idempotently through the libvirt wrapper (`libvirt_xml` builds the
XML, `images` the base images, `probe` picks kvm or qemu), `readiness` reads the guests'
serial logs, and `loop` runs the level-triggered `Agent`. The CLI builds a source and an
`AgentOptions` and calls `loop.run_agent(options, source)`.
"""
