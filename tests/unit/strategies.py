"""Hypothesis strategies for OrasCache documents, valid and deliberately broken."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from constructs_lib import schema

API = schema.API_VERSION
DNS_LABEL = st.from_regex(r"\A[a-z]([a-z0-9-]{0,20}[a-z0-9])?\Z")
QUANTITY = st.one_of(
    st.integers(min_value=1, max_value=64),
    st.builds(lambda n, u: f"{n}{u}", st.integers(1, 999), st.sampled_from(["m", "Mi", "Gi", ""])),
)
LABEL_VALUE = st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?\Z")


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    deploy = draw(st.booleans())
    if not deploy or draw(st.booleans()):
        spec["deploy"] = deploy
    if not deploy:
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
        if replicas > 1 or draw(st.booleans()):
            storage["accessModes"] = modes
        if draw(st.booleans()):
            storage["storageClassName"] = draw(DNS_LABEL)
        spec["storage"] = storage
    if draw(st.booleans()):
        spec["resources"] = {
            "requests": draw(st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITY)),
            "limits": draw(st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITY)),
        }
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(st.dictionaries(DNS_LABEL, LABEL_VALUE, max_size=3))
    if draw(st.booleans()):
        spec["tolerations"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"key": DNS_LABEL},
                    optional={
                        "operator": st.just("Equal"),
                        "value": LABEL_VALUE,
                        "effect": st.sampled_from(["NoSchedule", "NoExecute"]),
                        "tolerationSeconds": st.integers(0, 3600),
                    },
                ),
                max_size=3,
            )
        )
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
    ("spec.registry", {"deploy": False}),
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
]
