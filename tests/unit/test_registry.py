"""OrasCacheRegistry: explicit assertions on the fields that matter, and schema validity."""

from __future__ import annotations

from typing import Any

import cdk8s
import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constructs_lib import (
    Manifest,
    OrasCache,
    OrasCacheRegistry,
    parse_oras_cache,
    render,
    to_yaml,
)
from constructs_lib.render import CACHES_PER_CHART, RenderedCache, render_each
from tests.unit.strategies import DNS_LABEL, document, valid_specs


def cache(spec: dict[str, Any], name: str = "oras", namespace: str | None = "ns") -> OrasCache:
    parsed = parse_oras_cache(document(name, spec, namespace), "test")
    assert isinstance(parsed, OrasCache), parsed
    return parsed


def manifests(spec: dict[str, Any], **kw: Any) -> dict[str, Manifest]:
    (rendered,) = render([cache(spec, **kw)])
    return {m["kind"]: m for m in rendered.manifests}


def container(objs: dict[str, Manifest]) -> Manifest:
    (c,) = objs["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    return c


def test_headless_service_named_exactly_like_the_cache() -> None:
    svc = manifests({})["Service"]
    assert svc["metadata"] == {**svc["metadata"], "name": "oras", "namespace": "ns"}
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 5000, "protocol": "TCP", "targetPort": "http"}
    ]


def test_statefulset_serves_the_port_and_probes_v2() -> None:
    objs = manifests({"port": 8080})
    sts = objs["StatefulSet"]["spec"]
    assert sts["serviceName"] == "oras"
    c = container(objs)
    assert c["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert {"name": "REGISTRY_HTTP_ADDR", "value": ":8080"} in c["env"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/v2/", "port": "http"}
    assert sts["selector"]["matchLabels"].items() <= sts["template"]["metadata"]["labels"].items()


def test_registry_http_secret_is_a_reference_never_a_value() -> None:
    env = container(manifests({"secrets": {"registryHttp": "my-secret"}}))["env"]
    (var,) = [e for e in env if e["name"] == "REGISTRY_HTTP_SECRET"]
    assert var == {
        "name": "REGISTRY_HTTP_SECRET",
        "valueFrom": {"secretKeyRef": {"key": "REGISTRY_HTTP_SECRET", "name": "my-secret"}},
    }
    assert "REGISTRY_HTTP_SECRET" not in str(manifests({})), "absent unless configured"


