"""`orascache` command line (argparse: standard library, subcommands, no extra dependency)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sync.synth import cache_files, crd_yaml, dist_files, write_atomic, write_tree


def _cmd_synth(args: argparse.Namespace) -> int:
    files = cache_files(args.paths)
    if isinstance(files, list):
        for error in files:
            print(f"error: {error}", file=sys.stderr)
        print(f"{len(files)} error(s); nothing written", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write("".join(v for k, v in sorted(files.items()) if k != "kustomization.yaml"))
        return 0
    write_tree(files, Path(args.output))
    for rel in sorted(files):
        print(f"wrote {Path(args.output) / rel}", file=sys.stderr)
    return 0


def _cmd_crd(args: argparse.Namespace) -> int:
    if args.output is None:
        sys.stdout.write(crd_yaml())
    else:
        write_atomic(Path(args.output), crd_yaml())
    return 0


def _cmd_dist(args: argparse.Namespace) -> int:
    files = dist_files()
    if isinstance(files, list):
        for error in files:
            print(f"error: {error}", file=sys.stderr)
        return 1
    write_tree(files, Path(args.output))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orascache", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser(
        "synth",
        help="render OrasCache files to manifests",
        description="Render every OrasCache in PATHs (files or directories of multi-document "
        "YAML; other kinds are ignored) to DIR/<namespace>/<name>.yaml plus a "
        "kustomization.yaml, or to stdout. On any invalid input, every error is printed "
        "with its file, document and field path, and nothing is written.",
    )
    synth.add_argument("paths", nargs="+", metavar="PATH")
    synth.add_argument("-o", "--output", metavar="DIR", help="output directory")
    synth.set_defaults(func=_cmd_synth)

    crd = sub.add_parser("crd", help="print the OrasCache CustomResourceDefinition")
    crd.add_argument("-o", "--output", metavar="FILE")
    crd.set_defaults(func=_cmd_crd)

    dist = sub.add_parser("dist", help="render the repository's committed dist/ tree")
    dist.add_argument("-o", "--output", metavar="DIR", default="dist")
    dist.set_defaults(func=_cmd_dist)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
