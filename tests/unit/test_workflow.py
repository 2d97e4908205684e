"""wire_pod_spec: golden files, schema validity, idempotency, conflicts and script hygiene.

Golden files (tests/unit/golden/workflow/<case>.in.yaml -> <case>.out.yaml) are reviewed,
never regenerated to pass; ``UPDATE_GOLDEN=1`` rewrites them for a deliberate change.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from constructs_lib import OrasCache, parse_oras_cache
from constructs_lib.annotations import PREFIX, parse_annotations
from constructs_lib.workflow import is_wired, restart_warning, wire_pod_spec
from constructs_lib.workflow_example import pipeline_yaml
from constructs_lib.workflow_params import (
    DEFAULT_ORAS_IMAGE,
    PULL_CONTAINER,
    PUSH_CONTAINER,
    VOLUME,
    Output,
    WiringError,
    WorkflowParams,
    valid_name,
    valid_reference,
    valid_registry,
)

GOLDEN = Path(__file__).parent / "golden" / "workflow"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))
# Kubernetes expands $(NAME) in command/args and turns $$ into $.
KUBELET_EXPANDS = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_.-]*\)|\$\$")


def load_case(name: str) -> tuple[dict[str, Any], WorkflowParams, str | None]:
    doc = yaml.safe_load((GOLDEN / f"{name}.in.yaml").read_text())
    raw = dict(doc["params"])
    raw["inputs"] = tuple(raw.get("inputs", ()))
    raw["outputs"] = tuple(Output(**o) for o in raw.get("outputs", ()))
    if "entrypoint" in raw:
        raw["entrypoint"] = tuple(raw["entrypoint"])
    return doc["spec"], WorkflowParams(**raw), doc.get("namespace")


def as_pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def app_spec(**container: Any) -> dict[str, Any]:
    return {"restartPolicy": "Never",
            "containers": [{"name": "app", "image": "i", "workingDir": "/work",
                            "command": ["run"], **container}]}


def wire(spec: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    return wire_pod_spec(spec or app_spec(), WorkflowParams(**params), namespace="ns")


def containers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    spec, params, namespace = load_case(name)
    wired = wire_pod_spec(spec, params, namespace=namespace)
    text = pipeline_yaml([wired])
    out = GOLDEN / f"{name}.out.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        out.write_text(text)
    assert text == out.read_text()


@pytest.mark.parametrize("name", CASES)
def test_wired_specs_are_valid_kubernetes_1_37(name: str) -> None:
    spec, params, namespace = load_case(name)
    kubernetes_validate.validate(as_pod(wire_pod_spec(spec, params, namespace=namespace)),
                                 "1.37.0", strict=True)


@pytest.mark.parametrize("name", CASES)
def test_wiring_is_pure_and_idempotent(name: str) -> None:
    spec, params, namespace = load_case(name)
    before = copy.deepcopy(spec)
    once = wire_pod_spec(spec, params, namespace=namespace)
    assert spec == before, "the input spec must not be modified"
    assert is_wired(once) and not is_wired(spec)
    assert wire_pod_spec(once, params, namespace=namespace) == once
    other = WorkflowParams(inputs=("something/else:v9",))
    assert wire_pod_spec(once, other) == once, "an already wired spec is never rewired"


def test_endpoint_contract() -> None:
    assert WorkflowParams().endpoint("ns") == "oras-0.oras.ns.svc.cluster.local:5000"
    assert WorkflowParams(cache="c", namespace="x", port=8080).endpoint("ns") == (
        "c-0.c.x.svc.cluster.local:8080")
    assert WorkflowParams().endpoint() == "oras-0.oras:5000"
    remote = WorkflowParams(registry="r.example.com/p")
    assert remote.endpoint("ns") == "r.example.com/p" and not remote.uses_plain_http()
    assert WorkflowParams().uses_plain_http()


def cache(spec: dict[str, Any], name: str = "c", namespace: str = "team") -> OrasCache:
    doc = {"apiVersion": "cache.converged-computing.github.io/v1alpha1", "kind": "OrasCache",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    parsed = parse_oras_cache(doc, "test")
    assert isinstance(parsed, OrasCache), parsed
    return parsed


def test_params_from_a_cache_match_its_endpoint() -> None:
    local = cache({"port": 8080, "secrets": {"orasEnv": "env"}})
    params = WorkflowParams.for_cache(local)
    assert params.endpoint("elsewhere") == local.endpoint()
    assert params.oras_env == "env"
    remote = cache({"deploy": False, "registry": "r.example.com/t"})
    assert WorkflowParams().with_cache(remote).endpoint() == remote.endpoint()
    assert WorkflowParams(oras_env="mine").with_cache(local).oras_env == "mine"


def test_app_command_is_wrapped_with_the_original_as_positional_parameters() -> None:
    wired = wire(app_spec(args=["a b", "$(X)"]), outputs=(Output("o:1", "f"),))
    app = containers(wired)["app"]
    assert app["command"][:2] == ["/bin/sh", "-c"]
    assert app["command"][3:] == ["oras-wrapper", "run", "a b", "$(X)"]
    assert "args" not in app


def test_entrypoint_is_used_when_the_container_has_no_command() -> None:
    spec = app_spec(args=["x"])
    del spec["containers"][0]["command"]
    with pytest.raises(WiringError, match="has no command and no entrypoint"):
        wire(spec, outputs=(Output("o:1", "f"),))
    wired = wire(spec, outputs=(Output("o:1", "f"),), entrypoint=("/bin/tool", "-v"))
    assert containers(wired)["app"]["command"][3:] == ["oras-wrapper", "/bin/tool", "-v", "x"]


def test_inputs_only_leaves_the_command_alone() -> None:
    wired = wire(inputs=("a:1",))
    assert containers(wired)["app"]["command"] == ["run"]
    assert [c["name"] for c in wired["initContainers"]] == [PULL_CONTAINER]
    assert PUSH_CONTAINER not in containers(wired)


def test_nothing_to_wire_returns_an_unchanged_copy() -> None:
    spec = app_spec()
    wired = wire(spec)
    assert wired == spec and wired is not spec


def test_pull_runs_before_the_users_init_containers() -> None:
    spec = app_spec()
    spec["initContainers"] = [{"name": "mine", "image": "i"}]
    assert [c["name"] for c in wire(spec, inputs=("a:1",))["initContainers"]] == [
        PULL_CONTAINER, "mine"]


def test_push_is_a_regular_container_not_a_native_sidecar() -> None:
    push = containers(wire(outputs=(Output("o:1", "f"),)))[PUSH_CONTAINER]
    assert "restartPolicy" not in push
    assert push["image"] == DEFAULT_ORAS_IMAGE


@pytest.mark.parametrize(
    ("spec", "params", "message"),
    [
        (app_spec(), {"outputs": (Output("o:1", "a"), Output("o:1", "b"))},
         "two outputs push to 'o:1'"),
        (app_spec(), {"inputs": ("a:1", "a:1")}, "input 'a:1' is listed twice"),
        (app_spec(), {"inputs": ("a:1",), "container": "nope"},
         "container 'nope' is not in the Pod spec \\(containers: 'app'\\)"),
        (app_spec(workingDir=None), {"outputs": (Output("o:1"),)},
         "output-path is not set and container 'app' has no workingDir: set output-path"),
        (app_spec(workingDir=None), {"outputs": (Output("o:1", "sub/.."),)},
         "output-path 'sub/..' names the working directory"),
        (app_spec(workingDir=None), {"outputs": (Output("o:1", ".."),)},
         "output-path '..' names the working directory or a parent"),
        (app_spec(workingDir=None), {"outputs": (Output("o:1", "a/log"),),
                                     "output_pipe": "b/log"},
         "output-pipe 'b/log' and output-path 'a/log' would both be pushed as 'log'"),
        (app_spec(workingDir=None, command=None), {"inputs": ("a:1",)},
         "has no command and no entrypoint"),
        (app_spec(), {"outputs": (Output("o:1", "$(HOME)/f"),)},
         "contains \\$\\( or \\$\\$, which Kubernetes would expand"),
        (app_spec(), {"outputs": (Output("o:1", "f"),), "output_pipe": "a$$b"},
         "output-pipe 'a\\$\\$b' contains"),
        (app_spec(volumeMounts=[{"name": "v", "mountPath": "/mnt/oras"}]),
         {"inputs": ("a:1",)}, "reserved for the wiring"),
        (app_spec(volumeMounts=[{"name": "v", "mountPath": "/in", "readOnly": True}]),
         {"inputs": ("a:1",), "input_path": "/in/x"}, "read-only volume 'v'"),
        (app_spec(), {"outputs": (Output("o:1", "/a/f"),), "output_pipe": "/b/log"},
         "output-pipe /b/log must be directly in /a, the directory of output-path /a/f"),
        (app_spec(), {"outputs": (Output("o:1", "/a/dir"),), "output_pipe": "/a/dir/log"},
         "output-pipe /a/dir/log must be directly in /a"),
        (app_spec(), {"output_pipe": "log"}, "output-pipe is pushed with an output"),
        (app_spec(), {"outputs": (Output("o:1", "/"),)}, "cannot mount a volume at /"),
        (app_spec(), {"inputs": ("http://x/y:1",)}, "is not a repo/name:tag reference"),
        (app_spec(), {"inputs": ("a:1",), "cache": "Bad_Name"}, "not a valid OrasCache name"),
        (app_spec(), {"inputs": ("a:1",), "port": 0}, "port 0"),
        (app_spec(volumeMounts=[{"name": "v", "mountPath": "/d", "subPathExpr": "$(P)"}]),
         {"inputs": ("a:1",), "input_path": "/d/in"}, "subPathExpr"),
    ],
)
def test_conflicts_are_rejected_with_clear_errors(
    spec: dict[str, Any], params: dict[str, Any], message: str
) -> None:
    spec = copy.deepcopy(spec)
    for c in spec["containers"]:
        for key in ("workingDir", "command"):
            if c.get(key, "") is None:
                del c[key]
    with pytest.raises(WiringError, match=message):
        wire(spec, **params)


def test_reserved_container_names_without_the_wiring_are_a_conflict() -> None:
    spec = app_spec()
    spec["containers"].append({"name": PUSH_CONTAINER, "image": "x"})
    with pytest.raises(WiringError, match="already has a container named 'oras-push'"):
        wire(spec, inputs=("a:1",))


def test_output_pipe_inside_a_mounted_output_directory_travels_with_it() -> None:
    wired = wire(inputs=("a:1",), input_path="/data", output_pipe="/data/log",
                 outputs=(Output("o:1", "/data"),))
    script = containers(wired)[PUSH_CONTAINER]["command"][2]
    assert "oras push --no-tty --plain-http oras-0.oras.ns.svc.cluster.local:5000/o:1 data\n" in (
        script.replace(" -u", "\n-u"))


def test_output_on_the_input_path_shares_one_mount() -> None:
    wired = wire(inputs=("a:1",), outputs=(Output("o:1", "result"),))
    mounts = containers(wired)["app"]["volumeMounts"]
    assert [m for m in mounts if m["mountPath"] == "/work"] == [
        {"name": VOLUME, "mountPath": "/work", "subPath": "inputs"}]
    push_mounts = containers(wired)[PUSH_CONTAINER]["volumeMounts"]
    assert {"name": VOLUME, "mountPath": "/mnt/oras/out/0", "readOnly": True,
            "subPath": "inputs"} in push_mounts


def test_credentials_come_from_the_secret_and_never_as_arguments() -> None:
    wired = wire(inputs=("a:1",), outputs=(Output("o:1", "f"),), oras_env="creds")
    for name in (PULL_CONTAINER, PUSH_CONTAINER):
        c = containers(wired)[name]
        assert c["envFrom"] == [{"secretRef": {"name": "creds"}}]
        script = c["command"][2]
        assert "--password-stdin" in script
        assert not re.search(r"(^|\s)(-p|--password)(\s|=)", script)
    assert "envFrom" not in containers(wired)["app"], "the app never sees the credentials"


@pytest.mark.parametrize("name", CASES)
def test_scripts_survive_kubelet_expansion(name: str) -> None:
    spec, params, namespace = load_case(name)
    wired = wire_pod_spec(spec, params, namespace=namespace)
    scripts = [c["command"][2] for c in [*wired.get("initContainers", []), *wired["containers"]]
               if c["name"] in (PULL_CONTAINER, PUSH_CONTAINER)
               or c.get("command", [])[3:4] == ["oras-wrapper"]]
    assert scripts
    for script in scripts:
        assert not KUBELET_EXPANDS.search(script), script


def test_plain_http_only_for_the_in_cluster_cache() -> None:
    local = containers(wire(inputs=("a:1",)))[PULL_CONTAINER]["command"][2]
    remote = containers(wire(inputs=("a:1",), registry="r.example.com"))[PULL_CONTAINER]
    assert "--plain-http" in local
    assert "--plain-http" not in remote["command"][2]
    assert "r.example.com/a:1" in remote["command"][2]


texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                max_size=20)


@settings(max_examples=50, deadline=None)
@given(st.lists(texts, min_size=1, max_size=6))
def test_any_arguments_are_passed_through_untouched(args: list[str]) -> None:
    wired = wire(app_spec(command=args[:1], args=args[1:]), outputs=(Output("o:1", "f"),))
    assert containers(wired)["app"]["command"][4:] == args


@pytest.mark.parametrize("name", CASES)
def test_nothing_is_downloaded_or_installed_at_run_time(name: str) -> None:
    spec, params, namespace = load_case(name)
    text = yaml.safe_dump(wire_pod_spec(spec, params, namespace=namespace))
    for tool in ("wget", "curl", "apk ", "apt-get", "yum ", "pip "):
        assert tool not in text


# --- relative paths without workingDir: resolved by the wrapper when the Pod runs ------

def no_workdir(**container: Any) -> dict[str, Any]:
    spec = app_spec(**container)
    del spec["containers"][0]["workingDir"]
    return spec


def test_upstream_relative_output_and_pipe_are_copied_after_success() -> None:
    """The original operator's example: output-path and output-pipe pancakes.txt."""
    wired = wire(no_workdir(), output_pipe="pancakes.txt",
                 outputs=(Output("dinosaur/hello-world:pancakes", "pancakes.txt"),))
    app = containers(wired)["app"]
    script = app["command"][2]
    assert '"$@" <&3 3<&- >./pancakes.txt &' in script
    copy = ('{ mkdir -p /mnt/oras/out/0/"$n" && cp -R ./pancakes.txt /mnt/oras/out/0/"$n"/; }')
    assert copy in script
    # the copy happens only after exit 0, before the completion marker
    assert script.index('if [ "$code" = 0 ]; then') < script.index(copy) < script.index(
        ': >"$s/done-$n"')
    assert app["volumeMounts"] == [
        {"name": VOLUME, "mountPath": "/mnt/oras/out", "subPath": "out"},
        {"name": VOLUME, "mountPath": "/mnt/oras/state", "subPath": "state"}]
    push = containers(wired)[PUSH_CONTAINER]
    assert {"name": VOLUME, "mountPath": "/mnt/oras/out/0", "readOnly": True,
            "subPath": "out/0"} in push["volumeMounts"]
    assert 'cd /mnt/oras/out/0/"$n" ||' in push["command"][2]
    assert " pancakes.txt\n" in push["command"][2]
    assert "mkdir" not in script.split("exec 3<&0")[0], "no pipe directory to create"


