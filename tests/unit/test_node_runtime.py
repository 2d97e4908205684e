"""sync/render/node_runtime.py: the service's jsii kernel runs as one Node process and renders
exactly what jsii's own runtime renders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Renders one cache, then reports the jsii runtime in use and the Node processes under
# this Python process (the kernel, and any process the kernel itself started).
PROBE = """
import json, os, sys
from sync.render import node_runtime
node_runtime.prepare()
from constructs_lib import OrasCache, OrasCacheSpec, parse_oras_cache, render
rich = parse_oras_cache({"apiVersion": "cache.converged-computing.github.io/v1alpha1",
    "kind": "OrasCache", "metadata": {"name": "r", "namespace": "ns"}, "spec": {
    "replicas": 2, "secrets": {"registryHttp": "s"}, "nodeSelector": {"a": "b"},
    "storage": {"size": "1Gi", "accessModes": ["ReadWriteMany"]},
    "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}},
    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]}}, "probe")
out = [r.manifests for r in render([OrasCache("c", "ns", OrasCacheSpec()), rich])]
def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]
def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().rstrip("\\0").split("\\0")
kids = children(os.getpid())
print(json.dumps({
    "runtime": os.environ["JSII_RUNTIME"],
    "kids": [cmdline(p) for p in kids],
    "grandkids": [cmdline(g) for p in kids for g in children(p)],
    "manifests": out,
}))
"""


def clean_env() -> dict[str, str]:
    """This process's environment without a runtime choice (pytest may have imported sync)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("JSII_RUNTIME", "ORASCACHE_JSII_KERNEL_PID")}


def probe(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_direct_kernel_is_one_node_process_and_renders_like_jsii_runtime(
        tmp_path: Path) -> None:
    env = clean_env()
    direct = probe(env)
    assert str(direct["runtime"]).endswith("node_runtime.js")
    kids = direct["kids"]
    assert isinstance(kids, list) and len(kids) == 1, kids
    assert kids[0][-1] == direct["runtime"]
    assert direct["grandkids"] == []  # no relay: the kernel is the only Node process

    # jsii's own runtime, pointed at explicitly (setting JSII_RUNTIME turns ours off).
    jsii_dir = tmp_path / "jsii"
    subprocess.run([sys.executable, "-c", f"""
import importlib.resources, os, jsii._embedded.jsii as e
for res, name in e.EMBEDDED_FILES.items():
    p = os.path.join({str(jsii_dir)!r}, name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "wb").write(importlib.resources.files(e).joinpath(res).read_bytes())
"""], check=True, timeout=60)
    relay = str(jsii_dir / "bin" / "jsii-runtime.js")
    default = probe({**env, "JSII_RUNTIME": relay})
    assert default["runtime"] == relay
    assert len(default["grandkids"]) == 1  # type: ignore[arg-type]
    assert direct["manifests"] == default["manifests"]


RUNTIME = ("import os; from sync.render import node_runtime; node_runtime.prepare(); "
           "print(os.environ['JSII_RUNTIME'])")


def test_direct_kernel_files_are_removed_at_exit() -> None:
    done = subprocess.run([sys.executable, "-c", RUNTIME], cwd=REPO, env=clean_env(),
                          capture_output=True, text=True, timeout=60, check=True)
    runtime = Path(done.stdout.strip())
    assert runtime.name == "node_runtime.js"
    assert not runtime.parent.exists()


def test_a_child_process_makes_its_own_copy_and_a_user_choice_is_kept() -> None:
    """A child may outlive the parent whose copy it inherited; JSII_RUNTIME set by a user
    (no owner pid) is left alone."""
    parent = """
import os, subprocess, sys
from sync.render import node_runtime
node_runtime.prepare()
child = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True,
                       check=True)
print(os.environ["JSII_RUNTIME"], child.stdout.strip())
"""
    done = subprocess.run([sys.executable, "-c", parent, RUNTIME], cwd=REPO, env=clean_env(),
                          capture_output=True, text=True, timeout=60, check=True)
    mine, childs = done.stdout.split()
    assert mine != childs and Path(childs).name == "node_runtime.js"
    user = subprocess.run([sys.executable, "-c", RUNTIME], cwd=REPO, text=True, timeout=60,
                          env={**clean_env(), "JSII_RUNTIME": "/opt/mine.js"},
                          capture_output=True, check=True)
    assert user.stdout.strip() == "/opt/mine.js"


def test_the_services_do_not_load_cdk8s_plus() -> None:
    """cdk8s-plus-34 (the install, workflow steps) costs ~20 MB in the kernel: the sync
    service's modules (cluster and git source, CLI) must not import it."""
    probe = ("import sys, sync.cli, sync.cluster_service, sync.revision_sync, constructs_lib\n"
             "print(sorted(m for m in sys.modules if m.startswith('cdk8s_plus')))\n"
             "constructs_lib.OrasWorkflowStep\n"
             "print('cdk8s_plus_34' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=clean_env(),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "True"]
