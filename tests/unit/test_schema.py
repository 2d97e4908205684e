"""One source of truth: crds/ is generated from schema.py, and the model covers it all."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from constructs_lib import OrasCacheSpec, Secrets, Storage, Toleration, schema
from constructs_lib.validation import CEL_TWINS
from sync.render.synth import crd_yaml

REPO = Path(__file__).resolve().parents[2]


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key, child in node.get("properties", {}).items():
        out += walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def test_committed_crd_is_generated_from_the_schema() -> None:
    assert (REPO / "crds/orascache.yaml").read_text() == crd_yaml(), "run `make synth`"


def test_crd_is_a_valid_v1_crd() -> None:
    kubernetes_validate.validate(schema.crd(), "1.37.0", strict=True)


def test_every_field_is_described_and_typed() -> None:
    """Structural schema: every node has a type (or int-or-string), every field a description."""
    root = schema.openapi_schema()
    for path, node in walk(root):
        if path == ".metadata":
            continue
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        assert not ("properties" in node and "additionalProperties" in node), path
        is_field = not path.endswith(("[]", "{}"))
        if is_field and not path.startswith(".status.conditions[]"):
            assert node.get("description"), f"{path} has no description"


def test_every_cel_rule_has_a_python_twin() -> None:
    rules = [r["rule"] for _, n in walk(schema.openapi_schema())
             for r in n.get("x-kubernetes-validations", [])]
    assert set(rules) == set(CEL_TWINS)  # a rule may guard several fields (requests, limits)


def test_model_fields_match_schema_fields() -> None:
    """Every spec field in the CRD has a typed field in the model, and no more."""
    pairs = [
        (OrasCacheSpec, schema.SPEC_SCHEMA),
        (Secrets, schema.SPEC_SCHEMA["properties"]["secrets"]),
        (Storage, schema.SPEC_SCHEMA["properties"]["storage"]),
        (Toleration, schema.SPEC_SCHEMA["properties"]["tolerations"]["items"]),
    ]
    for model, node in pairs:
        model_fields = {camel(f.name) for f in dataclasses.fields(model)}
        rename = {"orasEnv", "registryHttp"}  # Secrets mirrors the YAML names exactly
        assert model_fields == set(node["properties"]) or model_fields | rename == set(
            node["properties"]
        ) | rename, model


def test_model_defaults_match_schema_defaults() -> None:
    spec = OrasCacheSpec()
    for name, node in schema.SPEC_SCHEMA["properties"].items():
        if "default" in node:
            assert getattr(spec, re.sub(r"([A-Z])", r"_\1", name).lower()) == node["default"]
    storage_default = schema.SPEC_SCHEMA["properties"]["storage"]["properties"]["accessModes"]
    assert list(Storage(size="1Gi").access_modes) == storage_default["default"]


def test_printer_columns() -> None:
    version = yaml.safe_load(crd_yaml())["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Ready", "Endpoint", "Age"]
    assert version["subresources"] == {"status": {}}
