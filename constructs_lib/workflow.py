"""Wire a workflow Pod spec to an ORAS cache: pull inputs before the app, push outputs after.

`wire_pod_spec(spec, params)` is pure (no I/O): it takes a Pod spec as Kubernetes JSON (a
plain dict, e.g. from an admission request or ``spec.template.spec`` of a Job) and returns
a new, wired spec. It adds:

* an init container ``oras-pull`` (the oras image) that pulls every input into the input
  path (a shared emptyDir, or the user's own volume when the path lies on one) and fails
  the Pod when a pull fails;
* a wrapper around the app container's command: a POSIX ``/bin/sh -c`` script that runs
  the ORIGINAL command and arguments as its positional parameters (so spaces, quotes,
  ``$`` and newlines survive byte for byte), forwards SIGTERM/SIGINT to it, records its
  exit code and a completion marker in a shared volume, and exits with the app's code;
* a regular container ``oras-push`` (not a native sidecar: those are stopped when the app
  ends) that waits for the marker and pushes the outputs only when the app exited 0,
  exiting non-zero when a push fails so that a Job retries instead of losing data.

Requirements on the app image: ``/bin/sh`` (any POSIX shell: dash, bash, busybox ash)
with the usual built-ins (``printf``, ``read``, ``kill``, ``wait``, ``trap``). Nothing
is downloaded or installed at run time; only the oras image runs oras.

Credentials: with ``oras_env`` the oras containers (never the app) get the Secret's keys
as environment (``envFrom``); ``ORAS_USER`` with ``ORAS_PULL_PASS`` (falling back to
``ORAS_PUSH_PASS``) for pulls and ``ORAS_PUSH_PASS`` for pushes. The password reaches oras
on stdin (``printf`` is a shell built-in, so it is in no process's arguments) and is
never written to disk.

Paths: the input path and each output's directory are mounted from one emptyDir
(``oras-workflow``) unless they already lie on one of the app container's volumes, which
is then shared with the oras containers instead. A fresh emptyDir mount hides whatever
the image has at that path. Directories are pushed under their own name as one
tar+gzip layer that ``oras pull`` unpacks (``unpack=False``: pushed as ``<name>.tar.gz``
without the unpack annotation, so consumers receive the archive).
"""

from __future__ import annotations

import copy
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from constructs_lib.model import OrasCache

DEFAULT_ORAS_IMAGE = "ghcr.io/oras-project/oras:v1.3.6"
"""The oras release the integration tests run (the CLI built from the Go proxy)."""
DEFAULT_CACHE = "oras"
DEFAULT_PORT = 5000
PULL_CONTAINER = "oras-pull"
PUSH_CONTAINER = "oras-push"
VOLUME = "oras-workflow"
ORAS_ROOT = "/mnt/oras"
STATE_DIR = f"{ORAS_ROOT}/state"
INPUTS_DIR = f"{ORAS_ROOT}/inputs"
STAGE_DIR = f"{ORAS_ROOT}/stage"
OUT_DIR = f"{ORAS_ROOT}/out"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._/-]+)?$")


def valid_reference(uri: str) -> bool:
    """``repo/name:tag`` (or ``@digest``), relative to the registry."""
    return bool(_REFERENCE.match(uri)) and "//" not in uri


def valid_name(name: str) -> bool:
    return bool(_DNS_LABEL.match(name))


def valid_registry(registry: str) -> bool:
    return bool(_REGISTRY.match(registry))


class WiringError(ValueError):
    """The spec or the parameters cannot be wired; the message says what to change."""


@dataclass(frozen=True)
class Output:
    """One artifact to push: ``path`` (file or directory; default: the working dir)."""

    uri: str
    path: str | None = None


