"""`orascache synth`, dist/ staleness, golden files and the real `cdk8s synth`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from sync.cli import main
from sync.render.synth import REPO_ROOT, dist_files

GOLDEN = Path(__file__).parent / "golden"
CDK8S = REPO_ROOT / ".tools/node_modules/.bin/cdk8s"
CACHE = """\
apiVersion: cache.converged-computing.github.io/v1alpha1
kind: OrasCache
metadata: {name: %s, namespace: team}
spec: {}
"""


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_dist_is_not_stale() -> None:
    files = dist_files()
    assert not isinstance(files, list), files
    assert tree(REPO_ROOT / "dist") == files, "dist/ is stale: run `make synth` and review"


def test_every_dist_object_is_valid_kubernetes_1_37() -> None:
    """prometheus-operator's kinds are not Kubernetes': tests/integration/test_monitoring.py
    applies them to an API server holding the operator's CRDs instead. The chart's
    templates are checked through `helm template` (tests/integration/test_helm_chart.py)."""
    chart = REPO_ROOT / "dist/chart"
    for path in (REPO_ROOT / "dist").rglob("*.yaml"):
        if chart in path.parents and path.parent.name != "crds":
            continue  # Helm templates and values (tests/integration/test_helm_chart.py)
        for obj in yaml.safe_load_all(path.read_text()):
            if (obj and obj.get("kind") != "Kustomization"
                    and not obj["apiVersion"].startswith("monitoring.coreos.com/")):
                kubernetes_validate.validate(obj, "1.37.0", strict=True)


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in GOLDEN.glob("*.yaml") if not p.name.endswith(".out.yaml"))
)
def test_golden(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Edge cases beyond examples/; goldens are reviewed, never regenerated to pass."""
    assert main(["synth", str(GOLDEN / f"{name}.yaml")]) == 0
    assert capsys.readouterr().out == (GOLDEN / f"{name}.out.yaml").read_text()


def test_synth_writes_layout_and_prunes_its_own_stale_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.yaml").write_text(CACHE % "a" + "---\n" + CACHE % "b")
    out = tmp_path / "out"
    assert main(["synth", str(src), "-o", str(out)]) == 0
    assert sorted(tree(out)) == ["kustomization.yaml", "team/a.yaml", "team/b.yaml"]
    (out / "mine.yaml").write_text("kind: NotOurs\n")
    (src / "a.yaml").write_text(CACHE % "a")
    assert main(["synth", str(src), "-o", str(out)]) == 0
    assert sorted(tree(out)) == ["kustomization.yaml", "mine.yaml", "team/a.yaml"]


def test_invalid_input_prints_every_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.yaml").write_text(CACHE % "good")
    (tmp_path / "bad.yaml").write_text(
        "kind: ConfigMap\n---\n" + (CACHE % "bad").replace("{}", "{replicas: 0, port: x}")
    )
    (tmp_path / "broken.yaml").write_text("a: [\n")
    out = tmp_path / "out"
    assert main(["synth", str(tmp_path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/bad.yaml[1]: spec.replicas: must be >= 1" in err
    assert f"{tmp_path}/bad.yaml[1]: spec.port: must be of type integer" in err
    assert f"{tmp_path}/broken.yaml:2:1: invalid YAML" in err
    assert not out.exists()


def test_duplicate_caches_are_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(CACHE % "x")
    (tmp_path / "b.yaml").write_text(CACHE % "x")
    assert main(["synth", str(tmp_path)]) == 1
    assert "b.yaml[0]: metadata.name: duplicate of" in capsys.readouterr().err


@pytest.mark.skipif(not CDK8S.exists(), reason="cdk8s CLI not installed: run `make bootstrap`")
def test_real_cdk8s_synth_matches_dist(tmp_path: Path) -> None:
    env = {**os.environ, "CDK8S_CHECK_UPGRADE": "false",
           "PATH": f"{CDK8S.parent}:{os.environ['PATH']}"}
    out = tmp_path / "dist"
    subprocess.run([str(CDK8S), "synth", "--no-check-upgrade", "-o", str(out)], cwd=REPO_ROOT,
                   env=env, check=True, capture_output=True, timeout=300)
    assert tree(out) == tree(REPO_ROOT / "dist")
