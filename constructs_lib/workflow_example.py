"""An example two-step pipeline sharing an artifact through a cache (rendered into dist/).

Step 1 writes a directory and a log (its stdout) and pushes both as one artifact; step 2
pulls it into /inputs and pushes a summary. Both Jobs can be applied at once: step 2's
pull fails until step 1 has pushed, and its Job retries with back-off (``backoffLimit``
6, about ten minutes). A workflow engine would start step 2 after step 1 completes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cdk8s
import constructs
import yaml

from constructs_lib.model import OrasCache
from constructs_lib.render import Manifest
from constructs_lib.workflow import Output
from constructs_lib.workflow_step import OrasWorkflowStep

EXAMPLE_IMAGE = "busybox:1.37.0"
ARTIFACT = "pipeline/results:v1"


def two_step_pipeline(
    scope: constructs.Construct, cache: OrasCache
) -> tuple[OrasWorkflowStep, OrasWorkflowStep]:
    produce = OrasWorkflowStep(
        scope,
        "Produce",
        name="pipeline-produce",
        namespace=cache.namespace,
        cache=cache,
        image=EXAMPLE_IMAGE,
        command=["/bin/sh", "-c"],
        args=[
            "mkdir -p results && echo 'hello from step 1' > results/greeting.txt && "
            "seq 1 1000 > results/numbers.txt && echo 'step 1 done'"
        ],
        working_dir="/work",
        outputs=[Output(ARTIFACT, "results")],
        output_pipe="step1.log",
    )
    consume = OrasWorkflowStep(
        scope,
        "Consume",
        name="pipeline-consume",
        namespace=cache.namespace,
        cache=cache,
        image=EXAMPLE_IMAGE,
        command=["/bin/sh", "-c"],
        args=["cat /inputs/results/greeting.txt /inputs/step1.log && "
              "wc -l /inputs/results/numbers.txt"],
        working_dir="/work",
        inputs=[ARTIFACT],
        input_path="/inputs",
        outputs=[Output("pipeline/summary:v1")],
        output_pipe="summary.txt",
        backoff_limit=6,
    )
    return produce, consume


def render_pipeline(cache: OrasCache) -> list[Manifest]:
    """The example's manifests: two Jobs (one cdk8s App and Chart of their own)."""
    app = cdk8s.App()
    chart = cdk8s.Chart(app, "pipeline", disable_resource_name_hashes=True)
    two_step_pipeline(chart, cache)
    return list(chart.to_json())


class _Dumper(yaml.SafeDumper):
    """Like render.to_yaml, but multi-line strings (the scripts) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def pipeline_yaml(manifests: Sequence[Manifest]) -> str:
    """YAML for review: the generated scripts read as scripts, not as escaped strings."""
    return "".join(
        "---\n" + yaml.dump(m, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
        for m in manifests
    )
