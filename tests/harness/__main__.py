"""CLI: ``python -m tests.harness build|up|down|status [--dir .cluster] [--crds crds/]``.

``up`` starts a persistent cluster whose processes outlive this command (for ``make
demo`` and poking around); ``down`` stops it by the PIDs recorded in its state file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.harness.build import ensure_binaries
from tests.harness.cluster import LocalCluster
from tests.harness.health import ClusterError
from tests.harness.procs import is_ours

DEFAULT_DIR = ".cluster"


def crd_files(paths: list[str]) -> list[Path]:
    """Files as given; directories expand to their *.yaml / *.yml files, sorted."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"--crds: no such file or directory: {raw}")
    return files


def _usage(cluster: LocalCluster) -> str:
    kubectl, kubeconfig = cluster.kubectl_path, cluster.kubeconfig
    return (
        f"  kubeconfig: {kubeconfig}\n"
        f"  kubectl:    {kubectl}\n"
        f"  try:        {kubectl} --kubeconfig={kubeconfig} get namespaces\n"
        f"  logs:       {cluster.workdir / 'logs'}/\n"
        f"  stop:       python -m tests.harness down --dir {cluster.workdir}\n"
        "  note:       no kubelet until a node joins (`python -m tests.harness.node up`, "
        "`make cluster-up NODE=1`): Pods stay Pending."
    )


def cmd_build(_: argparse.Namespace) -> int:
    began = time.monotonic()
    binaries = ensure_binaries()
    print(f"# verified in {time.monotonic() - began:.1f} s", file=sys.stderr)
    print(f"ETCD={binaries.etcd}")
    print(f"KUBE_APISERVER={binaries.kube_apiserver}")
    print(f"KUBE_CONTROLLER_MANAGER={binaries.kube_controller_manager}")
    print(f"KUBECTL={binaries.kubectl}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    existing = LocalCluster.attach(args.dir)
    if existing is not None:
        if existing.is_running():
            print(f"cluster already running in {existing.workdir} (nothing to do)")
            print(_usage(existing))
            return 0
        existing.stop()  # leftovers of a crashed or half-stopped cluster
    cluster = LocalCluster(args.dir, crds=crd_files(args.crds), daemon=True)
    cluster.start()
    assert cluster.binaries is not None
    print(
        f"cluster up (Kubernetes {cluster.binaries.k8s_version}, {cluster.server}) "
        f"in {cluster.timings['start_total']:.1f} s"
    )
    print(_usage(cluster))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cluster = LocalCluster.attach(args.dir)
    if cluster is None:
        print(f"no cluster recorded in {args.dir} (nothing to do)")
        return 0
    ports = sorted(p for c in cluster.components.values() for p in c.ports)
    cluster.stop()  # raises ClusterError if a port or process is left behind
    print(f"cluster in {cluster.workdir} stopped; ports {ports} are free")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cluster = LocalCluster.attach(args.dir)
    if cluster is None:
        print(f"not running (no state file in {args.dir})")
        return 1
    if not cluster.is_running():
        seen = ", ".join(
            f"{c.name} (pid {c.pid}) {'running' if is_ours(c) else 'gone'}"
            for c in cluster.components.values()
        )
        print(f"not healthy: {seen}; see {cluster.workdir / 'logs'}/")
        return 1
    print(f"running: {cluster.server}")
    print(_usage(cluster))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or verify) etcd, kube-apiserver, KCM and kubectl")
    for name, text in (
        ("up", "start a persistent cluster"),
        ("down", "stop it"),
        ("status", "is it running?"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--dir", default=DEFAULT_DIR, help=f"work dir (default {DEFAULT_DIR})")
        if name == "up":
            cmd.add_argument(
                "--crds",
                action="append",
                default=[],
                help="CRD file or directory to install before the KCM starts",
            )
    args = parser.parse_args(argv)
    handlers = {"build": cmd_build, "up": cmd_up, "down": cmd_down, "status": cmd_status}
    try:
        return handlers[args.command](args)
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
