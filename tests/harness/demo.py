"""``make demo`` on a real node: the install as a user runs it, the examples, a pipeline.

The steps are kubectl commands, printed as they run, exactly as a user types them:

1. ``kubectl apply -f dist/install/`` and wait for the Deployment's rollout (the sync
   service's image is pulled by its name from the node's mirror, ``tests/e2e/README.md``);
2. what examples/ expect of a cluster: the namespace ``workflows``, the Secret
   ``oras-http-secret`` (a random REGISTRY_HTTP_SECRET, from a file: never on a command
   line) and a node labelled for ``persistent.yaml``'s nodeSelector; the node's default
   StorageClass ``standard`` and its volumes come with the node (``node.storage_objects``);
3. ``kubectl apply -f examples/``, then every OrasCache ``Ready=True``;
4. the two-step pipeline of ``examples/pipeline/``: the producer Job, once it is complete the
   consumer Job, then the consumer's log: the producer's line, back through the cache.

``tests/e2e/test_demo.py`` runs the same :class:`Demo` on the test node. ``make demo`` runs
``check`` first: where the machine cannot run a node, it prints why in one line and the
Makefile falls back to the control-plane-only demo.

CLI: ``python -m tests.harness.demo check|run [--dir .cluster]``.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness.build import BuildError
from tests.harness.cluster import KubectlError, LocalCluster
from tests.harness.node import NODE_NAME, Node, NodeError, ensure_all

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "oras-cache-system"
DEPLOYMENT = "oras-cache-sync"
WORKFLOWS = "workflows"
HTTP_SECRET = "oras-http-secret"  # examples/persistent.yaml and ha.yaml name it
STORAGE_LABEL_KEY = "node-role.example.com/storage"  # examples/persistent.yaml's nodeSelector
STORAGE_LABEL = f"{STORAGE_LABEL_KEY}=true"
PRODUCER = "pipeline-producer"
CONSUMER = "pipeline-consumer"
CONSUMER_CONTAINER = "consume"
TIMEOUT_S = 180


class DemoError(RuntimeError):
    """A step failed; the message has the command and what the cluster said."""


class Demo:
    """The demo's steps against ``cluster`` (paths relative to the repository, as typed)."""

    def __init__(self, cluster: LocalCluster, say: Callable[[str], None] | None = None) -> None:
        self.cluster = cluster
        self.say = say or (lambda line: print(line, flush=True))
        self.timings: dict[str, float] = {}

    def k(self, *args: str, input: str | None = None, show: bool = True,
          timeout: float = TIMEOUT_S + 30) -> str:
        """kubectl, printed as typed; raises DemoError with its stderr when it fails."""
        self.say("+ kubectl " + shlex.join(args))
        # The paths are the repository's, printed as a user types them from its top.
        real = [str(REPO / a) if a.startswith(("dist/", "examples/")) else a for a in args]
        proc = self.cluster.kubectl(*real, input=input, check=False, timeout=timeout)
        if proc.returncode != 0:
            raise DemoError(f"kubectl {shlex.join(args)} failed:\n{proc.stderr.strip()}")
        if show and proc.stdout.strip():
            self.say(proc.stdout.rstrip())
        return proc.stdout

    def _step(self, name: str, began: float) -> None:
        self.timings[name] = time.monotonic() - began

    def install(self) -> None:
        began = time.monotonic()
        self.k("apply", "-f", "dist/install/")
        self.k("-n", SYSTEM, "rollout", "status", f"deployment/{DEPLOYMENT}",
               f"--timeout={TIMEOUT_S}s")
        self._step("install", began)

    def prepare(self) -> None:
        """What examples/ expect of a cluster (step 2 of the module's docstring)."""
        began = time.monotonic()
        ns = self.k("create", "namespace", WORKFLOWS, "--dry-run=client", "-o", "yaml",
                    show=False)
        self.k("apply", "-f", "-", input=ns)
        exists = self.cluster.kubectl("-n", WORKFLOWS, "get", "secret", HTTP_SECRET,
                                      check=False).returncode == 0
        if not exists:  # kept when it exists: a new one would restart the registries
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "REGISTRY_HTTP_SECRET"
                path.touch(mode=0o600)
                path.write_text(secrets.token_hex(24))
                self.k("-n", WORKFLOWS, "create", "secret", "generic", HTTP_SECRET,
                       f"--from-file={path}")
        self.k("label", "node", NODE_NAME, STORAGE_LABEL, "--overwrite")
        self._step("prepare", began)

    def apply_examples(self) -> None:
        began = time.monotonic()
        self.k("apply", "-f", "examples/")
        try:
            self.k("wait", "--for=condition=Ready", "orascaches", "--all", "-A",
                   f"--timeout={TIMEOUT_S}s")
        finally:
            self.k("get", "orascaches", "-A")
        self._step("caches_ready", began)

    def run_pipeline(self) -> str:
        """The producer, then the consumer; returns the consumer's log."""
        began = time.monotonic()
        self.k("delete", "-f", "examples/pipeline/", "--ignore-not-found", "--wait=true")
        for step, job in (("producer", PRODUCER), ("consumer", CONSUMER)):
            self.k("apply", "-f", f"examples/pipeline/{step}.yaml")
            try:
                self.k("-n", WORKFLOWS, "wait", "--for=condition=Complete", f"job/{job}",
                       f"--timeout={TIMEOUT_S}s")
            except DemoError:
                self.k("-n", WORKFLOWS, "get", "pods", "-l", f"job-name={job}", "-o", "wide")
                self.k("-n", WORKFLOWS, "logs", f"job/{job}", "--all-containers",
                       "--prefix", "--tail=20")
                raise
        output = self.k("-n", WORKFLOWS, "logs", f"job/{CONSUMER}", "-c", CONSUMER_CONTAINER)
        self._step("pipeline", began)
        return output

    def run(self) -> str:
        self.install()
        self.prepare()
        self.apply_examples()
        return self.run_pipeline()

    def clean(self) -> None:
        """Undo run(), best effort (the tests' teardown): examples, pipeline, install."""
        for args in (
            ("delete", "-f", "examples/pipeline/", "-f", "examples/", "--ignore-not-found",
             "--wait=true"),
            ("delete", "namespace", WORKFLOWS, "--ignore-not-found", "--wait=true"),
            ("label", "node", NODE_NAME, f"{STORAGE_LABEL_KEY}-"),
            ("delete", "-f", "dist/install/", "--ignore-not-found", "--wait=true"),
        ):
            try:
                self.k(*args)
            except DemoError as err:
                self.say(f"(clean-up) {err}")