def test_relative_pipe_in_a_subdirectory_is_created_and_pushed_with_the_output() -> None:
    wired = wire(no_workdir(), output_pipe="logs/out.log",
                 outputs=(Output("o:1", "res/a.txt"),))
    script = containers(wired)["app"]["command"][2]
    assert script.index("mkdir -p ./logs ||") < script.index('"$@" <&3')
    assert "cp -R ./res/a.txt ./logs/out.log /mnt/oras/out/0/" in script
    push = containers(wired)[PUSH_CONTAINER]["command"][2]
    assert "/o:1 a.txt out.log\n" in push


def test_relative_pipe_inside_the_output_directory_travels_with_it() -> None:
    wired = wire(no_workdir(), output_pipe="results/log",
                 outputs=(Output("o:1", "results"),))
    script = containers(wired)["app"]["command"][2]
    assert 'cp -R ./results /mnt/oras/out/0/"$n"/;' in script
    assert "/o:1 results\n" in containers(wired)[PUSH_CONTAINER]["command"][2]


def test_relative_inputs_only_are_copied_by_a_wrapper_that_execs_the_app() -> None:
    wired = wire(no_workdir(args=["x y"]), inputs=("a:1",), input_path="in/data")
    app = containers(wired)["app"]
    assert app["command"][:2] == ["/bin/sh", "-c"]
    assert app["command"][3:] == ["oras-wrapper", "run", "x y"]
    script = app["command"][2]
    assert "{ mkdir -p ./in/data && cp -R /mnt/oras/inputs/. ./in/data; }" in script
    assert script.endswith('exec "$@"\n')
    assert app["volumeMounts"] == [{"name": VOLUME, "mountPath": "/mnt/oras/inputs",
                                    "subPath": "inputs", "readOnly": True}]
    pull = containers(wired)[PULL_CONTAINER]
    assert pull["volumeMounts"] == [{"name": VOLUME, "mountPath": "/mnt/oras/inputs",
                                     "subPath": "inputs"}]
    assert PUSH_CONTAINER not in containers(wired)


