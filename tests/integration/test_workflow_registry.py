"""The wiring's generated containers, run as local processes against a real registry.

A real distribution registry on 127.0.0.1 and the real oras CLI (both built by
tests/harness/oras_tools.py). Each wired container's command runs as a local process with
the environment the Pod would give it; temp directories stand in for the Pod's volumes:
every mount path in a container's command is replaced by the directory of the volume
(and subPath) mounted there. The init container runs first, then the app and the push
container run concurrently, as in a Pod.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from constructs_lib import OrasCache, parse_oras_cache
from constructs_lib.workflow import Output, WorkflowParams, wire_pod_spec
from constructs_lib.workflow_example import render_pipeline
from tests.harness.oras_tools import LocalRegistry, OrasTools, ensure_oras_tools
from tests.harness.ports import free_ports

RUN_TIMEOUT_S = 60.0
# The first test also builds the registry and oras when they are not cached (about 3.5-5
# minutes cold; `make oras-tools-build` does it before the tests run): allow for that.
pytestmark = pytest.mark.timeout(900)


# The scripts must run on any POSIX shell: dash (Debian's sh), busybox ash (the oras image
# is Alpine) and bash (many app images). Every test runs with each as /bin/sh.
SHELLS = {"dash": ["/bin/dash"], "busybox": ["/bin/busybox", "sh"], "bash": ["/bin/bash"]}
_shell: list[str] = SHELLS["dash"]


@pytest.fixture(autouse=True, params=sorted(SHELLS))
def shell(request: pytest.FixtureRequest) -> Iterator[str]:
    global _shell  # noqa: PLW0603
    if not Path(SHELLS[request.param][0]).exists():
        pytest.skip(f"{request.param} is not installed")
    _shell = SHELLS[request.param]
    yield request.param
    _shell = SHELLS["dash"]


@pytest.fixture(scope="module")
def tools() -> OrasTools:
    return ensure_oras_tools()


@pytest.fixture(scope="module")
def registry(tools: OrasTools) -> Iterator[LocalRegistry]:
    with LocalRegistry(tools.registry) as reg:
        yield reg


@dataclass
class PodRun:
    codes: dict[str, int]
    logs: dict[str, str]
    volumes: Path
    seen_commands: list[str] = field(default_factory=list)


def _host_path(volumes: Path, mount: Mapping[str, Any]) -> Path:
    path = volumes / mount["name"] / mount.get("subPath", "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _command(container: Mapping[str, Any], volumes: Path,
             hosts: Mapping[str, str] | None = None) -> tuple[list[str], Path | None]:
    """The container's argv with every mount path replaced by its stand-in directory
    (and cluster host names by local addresses, standing in for cluster DNS)."""
    mounts = sorted(container.get("volumeMounts") or [], key=lambda m: -len(m["mountPath"]))
    subst = [*(hosts or {}).items()]
    subst += [(m["mountPath"], str(_host_path(volumes, m))) for m in mounts]

    def fix(text: str) -> str:
        for path, host in subst:
            text = text.replace(path, host)
        return text

    argv = [fix(a) for a in [*container["command"], *(container.get("args") or [])]]
    if argv[0] == "/bin/sh":
        argv[:1] = _shell
    cwd = container.get("workingDir")
    return argv, Path(fix(cwd)) if cwd else None


def _env(container: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]],
         tools: OrasTools, home: Path) -> dict[str, str]:
    env = {
        "PATH": f"{tools.oras.parent}:{os.environ['PATH']}",
        "HOME": str(home),  # oras must not see the host's ~/.docker/config.json
        "LANG": "C.UTF-8",
    }
    for source in container.get("envFrom") or []:
        env.update(secrets[source["secretRef"]["name"]])
    for var in container.get("env") or []:
        env[var["name"]] = var["value"]
    return env


def run_pod(
    spec: Mapping[str, Any], root: Path, tools: OrasTools, *,
    secrets: Mapping[str, Mapping[str, str]] | None = None, watch_for: bytes | None = None,
    hosts: Mapping[str, str] | None = None,
) -> PodRun:
    """Run the init containers one by one, then every container at once; wait for all."""
    volumes, home = root / "volumes", root / "home"
    home.mkdir(parents=True, exist_ok=True)
    run = PodRun({}, {}, volumes)
    stop = threading.Event()
    leaks: list[str] = []

    def watch() -> None:  # poll every process's arguments while the Pod runs
        assert watch_for is not None
        while not stop.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"oras" in cmdline and b"\0" in cmdline:
                    run.seen_commands.append(cmdline.split(b"\0")[0].decode(errors="replace"))
                if watch_for in cmdline:
                    leaks.append(cmdline.decode(errors="replace"))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True) if watch_for else None
    if watcher:
        watcher.start()

    def start(container: Mapping[str, Any]) -> subprocess.Popen[bytes]:
        argv, cwd = _command(container, volumes, hosts)
        log = open(root / f"{container['name']}.log", "wb")  # noqa: SIM115
        with log:
            return subprocess.Popen(
                argv, cwd=cwd or root, env=_env(container, secrets or {}, tools, home),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    try:
        for container in spec.get("initContainers") or []:
            proc = start(container)
            run.codes[container["name"]] = proc.wait(RUN_TIMEOUT_S)
            if run.codes[container["name"]] != 0:
                break
        else:
            procs = {c["name"]: start(c) for c in spec["containers"]}
            for name, proc in procs.items():
                run.codes[name] = proc.wait(RUN_TIMEOUT_S)
    finally:
        stop.set()
        if watcher:
            watcher.join()
    for log in root.glob("*.log"):
        run.logs[log.stem] = log.read_text(errors="replace")
    assert not leaks, f"the password was in a process's arguments: {leaks}"
    return run


def oras(tools: OrasTools, *args: str, cwd: Path, stdin: bytes | None = None,
         check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd)}
    return subprocess.run([str(tools.oras), *args, "--plain-http"], cwd=cwd,
                          env=env, input=stdin, capture_output=True, check=check, timeout=60)


def push(tools: OrasTools, registry: LocalRegistry, ref: str, files: Mapping[str, bytes],
         where: Path) -> None:
    where.mkdir(parents=True)
    for name, data in files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_bytes(data)
    top = sorted({n.split("/")[0] for n in files})
    oras(tools, "push", f"{registry.address}/{ref}", *top, cwd=where)


def pull(tools: OrasTools, registry: LocalRegistry, ref: str, where: Path) -> dict[str, bytes]:
    where.mkdir(parents=True)
    oras(tools, "pull", f"{registry.address}/{ref}", "-o", str(where), cwd=where)
    return {p.relative_to(where).as_posix(): p.read_bytes()
            for p in sorted(where.rglob("*")) if p.is_file()}


def job_spec(work: Path, command: list[str], **extra: Any) -> dict[str, Any]:
    container = {"name": "app", "image": "python:3", "workingDir": str(work),
                 "command": command, **extra}
    return {"restartPolicy": "Never", "containers": [container]}


def python_app(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def params(registry: LocalRegistry, **kw: Any) -> WorkflowParams:
    return WorkflowParams(registry=registry.address, plain_http=True, **kw)


def test_inputs_pulled_byte_exact_and_output_pushed_after_success(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    blobs = {f"in{i}.bin": os.urandom(3000 + i) for i in range(3)}
    for i, (name, data) in enumerate(blobs.items()):
        push(tools, registry, f"step0/in{i}:v1", {name: data}, tmp_path / f"src{i}")
    push(tools, registry, "step0/tree:v1", {"tree/a/b.txt": b"deep\n", "tree/c": b"\0\1"},
         tmp_path / "srctree")
    code = ("import hashlib,pathlib;"
            "h=b''.join(pathlib.Path(f'in{i}.bin').read_bytes() for i in range(3));"
            "pathlib.Path('result.bin').write_bytes(hashlib.sha256(h).digest()+h)")
    spec = job_spec(tmp_path / "work", python_app(code))
    wired = wire_pod_spec(spec, params(
        registry, inputs=(*(f"step0/in{i}:v1" for i in range(3)), "step0/tree:v1"),
        outputs=(Output("step1/result:v1", "result.bin"),)))
    start = time.monotonic()
    run = run_pod(wired, tmp_path / "pod", tools)
    took = time.monotonic() - start
    assert run.codes == {"oras-pull": 0, "app": 0, "oras-push": 0}, run.logs
    inputs = run.volumes / "oras-workflow" / "inputs"
    for name, data in blobs.items():
        assert (inputs / name).read_bytes() == data
    assert (inputs / "tree/a/b.txt").read_bytes() == b"deep\n"  # a directory, unpacked
    assert (inputs / "tree/c").read_bytes() == b"\0\1"
    pulled = pull(tools, registry, "step1/result:v1", tmp_path / "check")
    joined = b"".join(blobs.values())
    assert pulled == {"result.bin": hashlib.sha256(joined).digest() + joined}
    print(f"pod with 4 inputs and 1 output ran in {took:.2f} s")


def test_failed_app_keeps_its_exit_code_and_pushes_nothing(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    spec = job_spec(tmp_path / "work", ["/bin/sh", "-c", "echo partial > out.txt; exit 3"])
    wired = wire_pod_spec(spec, params(registry, outputs=(Output("fail/out:v1", "out.txt"),)))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes == {"app": 3, "oras-push": 0}, run.logs
    assert "the app exited with 3" in run.logs["oras-push"]
    missing = oras(tools, "manifest", "fetch", f"{registry.address}/fail/out:v1",
                   cwd=tmp_path, check=False)
    assert missing.returncode != 0 and b"not found" in missing.stderr


def test_push_failure_fails_the_push_container(tools: OrasTools, tmp_path: Path) -> None:
    (closed,) = free_ports(1)  # nothing listens there
    spec = job_spec(tmp_path / "work", ["/bin/sh", "-c", "echo data > out.txt"])
    wired = wire_pod_spec(spec, WorkflowParams(
        registry=f"127.0.0.1:{closed}", plain_http=True, outputs=(Output("x/y:1", "out.txt"),)))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes["app"] == 0
    assert run.codes["oras-push"] != 0, run.logs
    assert "pushing" in run.logs["oras-push"] and "failed" in run.logs["oras-push"]


def test_missing_output_fails_the_push_container(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    spec = job_spec(tmp_path / "work", ["/bin/sh", "-c", "true"])
    wired = wire_pod_spec(spec, params(registry, outputs=(Output("x/never:1", "nope.txt"),)))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes == {"app": 0, "oras-push": 1}, run.logs


def test_missing_input_fails_the_pod_before_the_app(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    spec = job_spec(tmp_path / "work", ["/bin/sh", "-c", "touch ran"])
    wired = wire_pod_spec(spec, params(registry, inputs=("does/not:exist",)))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes == {"oras-pull": 1}, run.logs
    assert "pulling" in run.logs["oras-pull"] and "failed" in run.logs["oras-pull"]


NASTY_ARGS = [
    "two words", "it's", 'say "hi"', "$HOME", "$(id)", "`id`", "$$", "a\nb\n", "*",
    "", " lead", "back\\slash", "tab\there", "--flag=x y", "ünï", "-c", "'';exit 9",
]


def test_arguments_survive_byte_exact(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    code = ("import json,pathlib,sys;"
            "pathlib.Path('argv.json').write_text(json.dumps(sys.argv[1:]))")
    spec = job_spec(tmp_path / "work", [sys.executable, "-c"], args=[code, *NASTY_ARGS])
    wired = wire_pod_spec(spec, params(registry, outputs=(Output("args/argv:v1", "argv.json"),)))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes == {"app": 0, "oras-push": 0}, run.logs
    pulled = pull(tools, registry, "args/argv:v1", tmp_path / "check")
    assert json.loads(pulled["argv.json"]) == NASTY_ARGS


def test_output_pipe_captures_stdout(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    code = "import sys;print('line 1');print('line 2 $x');sys.stderr.write('to the log\\n')"
    spec = job_spec(tmp_path / "work", python_app(code))
    wired = wire_pod_spec(spec, params(
        registry, output_pipe="stdout.txt", outputs=(Output("pipe/out:v1"),)))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes == {"app": 0, "oras-push": 0}, run.logs
    assert "to the log" in run.logs["app"]
    pulled = pull(tools, registry, "pipe/out:v1", tmp_path / "check")
    assert pulled == {"stdout.txt": b"line 1\nline 2 $x\n"}


def test_output_pipe_is_pushed_next_to_the_output_path(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    spec = job_spec(tmp_path / "work", ["/bin/sh", "-c", "echo res > res.txt; echo out"])
    wired = wire_pod_spec(spec, params(
        registry, output_pipe="log.txt", outputs=(Output("pipe/both:v1", "res.txt"),)))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes == {"app": 0, "oras-push": 0}, run.logs
    pulled = pull(tools, registry, "pipe/both:v1", tmp_path / "check")
    assert pulled == {"res.txt": b"res\n", "log.txt": b"out\n"}


@pytest.mark.parametrize("unpack", [True, False])
def test_directory_outputs_and_unpack(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path, unpack: bool
) -> None:
    app = ["/bin/sh", "-c", "mkdir -p results/sub && echo one > results/a && "
           "printf 'two' > results/sub/b"]
    step1 = wire_pod_spec(job_spec(tmp_path / "w1", app), params(
        registry, unpack=unpack, outputs=(Output(f"dir/results:{unpack}", "results"),)))
    run = run_pod(step1, tmp_path / "pod1", tools)
    assert run.codes == {"app": 0, "oras-push": 0}, run.logs
    step2 = wire_pod_spec(job_spec(tmp_path / "w2", ["/bin/sh", "-c", "ls -R > /dev/null"]),
                          params(registry, inputs=(f"dir/results:{unpack}",)))
    run = run_pod(step2, tmp_path / "pod2", tools)
    assert run.codes == {"oras-pull": 0, "app": 0}, run.logs
    inputs = run.volumes / "oras-workflow" / "inputs"
    if unpack:
        assert (inputs / "results/a").read_text() == "one\n"
        assert (inputs / "results/sub/b").read_text() == "two"
    else:
        assert sorted(p.name for p in inputs.iterdir()) == ["results.tar.gz"]
        listing = subprocess.run(["tar", "-tzf", str(inputs / "results.tar.gz")],
                                 capture_output=True, text=True, check=True).stdout.split()
        assert "results/sub/b" in listing


def test_basic_auth_with_credentials_from_the_environment_never_in_arguments(
    tools: OrasTools, tmp_path: Path
) -> None:
    password = "s3cret-" + os.urandom(8).hex()
    with LocalRegistry(tools.registry, auth=("alice", password)) as reg:
        where = tmp_path / "seed"
        where.mkdir()
        (where / "seed.txt").write_bytes(b"seed")
        env = {"PATH": os.environ["PATH"], "HOME": str(where)}
        subprocess.run([str(tools.oras), "push", "--plain-http", "--no-tty", "-u", "alice",
                        "--password-stdin", f"{reg.address}/auth/seed:v1", "seed.txt"],
                       cwd=where, env=env, input=password.encode(), check=True,
                       capture_output=True)
        spec = job_spec(tmp_path / "work", ["/bin/sh", "-c", "cat seed.txt seed.txt > out.txt"])
        wired = wire_pod_spec(spec, WorkflowParams(
            registry=reg.address, plain_http=True, oras_env="creds", inputs=("auth/seed:v1",),
            outputs=(Output("auth/out:v1", "out.txt"),)))
        creds = {"creds": {"ORAS_USER": "alice", "ORAS_PUSH_PASS": password,
                           "ORAS_PULL_PASS": password}}
        run = run_pod(wired, tmp_path / "pod", tools, secrets=creds,
                      watch_for=password.encode())
        assert run.codes == {"oras-pull": 0, "app": 0, "oras-push": 0}, run.logs
        assert any(c.endswith("oras") for c in run.seen_commands), "the watcher saw no oras"
        assert password not in "".join(run.logs.values())
        got = subprocess.run(
            [str(tools.oras), "pull", "--plain-http", "--no-tty", "-u", "alice",
             "--password-stdin", f"{reg.address}/auth/out:v1", "-o", str(tmp_path / "got")],
            env=env, input=password.encode(), check=True, capture_output=True)
        assert got.returncode == 0
        assert (tmp_path / "got/out.txt").read_bytes() == b"seedseed"
        # The watcher would have seen it: a process with the password in its arguments.
        leaky = {"name": "leak", "command": ["/bin/sh", "-c", "sleep 0.3; true", password]}
        with pytest.raises(AssertionError, match="password was in a process's arguments"):
            run_pod({"containers": [leaky]}, tmp_path / "leak", tools,
                    watch_for=password.encode())
        # Without credentials the registry refuses, and the Pod fails before the app.
        anonymous = run_pod(wired, tmp_path / "anon", tools, secrets={"creds": {}})
        assert anonymous.codes == {"oras-pull": 1}, anonymous.logs


def test_on_failure_restart_pushes_after_the_successful_attempt(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    """restartPolicy OnFailure: the kubelet reruns the app in place; emulate two attempts."""
    app = ["/bin/sh", "-c", "if [ -e tried ]; then echo ok > out.txt; else touch tried; exit 5; fi"]
    spec = {**job_spec(tmp_path / "work", app), "restartPolicy": "OnFailure"}
    wired = wire_pod_spec(spec, params(registry, outputs=(Output("retry/out:v1", "out.txt"),)))
    volumes = tmp_path / "pod" / "volumes"
    app_c, push_c = wired["containers"]
    home = tmp_path / "home"
    home.mkdir()
    push_argv, _ = _command(push_c, volumes)
    pusher = subprocess.Popen(push_argv, env=_env(push_c, {}, tools, home),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    codes = []
    for _ in range(2):
        argv, cwd = _command(app_c, volumes)
        assert cwd is not None
        cwd.mkdir(parents=True, exist_ok=True)
        codes.append(subprocess.run(argv, cwd=cwd, env=_env(app_c, {}, tools, home),
                                    check=False).returncode)
    out, _ = pusher.communicate(timeout=RUN_TIMEOUT_S)
    assert codes == [5, 0]
    assert pusher.returncode == 0, out
    assert pull(tools, registry, "retry/out:v1", tmp_path / "check") == {"out.txt": b"ok\n"}


@dataclass
class _RestartingPod:
    """A wired Pod whose containers the test starts itself, as the kubelet would restart
    them: the app once per run, the push container when the test says."""

    wired: dict[str, Any]
    root: Path
    tools: OrasTools

    def _argv_env(self, container: Mapping[str, Any]) -> tuple[list[str], Path | None,
                                                                dict[str, str]]:
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        argv, cwd = _command(container, self.root / "volumes")
        return argv, cwd, _env(container, {}, self.tools, home)

    def run_app(self) -> int:
        argv, cwd, env = self._argv_env(self.wired["containers"][0])
        assert cwd is not None
        cwd.mkdir(parents=True, exist_ok=True)
        return subprocess.run(argv, cwd=cwd, env=env, check=False).returncode

    def start_pusher(self, log: Path) -> subprocess.Popen[bytes]:
        argv, _, env = self._argv_env(self.wired["containers"][1])
        with log.open("wb") as out:
            return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_log(log: Path, line: str, count: int) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while log.read_text().count(line) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return log.read_text()


def test_always_restart_pushes_after_each_successful_run_and_never_exits(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    """restartPolicy Always (the original's producer Pods): the kubelet reruns the app after
    every exit; emulate three runs (ok, failed, ok). The push container pushes runs 1 and
    3, skips run 2 and is still waiting afterwards; restarted (as after a failed push), it
    pushes the latest finished run again, not the older ones."""
    app = ["/bin/sh", "-c", 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); '
           'echo "$n" > count; echo "run $n" > out.txt; [ "$n" != 2 ]']
    spec = {**job_spec(tmp_path / "work", app), "restartPolicy": "Always"}
    pod = _RestartingPod(wire_pod_spec(spec, params(
        registry, outputs=(Output("always/out:v1", "out.txt"),))), tmp_path / "pod", tools)
    first, second = tmp_path / "push-1.log", tmp_path / "push-2.log"
    done = "oras-push: done"
    pusher = pod.start_pusher(first)
    try:
        assert pod.run_app() == 0
        _wait_log(first, done, 1)
        assert pull(tools, registry, "always/out:v1", tmp_path / "run-1") == {
            "out.txt": b"run 1\n"}
        assert pod.run_app() == 1  # a failed run: nothing pushed, the last artifact stays
        assert pod.run_app() == 0
        out = _wait_log(first, done, 2)
        assert pusher.poll() is None, "the push container must not exit under Always"
    finally:
        pusher.kill()
        pusher.wait()
    assert out.count(done) == 2, out
    assert "the app exited with 1 (attempt 1): nothing pushed" in out, out
    assert pull(tools, registry, "always/out:v1", tmp_path / "run-3") == {"out.txt": b"run 3\n"}
    restarted = pod.start_pusher(second)
    try:
        _wait_log(second, done, 1)
        time.sleep(2)  # time enough to push older runs, which it must not
        assert restarted.poll() is None
    finally:
        restarted.kill()
        restarted.wait()
    assert second.read_text().count(done) == 1, "only the latest run is pushed again"


def _start_app(code: str, uri: str, output: str, tools: OrasTools, registry: LocalRegistry,
               tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """The wired app container of a Python app, as a local process: (process, cwd, state)."""
    spec = job_spec(tmp_path / "work", python_app(code))
    wired = wire_pod_spec(spec, params(registry, outputs=(Output(uri, output),)))
    argv, cwd = _command(wired["containers"][0], tmp_path / "volumes")
    assert cwd is not None
    cwd.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(argv, cwd=cwd, env=_env(wired["containers"][0], {}, tools, home))
    return proc, cwd, tmp_path / "volumes" / "oras-workflow" / "state"


def _wait_path(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.001)


def test_sigterm_reaches_the_app_and_its_code_is_kept(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    code = ("import signal,sys,time;"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42));"
            "open('ready','w').close();time.sleep(30)")
    proc, cwd, state = _start_app(code, "sig/out:v1", "ready", tools, registry, tmp_path)
    _wait_path(cwd / "ready", 20)
    proc.terminate()  # what the kubelet sends first
    assert proc.wait(10) == 42
    assert (state / "exit-0").read_text() == "42\n" and (state / "done-0").exists()


def test_example_two_step_pipeline_shares_its_artifact(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    """The rendered example (dist/examples/pipelines/) run step after step."""
    doc = {"apiVersion": "cache.converged-computing.github.io/v1alpha1", "kind": "OrasCache",
           "metadata": {"name": "shared", "namespace": "workflows"}, "spec": {}}
    cache = parse_oras_cache(doc, "test")
    assert isinstance(cache, OrasCache)
    hosts = {cache.endpoint(): registry.address}
    produce, consume = render_pipeline(cache)
    first = run_pod(produce["spec"]["template"]["spec"], tmp_path / "step1", tools, hosts=hosts)
    assert first.codes == {"step": 0, "oras-push": 0}, first.logs
    second = run_pod(consume["spec"]["template"]["spec"], tmp_path / "step2", tools,
                     hosts=hosts)
    assert second.codes == {"oras-pull": 0, "step": 0, "oras-push": 0}, second.logs
    summary = pull(tools, registry, "pipeline/summary:v1", tmp_path / "check")
    lines = summary["summary.txt"].decode().splitlines()
    assert lines[:2] == ["hello from step 1", "step 1 done"]
    assert lines[2].split()[0] == "1000"


def test_registry_path_prefix_and_debug_logs(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    """A remote-style registry address with a path prefix; debug logs the settings."""
    prefixed = WorkflowParams(registry=f"{registry.address}/team-a", plain_http=True,
                              debug=True, outputs=(Output("p/out:v1", "out.txt"),),
                              inputs=("p/out:v0",))
    push(tools, registry, "team-a/p/out:v0", {"seed.txt": b"v0"}, tmp_path / "seed")
    spec = job_spec(tmp_path / "work", ["/bin/sh", "-c", "cat seed.txt > out.txt"])
    run = run_pod(wire_pod_spec(spec, prefixed), tmp_path / "pod", tools)
    assert run.codes == {"oras-pull": 0, "app": 0, "oras-push": 0}, run.logs
    assert f"registry {registry.address}/team-a, inputs into {tmp_path / 'work'}" in (
        run.logs["oras-pull"])
    assert "oras-wrapper: attempt 0: running /bin/sh -c" in run.logs["app"]
    assert pull(tools, registry, "team-a/p/out:v1", tmp_path / "check") == {"out.txt": b"v0"}


def test_the_app_keeps_its_standard_input(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    """A shell gives background jobs /dev/null as stdin; the wrapper must not (stdin: true)."""
    spec = job_spec(tmp_path / "work", ["/bin/sh", "-c", "cat > got.txt"])
    wired = wire_pod_spec(spec, params(registry, outputs=(Output("stdin/x:1", "got.txt"),)))
    argv, cwd = _command(wired["containers"][0], tmp_path / "volumes")
    assert cwd is not None
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(argv, cwd=cwd, env=_env(wired["containers"][0], {}, tools, home),
                          input=b"typed\n", check=False, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0
    assert (cwd / "got.txt").read_bytes() == b"typed\n"


# --- relative paths without workingDir (the original operator's examples) ---------------
# No workingDir: the app runs in the image's WORKDIR (here the Pod's directory, `cwd or
# root` in run_pod); the wrapper copies inputs in and outputs out with mkdir and cp.


def no_workdir_spec(command: list[str]) -> dict[str, Any]:
    return {"restartPolicy": "Never",
            "containers": [{"name": "app", "image": "busybox", "command": command}]}


def test_upstream_relative_output_pipe_is_pushed_without_workdir(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    """examples/tests/hello-world/job.yaml: output-path = output-pipe = pancakes.txt."""
    wired = wire_pod_spec(no_workdir_spec(["echo", "blueberry"]), params(
        registry, output_pipe="pancakes.txt", debug=True,
        outputs=(Output("dinosaur/hello-world:pancakes", "pancakes.txt"),)))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes == {"app": 0, "oras-push": 0}, run.logs
    assert (tmp_path / "pod" / "pancakes.txt").read_text() == "blueberry\n"
    assert f"relative paths are resolved in {tmp_path / 'pod'}" in run.logs["app"]
    pulled = pull(tools, registry, "dinosaur/hello-world:pancakes", tmp_path / "check")
    assert pulled == {"pancakes.txt": b"blueberry\n"}


def test_relative_inputs_and_outputs_without_workdir_round_trip(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    push(tools, registry, "rel/in:v1", {"seed.txt": b"seed\n", "tree/a b.txt": b"\0\1"},
         tmp_path / "seed")
    app = ["/bin/sh", "-c", "mkdir -p res/sub && cat data/seed.txt > res/sub/copy.txt && "
           "cp 'data/tree/a b.txt' res/ && echo to-the-pipe"]
    wired = wire_pod_spec(no_workdir_spec(app), params(
        registry, inputs=("rel/in:v1",), input_path="data", output_pipe="logs/run.log",
        outputs=(Output("rel/out:v1", "res"),)))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes == {"oras-pull": 0, "app": 0, "oras-push": 0}, run.logs
    assert (tmp_path / "pod" / "data" / "tree" / "a b.txt").read_bytes() == b"\0\1"
    pulled = pull(tools, registry, "rel/out:v1", tmp_path / "check")
    assert pulled == {"res/sub/copy.txt": b"seed\n", "res/a b.txt": b"\0\1",
                      "run.log": b"to-the-pipe\n"}


def test_relative_inputs_only_are_copied_into_the_working_directory(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    """examples/tests/multiple-hello-world/pod-2.yaml: inputs, no input-path, no outputs."""
    push(tools, registry, "rel/one:v1", {"one.txt": b"1"}, tmp_path / "s1")
    push(tools, registry, "rel/two:v1", {"two.txt": b"2"}, tmp_path / "s2")
    wired = wire_pod_spec(no_workdir_spec(["/bin/sh", "-c", "cat one.txt two.txt; exit 4"]),
                          params(registry, inputs=("rel/one:v1", "rel/two:v1")))
    run = run_pod(wired, tmp_path / "pod", tools)
    assert run.codes == {"oras-pull": 0, "app": 4}, run.logs  # exec: the app's own code
    assert run.logs["app"] == "12"


def test_relative_output_failures_push_nothing(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    failing = wire_pod_spec(no_workdir_spec(["/bin/sh", "-c", "echo x > out.txt; exit 3"]),
                            params(registry, outputs=(Output("rel/fail:v1", "out.txt"),)))
    run = run_pod(failing, tmp_path / "pod1", tools)
    assert run.codes == {"app": 3, "oras-push": 0}, run.logs
    assert "the app exited with 3" in run.logs["oras-push"]
    missing = wire_pod_spec(no_workdir_spec(["/bin/sh", "-c", "true"]),
                            params(registry, outputs=(Output("rel/fail:v1", "nope.txt"),)))
    run = run_pod(missing, tmp_path / "pod2", tools)
    assert run.codes == {"app": 1, "oras-push": 0}, run.logs
    assert "the app exited 0 but copying ./nope.txt to" in run.logs["app"]
    gone = oras(tools, "manifest", "fetch", f"{registry.address}/rel/fail:v1",
                cwd=tmp_path, check=False)
    assert gone.returncode != 0 and b"not found" in gone.stderr


def test_relative_output_with_on_failure_restarts_pushes_the_successful_attempt(
    tools: OrasTools, registry: LocalRegistry, tmp_path: Path
) -> None:
    """Attempt 0 exits 5, attempt 1 writes a different file: only attempt 1's is pushed."""
    app = ["/bin/sh", "-c",
           "if [ -e tried ]; then echo ok > out.txt; else touch tried; echo bad > out.txt; "
           "exit 5; fi"]
    spec = {**no_workdir_spec(app), "restartPolicy": "OnFailure"}
    wired = wire_pod_spec(spec, params(registry, outputs=(Output("rel/retry:v1", "out.txt"),)))
    volumes, home, cwd = tmp_path / "volumes", tmp_path / "home", tmp_path / "workdir"
    home.mkdir()
    cwd.mkdir()
    app_c, push_c = wired["containers"]
    push_argv, _ = _command(push_c, volumes)
    pusher = subprocess.Popen(push_argv, env=_env(push_c, {}, tools, home),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    argv, _ = _command(app_c, volumes)
    codes = [subprocess.run(argv, cwd=cwd, env=_env(app_c, {}, tools, home),
                            check=False).returncode for _ in range(2)]
    out, _ = pusher.communicate(timeout=RUN_TIMEOUT_S)
    assert codes == [5, 0]
    assert pusher.returncode == 0, out
    assert sorted(p.name for p in (volumes / "oras-workflow" / "out" / "0").iterdir()) == ["1"]
    assert pull(tools, registry, "rel/retry:v1", tmp_path / "check") == {"out.txt": b"ok\n"}
