"""The typed model and its errors: every error names its source and field path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constructs_lib import OrasCache, SpecError, parse_oras_cache
from tests.unit.strategies import BREAKERS, document, valid_specs


def errors_of(doc: dict[str, Any], source: str = "caches/a.yaml[2]") -> list[str]:
    parsed = parse_oras_cache(doc, source)
    assert isinstance(parsed, list), f"expected errors, got {parsed}"
    return [str(e) for e in parsed]


def test_defaults_are_the_seed_operators() -> None:
    cache = parse_oras_cache(document("oras", {}, namespace=None), "x")
    assert isinstance(cache, OrasCache)
    assert cache.namespace is None
    spec = cache.spec
    assert spec.image == "ghcr.io/oras-project/registry:latest"
    assert (spec.deploy, spec.port, spec.replicas, spec.storage) == (True, 5000, 1, None)


def test_error_names_file_document_and_field() -> None:
    assert errors_of(document("a", {"replicas": 0})) == [
        "caches/a.yaml[2]: spec.replicas: must be >= 1"
    ]


@pytest.mark.parametrize(("path", "spec"), BREAKERS, ids=[str(s) for _, s in BREAKERS])
def test_each_broken_rule_is_reported_at_its_path(path: str, spec: dict[str, Any]) -> None:
    errors = errors_of(document("a", spec))
    assert any(e.startswith(f"caches/a.yaml[2]: {path}:") for e in errors), errors


def test_all_errors_are_reported_at_once() -> None:
    errors = errors_of(document("Bad_Name", {"port": "x", "bogus": 1}))
    assert len(errors) == 3
    assert any("metadata.name" in e for e in errors)


def test_cross_field_rules_explain_what_is_missing() -> None:
    (error,) = errors_of(
        document("a", {"replicas": 3, "storage": {"size": "1Gi", "accessModes": ["ReadWriteMany"]}})
    )
    assert error.endswith("spec.replicas: replicas > 1 requires secrets.registryHttp")


@pytest.mark.parametrize("length", [52, 53, 60])
def test_name_length_keeps_statefulset_labels_valid(length: int) -> None:
    doc = document("a" * length, {})
    if length <= 52:
        assert isinstance(parse_oras_cache(doc, "x"), OrasCache)
    else:
        (error,) = errors_of(doc)
        assert "metadata.name: must be at most 52 characters" in error


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({**document("a", {}), "apiVersion": "cache.converged-computing.github.io/v1"},
         "apiVersion: unsupported"),
        ({k: v for k, v in document("a", {}).items() if k != "spec"}, "spec: required"),
        ({**document("a", {}), "spec": None}, "spec: must be of type object, got null"),
        ({**document("a", {}), "metadata": {"namespace": "x"}}, "metadata.name: required"),
        ({**document("a", {}), "metadata": {"name": "a", "namespace": "Bad"}},
         "metadata.namespace"),
        ({**document("a", {}), "extra": 1}, "extra: unknown field"),
    ],
)
def test_document_level_errors(doc: dict[str, Any], fragment: str) -> None:
    assert any(fragment in e for e in errors_of(doc))


@settings(max_examples=200, deadline=None)
@given(valid_specs())
def test_valid_specs_parse(spec: dict[str, Any]) -> None:
    assert isinstance(parse_oras_cache(document("c", spec), "x"), OrasCache)


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["image", "deploy", "port", "replicas", "registry", "secrets",
                         "storage", "resources", "nodeSelector", "tolerations", "x"]),
        JUNK,
    ),
    st.text(max_size=70),
)
def test_arbitrary_input_gives_errors_never_a_traceback(spec: dict[str, Any], name: str) -> None:
    parsed = parse_oras_cache(document(name, spec), "f.yaml[0]")
    if isinstance(parsed, list):
        assert parsed and all(isinstance(e, SpecError) for e in parsed)
        assert all(str(e).startswith("f.yaml[0]: ") for e in parsed)


def test_nulls_are_pruned_then_defaulted_like_the_api_server() -> None:
    cache = parse_oras_cache(document("a", {"deploy": None, "port": None}), "x")
    assert isinstance(cache, OrasCache)
    assert (cache.spec.deploy, cache.spec.port) == (True, 5000)


@pytest.mark.parametrize("name", ["foo\n", "a" * 51 + "\n"])
def test_a_final_newline_fails_every_pattern_as_in_re2(name: str) -> None:
    # Python's `$` matches before a final newline; the API server's RE2 does not.
    assert any("metadata.name" in e for e in errors_of(document(name, {})))
    assert any("metadata.namespace" in e for e in errors_of(document("a", {}, namespace="ns\n")))


def test_deeply_nested_set_items_are_type_errors_not_a_recursion_error() -> None:
    deep: Any = "ReadWriteOnce"
    for _ in range(5000):
        deep = [deep]
    errors = errors_of(document("a", {"storage": {"size": "1Gi", "accessModes": [deep, deep]}}))
    assert errors == ["caches/a.yaml[2]: spec.storage.accessModes[0]: must be of type string, "
                      "got array", "caches/a.yaml[2]: spec.storage.accessModes[1]: must be of "
                      "type string, got array"]
    assert errors_of(document("a", {"storage": {"size": "1Gi", "accessModes": [
        "ReadWriteOnce", "ReadWriteOnce"]}})) == [
        "caches/a.yaml[2]: spec.storage.accessModes: must not contain duplicates"]
