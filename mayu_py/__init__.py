"""mayu_py: from PXE boot to a self-hosted Kubernetes host layer, and tenant clusters in VMs."""

__version__ = "0.1.0"
