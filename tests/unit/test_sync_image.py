"""The sync service image: `make image` (tests/harness/sync_image.py), sync/Dockerfile, the
Makefile and the Deployments in dist/ agree on what the image is and how it runs.

The pins live in the harness module; everything else is parsed from the files as committed.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from constructs_lib.install import DEFAULT_IMAGE, RUN_AS_USER
from tests.harness import sync_image as pins

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    """One FROM ... stage of a Dockerfile: its instructions as (keyword, argument)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]  # global ARGs (before the first FROM) with their defaults
    stages: list[Stage]


def parse_dockerfile(text: str) -> Dockerfile:
    """Comments dropped, continuation lines joined, ARG defaults substituted in FROM."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends in a continuation line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
            base, _, name = image.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip() or None))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(args, stages)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile((REPO / "sync/Dockerfile").read_text())


def final(dockerfile: Dockerfile) -> Stage:
    return dockerfile.stages[-1]


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for arg in stage.all("ENV"):
        for item in shlex.split(arg):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def apt_installed(stage: Stage) -> list[str]:
    packages: list[str] = []
    for run in stage.all("RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                packages += [w for w in words[2:] if not w.startswith("-")]
    return packages


def sync_deployments() -> list[tuple[str, dict[str, Any]]]:
    """(file, container) of every Deployment in dist/ that runs the sync service image.
    Not the chart's templates (Helm's, not YAML): `helm template` prints dist/install/'s
    and dist/install-git/'s (tests/integration/test_helm_chart.py)."""
    found = []
    for path in sorted((REPO / "dist").rglob("*.yaml")):
        if (REPO / "dist/chart/templates") in path.parents:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container["image"].startswith(pins.IMAGE_REPOSITORY + ":"):
                    found.append((str(path.relative_to(REPO)), container))
    return found


def test_release_and_node_version(dockerfile: Dockerfile) -> None:
    assert dockerfile.args["DEBIAN_RELEASE"] == pins.DEBIAN_RELEASE
    assert dockerfile.args["NODE_VERSION"] == pins.NODE_VERSION
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"(?m)^NODE_VERSION := (\S+)$", makefile)[1] == pins.NODE_VERSION  # type: ignore[index]
    assert all(f" {pins.DEBIAN_RELEASE}" in mirror for mirror in pins.DEBIAN_MIRRORS)
    assert dockerfile.args["ORAS_VERSION"] == pins.ORAS_VERSION
    assert [s.base for s in dockerfile.stages] == [
        f"node:{pins.NODE_VERSION}-{pins.DEBIAN_RELEASE}-slim",
        f"ghcr.io/oras-project/oras:v{pins.ORAS_VERSION}",
        f"debian:{pins.DEBIAN_RELEASE}-slim",
        f"debian:{pins.DEBIAN_RELEASE}-slim",
    ]


def test_same_debian_packages(dockerfile: Dockerfile) -> None:
    assert sorted(apt_installed(final(dockerfile))) == sorted(pins.DEBIAN_PACKAGES)


def test_same_paths(dockerfile: Dockerfile) -> None:
    stage = final(dockerfile)
    copies = {tuple(arg.split()[-2:]) for arg in stage.all("COPY")}
    assert copies == {(pins.NODE_PATH, pins.NODE_PATH), ("/bin/oras", pins.ORAS_PATH),
                      (pins.VENV, pins.VENV)}
    build = next(s for s in dockerfile.stages if s.name == "build")
    install = " ".join(build.all("RUN"))
    assert f"python3 -m venv {pins.VENV}" in install
    assert f"--constraint {pins.CONSTRAINTS}" in install
    assert "--invalidation-mode unchecked-hash" in install
    assert "--invalidation-mode unchecked-hash" in pins._install_script()
    assert "--constraint /tmp/constraints.txt" in pins._install_script()