def test_unset_input_path_without_workdir_is_the_run_time_working_directory() -> None:
    script = containers(wire(no_workdir(), inputs=("a:1",)))["app"]["command"][2]
    assert "cp -R /mnt/oras/inputs/. . ||" in script
    assert "mkdir" not in script


def test_relative_inputs_with_outputs_are_copied_before_the_app_or_nothing_is_pushed() -> None:
    wired = wire(no_workdir(), inputs=("a:1",), input_path="data",
                 outputs=(Output("o:1", "/out/r.txt"),))
    script = containers(wired)["app"]["command"][2]
    copy = script.index("cp -R /mnt/oras/inputs/. ./data;")
    assert script.index(': >"$s/attempt-$n"') < copy < script.index('"$@" <&3')
    # a failed copy is recorded like an app that exited 1: the push container gives up
    line = script[copy:].split("\n")[0]
    assert 'printf \'1\\n\' >"$s/exit-$n"; : >"$s/done-$n"; exit 1; }' in line
    # the absolute output is mounted as before; nothing is copied after the app
    assert "/mnt/oras/out/0" not in script
    mounts = containers(wired)["app"]["volumeMounts"]
    assert {"name": VOLUME, "mountPath": "/out", "subPath": "out-0"} in mounts
    assert {"name": VOLUME, "mountPath": "/mnt/oras/out", "subPath": "out"} not in mounts


