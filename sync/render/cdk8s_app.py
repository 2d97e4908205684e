"""The `cdk8s synth` entry point (cdk8s.yaml): renders the same dist/ tree as `make synth`.

The cdk8s CLI deletes its output folder first, so this app renders all of dist/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sync.render import node_runtime


def main() -> int:
    node_runtime.prepare()
    from sync.render.synth import dist_files, write_tree  # noqa: PLC0415 (after prepare)

    files = dist_files()
    if isinstance(files, list):
        for error in files:
            print(error, file=sys.stderr)
        return 1
    write_tree(files, Path(os.environ.get("CDK8S_OUTDIR", "dist")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
