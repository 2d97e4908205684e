"""The wiring's parameters (`WorkflowParams`, one artifact `Output`) with their checks, and
the fixed names the wiring adds to a Pod: one definition for the annotations, the webhook,
the cdk8s step construct and `wire_pod_spec`."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace
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