def test_absolute_paths_without_workdir_are_wired_as_before() -> None:
    wired = wire(no_workdir(), inputs=("a:1",), input_path="/in",
                 outputs=(Output("o:1", "/out/f"),), output_pipe="/out/log")
    script = containers(wired)["app"]["command"][2]
    assert "cp -R" not in script and "mkdir" not in script
    assert '"$@" <&3 3<&- >/out/log &' in script
    with_workdir = wire(inputs=("a:1",), input_path="/in", outputs=(Output("o:1", "/out/f"),),
                        output_pipe="/out/log")
    assert containers(with_workdir)[PUSH_CONTAINER] == containers(wired)[PUSH_CONTAINER]


def test_relative_paths_with_a_workdir_are_mounted_not_copied() -> None:
    wired = wire(inputs=("a:1",), input_path="in", outputs=(Output("o:1", "res.txt"),),
                 output_pipe="log")
    script = containers(wired)["app"]["command"][2]
    assert "cp -R" not in script and '>/work/log &' in script


def test_relative_debug_names_the_working_directory_at_run_time() -> None:
    wired = wire(no_workdir(), inputs=("a:1",), debug=True)
    script = containers(wired)["app"]["command"][2]
    assert 'copying the inputs into . in\' "$PWD:" >&2\nls -A /mnt/oras/inputs >&2' in script
    wired = wire(no_workdir(), outputs=(Output("o:1", "f"),), debug=True)
    assert "relative paths are resolved in $PWD" in containers(wired)["app"]["command"][2]


