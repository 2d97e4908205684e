"""`diff`: what `sync` would change, by server-side dry-run."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sync.apply.applyset import ApplySet
from sync.apply.diff import diff_objects, exit_code, report
from sync.apply.kube import Kube, load_api_client
from sync.cli.common import git_source
from sync.render.tree import RenderMemo, render_paths, render_tree
from sync.sources.git import GitSourceError


def cmd_diff(args: argparse.Namespace) -> int:
    if bool(args.paths) == bool(args.repo):
        print("error: give PATHs or --repo (not both)", file=sys.stderr)
        return 2
    namespace = args.namespace or "default"
    applyset = ApplySet(args.applyset_name, namespace)
    memo = RenderMemo(args.render_workers)
    if args.repo:
        with tempfile.TemporaryDirectory(prefix="orascache-diff-clone-") as tmp:
            try:
                source = git_source(args, Path(tmp))
                try:
                    revision = source.checkout(source.fetch())
                    desired = render_tree(revision.worktree, args.path, applyset, namespace,
                                          memo)
                finally:
                    source.close()
            except GitSourceError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
    else:
        desired = render_paths([Path(p) for p in args.paths], applyset, namespace,
                               memo=memo)
    if desired.errors:
        for error in desired.errors:
            print(f"error: {error}", file=sys.stderr)
        return 2
    kube = Kube(load_api_client(args.kubeconfig))
    diffs, errors = diff_objects(kube, desired.objects, applyset)
    sys.stdout.write(report(diffs))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    print(f"{len(diffs)} object(s) differ", file=sys.stderr)
    return exit_code(diffs, errors)