def test_storage_variants() -> None:
    pod = manifests({})["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"emptyDir": {}, "name": "data"}]

    own = manifests({"storage": {"size": "5Gi", "storageClassName": "fast"}})["StatefulSet"]
    (template,) = own["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "data"
    assert template["spec"]["storageClassName"] == "fast"
    assert template["spec"]["resources"] == {"requests": {"storage": "5Gi"}}
    assert "volumes" not in own["spec"]["template"]["spec"]

    shared = manifests(
        {"replicas": 2, "secrets": {"registryHttp": "s"},
         "storage": {"size": "5Gi", "accessModes": ["ReadWriteMany"]}}
    )
    assert shared["PersistentVolumeClaim"]["metadata"]["name"] == "oras-data"
    assert shared["StatefulSet"]["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "oras-data"}}
    ]
    assert "volumeClaimTemplates" not in shared["StatefulSet"]["spec"]
    mounts = container(shared)["volumeMounts"]
    assert mounts == [{"mountPath": "/var/lib/registry", "name": "data"}]


def test_deploy_false_renders_nothing() -> None:
    (rendered,) = render([cache({"deploy": False, "registry": "r.example.com"})])
    assert rendered.manifests == []
    assert rendered.cache.endpoint() == "r.example.com"


def test_endpoint_contract_with_workflow_pods() -> None:
    assert cache({}).endpoint() == "oras-0.oras.ns.svc.cluster.local:5000"
    assert cache({}, namespace=None).endpoint() == "oras-0.oras:5000"


def test_namespace_less_cache_renders_namespace_less_objects() -> None:
    for obj in manifests({}, namespace=None).values():
        assert "namespace" not in obj["metadata"]


def test_recommended_labels_everywhere() -> None:
    for obj in manifests({}).values():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "oras"
        assert labels["app.kubernetes.io/managed-by"] == "orascache"


def test_privileged_port_gets_only_net_bind_service() -> None:
    assert container(manifests({"port": 80}))["securityContext"]["capabilities"] == {
        "add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    assert "add" not in container(manifests({}))["securityContext"]["capabilities"]


def test_placement_and_resources() -> None:
    objs = manifests(
        {
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {"requests": {"cpu": 1, "memory": "64Mi"}},
        }
    )
    pod = objs["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [{"effect": "NoSchedule", "key": "k", "operator": "Exists"}]
    assert container(objs)["resources"] == {"requests": {"cpu": "1", "memory": "64Mi"}}


def test_rendering_is_deterministic() -> None:
    spec = {"storage": {"size": "1Gi"}, "nodeSelector": {"b": "1", "a": "2"}}
    assert render([cache(spec)])[0].manifests == render([cache(spec)])[0].manifests


def test_caches_sharing_a_chart_render_as_if_alone() -> None:
    """render() batches caches into shared charts; across batch boundaries and with 0, 2
    or 3 objects per cache, each gets exactly what it gets rendered alone."""
    specs: list[dict[str, Any]] = [
        {}, {"deploy": False, "registry": "r.example.com"},
        {"storage": {"size": "1Gi", "accessModes": ["ReadWriteMany"]}},
        {"storage": {"size": "2Gi"}, "image": "registry:3.0.0"},
    ]
    caches = [cache(specs[i % len(specs)], name=f"c{i}") for i in range(CACHES_PER_CHART + 7)]
    together = render(caches)
    assert [r.cache for r in together] == caches
    assert [r.manifests for r in together] == [render([c])[0].manifests for c in caches]
    assert {len(r.manifests) for r in together} == {0, 2, 3}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_any_valid_spec_renders_objects_valid_for_kubernetes_1_37(spec: dict[str, Any]) -> None:
    (rendered,) = render([cache(spec)])
    for obj in rendered.manifests:
        kubernetes_validate.validate(obj, "1.37.0", strict=True)


def construct_to_json(caches: list[OrasCache]) -> list[Manifest]:
    """The manifests of plain OrasCacheRegistry constructs, as `cdk8s synth` gets them."""
    chart = cdk8s.Chart(cdk8s.App(), "c", disable_resource_name_hashes=True)
    for i, c in enumerate(caches):
        OrasCacheRegistry(chart, f"r{i}", spec=c.spec, name=c.name, namespace=c.namespace)
    return list(chart.to_json())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs(), valid_specs())
def test_render_is_what_the_construct_synthesizes(one: dict[str, Any],
                                                  two: dict[str, Any]) -> None:
    """render() keeps the specs out of jsii (see render._SpecsAside): same objects, same
    key order, as the construct's own JSON patches give."""
    caches = [cache(one, name="a"), cache(two, name="b", namespace=None)]
    rendered = [m for r in render(caches) for m in r.manifests]
    expected = construct_to_json(caches)
    assert rendered == expected
    assert [list(m) for m in rendered] == [list(m) for m in expected]
    assert [to_yaml([m]) for m in rendered] == [to_yaml([m]) for m in expected]


# Names that are also the construct's own strings, or parts of them.
TRICKY_NAMES = st.sampled_from(["oras-cache", "data", "registry", "http", "ns", "oras", "z"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs(), st.lists(st.tuples(st.one_of(DNS_LABEL, TRICKY_NAMES),
                                         st.one_of(st.none(), DNS_LABEL, TRICKY_NAMES)),
                               min_size=2, max_size=5, unique=True))
def test_caches_of_one_shape_render_as_if_each_went_through_the_construct(
        spec: dict[str, Any], identities: list[tuple[str, str | None]]) -> None:
    """render() renders one cache per shape and puts the others' names back (see
    render.render): the same objects, key order and YAML as a render of each."""
    caches = [cache(spec, name=name, namespace=ns) for name, ns in identities]
    shared, each = render(caches), render_each(caches)
    assert [r.cache for r in shared] == caches
    assert [to_yaml(r.manifests) for r in shared] == [to_yaml(r.manifests) for r in each]
    assert [r.manifests for r in shared] == [r.manifests for r in each]


def test_shapes_render_through_the_construct_once_each() -> None:
    calls: list[list[str]] = []

    def each(caches: list[OrasCache]) -> list[RenderedCache]:
        calls.append([c.name for c in caches])
        return render_each(caches)

    caches = [cache({}, name=f"a{i}") for i in range(5)] + [
        cache({"port": 8080}, name="b"), cache({}, name="c", namespace=None)]
    render(caches, each)
    assert len(calls) == 1 and len(calls[0]) == 3  # three shapes
    calls.clear()
    render(caches[:1] + caches[5:6], each)  # nothing shared: the caches themselves
    assert calls == [["a0", "b"]]


def test_a_failing_construct_is_reported_for_the_real_cache() -> None:
    """A stand-in name never reaches an error: the caches are rendered again as they are."""
    def each(caches: list[OrasCache]) -> list[RenderedCache]:
        for c in caches:
            if c.spec.port == 6000:
                raise ValueError(f"cannot render {c.name}")
        return render_each(caches)

    caches = [cache({"port": 6000}, name=f"bad{i}") for i in range(2)]
    with pytest.raises(ValueError, match=r"^cannot render bad0$"):
        render([cache({}, name="ok"), *caches], each)


def test_stand_in_text_in_a_cache_renders_it_exactly() -> None:
    """Text like a stand-in's (in a name or the spec) is never replaced: such a cache
    goes through the construct as it is."""
    caches = [cache({"image": "zz-shape-1-zz:1"}, name=f"a{i}") for i in range(2)] + [
        cache({}, name="zz-shape-1-zz"), cache({}, name="zz-shape-2-zz"),
        cache({}, name="p0"), cache({}, name="p1")]
    rendered = render(caches)
    assert [r.manifests for r in rendered] == [r.manifests for r in render_each(caches)]
    sts = {r.cache.name: m for r in rendered for m in r.manifests if m["kind"] == "StatefulSet"}
    assert sts["a1"]["spec"]["template"]["spec"]["containers"][0]["image"] == "zz-shape-1-zz:1"
    assert sts["zz-shape-2-zz"]["spec"]["serviceName"] == "zz-shape-2-zz"


def test_escape_hatch_json_patch_reaches_the_output() -> None:
    chart = cdk8s.Chart(cdk8s.App(), "c", disable_resource_name_hashes=True)
    registry = OrasCacheRegistry(chart, "r", spec=cache({}).spec, name="oras", namespace="ns")
    assert registry.stateful_set is not None
    registry.stateful_set.add_json_patch(cdk8s.JsonPatch.add("/spec/minReadySeconds", 5))
    (sts,) = [m for m in chart.to_json() if m["kind"] == "StatefulSet"]
    assert sts["spec"]["minReadySeconds"] == 5


class _PythonDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_yaml_is_what_the_python_emitter_writes(spec: dict[str, Any]) -> None:
    """to_yaml uses libyaml's emitter for speed; the text must not change with it."""
    assert yaml.__with_libyaml__  # else this compares the Python emitter with itself
    (rendered,) = render([cache(spec)])
    expected = "".join(
        "---\n" + yaml.dump(m, Dumper=_PythonDumper, sort_keys=False, default_flow_style=False)
        for m in rendered.manifests)
    assert to_yaml(rendered.manifests) == expected
