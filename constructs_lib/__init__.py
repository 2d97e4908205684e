"""oras-cache construct library: the OrasCache model and the constructs that render it.

No I/O and no cluster access here; `sync` does both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constructs_lib.annotations import (
    AnnotationError,
    ParsedAnnotations,
    parse_annotations,
)
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
from constructs_lib.workflow import (
    Output,
    WiringError,
    WorkflowParams,
    is_wired,
    wire_pod_spec,
)

if TYPE_CHECKING:
    from constructs_lib.workflow_step import OrasWorkflowStep


def __getattr__(name: str) -> Any:
    """OrasWorkflowStep on first use: it loads cdk8s-plus-34 into jsii's Node process,
    which the sync service never needs."""
    if name == "OrasWorkflowStep":
        from constructs_lib.workflow_step import OrasWorkflowStep  # noqa: PLC0415

        return OrasWorkflowStep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AnnotationError",
    "FieldError",
    "Manifest",
    "OrasCache",
    "OrasCacheRegistry",
    "OrasCacheSpec",
    "OrasWorkflowStep",
    "Output",
    "ParsedAnnotations",
    "RenderedCache",
    "Resources",
    "Secrets",
    "SpecError",
    "Storage",
    "Toleration",
    "WiringError",
    "WorkflowParams",
    "is_oras_cache",
    "is_wired",
    "parse_annotations",
    "parse_oras_cache",
    "recommended_labels",
    "render",
    "selector_labels",
    "to_yaml",
    "wire_pod_spec",
]
