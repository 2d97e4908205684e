"""oras-cache sync service and CLI: sources, rendering to files, apply, status."""

from __future__ import annotations

import os

from sync.jsii_kernel import use_direct_kernel

# Both before anything imports cdk8s (that starts jsii's Node process). V8's default
# young generation (16 MB semi-spaces and up) made the jsii kernel ~40 MB bigger at 1000
# rendered caches; 1 MB costs no measurable render time (bench/sync.py, issue 5).
os.environ.setdefault("NODE_OPTIONS", "--max-semi-space-size=1")
use_direct_kernel()