@settings(max_examples=50, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n/"),
               min_size=1, max_size=12).filter(
    lambda t: t not in (".", "..") and "$(" not in t and "$$" not in t
    and not t.startswith("-")))
def test_any_relative_name_is_quoted_for_the_shell(name: str) -> None:
    wired = wire(no_workdir(), inputs=("a:1",), input_path=name,
                 outputs=(Output("o:1", name + "-out"),))
    script = containers(wired)["app"]["command"][2]
    assert not KUBELET_EXPANDS.search(script)
    assert f"cp -R {shlex.quote('./' + name + '-out')} " in script


def test_upstream_annotated_examples_are_wired_unchanged() -> None:
    """The original operator's breakfast Job and hello-world-3 Pod, annotations as published."""
    breakfast = parse_annotations({
        f"{PREFIX}oras-cache": "orascache-sample",
        f"{PREFIX}output-uri": "dinosaur/hello-world:pancakes",
        f"{PREFIX}output-path": "pancakes.txt", f"{PREFIX}output-pipe": "pancakes.txt",
        f"{PREFIX}debug": "true"})
    assert breakfast is not None
    spec = {"restartPolicy": "Never",
            "containers": [{"name": "pi", "image": "perl:5.34.0",
                            "command": ["echo", "blueberry"]}]}
    wired = wire_pod_spec(spec, breakfast.params, namespace="default")
    assert [c["name"] for c in wired["containers"]] == ["pi", PUSH_CONTAINER]
    hello = parse_annotations({f"{PREFIX}oras-cache": "orascache-sample",
                               f"{PREFIX}input-uri_1": "dinosaur/hello-world:one",
                               f"{PREFIX}input-uri_2": "dinosaur/hello-world:two"})
    assert hello is not None
    spec = {"containers": [{"name": "my-container", "image": "ubuntu",
                            "command": ["ls", "inputs"]}]}
    wired = wire_pod_spec(spec, hello.params, namespace="default")
    assert [c["name"] for c in wired["initContainers"]] == [PULL_CONTAINER]