def check(cluster_dir: Path) -> str | None:
    """Why this machine cannot run the demo's node (one line), or None when it can. Builds
    and installs what the node needs (minutes when cold, a second or two when warm)."""
    if os.geteuid() != 0:
        return "a node needs root (bridge, iptables, mounts, cgroups)"
    other = Node.attach()
    if other is not None and other.is_running() and other.workdir != (
            cluster_dir / "node").resolve():
        return (f"another node runs on this machine ({other.workdir}; one at a time: "
                "`python -m tests.harness.node down` stops it)")
    try:
        ensure_all()
    except (NodeError, BuildError, OSError) as err:
        return str(err).strip().splitlines()[0]
    return None


def main(argv: list[str] | None = None) -> int:
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m tests.harness.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    check_cmd = sub.add_parser("check", help="exit 0 when a node can run here; else print "
                                             "why, exit 1")
    run = sub.add_parser("run", help="the demo on the node of a `make cluster-up NODE=1`")
    for cmd in (check_cmd, run):
        cmd.add_argument("--dir", default=".cluster", help="the cluster's work dir")
    args = parser.parse_args(argv)
    if args.command == "check":
        why = check(Path(args.dir))
        if why:
            print(why)
            return 1
        return 0
    cluster = LocalCluster.attach(args.dir)
    if cluster is None or not cluster.is_running():
        print(f"no running cluster in {args.dir}: run `make cluster-up NODE=1` first")
        return 1
    began = time.monotonic()
    demo = Demo(cluster)
    try:
        output = demo.run()
    except (DemoError, KubectlError) as err:
        print(f"demo failed: {err}", file=sys.stderr)
        return 1
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in demo.timings.items())
    print(f"\nThe consumer step's output, pulled from the cache {WORKFLOWS}/shared:\n"
          f"  {output.strip()}\n\nDemo steps took {time.monotonic() - began:.1f} s ({steps}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
