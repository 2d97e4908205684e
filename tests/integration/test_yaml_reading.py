"""Our YAML reading (sync/sources/kubeyaml.py, sync/sources/files.py) against the real
kubectl and API server.

kubectl reads each document with sigs.k8s.io/yaml (go-yaml v2) and sends JSON; a client
dry-run with validation off prints exactly what it read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sync.apply.kube import ApiError, Kube
from sync.sources import kubeyaml
from sync.sources.files import load
from tests.harness import LocalCluster

VALUES = ["1:23:20", "190:20:30.15", "2001-12-14", "2001-13-45", "y", "N", "on", "Off", "yes",
          "0x1F", "0o17", "017", "09", "0b101", "1_000", "+5", "-0", "1e3", "1.0", "0.5", ".5",
          "1.5e3", "'1:23:20'", "'y'", "!!str 12", "!!int '12'", "!!float 3", "~", "null",
          "\"\"", "9223372036854775807", "!foo bar", "12:30", "1e400"]


def kubectl_reads(cluster: LocalCluster, tmp_path: Path, text: str) -> Any:
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    proc = cluster.kubectl("create", "--dry-run=client", "--validate=false", "-o", "json",
                           "-f", str(path), check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def configmap(value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\nbinaryData: {{}}\n" \
        f"x:\n  v: {value}\n"


@pytest.mark.parametrize("value", VALUES)
def test_scalars_read_as_kubectl_reads_them(cluster: LocalCluster, tmp_path: Path,
                                            value: str) -> None:
    text = configmap(value)
    (ours,) = kubeyaml.load_all(text)
    assert kubectl_reads(cluster, tmp_path, text)["x"] == ours["x"]


def test_keys_read_as_kubectl_reads_them(cluster: LocalCluster, tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nx: {1: a, true: b, " \
        "1.5: c, 1e7: d, n: e, 0x10: f, 0.00001: g, 1234567.0: h}\n"
    (ours,) = kubeyaml.load_all(text)
    assert kubectl_reads(cluster, tmp_path, text)["x"] == ours["x"]


@pytest.mark.parametrize("text", ["- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n",
                                  "just words\n"])
def test_kubectl_refuses_what_load_refuses(cluster: LocalCluster, tmp_path: Path,
                                           text: str) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    assert cluster.kubectl("create", "--dry-run=client", "--validate=false", "-f", str(path),
                           check=False).returncode != 0
    assert load([path]).errors


ITEM = ("{apiVersion: cache.converged-computing.github.io/v1alpha1, kind: OrasCache, "
        "metadata: {name: %s}, spec: {}}")


def test_lists_expand_as_kubectl_expands_them(cluster: LocalCluster, tmp_path: Path) -> None:
    text = (f"apiVersion: v1\nkind: List\nitems:\n  - {ITEM % 'a'}\n  - {ITEM % 'b'}\n"
            "---\napiVersion: cache.converged-computing.github.io/v1alpha1\n"
            "kind: OrasCacheList\nitems: [{metadata: {name: c}, spec: {}}]\n")
    path = tmp_path / "list.yaml"
    path.write_text(text)
    proc = cluster.kubectl("create", "--dry-run=client", "-o", "name", "-f", str(path))
    kubectl_names = [line.rsplit("/", 1)[-1] for line in proc.stdout.split()]
    loaded = load([path])
    assert not loaded.errors
    assert sorted(c.name for _, c in loaded.caches) == sorted(kubectl_names) == ["a", "b", "c"]


def test_a_list_in_a_list_is_refused_as_kubectl_refuses_it(cluster: LocalCluster,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(f"apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: List\n"
                    f"    items: [{ITEM % 'b'}]\n")
    proc = cluster.kubectl("create", "--dry-run=client", "-f", str(path), check=False)
    assert proc.returncode != 0 and "not a list" in proc.stderr
    assert [str(e.error) for e in load([path]).errors] == [
        "a list inside a list (kubectl refuses it too)"]


def test_kubectl_also_refuses_the_alias_bomb(cluster: LocalCluster, tmp_path: Path) -> None:
    text = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nl0: &a ["x","x","x","x"]\n'
    for level in range(1, 10):
        text += f"l{level}: &{'a' * (level + 1)} [" + ", ".join([f"*{'a' * level}"] * 9) + "]\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    proc = cluster.kubectl("create", "--dry-run=client", "--validate=false", "-f", str(path),
                           check=False)
    assert proc.returncode != 0 and "excessive aliasing" in proc.stderr
    assert "excessive aliasing" in str(load([path]).errors[0])


def test_api_server_refuses_duplicate_keys_in_a_yaml_body(kube: Kube, namespace: str) -> None:
    """kubectl alone keeps the last value (its YAML to JSON step is not strict); the API
    server's strict field validation, reading YAML itself, refuses duplicates, as load does."""
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1', a: '2'}\n"
    with pytest.raises(ApiError) as err:
        kube.request("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/c",
                     query={"field_manager": "t", "field_validation": "Strict", "dry_run": "All"},
                     body=body, content_type="application/apply-patch+yaml")
    assert 'key \\"a\\" already set in map' in str(err.value.body), err.value.body
    with pytest.raises(Exception, match="already defined"):
        list(kubeyaml.load_all(body))