@pytest.mark.parametrize("spec", [{**app_spec(), "restartPolicy": "Always"},
                                  {"containers": app_spec()["containers"]}])
def test_always_restarting_producers_are_wired_with_a_warning(spec: dict[str, Any]) -> None:
    """The original operator's producer Pods: no restartPolicy, an output. Wired; the push
    container loops over runs instead of exiting (kubelet would restart it)."""
    params = WorkflowParams(outputs=(Output("o:1", "f"),))
    wired = wire_pod_spec(spec, params)
    push = containers(wired)[PUSH_CONTAINER]["command"][2]
    assert "exit 0" not in push and "push() {" in push
    assert 'if [ "$code" = 0 ]; then push; else' in push
    warning = restart_warning(spec, params)
    assert warning is not None and "Never (or OnFailure)" in warning and len(warning) < 256
    assert restart_warning({**spec, "restartPolicy": "Never"}, params) is None
    assert restart_warning(spec, WorkflowParams(inputs=("a:1",))) is None


def test_a_final_newline_is_not_a_valid_name_reference_or_registry() -> None:
    assert valid_name("cache") and not valid_name("cache\n")
    assert valid_reference("a/b:1") and not valid_reference("a/b:1\n")
    assert valid_registry("r.io:5000") and not valid_registry("r.io:5000\n")


