"""Pure rendering: typed caches in, plain manifest dictionaries and YAML text out.

All caches of one call share a single cdk8s App (one chart each): jsii runs one Node
process per Python process and is not thread-safe, so callers render in one thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cdk8s
import yaml

from constructs_lib.model import OrasCache
from constructs_lib.registry import OrasCacheRegistry

Manifest = dict[str, Any]


@dataclass(frozen=True)
class RenderedCache:
    cache: OrasCache
    manifests: list[Manifest]


# Charts per App: adding a chart costs more the more siblings it has (1000 caches in one
# App: 6.8 ms each; in Apps of 50: 3.9 ms each, bench/render.py).
CHARTS_PER_APP = 50


def render(caches: Iterable[OrasCache]) -> list[RenderedCache]:
    out: list[RenderedCache] = []
    app = cdk8s.App()
    for index, cache in enumerate(caches):
        if index and index % CHARTS_PER_APP == 0:
            app = cdk8s.App()
        chart = cdk8s.Chart(app, f"c{index}", disable_resource_name_hashes=True)
        OrasCacheRegistry(
            chart, "Registry", spec=cache.spec, name=cache.name, namespace=cache.namespace
        )
        out.append(RenderedCache(cache, list(chart.to_json())))
    return out


class _Dumper(yaml.SafeDumper):
    """Block style, no aliases: output meant to be read in a pull request."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(manifests: Sequence[Manifest]) -> str:
    return "".join(
        "---\n" + yaml.dump(m, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
        for m in manifests
    )
