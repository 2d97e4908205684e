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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from constructs_lib.workflow_params import (
    INPUTS_DIR,
    ORAS_ROOT,
    OUT_DIR,
    PULL_CONTAINER,
    PUSH_CONTAINER,
    RUN_TIME_HINT,
    STAGE_DIR,
    STATE_DIR,
    VOLUME,
    Output,
    WiringError,
    WorkflowParams,
)
from constructs_lib.workflow_scripts import (
    Push,
    app_script,
    inputs_script,
    pull_script,
    push_script,
)

__all__ = ["Output", "WiringError", "WorkflowParams", "is_wired", "restart_warning",
           "wire_pod_spec"]


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
                pushes: Sequence[Push]) -> list[dict[str, Any]]:
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
) -> Push:
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
    return Push(f"{registry}/{output.uri}", cwd, names, mount, pipe=pipe)


def _plan_copied_push(
    index: int, output: Output, raw_path: str | None,
    raw_pipe: str | None, *, registry: str, app: str,
) -> Push:
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
    return Push(f"{registry}/{output.uri}", base, names, mount, tuple(copy), pipe)


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
    params: WorkflowParams, pushes: Sequence[Push], restart: str,
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
    app: dict[str, Any], params: WorkflowParams, pushes: Sequence[Push], copy_in: str | None
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