def test_same_user_environment_and_entrypoint(dockerfile: Dockerfile) -> None:
    stage = final(dockerfile)
    assert stage.all("USER") == [f"{pins.UID}:{pins.GID}"]
    assert env_of(stage) == pins.ENV
    assert [json.loads(a) for a in stage.all("ENTRYPOINT")] == [list(pins.ENTRYPOINT)]
    assert [json.loads(a) for a in stage.all("CMD")] == [list(pins.CMD)]
    assert stage.all("EXPOSE") == [" ".join(str(p) for p in pins.PORTS)]
    run = " ".join(stage.all("RUN"))
    assert f'echo "{pins.PASSWD_LINE}" >> /etc/passwd' in run
    assert f'echo "{pins.GROUP_LINE}" >> /etc/group' in run
    config = pins.image_config(["layer"])["config"]
    assert isinstance(config, dict)
    assert config["User"] == f"{pins.UID}:{pins.GID}"
    assert config["Entrypoint"] == list(pins.ENTRYPOINT)
    assert config["Env"] == [f"{k}={v}" for k, v in pins.ENV.items()]
    assert pins.ENV["JSII_NODE"] == pins.NODE_PATH
    assert pins.ENV["PATH"].startswith(f"{pins.VENV}/bin:")


def test_the_deployments_run_this_image_as_built() -> None:
    """Name and tag, user, no command (the entrypoint runs the args), ports exposed,
    HOME and TMPDIR on the one writable mount."""
    assert pins.image_name() == DEFAULT_IMAGE
    assert RUN_AS_USER == pins.UID
    deployments = sync_deployments()
    assert {path for path, _ in deployments} == {
        "dist/install/sync-service.yaml", "dist/install-git/git-sync-service.yaml",
        "dist/install-oci/oci-sync-service.yaml"}
    for path, container in deployments:
        security = container["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"]) == (pins.UID, pins.GID), path
        assert security["readOnlyRootFilesystem"] is True, path
        assert "command" not in container, path
        assert container["args"][0] in {"sync", "render"}, path
        ports = {p["containerPort"] for p in container["ports"]}
        assert ports <= set(pins.PORTS), path
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HOME"] == env["TMPDIR"] == pins.ENV["HOME"] == "/tmp", path
        assert "/tmp" in mounts, path


def test_constraints_satisfy_pyproject() -> None:
    """Every runtime dependency is pinned to one exact version within pyproject's range."""
    pyproject = (REPO / "pyproject.toml").read_text()
    block = re.search(r"(?ms)^dependencies = \[(.*?)^\]", pyproject)
    assert block
    requirements = [Requirement(r) for r in re.findall(r'"([^"]+)"', block[1])]
    pinned: dict[str, str] = {}
    for line in (REPO / pins.CONSTRAINTS).read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and canonicalize_name(name) == name, line
            pinned[name] = version
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in {pins.CONSTRAINTS}: run its lock command"
        assert req.specifier.contains(pinned[name]), (
            f"{pins.CONSTRAINTS} pins {name}=={pinned[name]}, pyproject.toml wants {req}")


def test_parse_dockerfile() -> None:
    parsed = parse_dockerfile(
        "# c\nARG A=x\nFROM img:${A} AS one\nRUN apt-get update \\\n && apt-get install -y p q\n"
        'FROM two\nENV K=v \\\n    L="a b"\nUSER 1:2\n')
    assert parsed.args == {"A": "x"}
    assert [(s.base, s.name) for s in parsed.stages] == [("img:x", "one"), ("two", None)]
    assert apt_installed(parsed.stages[0]) == ["p", "q"]
    assert env_of(parsed.stages[1]) == {"K": "v", "L": "a b"}
    assert parsed.stages[1].all("USER") == ["1:2"]


def test_a_dependency_missing_from_the_constraints_stops_the_build(tmp_path: Path) -> None:
    for name in ("aiohttp-3.14.5-py3-none-any.whl", "oras_cache-0.1.0-py3-none-any.whl",
                 "pip-26.3-py3-none-any.whl"):
        (tmp_path / name).touch()
    pins._check_pinned(tmp_path)  # all pinned (the project and pip are not dependencies)
    (tmp_path / "new_dep-1.0-py3-none-any.whl").touch()
    with pytest.raises(pins.BuildError, match=r"not pinned in .*constraints\.txt: new-dep"):
        pins._check_pinned(tmp_path)


def test_the_readme_is_no_input_of_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """Editing README.md (pyproject's `readme`) must not rebuild the image: the wheel gets a
    fixed text instead. Anything else in the wheel's files still changes the key."""
    repo = tmp_path / "repo"
    for path in pins._project_files():
        target = repo / path.relative_to(pins.REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (repo / "README.md").write_text("one\n")
    monkeypatch.setattr(pins, "REPO", repo)
    before = pins.project_digest()
    (repo / "README.md").write_text("two\n")
    assert pins.project_digest() == before
    (repo / "sync" / "__init__.py").write_text("# changed\n")
    assert pins.project_digest() != before