@dataclass(frozen=True)
class WorkflowParams:
    """Typed wiring parameters (see constructs_lib.annotations for the annotation form).

    ``namespace`` is the cache's namespace; when None the Pod's own namespace is used
    (passed to `wire_pod_spec`), else the short name ``<cache>-0.<cache>`` that resolves
    in the Pod's namespace. ``registry`` (a remote registry, TLS) replaces the in-cluster
    cache. ``output_pipe`` receives the app's stdout (stderr stays in the log) and is
    pushed with the first output.
    ``entrypoint`` is the app command to use when the container has no ``command``.
    """

    inputs: tuple[str, ...] = ()
    outputs: tuple[Output, ...] = ()
    input_path: str | None = None
    output_pipe: str | None = None
    cache: str = DEFAULT_CACHE
    namespace: str | None = None
    port: int = DEFAULT_PORT
    registry: str | None = None
    container: str | None = None
    oras_image: str = DEFAULT_ORAS_IMAGE
    oras_env: str | None = None
    entrypoint: tuple[str, ...] | None = None
    unpack: bool = True
    debug: bool = False
    plain_http: bool | None = None
    """None: plain HTTP for the in-cluster cache, TLS for a remote registry."""

    @classmethod
    def for_cache(cls, cache: OrasCache, **kwargs: Any) -> WorkflowParams:
        """Parameters pointing at `cache` (its port, remote registry and orasEnv secret)."""
        spec = cache.spec
        base: dict[str, Any] = {
            "cache": cache.name,
            "namespace": cache.namespace,
            "port": spec.port,
            "registry": None if spec.deploy else spec.registry,
            "oras_env": spec.secrets.oras_env,
        }
        base.update(kwargs)
        return cls(**base)

    def with_cache(self, cache: OrasCache) -> WorkflowParams:
        """These parameters resolved against the named cache (port, remote registry, secret).

        What the parameters set explicitly (``registry``, ``oras_env``) wins.
        """
        spec = cache.spec
        return replace(
            self,
            cache=cache.name,
            namespace=cache.namespace or self.namespace,
            port=spec.port,
            registry=self.registry or (None if spec.deploy else spec.registry),
            oras_env=self.oras_env or spec.secrets.oras_env,
        )

    def endpoint(self, pod_namespace: str | None = None) -> str:
        """``<cache>-0.<cache>.<ns>.svc.cluster.local:<port>``, or the remote registry."""
        if self.registry:
            return self.registry
        host = f"{self.cache}-0.{self.cache}"
        namespace = self.namespace or pod_namespace
        if namespace:
            host = f"{host}.{namespace}.svc.cluster.local"
        return f"{host}:{self.port}"

    def uses_plain_http(self) -> bool:
        return self.plain_http if self.plain_http is not None else not self.registry

    def validate(self) -> list[str]:
        """Every problem with the parameters themselves (not with a spec)."""
        errors: list[str] = []
        if not _DNS_LABEL.match(self.cache):
            errors.append(f"cache {self.cache!r} is not a valid OrasCache name")
        if self.namespace is not None and not _DNS_LABEL.match(self.namespace):
            errors.append(f"namespace {self.namespace!r} is not a valid namespace name")
        if not 1 <= self.port <= 65535:
            errors.append(f"port {self.port} is not in 1..65535")
        if self.registry is not None and not _REGISTRY.match(self.registry):
            errors.append(f"registry {self.registry!r} is not host[:port][/path]")
        for uri in [*self.inputs, *(o.uri for o in self.outputs)]:
            if not valid_reference(uri):
                errors.append(f"artifact {uri!r} is not a repo/name:tag reference")
        seen: set[str] = set()
        for uri in self.inputs:
            if uri in seen:
                errors.append(f"input {uri!r} is listed twice")
            seen.add(uri)
        pushed: set[str] = set()
        for out in self.outputs:
            if out.uri in pushed:
                errors.append(f"two outputs push to {out.uri!r}")
            pushed.add(out.uri)
        if self.output_pipe is not None and not self.outputs:
            errors.append("output-pipe is pushed with an output: set output-uri too")
        for name, value in (("input-path", self.input_path), ("output-pipe", self.output_pipe),
                            *(("output-path", o.path) for o in self.outputs)):
            if value is not None and (not value or "\n" in value or "\0" in value):
                errors.append(f"{name} {value!r} is not a usable path")
        if self.entrypoint is not None and not self.entrypoint:
            errors.append("entrypoint is empty")
        if not self.oras_image:
            errors.append("oras image is empty")
        return errors


