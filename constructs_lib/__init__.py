"""oras-cache construct library: the OrasCache model and the constructs that render it.

No I/O and no cluster access here; `sync` does both.
"""

from __future__ import annotations

from constructs_lib.model import (
    OrasCache,
    OrasCacheSpec,
    Resources,
    Secrets,
    SpecError,
    Storage,
    Toleration,
    is_oras_cache,
    parse_oras_cache,
)
from constructs_lib.registry import OrasCacheRegistry, recommended_labels, selector_labels
from constructs_lib.render import Manifest, RenderedCache, render, to_yaml
from constructs_lib.validation import FieldError

__all__ = [
    "FieldError",
    "Manifest",
    "OrasCache",
    "OrasCacheRegistry",
    "OrasCacheSpec",
    "RenderedCache",
    "Resources",
    "Secrets",
    "SpecError",
    "Storage",
    "Toleration",
    "is_oras_cache",
    "parse_oras_cache",
    "recommended_labels",
    "render",
    "selector_labels",
    "to_yaml",
]
