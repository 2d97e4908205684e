"""Pure rendering: typed caches in, plain manifest dictionaries and YAML text out.

The caches of one call share cdk8s charts (see CACHES_PER_CHART): jsii runs one Node
process per Python process and is not thread-safe, so callers render in one thread.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cdk8s
import yaml

from constructs_lib.model import OrasCache
from constructs_lib.registry import INSTANCE_LABEL, OrasCacheRegistry

Manifest = dict[str, Any]


@dataclass(frozen=True)
class RenderedCache:
    cache: OrasCache
    manifests: list[Manifest]


# Caches per chart: every jsii call is a round trip to Node, so the caches of a batch
# share a chart and one `to_json`; but a construct costs more the more siblings it has,
# hence batches rather than one chart (docs/performance.md, "Design choices").
CACHES_PER_CHART = 50


def batches(caches: Iterable[OrasCache]) -> list[list[OrasCache]]:
    """The caches in chart-sized batches, in order."""
    items = list(caches)
    return [items[i:i + CACHES_PER_CHART] for i in range(0, len(items), CACHES_PER_CHART)]


def render_each(caches: Iterable[OrasCache]) -> list[RenderedCache]:
    """Every cache through the construct, none shared (see `render`)."""
    return [r for batch in batches(caches) for r in _render_chart(batch)]


RenderEach = Callable[[list[OrasCache]], list[RenderedCache]]
# Stand-ins for a shape's name and namespace: valid names that no construct constant, and
# no other stand-in, contains ("...-1" is not in "...-10": the suffix is closed). A cache
# with the prefix anywhere in it is rendered as it is.
_STAND_IN = "zz-shape-"
_NAME, _NAMESPACE = _STAND_IN + "{}-zz", _STAND_IN + "namespace-zz"


def render(caches: Iterable[OrasCache], each: RenderEach = render_each) -> list[RenderedCache]:
    """The caches' manifests, in order: one construct render per shape.

    A cache's name and namespace reach its manifests only as text within strings
    (`<name>-data`, `<name>-0.<name>.<namespace>.svc...`): caches with the same spec (the
    common case: most fleets use the defaults) render to the same objects but for those.
    So one cache per (spec, namespaced or not) goes through `each` under stand-in names,
    and the others get its JSON with their own name and namespace put back, far cheaper
    than a construct render. A unit test compares this with `render_each`
    for generated specs and names. If the construct fails, everything is rendered again
    through `each`, so that its error names the real cache.
    """
    items = list(caches)
    shapes: dict[tuple[bool, str], int] = {}  # shape -> index in `todo`
    todo: list[OrasCache] = []
    slots: list[tuple[int, bool]] = []  # per cache: its render in `todo`, shared or not
    for cache in items:
        key = _shape(cache)
        if key is None:
            slots.append((len(todo), False))
            todo.append(cache)
            continue
        if key not in shapes:
            shapes[key] = len(todo)
            todo.append(OrasCache(_NAME.format(len(shapes)), _NAMESPACE if key[0] else None,
                                  cache.spec))
        slots.append((shapes[key], True))
    if len(todo) == len(items):  # nothing shared
        return each(items)
    try:
        done = each(todo)
    except Exception:
        return each(items)
    texts: dict[int, str] = {}
    out: list[RenderedCache] = []
    for cache, (slot, shared) in zip(items, slots, strict=True):
        if not shared:
            out.append(done[slot])
            continue
        if slot not in texts:
            texts[slot] = json.dumps(done[slot].manifests)
        text = texts[slot].replace(todo[slot].name, cache.name)
        if cache.namespace is not None:
            text = text.replace(_NAMESPACE, cache.namespace)
        out.append(RenderedCache(cache, json.loads(text)))
    return out


def _shape(cache: OrasCache) -> tuple[bool, str] | None:
    """What the manifests depend on besides the name and namespace; None when those
    cannot be put back by replacing text (characters JSON escapes, or a stand-in's
    text already in the cache)."""
    spec = repr(cache.spec)
    for text in (cache.name, cache.namespace or "", spec):
        if _STAND_IN in text:
            return None
    for text in (cache.name, cache.namespace or ""):
        if json.dumps(text) != f'"{text}"':  # escapes quotes, backslashes, non-ASCII
            return None
    return cache.namespace is not None, spec


class _SpecsAside(OrasCacheRegistry):
    """The registry as rendered here: each object's spec stays on the Python side.

    cdk8s adds a JSON patch's value to `to_json`'s output as it is (after resolving and
    sanitizing the rest), so `to_json` without the patch, plus the spec, is the same
    manifest. It saves two of the three jsii calls per object and the spec's round trip
    through Node: about half the render time (1.0-1.2 against 2.0-2.4 s per 1000
    caches). A unit test compares the two for generated specs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.specs: list[Manifest] = []  # before super().__init__, which fills it
        super().__init__(*args, **kwargs)

    def _attach_spec(self, obj: cdk8s.ApiObject, spec: Manifest) -> None:
        self.specs.append(spec)


def _render_chart(caches: Sequence[OrasCache]) -> list[RenderedCache]:
    chart = cdk8s.Chart(cdk8s.App(), "caches", disable_resource_name_hashes=True)
    registries = [
        _SpecsAside(chart, f"c{index}", spec=cache.spec, name=cache.name,
                    namespace=cache.namespace)
        for index, cache in enumerate(caches)
    ]
    manifests = iter(chart.to_json())  # construct (tree) order: each cache's objects in turn
    out: list[RenderedCache] = []
    for cache, registry in zip(caches, registries, strict=True):
        mine = list(itertools.islice(manifests, len(registry.specs)))
        if any(m["metadata"].get("labels", {}).get(INSTANCE_LABEL) != cache.name
               or "spec" in m for m in mine):
            raise RuntimeError(f"render: objects of {cache.name} out of construct order")
        # cdk8s orders apiVersion, kind, metadata, then the rest: here only the spec.
        out.append(RenderedCache(cache, [
            {**m, "spec": spec} for m, spec in zip(mine, registry.specs, strict=True)]))
    return out


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style, no aliases: output meant to be read in a pull request.

    libyaml's emitter when PyYAML has it: 5x faster (0.4 against 2.2 s for 2050 objects),
    and byte-identical output (a unit test compares it with the Python emitter's).
    """

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(manifests: Sequence[Manifest]) -> str:
    return "".join(
        "---\n" + yaml.dump(m, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
        for m in manifests
    )
