"""Run jsii's kernel as the only Node process (see jsii_kernel.js for the mechanism).

Measured at 1000 rendered caches: ~60 MB less RSS (the relay process), ~30 MB less in
the kernel (a full collection after every 16 MB allocated) and ~20% less render time
(one pipe hop less per jsii call). Everything that imports `sync` uses it: the service,
the CLI and `cdk8s synth` (sync/cdk8s_app.py); a program that imports only
`constructs_lib` keeps jsii's default runtime. Setting JSII_RUNTIME turns it off.
The copy carries one patch (see lazy_assertion_message: ~4% less render time since the
specs stay in Python, ~15% before); ORASCACHE_JSII_UNPATCHED=1 leaves the kernel exactly
as jsii ships it.
"""

from __future__ import annotations

import atexit
import importlib.resources
import os
import re
import shutil
import tempfile

import jsii._embedded.jsii as embedded

_KERNEL_FILES = ("lib/program.js", "lib/runtime-index-worker.js")
# The pid that made the copy JSII_RUNTIME points at. A child process inherits both and
# makes its own copy: the parent deletes its copy when it exits, and the kernel loads
# lib/runtime-index-worker.js lazily.
_OWNER = "ORASCACHE_JSII_KERNEL_PID"


def embedded_file(name: str) -> bytes:
    """A file of the jsii runtime bundled with jsii's Python package, e.g. lib/program.js."""
    by_name = {n: resource for resource, n in embedded.EMBEDDED_FILES.items()}
    return importlib.resources.files(embedded).joinpath(by_name[name]).read_bytes()


def use_direct_kernel() -> None:
    """Point JSII_RUNTIME at a copy of the kernel; call before cdk8s is first imported."""
    owner = os.environ.get(_OWNER)
    if "JSII_RUNTIME" in os.environ and (owner is None or owner == str(os.getpid())):
        return  # set by the user, or already done in this process
    directory = tempfile.mkdtemp(prefix="orascache-jsii-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.mkdir(os.path.join(directory, "lib"))
    for name in _KERNEL_FILES:
        data = embedded_file(name)
        if name == "lib/program.js" and not os.environ.get("ORASCACHE_JSII_UNPATCHED"):
            data = lazy_assertion_message(data)
        with open(os.path.join(directory, name), "wb") as out:
            out.write(data)
    wrapper = importlib.resources.files("sync").joinpath("jsii_kernel.js").read_bytes()
    runtime = os.path.join(directory, "jsii_kernel.js")
    with open(runtime, "wb") as out:
        out.write(wrapper)
    os.environ["JSII_RUNTIME"] = runtime
    os.environ[_OWNER] = str(os.getpid())
    # What jsii-runtime.js passes to the kernel as --preserve-symlinks.
    os.environ.setdefault("NODE_PRESERVE_SYMLINKS", "1")


# jsii's kernel checks every value it (de)serializes with
#   assert(type != null, `Kernel error: expected type information, got ${inspect(type)}`)
# whose message, a template literal, is built (util.inspect) before the assertion runs:
# ~19% of the kernel's CPU in a render (Node's CPU profile). The same check, with the
# message built only when it fails. Anything but exactly one match is left as it is.
_EAGER_ASSERT = re.compile(
    rb"\(0,(\w+)\.default\)\(null!=e,(`Kernel error: expected type information, got "
    rb"\$\{\(0,\w+\.inspect\)\(e\)\}`)\)")


def lazy_assertion_message(program: bytes) -> bytes:
    patched, count = _EAGER_ASSERT.subn(rb"(null!=e||(0,\1.default)(!1,\2))", program)
    return patched if count == 1 else program
