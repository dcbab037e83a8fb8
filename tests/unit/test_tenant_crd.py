"""The shipped CRD is a valid apiextensions.k8s.io/v1 object and agrees with the model."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mayu_py.tenants import ImageInfo, TenantCluster, parse_tenant
from mayu_py.tenants.resource import Condition, NodeStatus, RolloutStatus, TenantSpec

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "static_manifests/crds/tenantcluster.yaml").read_text())
EXAMPLE = ROOT / "docs" / "examples" / "tenant.yaml"


def schema() -> dict:
    return CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def design_example() -> dict:
    """The example of DESIGN section 3, shipped as docs/examples/tenant.yaml."""
    return yaml.safe_load(EXAMPLE.read_text())


def test_crd_is_valid_kubernetes() -> None:
    kubernetes_validate.validate(CRD, "1.37.0", strict=True)
    assert CRD["spec"]["group"] == "mayu.io"
    assert CRD["spec"]["names"]["kind"] == "TenantCluster"
    assert CRD["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_design_example_matches_schema_and_model() -> None:
    example = design_example()
    jsonschema.validate(example, schema())
    parse_tenant(example, {"lab": ImageInfo("lab")}, [])


def test_schema_rejects_what_the_model_rejects() -> None:
    example = design_example()
    for mutate in (
        lambda d: d["spec"].update(masters=[]),
        lambda d: d["spec"].update(bogus=1),
        lambda d: d["metadata"].update(name="Bad_Name"),
        lambda d: d["spec"]["masters"][0].update(memory="lots"),
    ):
        bad = copy.deepcopy(example)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema())


def test_status_of_the_model_validates() -> None:
    example = design_example()
    example["status"] = {
        "phase": "Provisioning",
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "", "message": ""}],
        "nodes": [{"name": "acme-master-0", "role": "master", "host": "h1", "state": "running",
                   "ip": "10.100.0.10",
                   "conditions": [{"type": "Ready", "status": "False", "reason": "Booting",
                                   "message": "", "lastTransitionTime": "2026-11-30T22:00:00Z"}]}],
        "rollout": {"node": "acme-master-0", "step": "booting", "message": "drained", "done": 0,
                    "total": 3, "revision": 2},
    }  # fmt: skip
    model = TenantCluster.model_validate(example)
    jsonschema.validate(model.model_dump(mode="json", exclude_none=True), schema())
    node = schema()["properties"]["status"]["properties"]["nodes"]["items"]["properties"]
    assert set(node) == set(NodeStatus.model_fields)
    assert node["conditions"] == schema()["properties"]["status"]["properties"]["conditions"]
    condition = node["conditions"]["items"]["properties"]
    assert set(condition) == set(Condition.model_fields)
    assert set(schema()["properties"]["spec"]["properties"]) == set(TenantSpec.model_fields)
    rollout = schema()["properties"]["status"]["properties"]["rollout"]["properties"]
    assert set(rollout) == set(RolloutStatus.model_fields)
