"""Hypothesis strategies for OrasCache documents, valid and deliberately broken."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from constructs_lib import schema
from constructs_lib.validation import quantity

API = schema.API_VERSION
DNS_LABEL = st.from_regex(r"\A[a-z]([a-z0-9-]{0,20}[a-z0-9])?\Z")
UNITS = ["m", "Mi", "Gi", "", "k", "Ki", "G", "n", "e3", "E-2"]
QUANTITY = st.one_of(
    st.integers(min_value=1, max_value=64),
    st.builds(lambda n, u: f"{n}{u}", st.integers(1, 999), st.sampled_from(UNITS)),
    st.builds(lambda n, u: f"+0.{n}{u}", st.integers(1, 999), st.sampled_from(UNITS)),
)
LABEL_VALUE = st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?\Z")
# Label values and keys in their whole range: upper case, '_', '.', prefixes, empty values.
# Keys start with a letter: a key such as "1" is valid, but Node orders integer-like keys
# first, so the construct's own JSON would list {"00": .., "1": ..} in another order than
# render() (same objects; test_render_is_what_the_construct_synthesizes compares the order).
ANY_LABEL_VALUE = st.from_regex(r"\A(([A-Za-z0-9][-A-Za-z0-9_.]{0,10})?[A-Za-z0-9])?\Z")
LABEL_KEY = st.from_regex(
    r"\A([a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,2}/)?"
    r"[A-Za-z]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?\Z")


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    """Requests and limits of cpu, memory and ephemeral-storage, each request within its
    limit (zero is a valid quantity here)."""
    names = st.sampled_from(schema.CONTAINER_RESOURCES)
    amount = st.one_of(QUANTITY, st.just(0), st.just("0"))
    requests = draw(st.dictionaries(names, amount))
    limits = draw(st.dictionaries(names, amount))
    for name in set(requests) & set(limits):
        if quantity(requests[name]) > quantity(limits[name]):
            limits[name] = requests[name]
    return {"requests": requests, "limits": limits}


@st.composite
def tolerations(draw: st.DrawFn) -> dict[str, Any]:
    toleration: dict[str, Any] = {}
    key = draw(st.one_of(st.none(), LABEL_KEY))
    if key is not None:
        toleration["key"] = key
    operator = "Exists" if key is None else draw(st.sampled_from([None, "Equal", "Exists"]))
    if operator is not None:
        toleration["operator"] = operator
    if operator != "Exists" and draw(st.booleans()):
        toleration["value"] = draw(ANY_LABEL_VALUE)
    effect = draw(st.sampled_from([None, "NoSchedule", "PreferNoSchedule", "NoExecute"]))
    if effect is not None:
        toleration["effect"] = effect
    if effect == "NoExecute" and draw(st.booleans()):
        toleration["tolerationSeconds"] = draw(st.integers(0, 3600))
    return toleration


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    deploy = draw(st.booleans())
    if not deploy or draw(st.booleans()):
        spec["deploy"] = deploy
    if not deploy and draw(st.booleans()):  # optional: pods may name it instead
        spec["registry"] = draw(st.sampled_from(["registry.example.com", "r.io:5000/team-a"]))
    if draw(st.booleans()):
        spec["image"] = draw(st.sampled_from(["registry:3.0.0", "ghcr.io/x/registry@sha256:ab"]))
    if draw(st.booleans()):
        spec["port"] = draw(st.integers(1, 65535))
    replicas = draw(st.integers(1, 20)) if draw(st.booleans()) else 1
    if replicas > 1 or draw(st.booleans()):
        spec["replicas"] = replicas
    secrets: dict[str, str] = {}
    if replicas > 1 or draw(st.booleans()):
        secrets["registryHttp"] = draw(DNS_LABEL)
    if draw(st.booleans()):
        secrets["orasEnv"] = draw(DNS_LABEL)
    if secrets:
        spec["secrets"] = secrets
    if replicas > 1 or draw(st.booleans()):
        storage: dict[str, Any] = {"size": draw(QUANTITY)}
        modes = draw(st.lists(st.sampled_from(schema.ACCESS_MODES), min_size=1, unique=True))
        if replicas > 1 and "ReadWriteMany" not in modes:
            modes.append("ReadWriteMany")
        if "ReadWriteOncePod" in modes and len(modes) > 1:  # only alone
            modes.remove("ReadWriteOncePod")
        if replicas > 1 or draw(st.booleans()):
            storage["accessModes"] = modes
        if draw(st.booleans()):
            storage["storageClassName"] = draw(DNS_LABEL)
        spec["storage"] = storage
    if draw(st.booleans()):
        spec["resources"] = draw(resources())
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(st.dictionaries(LABEL_KEY, ANY_LABEL_VALUE, max_size=3))
    if draw(st.booleans()):
        spec["tolerations"] = draw(st.lists(tolerations(), max_size=3))
    return spec


def document(name: str, spec: Any, namespace: str | None = "ns") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": API, "kind": schema.KIND, "metadata": metadata, "spec": spec}


# Each breaks one rule the CRD enforces; the oracle test in tests/integration checks the
# API server rejects the same documents.
BREAKERS: list[tuple[str, dict[str, Any]]] = [
    ("spec.replicas", {"replicas": 0}),
    ("spec.replicas", {"replicas": "two"}),
    ("spec.replicas", {"replicas": 2}),
    ("spec.replicas", {"replicas": 2, "secrets": {"registryHttp": "s"}}),
    ("spec.port", {"port": 70000}),
    ("spec.port", {"port": True}),
    ("spec.deploy", {"deploy": "yes"}),
    ("spec.registry", {"registry": "r.example.com"}),
    ("spec.registry", {"deploy": False, "registry": "https://r.example.com"}),
    ("spec.unknown", {"unknown": 1}),
    ("spec.secrets.orasEnv", {"secrets": {"orasEnv": "Not_A_Name"}}),
    ("spec.secrets.extra", {"secrets": {"extra": "x"}}),
    ("spec.storage.size", {"storage": {}}),
    ("spec.storage.size", {"storage": {"size": "ten gigs"}}),
    ("spec.storage.accessModes[0]", {"storage": {"size": "1Gi", "accessModes": ["Sometimes"]}}),
    ("spec.storage.accessModes", {"storage": {"size": "1Gi", "accessModes": []}}),
    ("spec.resources.requests.cpu", {"resources": {"requests": {"cpu": "lots"}}}),
    ("spec.tolerations[0].operator", {"tolerations": [{"key": "k", "operator": "Maybe"}]}),
    ("spec.nodeSelector.zone", {"nodeSelector": {"zone": 1}}),
    ("spec.image", {"image": ""}),
    # A final newline passes Python's `$`, never the API server's RE2.
    ("spec.secrets.orasEnv", {"secrets": {"orasEnv": "s\n"}}),
    ("spec.registry", {"deploy": False, "registry": "r.example.com\n"}),
    ("spec.storage.size", {"storage": {"size": "1Gi\n"}}),
    ("spec.storage.storageClassName", {"storage": {"size": "1Gi", "storageClassName": "fast\n"}}),
    ("spec.resources.limits.memory", {"resources": {"limits": {"memory": "1Gi\n"}}}),
    # Specs whose children Kubernetes would reject.
    ("spec.storage.size", {"storage": {"size": -5}}),
    ("spec.storage.size", {"storage": {"size": "0Gi"}}),
    ("spec.resources.limits.cpu", {"resources": {"limits": {"cpu": -1}}}),
    ("spec.resources.limits.memory", {"resources": {"limits": {"memory": "-1Gi"}}}),
    ("spec.resources.requests", {"resources": {"requests": {"cpu": 2}, "limits": {"cpu": "1"}}}),
    ("spec.resources.requests", {"resources": {"requests": {"nvidia.com/gpu": 1}}}),
    ("spec.nodeSelector", {"nodeSelector": {"bad key": "a"}}),
    ("spec.nodeSelector.zone", {"nodeSelector": {"zone": "a b"}}),
    ("spec.tolerations[0].value", {"tolerations": [{"key": "k", "operator": "Exists",
                                                    "value": "v"}]}),
    ("spec.tolerations[0].operator", {"tolerations": [{"value": "v"}]}),
    ("spec.tolerations[0].effect", {"tolerations": [{"key": "k", "tolerationSeconds": 5}]}),
    ("spec.tolerations[0].key", {"tolerations": [{"key": "a b", "operator": "Exists"}]}),
    ("spec.image", {"image": " registry:3"}),
    ("spec.storage.accessModes", {"storage": {"size": 1, "accessModes": [
        "ReadWriteOnce", "ReadWriteOncePod"]}}),
]
