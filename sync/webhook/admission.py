"""What the webhook does to a Pod or Job: annotations -> cache lookup -> wiring.

Annotations are read from the object being created: a Pod's own, or a Job's (as in the
original operator's examples), whose pod template is wired once; the Pods the Job then
creates carry the wiring already and are left alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from constructs_lib import OrasCache, parse_oras_cache, schema
from constructs_lib.annotations import PREFIX, AnnotationError, parse_annotations
from constructs_lib.workflow import WiringError, is_wired, restart_warning, wire_pod_spec
from sync.apply.kube import RESOURCES, Kube, Obj
from sync.webhook.server import AdmissionDenied, Mutate, Mutation, NamespaceNotServed

CACHES = RESOURCES[(schema.API_VERSION, schema.KIND)]
Lookup = Callable[[str], Obj | None]  # "namespace/name" -> OrasCache, from a watch cache


# Left out of an install's namespaceSelector when it serves every namespace, with the
# service's own namespace (constructs_lib.install).
NEVER_SERVED = ("kube-system",)


@dataclass(frozen=True)
class NamespaceScope:
    """The namespaces the webhook answers for: those the service syncs (`only`), or,
    when it syncs every namespace, all but `excluded`. A review from any other namespace
    (a direct caller: the API server only sends what the namespaceSelector matches) is
    refused before anything is looked up, so the answer says nothing about what exists
    there."""

    only: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()

    @classmethod
    def of(cls, namespaces: Iterable[str] | None, own: str | None = None) -> NamespaceScope:
        if namespaces is not None:
            return cls(only=frozenset(namespaces))
        return cls(excluded=frozenset([*NEVER_SERVED, *([own] if own else [])]))

    def serves(self, namespace: str) -> bool:
        if namespace in self.excluded or not namespace:
            return False
        return self.only is None or namespace in self.only


_POD_SPEC_PATH: dict[str, tuple[str, ...]] = {"Pod": ("spec",),
                                              "Job": ("spec", "template", "spec")}


def make_mutator(kube: Kube, cached: Lookup | None = None,
                 scope: NamespaceScope = NamespaceScope()) -> Mutate:
    """`cached` answers from memory; a miss (e.g. a cache created a moment ago) is read
    from the API server, so admission never denies on a stale cache. Only namespaces in
    `scope` are answered."""

    def find(namespace: str, name: str) -> Obj | None:
        found = cached(f"{namespace}/{name}") if cached else None
        return found if found is not None else kube.get(CACHES, namespace, name)

    def mutate(obj: Obj, kind: str, namespace: str) -> Mutation:
        if not scope.serves(namespace):
            raise NamespaceNotServed(namespace)
        path = _POD_SPEC_PATH.get(kind)
        if path is None:
            return Mutation()
        spec: Obj = obj
        for key in path:
            spec = spec.get(key) or {}
        if is_wired(spec):
            return Mutation()  # reinvocation, or a Pod of an already wired Job
        try:
            parsed = parse_annotations((obj.get("metadata") or {}).get("annotations"))
        except AnnotationError as err:
            raise AdmissionDenied(str(err)) from None
        if parsed is None:
            return Mutation()
        params = parsed.params
        if not params.registry:
            params = params.with_cache(_cache_for(find, params.cache,
                                                  params.namespace or namespace))
        try:
            wired = wire_pod_spec(spec, params, namespace=namespace)
        except WiringError as err:
            raise AdmissionDenied(str(err)) from None
        out = copy.deepcopy(obj)
        target = out
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = wired
        restart = restart_warning(spec, params)
        return Mutation(out, (*parsed.ignored, *([restart] if restart else [])))

    return mutate


def _cache_for(find: Callable[[str, str], Obj | None], name: str,
               namespace: str) -> OrasCache:
    """The OrasCache a Pod names, usable for wiring; otherwise a denial saying why."""
    found = find(namespace, name)
    if found is None:
        raise AdmissionDenied(
            f"OrasCache {name!r} not found in namespace {namespace!r}: create it, name "
            f"another with {PREFIX}oras-cache, or use a remote one with {PREFIX}registry")
    cache = parse_oras_cache(found, f"{namespace}/{name}")
    if isinstance(cache, list):
        raise AdmissionDenied(f"OrasCache {name!r} is invalid: "
                              + "; ".join(str(e.error) for e in cache))
    if not cache.spec.deploy and not cache.spec.registry:
        raise AdmissionDenied(
            f"OrasCache {name!r} in namespace {namespace!r} runs no registry (deploy: false) "
            f"and names none (spec.registry): set the remote registry with the "
            f"{PREFIX}registry annotation")
    return cache