def is_wired(spec: Mapping[str, Any]) -> bool:
    """True when `spec` carries this module's wiring (the ``oras-workflow`` volume)."""
    return any(v.get("name") == VOLUME for v in spec.get("volumes") or [])


@dataclass
class _Source:
    """A directory as a volume source: (volume name, subPath) plus its read-only flag."""

    volume: str
    sub_path: str
    read_only: bool = False


@dataclass
class _Plan:
    """What to add to the app container: new mounts of our volume, keyed by path."""

    working_dir: str | None
    existing: list[dict[str, Any]]
    new_mounts: dict[str, str] = field(default_factory=dict)  # app path -> subPath

    def resolve(self, path: str | None, what: str, container: str) -> str:
        if path is None or not path.startswith("/"):
            if not self.working_dir:
                shown = f"{what} is not set" if path is None else f"{what} {path!r} is relative"
                raise WiringError(
                    f"{shown} and container {container!r} has no workingDir: set an absolute "
                    f"{what} or the container's workingDir (the image's WORKDIR is not "
                    "visible when wiring)"
                )
            path = posixpath.join(self.working_dir, path or ".")
        return posixpath.normpath(path)

    def source(self, path: str) -> _Source | None:
        """The volume holding `path` in the app container (longest mount path wins)."""
        best: tuple[int, _Source] | None = None
        mounts = [(m["mountPath"], m) for m in self.existing]
        mounts += [(p, {"name": VOLUME, "subPath": s}) for p, s in self.new_mounts.items()]
        for mount_path, mount in mounts:
            root = posixpath.normpath(mount_path)
            if path != root and not path.startswith(root.rstrip("/") + "/"):
                continue
            if mount.get("subPathExpr"):
                raise WiringError(
                    f"{path} lies on volume {mount['name']!r} mounted with subPathExpr, "
                    "which cannot be shared with the oras containers: choose another path"
                )
            rel = posixpath.relpath(path, root)
            sub = posixpath.normpath(posixpath.join(mount.get("subPath") or "", rel))
            sub = "" if sub == "." else sub
            if best is None or len(root) > best[0]:
                best = (len(root), _Source(mount["name"], sub, bool(mount.get("readOnly"))))
        return None if best is None else best[1]

    def ensure(self, path: str, sub_path: str) -> _Source:
        """The source of `path`, adding a mount of our volume there if it has none."""
        found = self.source(path)
        if found is not None:
            return found
        if path == "/":
            raise WiringError("cannot mount a volume at /: choose a path below it")
        self.new_mounts[path] = sub_path
        return _Source(VOLUME, sub_path)


@dataclass
class _Push:
    """One output as the push container sees it."""

    ref: str
    cwd: str
    names: list[str]
    mount: dict[str, Any]


