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

Relative paths without ``workingDir`` (the original operator's examples, e.g.
``output-path: pancakes.txt``): the image's WORKDIR is not visible when wiring, so such
paths are resolved when the Pod runs, by the wrapper, in its working directory (the
image's WORKDIR). Nothing is mounted over the app's files then; the data is copied:

* inputs (``input-path`` relative or unset): ``oras-pull`` pulls into the
  ``oras-workflow`` volume, mounted read-only in the app container at
  ``/mnt/oras/inputs``; before the app starts the wrapper runs ``mkdir -p`` and
  ``cp -R`` to copy them into the input path (a wrapper that then execs the app
  when there are no outputs);
* outputs (a relative ``output-path`` or ``output-pipe``): the app writes into its own
  filesystem; after it exits 0 the wrapper copies the output (file or directory, and the
  pipe's file) with ``mkdir -p`` and ``cp -R`` into ``/mnt/oras/out/<index>/<attempt>``
  of the shared volume, which ``oras-push`` pushes from. The pipe's directory is created
  (``mkdir -p``) before the app starts. When a copy fails the wrapper logs why and
  exits 1 (nothing is pushed). An unset ``output-path`` (the working directory itself)
  still needs ``workingDir``.

This adds ``mkdir`` and ``cp`` (coreutils, busybox) to the image's requirements, only in
that case; absolute paths and containers with ``workingDir`` are wired as before.
"""

from __future__ import annotations

import copy
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from constructs_lib.model import OrasCache, registry_address
from constructs_lib.schema import DEFAULT_PORT, OBJECT_NAME_PATTERN

DEFAULT_ORAS_IMAGE = "ghcr.io/oras-project/oras:v1.3.6"
"""The oras release the integration tests run (the CLI built from the Go proxy)."""
DEFAULT_CACHE = "oras"
PULL_CONTAINER = "oras-pull"
PUSH_CONTAINER = "oras-push"
VOLUME = "oras-workflow"
ORAS_ROOT = "/mnt/oras"
STATE_DIR = f"{ORAS_ROOT}/state"
INPUTS_DIR = f"{ORAS_ROOT}/inputs"
STAGE_DIR = f"{ORAS_ROOT}/stage"
OUT_DIR = f"{ORAS_ROOT}/out"
RUN_TIME_HINT = "a relative one is resolved in the image's WORKDIR when the Pod runs"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
_EXPANDED = re.compile(r"\$[($]")  # Kubernetes' $(VAR) expansion and $$ escape
# A leading '-' would read as an option wherever the value reaches a command line.
_REGISTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?(/[A-Za-z0-9._/-]+)?$")
_SECRET_NAME = re.compile(OBJECT_NAME_PATTERN)


def valid_reference(uri: str) -> bool:
    """``repo/name:tag`` (or ``@digest``), relative to the registry."""
    return bool(_REFERENCE.fullmatch(uri)) and "//" not in uri


def valid_name(name: str) -> bool:
    return bool(_DNS_LABEL.fullmatch(name))


def valid_registry(registry: str) -> bool:
    return bool(_REGISTRY.fullmatch(registry))


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
        _require_registry(cache, base["registry"])
        return cls(**base)

    def with_cache(self, cache: OrasCache) -> WorkflowParams:
        """These parameters resolved against the named cache (port, remote registry, secret).

        What the parameters set explicitly (``registry``, ``oras_env``) wins.
        """
        spec = cache.spec
        registry = self.registry or (None if spec.deploy else spec.registry)
        _require_registry(cache, registry)
        return replace(
            self,
            cache=cache.name,
            namespace=cache.namespace or self.namespace,
            port=spec.port,
            registry=registry,
            oras_env=self.oras_env or spec.secrets.oras_env,
        )

    def endpoint(self, pod_namespace: str | None = None) -> str:
        """``<cache>-0.<cache>.<ns>.svc.cluster.local:<port>``, or the remote registry."""
        if self.registry:
            return self.registry
        return registry_address(self.cache, self.namespace or pod_namespace, self.port)

    def uses_plain_http(self) -> bool:
        return self.plain_http if self.plain_http is not None else not self.registry

    def validate(self) -> list[str]:
        """Every problem with the parameters themselves (not with a spec)."""
        return [*_name_errors(self), *_artifact_errors(self), *_usable_path_errors(self),
                *_path_errors(self)]


def _name_errors(params: WorkflowParams) -> list[str]:
    """Names and addresses: cache, namespace, port, registry, oras image and Secret."""
    errors: list[str] = []
    if not _DNS_LABEL.fullmatch(params.cache):
        errors.append(f"cache {params.cache!r} is not a valid OrasCache name")
    if params.namespace is not None and not _DNS_LABEL.fullmatch(params.namespace):
        errors.append(f"namespace {params.namespace!r} is not a valid namespace name")
    if not 1 <= params.port <= 65535:
        errors.append(f"port {params.port} is not in 1..65535")
    if params.registry is not None and not _REGISTRY.fullmatch(params.registry):
        errors.append(f"registry {params.registry!r} is not host[:port][/path]")
    if params.entrypoint is not None and not params.entrypoint:
        errors.append("entrypoint is empty")
    if not _REFERENCE.fullmatch(params.oras_image) or len(params.oras_image) > 512:
        errors.append(f"oras image {params.oras_image!r} is not an image reference")
    if params.oras_env is not None and (
            not _SECRET_NAME.fullmatch(params.oras_env) or len(params.oras_env) > 253):
        errors.append(f"oras-env {params.oras_env!r} is not a Secret name")
    return errors


def _artifact_errors(params: WorkflowParams) -> list[str]:
    """Artifact references: valid, no input twice, no two outputs to one reference."""
    errors = [f"artifact {uri!r} is not a repo/name:tag reference"
              for uri in [*params.inputs, *(o.uri for o in params.outputs)]
              if not valid_reference(uri)]
    seen: set[str] = set()
    for uri in params.inputs:
        if uri in seen:
            errors.append(f"input {uri!r} is listed twice")
        seen.add(uri)
    pushed: set[str] = set()
    for out in params.outputs:
        if out.uri in pushed:
            errors.append(f"two outputs push to {out.uri!r}")
        pushed.add(out.uri)
    if params.output_pipe is not None and not params.outputs:
        errors.append("output-pipe is pushed with an output: set output-uri too")
    return errors


def _usable_path_errors(params: WorkflowParams) -> list[str]:
    """Paths that cannot go into the wired commands as they are."""
    errors = []
    for name, value in (("input-path", params.input_path), ("output-pipe", params.output_pipe),
                        *(("output-path", o.path) for o in params.outputs)):
        if value is not None and (not value or "\n" in value or "\0" in value):
            errors.append(f"{name} {value!r} is not a usable path")
        elif value is not None and _EXPANDED.search(value):
            errors.append(
                f"{name} {value!r} contains $( or $$, which Kubernetes would expand in "
                "the wired commands: rename it"
            )
    return errors


def _path_errors(params: WorkflowParams) -> list[str]:
    """Paths that a command would read as an option, or that the wrapper writes to and
    that climb out of the working directory (possibly into the reserved ORAS_ROOT)."""
    errors = []
    for name, value in (("input-path", params.input_path), ("output-pipe", params.output_pipe),
                        *(("output-path", o.path) for o in params.outputs)):
        if not value:
            continue
        if any(part.startswith("-") for part in value.split("/")):
            errors.append(f"{name} {value!r}: a name starting with '-' would read as an "
                          "option in the wired commands: rename it")
        elif (name != "output-path" and not value.startswith("/")
              and posixpath.normpath(value).split("/")[0] == ".."):
            # Written to at run time, wherever the image's WORKDIR is.
            errors.append(f"{name} {value!r} climbs out of the working directory: give an "
                          "absolute path")
    return errors


def _require_registry(cache: OrasCache, registry: str | None) -> None:
    """A `deploy: false` cache without spec.registry (the original operator's remote form)
    leaves the address to each pod: without one there is nothing to pull from."""
    if not cache.spec.deploy and not registry:
        raise WiringError(
            f"OrasCache {cache.name!r} runs no registry (deploy: false) and names none "
            "(spec.registry): give this workflow its remote registry")


def is_wired(spec: Mapping[str, Any]) -> bool:
    """True when `spec` carries this module's wiring: the ``oras-workflow`` volume and the
    oras container(s) it adds (a volume of that name alone is the user's: a conflict)."""
    ours = {c.get("name") for c in spec.get("initContainers") or []} & {PULL_CONTAINER} | {
        c.get("name") for c in spec.get("containers") or []} & {PUSH_CONTAINER}
    return bool(ours) and any(v.get("name") == VOLUME for v in spec.get("volumes") or [])


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

    def at_run_time(self, path: str | None) -> bool:
        """True when `path` is relative (or unset) and only the image knows its base."""
        return not self.working_dir and (path is None or not path.startswith("/"))

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
        resolved = posixpath.normpath(path)
        if resolved == ORAS_ROOT or resolved.startswith(ORAS_ROOT + "/"):
            raise WiringError(f"{what} {path!r} is {resolved}, inside {ORAS_ROOT}, which is "
                              "reserved for the wiring: choose another path")
        return resolved

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
    """One output as the push container sees it.

    ``copy``: paths (as the wrapper's shell sees them) that the wrapper copies into
    ``cwd/<attempt>`` after the app succeeded; empty when the output is mounted.
    ``pipe``: where the app's stdout goes (the first output only).
    """

    ref: str
    cwd: str
    names: list[str]
    mount: dict[str, Any]
    copy: tuple[str, ...] = ()
    pipe: str | None = None


def wire_pod_spec(
    spec: Mapping[str, Any], params: WorkflowParams, *, namespace: str | None = None
) -> dict[str, Any]:
    """Return a wired deep copy of the Pod spec `spec` (Kubernetes JSON field names).

    `namespace` is the Pod's namespace (used when ``params.namespace`` is None). A spec
    that is already wired is returned unchanged (a copy), as is one with nothing to wire.
    Mount planning (_Plan, _app_mounts) decides where data lies; the containers and
    scripts (_pull_container, _wrap_app, _push_container) are generated from that plan.
    """
    errors = params.validate()
    if errors:
        raise WiringError("invalid workflow parameters: " + "; ".join(errors))
    out: dict[str, Any] = copy.deepcopy(dict(spec))
    if is_wired(out):
        return out
    containers: list[dict[str, Any]] = out.get("containers") or []
    init: list[dict[str, Any]] = out.get("initContainers") or []
    _check_reserved_names(out, containers, init)
    if not params.inputs and not params.outputs:
        return out
    if not containers:
        raise WiringError("the Pod spec has no containers")
    app = _app_container(containers, params.container)
    _check_app_mounts(app)
    plan = _Plan(app.get("workingDir"), list(app.get("volumeMounts") or []))
    registry = params.endpoint(namespace)
    oras_env = _env_from(params.oras_env)
    pull, copy_in = _plan_pull(plan, params, app["name"], registry, oras_env)
    pushes = [
        _plan_push(plan, params, index, output, registry=registry, app=app["name"])
        for index, output in enumerate(params.outputs)
    ]
    mounts = _app_mounts(app, plan, copy_in, pushes)
    if pushes or copy_in is not None:
        _wrap_app(app, params, pushes, copy_in)
    if mounts:
        app["volumeMounts"] = mounts
    out["volumes"] = [*(out.get("volumes") or []), {"name": VOLUME, "emptyDir": {}}]
    if pull is not None:
        out["initContainers"] = [pull, *init]
    if pushes:
        restart = out.get("restartPolicy") or "Always"
        containers.append(_push_container(params, pushes, restart, oras_env))
    return out


def _check_reserved_names(out: Mapping[str, Any], containers: list[dict[str, Any]],
                          init: list[dict[str, Any]]) -> None:
    """Every container is named, and none of the names the wiring adds is taken."""
    for field_name, listed in (("containers", containers), ("initContainers", init)):
        for index, container in enumerate(listed):
            if not isinstance(container.get("name"), str) or not container["name"]:
                raise WiringError(f"{field_name}[{index}] has no name")
    if any(v.get("name") == VOLUME for v in out.get("volumes") or []):
        raise WiringError(f"the spec already has a volume named {VOLUME!r}: rename it (the "
                          "name is reserved for the wiring)")
    taken = {c.get("name") for c in [*containers, *init]}
    for name in (PULL_CONTAINER, PUSH_CONTAINER):
        if name in taken:
            raise WiringError(
                f"the spec already has a container named {name!r} but no {VOLUME!r} volume: "
                "rename that container (the name is reserved for the wiring)"
            )


def _check_app_mounts(app: Mapping[str, Any]) -> None:
    for mount in app.get("volumeMounts") or []:
        path = posixpath.normpath(mount.get("mountPath", ""))
        if path == ORAS_ROOT or path.startswith(ORAS_ROOT + "/"):
            raise WiringError(
                f"container {app['name']!r} mounts {mount.get('name')!r} at {path}, which is "
                f"reserved for the wiring ({ORAS_ROOT}): move that mount"
            )


def _app_mounts(app: Mapping[str, Any], plan: _Plan, copy_in: str | None,
                pushes: Sequence[_Push]) -> list[dict[str, Any]]:
    """The app's mounts: its own, the volume where the plan put data, and the wrapper's."""
    mounts = list(app.get("volumeMounts") or [])
    for path, sub_path in plan.new_mounts.items():
        mounts.append({"name": VOLUME, "mountPath": path, "subPath": sub_path})
    if copy_in is not None:
        mounts.append({"name": VOLUME, "mountPath": INPUTS_DIR, "subPath": "inputs",
                       "readOnly": True})
    if any(p.copy for p in pushes):
        mounts.append({"name": VOLUME, "mountPath": OUT_DIR, "subPath": "out"})
    if pushes:
        mounts.append({"name": VOLUME, "mountPath": STATE_DIR, "subPath": "state"})
    return mounts


def restart_warning(spec: Mapping[str, Any], params: WorkflowParams) -> str | None:
    """The one surprise of wiring a Pod that restarts its app whatever the exit code
    (the original operator's producer examples): said at admission, not refused."""
    if not params.outputs or (spec.get("restartPolicy") or "Always") != "Always":
        return None
    return ("restartPolicy is Always (the default for Pods): the app runs again each time "
            "it exits and its outputs are pushed after every successful run, to the same "
            "tag; set restartPolicy: Never (or OnFailure) to run it once")


def _plan_pull(
    plan: _Plan, params: WorkflowParams, app: str, registry: str,
    oras_env: list[dict[str, Any]] | None,
) -> tuple[dict[str, Any] | None, str | None]:
    """The pull container, and the input path when the wrapper resolves it at run time."""
    if not params.inputs:
        return None, None
    if plan.at_run_time(params.input_path):
        copy_in = _shell_path(params.input_path or ".")
        shown = f"{copy_in} in the app's working directory (copied there by the app)"
        source = _Source(VOLUME, "inputs")
        return _pull_container(params, registry, source, shown, oras_env), copy_in
    input_path = plan.resolve(params.input_path, "input-path", app)
    source = plan.ensure(input_path, "inputs")
    if source.read_only:
        raise WiringError(f"input-path {input_path} lies on read-only volume {source.volume!r}")
    return _pull_container(params, registry, source, input_path, oras_env), None


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


def _shell_path(path: str) -> str:
    """`path` normalized, relative ones as ``./path`` (never read as an option)."""
    path = posixpath.normpath(path)
    return path if path.startswith("/") or path == "." else f"./{path}"


def _plan_push(
    plan: _Plan, params: WorkflowParams, index: int, output: Output, *, registry: str, app: str
) -> _Push:
    raw_pipe = params.output_pipe if index == 0 else None
    raw_path = output.path if output.path is not None or raw_pipe is None else raw_pipe
    if plan.at_run_time(raw_path) or (raw_pipe is not None and plan.at_run_time(raw_pipe)):
        return _plan_copied_push(index, output, raw_path, raw_pipe,
                                 registry=registry, app=app)
    pipe = plan.resolve(raw_pipe, "output-pipe", app) if raw_pipe else None
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
    return _Push(f"{registry}/{output.uri}", cwd, names, mount, pipe=pipe)


def _plan_copied_push(
    index: int, output: Output, raw_path: str | None,
    raw_pipe: str | None, *, registry: str, app: str,
) -> _Push:
    """An output (and pipe) resolved at run time: the wrapper copies it to the volume."""
    if raw_path is None:
        raise WiringError(
            f"output-path is not set and container {app!r} has no workingDir: set "
            f"output-path ({RUN_TIME_HINT}) or the container's workingDir (the working "
            "directory itself is pushed only when it is known at wiring time)"
        )
    path = _shell_path(raw_path)
    name = posixpath.basename(path)
    if name in (".", "..", ""):
        raise WiringError(
            f"output-path {raw_path!r} names the working directory or a parent of it, "
            f"which container {app!r} does not set (no workingDir): name a file or "
            "directory below it, or set the container's workingDir"
        )
    copy, names = [path], [name]
    pipe = None
    if raw_pipe is not None:
        pipe = _shell_path(raw_pipe)
        if posixpath.basename(pipe) in (".", "..", ""):
            raise WiringError(f"output-pipe {raw_pipe!r} does not name a file")
        if pipe != path and not pipe.startswith(path + "/"):  # else it travels with it
            if posixpath.basename(pipe) == name:
                raise WiringError(
                    f"output-pipe {raw_pipe!r} and output-path {raw_path!r} would both be "
                    f"pushed as {name!r}: rename one of them"
                )
            copy.append(pipe)
            names.append(posixpath.basename(pipe))
    base = f"{OUT_DIR}/{index}"
    mount = {"name": VOLUME, "mountPath": base, "readOnly": True, "subPath": f"out/{index}"}
    return _Push(f"{registry}/{output.uri}", base, names, mount, tuple(copy), pipe)


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


def _copy_in(copy_in: str, fail: str) -> str:
    """Copy the pulled inputs into `copy_in` (relative to the wrapper's directory)."""
    copy = f"cp -R {_q(INPUTS_DIR + '/.')} {_q(copy_in)}"
    shown = "the working directory" if copy_in == "." else copy_in
    message = _q(f"oras-wrapper: copying the inputs into {shown} failed")
    if copy_in != ".":
        copy = f"{{ mkdir -p {_q(copy_in)} && {copy}; }}"
    return f"{copy} || {{ echo {message} >&2; {fail}; }}"


def inputs_script(copy_in: str, debug: bool) -> str:
    """Copy the inputs into the (run-time) input path, then become the app."""
    lines = ["set -u"]
    if debug:
        lines.append(f"echo {_q(f'oras-wrapper: copying the inputs into {copy_in} in')} "
                     '"$PWD:" >&2')
        lines.append(f"ls -A {_q(INPUTS_DIR)} >&2")
    lines += [_copy_in(copy_in, "exit 1"), 'exec "$@"']
    return "\n".join(lines) + "\n"


def app_script(
    pipe: str | None, debug: bool, *, copy_in: str | None = None,
    copies: Sequence[tuple[str, Sequence[str]]] = (), make_pipe_dir: bool = False,
) -> str:
    """Run "$@" (the original command), keep its exit code, mark completion.

    Only for paths resolved at run time: `copy_in` (copy the inputs there first),
    `copies` ((stage directory, paths) to copy after the app exited 0) and
    `make_pipe_dir` (create the pipe's directory before the app starts).
    """
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
    # Failing before the app ran: recorded like an app exiting 1, so nothing is pushed.
    fail = "printf '1\\n' >\"$s/exit-$n\"; : >\"$s/done-$n\"; exit 1"
    if debug and (copy_in is not None or copies):
        lines.append('echo "oras-wrapper: relative paths are resolved in $PWD" >&2')
    if copy_in is not None:
        lines.append(_copy_in(copy_in, fail))
    pipe_dir = posixpath.dirname(pipe) if pipe and make_pipe_dir else ""
    if pipe_dir not in ("", ".", "/"):
        message = _q(f"oras-wrapper: creating {pipe_dir} for the output-pipe failed")
        lines.append(f"mkdir -p {_q(pipe_dir)} || {{ echo {message} >&2; {fail}; }}")
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
    ]
    for stage, paths in copies:
        target = f'{_q(stage)}/"$n"'
        shown = " ".join(paths)
        message = _q(f"oras-wrapper: the app exited 0 but copying {shown} to {stage} "
                     "failed: nothing is pushed")
        sources = " ".join(_q(p) for p in paths)
        lines += [
            'if [ "$code" = 0 ]; then',
            f"  {{ mkdir -p {target} && cp -R {sources} {target}/; }} || "
            f"{{ echo {message} >&2; code=1; }}",
            "fi",
        ]
    lines += [
        "printf '%s\\n' \"$code\" >\"$s/exit-$n\"",
        ': >"$s/done-$n"',
        'exit "$code"',
    ]
    return "\n".join(lines) + "\n"


def push_script(params: WorkflowParams, pushes: Sequence[_Push], restart: str) -> str:
    """Wait for the app's run to finish and push its outputs if it exited 0.

    Never: one run. OnFailure: runs until one succeeds, whose outputs are pushed.
    Always: the app runs again after every exit, so this container never exits (kubelet
    would restart it too, as a crash loop): it pushes after each successful run and
    waits for the next. Restarted after a failed push, it starts at the latest finished
    run, so the push is retried and older runs are not pushed again.
    """
    steps = _push_steps(params, pushes)
    wait = ['  while [ ! -e "$s/done-$n" ]; do sleep 1; done', '  read -r code <"$s/exit-$n"']
    skipped = 'echo "oras-push: the app exited with $code (attempt $n): nothing pushed" >&2'
    lines = ["set -u", f"s={_q(STATE_DIR)}", "n=0"]
    if restart == "Always":
        return "\n".join([
            *lines, "push() {", *(f"  {line}" for step in steps for line in step.split("\n")),
            "}",
            'while [ -e "$s/done-$((n+1))" ]; do n=$((n+1)); done',
            "while :; do", *wait,
            f'  if [ "$code" = 0 ]; then push; else {skipped}; fi',
            "  n=$((n+1))", "done",
        ]) + "\n"
    lines += [
        "while :; do", *wait,
        '  [ "$code" = 0 ] && break',
        f"  {skipped}",
        "  n=$((n+1))" if restart == "OnFailure" else "  exit 0",
        "done",
    ]
    return "\n".join(lines + steps) + "\n"


def _push_steps(params: WorkflowParams, pushes: Sequence[_Push]) -> list[str]:
    """Push every output of run "$n"; exit 1 on the first failure."""
    lines: list[str] = []
    for index, push in enumerate(pushes):
        if params.debug:
            shown = " ".join(push.names)
            lines.append(f"echo {_q(f'oras-push: {push.ref} <- {shown} in {push.cwd}')}")
        names = " ".join(_q(n) for n in push.names)
        fail = f"{{ echo {_q(f'oras-push: pushing {push.ref} failed')} >&2; exit 1; }}"
        attempt = '/"$n"' if push.copy else ""  # copied per attempt by the wrapper
        lines.append(f"cd {_q(push.cwd)}{attempt} || {fail}")
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
    return lines


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


def _wrap_app(
    app: dict[str, Any], params: WorkflowParams, pushes: Sequence[_Push], copy_in: str | None
) -> None:
    command = list(app.get("command") or params.entrypoint or [])
    if not command:
        raise WiringError(
            f"container {app['name']!r} has no command and no entrypoint was given: the "
            "image's ENTRYPOINT is not visible when wiring, so set the container's command "
            "(or the entrypoint parameter / annotation)"
        )
    original = [*command, *(app.get("args") or [])]
    if pushes:
        copies = [(p.cwd, p.copy) for p in pushes if p.copy]
        script = app_script(pushes[0].pipe, params.debug, copy_in=copy_in, copies=copies,
                            make_pipe_dir=bool(pushes[0].copy))
    else:
        assert copy_in is not None
        script = inputs_script(copy_in, params.debug)
    app["command"] = ["/bin/sh", "-c", script, "oras-wrapper", *original]
    app.pop("args", None)
