"""`OrasWorkflowStep`: a Job whose inputs and outputs travel through a named OrasCache.

For cdk8s users: declare the step (image, command, inputs, outputs) and get a Job whose
Pod template is wired by `constructs_lib.workflow.wire_pod_spec` (the same function the
admission webhook uses), rendered through the typed low-level API (`cdk8s_plus_34.k8s`).
The Job's Pods use ``restartPolicy: Never``: a failed app or a failed push fails the Pod
and the Job's ``backoffLimit`` retries the whole step in a fresh Pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import constructs
from cdk8s_plus_34 import k8s

from constructs_lib.model import OrasCache
from constructs_lib.schema import DEFAULT_PORT
from constructs_lib.workflow import wire_pod_spec
from constructs_lib.workflow_params import (
    DEFAULT_ORAS_IMAGE,
    Output,
    WiringError,
    WorkflowParams,
)

APP_CONTAINER = "step"


def step_labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "oras-workflow-step",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/part-of": "oras-cache",
        "app.kubernetes.io/managed-by": "orascache",
    }


class OrasWorkflowStep(constructs.Construct):
    """A Job running `image` with `command` + `args`; inputs pulled, outputs pushed.

    ``cache`` is an `OrasCache` (its port, remote registry and orasEnv secret are used)
    or the name of one in the step's namespace (with ``port``). ``inputs`` are pulled
    into ``input_path`` (default: ``working_dir``); each `Output` is pushed after the app
    exits 0. ``output_pipe`` receives the app's stdout and is pushed with the first
    output. ``params`` is the resolved `WorkflowParams`, ``job`` the `KubeJob`.
    """

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        name: str,
        image: str,
        command: Sequence[str],
        args: Sequence[str] = (),
        namespace: str | None = None,
        cache: OrasCache | str = "oras",
        port: int = DEFAULT_PORT,
        inputs: Sequence[str] = (),
        outputs: Sequence[Output] = (),
        input_path: str | None = None,
        output_pipe: str | None = None,
        working_dir: str | None = None,
        env: Mapping[str, str] | None = None,
        oras_image: str = DEFAULT_ORAS_IMAGE,
        oras_env: str | None = None,
        unpack: bool = True,
        debug: bool = False,
        backoff_limit: int = 2,
        ttl_seconds_after_finished: int | None = None,
    ) -> None:
        super().__init__(scope, id)
        if not command:
            raise WiringError(f"step {name!r}: command is empty")
        settings: dict[str, Any] = {
            "inputs": tuple(inputs),
            "outputs": tuple(outputs),
            "input_path": input_path,
            "output_pipe": output_pipe,
            "container": APP_CONTAINER,
            "oras_image": oras_image,
            "unpack": unpack,
            "debug": debug,
        }
        if oras_env is not None:
            settings["oras_env"] = oras_env
        if isinstance(cache, OrasCache):
            self.params = WorkflowParams.for_cache(cache, **settings)
        else:
            self.params = WorkflowParams(cache=cache, port=port, **settings)
        app: dict[str, Any] = {"name": APP_CONTAINER, "image": image, "command": list(command)}
        if args:
            app["args"] = list(args)
        if working_dir:
            app["workingDir"] = working_dir
        if env:
            app["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
        spec = {"restartPolicy": "Never", "containers": [app]}
        self.pod_spec = wire_pod_spec(spec, self.params, namespace=namespace)
        labels = step_labels(name)
        self.job = k8s.KubeJob(
            self,
            "Job",
            metadata=k8s.ObjectMeta(name=name, namespace=namespace, labels=labels),
            spec=k8s.JobSpec(
                backoff_limit=backoff_limit,
                ttl_seconds_after_finished=ttl_seconds_after_finished,
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels=labels),
                    spec=typed_pod_spec(self.pod_spec),
                ),
            ),
        )


# --- Kubernetes JSON (what the wiring returns) -> typed k8s structs ---------------------
# Only the fields a step's Pod spec can hold; anything else is a programming error.


def _check(obj: Mapping[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise WiringError(f"cannot convert {what} fields {unknown} to typed k8s structs")


def _mount(m: Mapping[str, Any]) -> k8s.VolumeMount:
    _check(m, {"name", "mountPath", "subPath", "readOnly"}, "volumeMount")
    return k8s.VolumeMount(
        name=m["name"], mount_path=m["mountPath"], sub_path=m.get("subPath"),
        read_only=m.get("readOnly"),
    )


def _container(c: Mapping[str, Any]) -> k8s.Container:
    _check(c, {"name", "image", "imagePullPolicy", "command", "args", "workingDir", "env",
               "envFrom", "volumeMounts", "securityContext", "terminationMessagePolicy"},
           "container")
    security = c.get("securityContext")
    if security is not None:
        _check(security, {"allowPrivilegeEscalation", "capabilities"}, "securityContext")
    return k8s.Container(
        name=c["name"],
        image=c.get("image"),
        image_pull_policy=c.get("imagePullPolicy"),
        command=c.get("command"),
        args=c.get("args"),
        working_dir=c.get("workingDir"),
        env=[k8s.EnvVar(name=e["name"], value=e["value"]) for e in c["env"]]
        if c.get("env") else None,
        env_from=[
            k8s.EnvFromSource(secret_ref=k8s.SecretEnvSource(name=e["secretRef"]["name"]))
            for e in c["envFrom"]
        ] if c.get("envFrom") else None,
        volume_mounts=[_mount(m) for m in c["volumeMounts"]] if c.get("volumeMounts") else None,
        security_context=None if security is None else k8s.SecurityContext(
            allow_privilege_escalation=security.get("allowPrivilegeEscalation"),
            capabilities=k8s.Capabilities(drop=security["capabilities"]["drop"])
            if security.get("capabilities") else None,
        ),
        termination_message_policy=c.get("terminationMessagePolicy"),
    )


def typed_pod_spec(spec: Mapping[str, Any]) -> k8s.PodSpec:
    _check(spec, {"restartPolicy", "containers", "initContainers", "volumes"}, "PodSpec")
    volumes = []
    for v in spec.get("volumes") or []:
        _check(v, {"name", "emptyDir"}, "volume")
        volumes.append(k8s.Volume(name=v["name"], empty_dir=k8s.EmptyDirVolumeSource()))
    return k8s.PodSpec(
        restart_policy=spec.get("restartPolicy"),
        init_containers=[_container(c) for c in spec["initContainers"]]
        if spec.get("initContainers") else None,
        containers=[_container(c) for c in spec["containers"]],
        volumes=volumes or None,
    )
