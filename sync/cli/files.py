"""`synth`, `crd` and `dist`: OrasCache files to manifests on disk, no cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sync.render.outdir import OutputError
from sync.render.synth import cache_files, crd_yaml, dist_files, write_atomic, write_tree


def cmd_synth(args: argparse.Namespace) -> int:
    files = cache_files(args.paths)
    if isinstance(files, list):
        for error in files:
            print(f"error: {error}", file=sys.stderr)
        print(f"{len(files)} error(s); nothing written", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write("".join(v for k, v in sorted(files.items()) if k != "kustomization.yaml"))
        return 0
    try:
        write_tree(files, Path(args.output))
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for rel in sorted(files):
        print(f"wrote {Path(args.output) / rel}", file=sys.stderr)
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    if args.output is None:
        sys.stdout.write(crd_yaml())
        return 0
    try:
        write_atomic(Path(args.output), crd_yaml())
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_dist(args: argparse.Namespace) -> int:
    files = dist_files()
    if isinstance(files, list):
        for error in files:
            print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        write_tree(files, Path(args.output))
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