@pytest.mark.parametrize(("spec", "params", "message"), [
    ({"containers": [{"image": "busybox", "command": ["true"]}]},
     {"inputs": ("a:1",)}, r"containers\[0\] has no name"),
    ({**app_spec(), "initContainers": [{"image": "busybox"}]},
     {"inputs": ("a:1",)}, r"initContainers\[0\] has no name"),
    (app_spec(), {"inputs": ("a:1",), "input_path": "/data/../mnt/oras/state"},
     "is /mnt/oras/state, inside /mnt/oras, which is reserved"),
    (app_spec(workingDir="/mnt"), {"outputs": (Output("o:1", "oras/out/x"),)},
     "is /mnt/oras/out/x, inside /mnt/oras"),
    ({**app_spec(), "volumes": [{"name": VOLUME, "emptyDir": {}}]},
     {"inputs": ("a:1",)}, "already has a volume named 'oras-workflow'"),
])
def test_hostile_specs_are_refused_with_the_reason(
    spec: dict[str, Any], params: dict[str, Any], message: str
) -> None:
    """Found by probing the webhook: each was a 500, a wiring onto the reserved mount, or a
    Pod admitted unwired."""
    with pytest.raises(WiringError, match=message):
        wire_pod_spec(spec, WorkflowParams(**params))


def test_a_users_volume_named_like_the_wiring_is_not_taken_for_the_wiring() -> None:
    spec = {**app_spec(), "volumes": [{"name": VOLUME, "emptyDir": {}}]}
    assert not is_wired(spec)
    assert is_wired(wire_pod_spec(app_spec(), WorkflowParams(inputs=("a:1",))))


@pytest.mark.parametrize(("params", "message"), [
    ({"outputs": (Output("o:1", "-rf"),)}, "output-path '-rf': a name starting with '-'"),
    ({"outputs": (Output("o:1", "/out/--help"),)}, "a name starting with '-'"),
    ({"inputs": ("a:1",), "input_path": "-x"}, "input-path '-x'"),
    ({"outputs": (Output("o:1", "f"),), "output_pipe": "-log"}, "output-pipe '-log'"),
    ({"inputs": ("a:1",), "input_path": "../../mnt/oras"}, "climbs out of the working"),
    ({"inputs": ("a:1",), "registry": "--help"}, "registry '--help' is not host"),
    ({"inputs": ("a:1",), "oras_env": "--password=x"}, "oras-env '--password=x' is not a "
     "Secret name"),
    ({"inputs": ("a:1",), "oras_env": "Not_A_Secret"}, "is not a Secret name"),
    ({"inputs": ("a:1",), "oras_image": "--privileged"}, "oras image '--privileged' is not"),
    ({"inputs": ("a:1",), "oras_image": "busybox; rm -rf /"}, "is not an image reference"),
])
def test_values_that_would_read_as_options_are_refused(
    params: dict[str, Any], message: str
) -> None:
    assert any(message in e for e in WorkflowParams(**params).validate()), (
        WorkflowParams(**params).validate())
