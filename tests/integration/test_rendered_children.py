"""Second oracle: every spec the CRD accepts renders children the API server accepts.

The first oracle (test_crd.py) keeps the offline validator equal to the CRD; this one keeps
the CRD as strict as the children's own validation: for hypothesis-generated specs, valid
ones and ones at the edges (negative or zero quantities, odd label keys and values,
toleration combinations, whitespace around the image), whenever the API server accepts
the OrasCache, each rendered object must pass a server-side dry-run apply.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client import ApiClient

from constructs_lib import OrasCache, parse_oras_cache, render
from sync.apply.applier import FIELD_MANAGER
from sync.apply.kube import ApiError, Kube
from tests.integration.test_crd import python_verdict, server_verdict
from tests.unit.strategies import document, valid_specs

EDGE_QUANTITIES = [-5, 0, 1, "0", "-0", "-5", "0.0", "+1", ".5", "5.", "1e3", "1E-20", "1e1000",
                   "1Ki", "0.5Gi", "1.5e3m", "9223372036854775807", "99999999999999999999"]
EDGE_KEYS = ["zone", "a b", "a/b/c", "/a", "a/", "A.b/c", "-a", "a" * 63, "a" * 64,
             "x" * 253 + "/a", "x" * 254 + "/a", "example.com/ok", "Example.com/x", "a_b", "1"]
EDGE_VALUES = ["", "ok", "a b", "-a", "a" * 63, "a" * 64, "A_b.c", "a\n"]
EDGE_RESOURCES = ["cpu", "memory", "ephemeral-storage", "storage", "nvidia.com/gpu",
                  "hugepages-2Mi", "pods"]
EDGE_IMAGES = ["registry:3", " registry:3", "registry:3 ", "registry:3\t", "\u00a0registry:3",
               "registry:3\u2028", "registry:3\x1c", "a b"]


@st.composite
def edge_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec with one part replaced by values at the edges of Kubernetes' rules."""
    spec = draw(valid_specs().filter(lambda s: s.get("deploy", True)))
    part = draw(st.sampled_from(["storage", "resources", "nodeSelector", "tolerations",
                                 "image"]))
    quantity = st.sampled_from(EDGE_QUANTITIES)
    if part == "storage":
        spec.pop("replicas", None)
        spec["storage"] = {"size": draw(quantity)}
    elif part == "resources":
        names = st.sampled_from(EDGE_RESOURCES)
        spec["resources"] = {"requests": draw(st.dictionaries(names, quantity, max_size=2)),
                             "limits": draw(st.dictionaries(names, quantity, max_size=2))}
    elif part == "nodeSelector":
        spec["nodeSelector"] = draw(st.dictionaries(st.sampled_from(EDGE_KEYS),
                                                    st.sampled_from(EDGE_VALUES), max_size=2))
    elif part == "tolerations":
        spec["tolerations"] = [draw(st.fixed_dictionaries({}, optional={
            "key": st.sampled_from(["", *EDGE_KEYS]),
            "operator": st.sampled_from(["Exists", "Equal"]),
            "value": st.sampled_from(EDGE_VALUES),
            "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]),
            "tolerationSeconds": st.integers(0, 10),
        }))]
    else:
        spec["image"] = draw(st.sampled_from(EDGE_IMAGES))
    return spec


def rejected_children(kube: Kube, cache: OrasCache) -> list[str]:
    """Server-side dry-run apply of every rendered object; the server's refusals."""
    refusals = []
    for rendered in render([cache]):
        for manifest in rendered.manifests:
            try:
                kube.apply(manifest, field_manager=FIELD_MANAGER, force=True, dry_run=True)
            except ApiError as err:
                kind = manifest["kind"]
                refusals.append(f"{kind}: {err.message}")
    return refusals


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.one_of(valid_specs(), edge_specs()))
def test_children_of_every_accepted_spec_pass_a_server_dry_run(
    api_client: ApiClient, kube: Kube, namespace: str, spec: dict[str, Any]
) -> None:
    doc = document("c", spec, namespace=namespace)
    accepted, message, _ = server_verdict(api_client, namespace, doc)
    ok_python, errors, _ = python_verdict(doc)
    assert accepted == ok_python, f"server={accepted} {message!r}, python={errors}"
    if not accepted:
        return
    cache = parse_oras_cache(doc, "oracle")
    assert isinstance(cache, OrasCache)
    assert rejected_children(kube, cache) == []
