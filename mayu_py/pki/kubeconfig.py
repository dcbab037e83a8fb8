"""Kubeconfig files (YAML) with the CA and client credentials embedded as base64 data."""

from __future__ import annotations

import base64

import yaml

# libyaml's emitter when PyYAML was built with it: several times faster than the pure one.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode("ascii")).decode("ascii")


def render(
    *, cluster: str, server: str, ca_pem: str, user: str, certificate_pem: str, key_pem: str
) -> str:
    """A single-cluster, single-user kubeconfig whose current context is that pair."""
    context = f"{user}@{cluster}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(certificate_pem),
                    "client-key-data": _b64(key_pem),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    return yaml.dump(document, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)


def replace_credentials(text: str, certificate_pem: str, key_pem: str) -> str:
    """The same kubeconfig with every user's client certificate and key replaced."""
    document = yaml.safe_load(text)
    for entry in document["users"]:
        entry["user"]["client-certificate-data"] = _b64(certificate_pem)
        entry["user"]["client-key-data"] = _b64(key_pem)
    return yaml.dump(document, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
