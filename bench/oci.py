"""OCI artifact costs against the local distribution registry and the real oras CLI:
the first `push_artifact` of N rendered files, an unchanged one (manifest fetch +
resolve, nothing pushed), and one `oras resolve` (what each poll of the OCI source costs
while the tag is unchanged). Medians of repeated runs.
Usage: .venv/bin/python -m bench.oci [N_FILES]
"""

from __future__ import annotations

import statistics
import sys
import time

from sync.publish.oci import push_artifact
from sync.sources.oras import Oras, Reference
from tests.harness.oras_tools import LocalRegistry, ensure_oras_tools


def main(n: int) -> None:
    tools = ensure_oras_tools()
    files = {f"ns/c{i}.yaml": f"x: {i}\n" * 50 for i in range(n)}
    with LocalRegistry(tools.registry) as reg:
        oras = Oras(reg.address, plain_http=True, binary=str(tools.oras))
        ref = Reference.parse(f"{reg.address}/bench/rendered:main")
        start = time.perf_counter()
        push_artifact(oras, ref, files, source="bench", revision="bench")
        first = time.perf_counter() - start
        unchanged, resolve = [], []
        for _ in range(5):
            start = time.perf_counter()
            assert not push_artifact(oras, ref, files, source="bench", revision="b").new
            unchanged.append(time.perf_counter() - start)
        for _ in range(10):
            start = time.perf_counter()
            oras.resolve(ref)
            resolve.append(time.perf_counter() - start)
    print(f"RESULT files={n} first_push_s={first:.3f} "
          f"unchanged_s={statistics.median(unchanged):.3f} "
          f"resolve_s={statistics.median(resolve):.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