def wire_pod_spec(
    spec: Mapping[str, Any], params: WorkflowParams, *, namespace: str | None = None
) -> dict[str, Any]:
    """Return a wired deep copy of the Pod spec `spec` (Kubernetes JSON field names).

    `namespace` is the Pod's namespace (used when ``params.namespace`` is None). A spec
    that is already wired is returned unchanged (a copy), as is one with nothing to wire.
    """
    errors = params.validate()
    if errors:
        raise WiringError("invalid workflow parameters: " + "; ".join(errors))
    out: dict[str, Any] = copy.deepcopy(dict(spec))
    if is_wired(out):
        return out
    containers: list[dict[str, Any]] = out.get("containers") or []
    init: list[dict[str, Any]] = out.get("initContainers") or []
    taken = {c.get("name") for c in [*containers, *init]}
    for name in (PULL_CONTAINER, PUSH_CONTAINER):
        if name in taken:
            raise WiringError(
                f"the spec already has a container named {name!r} but no {VOLUME!r} volume: "
                "rename that container (the name is reserved for the wiring)"
            )
    if not params.inputs and not params.outputs:
        return out
    if not containers:
        raise WiringError("the Pod spec has no containers")
    app = _app_container(containers, params.container)
    restart = out.get("restartPolicy") or "Always"
    if params.outputs and restart == "Always":
        raise WiringError(
            "outputs are pushed once, after the app exits, but restartPolicy is Always "
            "(the default for Pods): set restartPolicy to Never (or OnFailure)"
        )
    for mount in app.get("volumeMounts") or []:
        path = posixpath.normpath(mount.get("mountPath", ""))
        if path == ORAS_ROOT or path.startswith(ORAS_ROOT + "/"):
            raise WiringError(
                f"container {app['name']!r} mounts {mount.get('name')!r} at {path}, which is "
                f"reserved for the wiring ({ORAS_ROOT}): move that mount"
            )
    plan = _Plan(app.get("workingDir"), list(app.get("volumeMounts") or []))
    registry = params.endpoint(namespace)
    oras_env = _env_from(params.oras_env)
    pull = None
    if params.inputs:
        input_path = plan.resolve(params.input_path, "input-path", app["name"])
        source = plan.ensure(input_path, "inputs")
        if source.read_only:
            raise WiringError(
                f"input-path {input_path} lies on read-only volume {source.volume!r}"
            )
        pull = _pull_container(params, registry, source, input_path, oras_env)
    pushes = [
        _plan_push(plan, params, index, output, registry=registry, app=app["name"])
        for index, output in enumerate(params.outputs)
    ]
    mounts = list(app.get("volumeMounts") or [])
    for path, sub_path in plan.new_mounts.items():
        mounts.append({"name": VOLUME, "mountPath": path, "subPath": sub_path})
    if pushes:
        mounts.append({"name": VOLUME, "mountPath": STATE_DIR, "subPath": "state"})
        _wrap_app(app, params, plan)
    if mounts:
        app["volumeMounts"] = mounts
    out["volumes"] = [*(out.get("volumes") or []), {"name": VOLUME, "emptyDir": {}}]
    if pull is not None:
        out["initContainers"] = [pull, *init]
    if pushes:
        containers.append(_push_container(params, pushes, restart, oras_env))
    return out


