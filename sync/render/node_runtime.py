"""Run jsii's kernel as the only Node process (node_runtime.js says how).

jsii starts its Node process when cdk8s is first imported, and reads JSII_RUNTIME then,
so `prepare()` must run before anything imports `constructs_lib`: the CLI, the cdk8s
app and the test and benchmark entry points call it first. A program that imports
only `constructs_lib` keeps jsii's default runtime; setting JSII_RUNTIME turns it off.
"""

from __future__ import annotations

import atexit
import importlib.resources
import os
import shutil
import tempfile

import jsii._embedded.jsii as embedded

_KERNEL_FILES = ("lib/program.js", "lib/runtime-index-worker.js")
# The pid that made the copy JSII_RUNTIME points at. A child process inherits both and
# makes its own copy: the parent deletes its copy when it exits, and the kernel loads
# lib/runtime-index-worker.js lazily.
_OWNER = "ORASCACHE_JSII_KERNEL_PID"
# V8's default young generation (16 MB semi-spaces and up) makes the kernel bigger for
# no render time gained (docs/performance.md).
_NODE_OPTIONS = "--max-semi-space-size=1"


def embedded_file(name: str) -> bytes:
    """A file of the jsii runtime bundled with jsii's Python package, e.g. lib/program.js."""
    by_name = {n: resource for resource, n in embedded.EMBEDDED_FILES.items()}
    return importlib.resources.files(embedded).joinpath(by_name[name]).read_bytes()


def prepare() -> None:
    """Point JSII_RUNTIME at a copy of the kernel next to node_runtime.js (idempotent)."""
    os.environ.setdefault("NODE_OPTIONS", _NODE_OPTIONS)
    owner = os.environ.get(_OWNER)
    if "JSII_RUNTIME" in os.environ and (owner is None or owner == str(os.getpid())):
        return  # set by the user, or already done in this process
    directory = tempfile.mkdtemp(prefix="orascache-jsii-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.mkdir(os.path.join(directory, "lib"))
    for name in _KERNEL_FILES:
        with open(os.path.join(directory, name), "wb") as out:
            out.write(embedded_file(name))
    wrapper = importlib.resources.files(__package__ or "sync.render")
    runtime = os.path.join(directory, "node_runtime.js")
    with open(runtime, "wb") as out:
        out.write(wrapper.joinpath("node_runtime.js").read_bytes())
    os.environ["JSII_RUNTIME"] = runtime
    os.environ[_OWNER] = str(os.getpid())
    # What jsii-runtime.js passes to the kernel as --preserve-symlinks.
    os.environ.setdefault("NODE_PRESERVE_SYMLINKS", "1")