def _app_container(containers: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
    if name is None:
        return containers[0]
    for container in containers:
        if container.get("name") == name:
            return container
    known = ", ".join(repr(c.get("name")) for c in containers)
    raise WiringError(f"container {name!r} is not in the Pod spec (containers: {known})")


def _env_from(secret: str | None) -> list[dict[str, Any]] | None:
    return None if secret is None else [{"secretRef": {"name": secret}}]


def _plan_push(
    plan: _Plan, params: WorkflowParams, index: int, output: Output, *, registry: str, app: str
) -> _Push:
    pipe = plan.resolve(params.output_pipe, "output-pipe", app) if params.output_pipe else None
    pipe = pipe if index == 0 else None
    if output.path is None and pipe is not None:
        path = pipe
    else:
        path = plan.resolve(output.path, "output-path", app)
    base = f"{OUT_DIR}/{index}"
    own_mount = path in plan.new_mounts or any(
        posixpath.normpath(m["mountPath"]) == path for m in plan.existing
    )
    if own_mount:  # a directory that is itself a mount: push it under its own name
        source = plan.ensure(path, f"out-{index}")
        name = posixpath.basename(path) or "root"
        cwd, names, mount_path = base, [name], f"{base}/{name}"
        directory = path  # the pipe lands inside it and travels with it
    else:
        directory = posixpath.dirname(path)
        source = plan.ensure(directory, f"out-{index}")
        cwd, names, mount_path = base, [posixpath.basename(path)], base
        if pipe is not None and pipe != path:
            names.append(posixpath.basename(pipe))
    # The pipe is opened before the app runs: its directory must exist then, so it must
    # be the (mounted) output directory itself, not a subdirectory the app creates later.
    if pipe is not None and pipe != path and posixpath.dirname(pipe) != directory:
        raise WiringError(
            f"output-pipe {pipe} must be directly in {directory}, the directory of "
            f"output-path {path}"
        )
    mount: dict[str, Any] = {"name": source.volume, "mountPath": mount_path, "readOnly": True}
    if source.sub_path:
        mount["subPath"] = source.sub_path
    return _Push(f"{registry}/{output.uri}", cwd, names, mount)


# --- scripts ---------------------------------------------------------------------------
# Kubernetes expands $(VAR) in command and args and turns $$ into $: the scripts below
# contain neither (a unit test checks), so they reach the shell exactly as written.

_NEXT_ATTEMPT = 'n=0\nwhile [ -e "$s/attempt-$n" ]; do n=$((n+1)); done\n'


def _q(value: str) -> str:
    return shlex.quote(value)


def _auth(password_var: str, command: str) -> str:
    """`command` with credentials from the environment when ORAS_USER is set."""
    return (
        'if [ -n "${ORAS_USER:-}" ]; then\n'
        f'  printf \'%s\' "{password_var}" | {command} -u "$ORAS_USER" --password-stdin\n'
        f"else\n  {command}\nfi"
    )


def _flags(params: WorkflowParams) -> str:
    return "--no-tty" + (" --plain-http" if params.uses_plain_http() else "")


def pull_script(params: WorkflowParams, registry: str, target: str, shown: str) -> str:
    """Pull every input into `target`; `shown` is where the app sees them (for the log)."""
    lines = ["set -u", f"out={_q(target)}"]
    if params.debug:
        lines.append(f"echo {_q(f'oras-pull: registry {registry}, inputs into {shown}')}")
    for uri in params.inputs:
        ref = _q(f"{registry}/{uri}")
        command = f'oras pull {_flags(params)} -o "$out" {ref}'
        lines += [
            f"echo {_q(f'oras-pull: pulling {registry}/{uri}')}",
            _auth("${ORAS_PULL_PASS:-${ORAS_PUSH_PASS:-}}", command)
            + f" || {{ echo {_q(f'oras-pull: pulling {registry}/{uri} failed')} >&2; exit 1; }}",
        ]
    return "\n".join(lines) + "\n"


def app_script(pipe: str | None, debug: bool) -> str:
    """Run "$@" (the original command), keep its exit code, mark completion."""
    redirect = f" >{_q(pipe)}" if pipe else ""
    lines = [
        # Traps first: a signal that arrives before the app has started is held and
        # passed on as soon as it has (otherwise it would kill this wrapper, not the app).
        "child= pending=",
        "trap 'if [ -n \"$child\" ]; then kill -TERM \"$child\" 2>/dev/null; "
        "else pending=TERM; fi' TERM",
        "trap 'if [ -n \"$child\" ]; then kill -INT \"$child\" 2>/dev/null; "
        "else pending=INT; fi' INT",
        f"s={_q(STATE_DIR)}",
        _NEXT_ATTEMPT.rstrip("\n"),
        ': >"$s/attempt-$n"',
    ]
    if debug:
        lines.append('echo "oras-wrapper: attempt $n: running $*" >&2')
    lines += [
        # stdin stays the container's (a background job would get /dev/null).
        "exec 3<&0",
        f'"$@" <&3 3<&-{redirect} &',
        "child=$!",
        "exec 3<&-",
        '[ -n "$pending" ] && kill "-$pending" "$child" 2>/dev/null',
        "while :; do",
        '  wait "$child"',
        "  code=$?",
        # wait returns early when a trap ran; the child is still there then.
        '  kill -0 "$child" 2>/dev/null || break',
        "done",
        "printf '%s\\n' \"$code\" >\"$s/exit-$n\"",
        ': >"$s/done-$n"',
        'exit "$code"',
    ]
    return "\n".join(lines) + "\n"


def push_script(params: WorkflowParams, pushes: Sequence[_Push], restart: str) -> str:
    retry = restart == "OnFailure"
    lines = [
        "set -u",
        f"s={_q(STATE_DIR)}",
        "n=0",
        "while :; do",
        '  while [ ! -e "$s/done-$n" ]; do sleep 1; done',
        '  read -r code <"$s/exit-$n"',
        '  [ "$code" = 0 ] && break',
        '  echo "oras-push: the app exited with $code (attempt $n): nothing pushed" >&2',
        "  n=$((n+1))" if retry else "  exit 0",
        "done",
    ]
    for index, push in enumerate(pushes):
        if params.debug:
            shown = " ".join(push.names)
            lines.append(f"echo {_q(f'oras-push: {push.ref} <- {shown} in {push.cwd}')}")
        names = " ".join(_q(n) for n in push.names)
        fail = f"{{ echo {_q(f'oras-push: pushing {push.ref} failed')} >&2; exit 1; }}"
        lines.append(f"cd {_q(push.cwd)} || {fail}")
        if not params.unpack:  # directories as plain .tar.gz files, never unpacked on pull
            stage = _q(f"{STAGE_DIR}/{index}")
            lines += [f"rm -rf {stage} && mkdir -p {stage} || {fail}", "set --"]
            for name in push.names:
                archive = _q(name + ".tar.gz")
                lines.append(
                    f"if [ -d {_q(name)} ]; then tar -czf {stage}/{archive} {_q(name)} && "
                    f"set -- \"$@\" {archive}; else cp -p {_q(name)} {stage}/ && "
                    f"set -- \"$@\" {_q(name)}; fi || {fail}"
                )
            lines.append(f"cd {stage} || {fail}")
            names = '"$@"'
        command = f"oras push {_flags(params)} {_q(push.ref)} {names}"
        lines.append(_auth("${ORAS_PUSH_PASS:-}", command) + f" || {fail}")
    lines.append("echo 'oras-push: done'")
    return "\n".join(lines) + "\n"


def _oras_container(
    name: str, params: WorkflowParams, script: str, mounts: list[dict[str, Any]],
    env_from: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": params.oras_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", script],
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if env_from:
        container["envFrom"] = env_from
    return container


def _pull_container(
    params: WorkflowParams, registry: str, source: _Source, input_path: str,
    env_from: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": source.volume, "mountPath": INPUTS_DIR}
    if source.sub_path:
        mount["subPath"] = source.sub_path
    return _oras_container(
        PULL_CONTAINER, params, pull_script(params, registry, INPUTS_DIR, input_path), [mount],
        env_from,
    )


def _push_container(
    params: WorkflowParams, pushes: Sequence[_Push], restart: str,
    env_from: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    mounts = [{"name": VOLUME, "mountPath": STATE_DIR, "subPath": "state", "readOnly": True}]
    if not params.unpack:
        mounts.append({"name": VOLUME, "mountPath": STAGE_DIR, "subPath": "stage"})
    mounts += [p.mount for p in pushes]
    return _oras_container(
        PUSH_CONTAINER, params, push_script(params, pushes, restart), mounts, env_from
    )


def _wrap_app(app: dict[str, Any], params: WorkflowParams, plan: _Plan) -> None:
    command = list(app.get("command") or params.entrypoint or [])
    if not command:
        raise WiringError(
            f"container {app['name']!r} has no command and no entrypoint was given: the "
            "image's ENTRYPOINT is not visible when wiring, so set the container's command "
            "(or the entrypoint parameter / annotation)"
        )
    original = [*command, *(app.get("args") or [])]
    pipe = None
    if params.output_pipe:
        pipe = plan.resolve(params.output_pipe, "output-pipe", app["name"])
    app["command"] = ["/bin/sh", "-c", app_script(pipe, params.debug), "oras-wrapper", *original]
    app.pop("args", None)
