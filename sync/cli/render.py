"""`render`: a git ref's caches to a directory, a branch or an OCI artifact."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sync.cli.common import git_source, registry_client
from sync.publish.git import push_branch, render_commit
from sync.publish.oci import push_artifact
from sync.render.outdir import OutputError
from sync.render.synth import write_tree
from sync.sources.git import GitSource, GitSourceError
from sync.sources.oras import OciError, Reference


def cmd_render(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="orascache-render-clone-") as tmp:
        try:
            source = git_source(args, Path(tmp))
            try:
                rendered = render_commit(source, args.path, args.render_workers)
                if rendered.errors:
                    for error in rendered.errors:
                        print(f"error: {error}", file=sys.stderr)
                    print(f"{len(rendered.errors)} error(s) in {rendered.commit[:12]}; "
                          "nothing written", file=sys.stderr)
                    return 1
                if rendered.empty and not args.allow_empty:
                    print(f"error: no OrasCache renders anything under {args.path!r} in "
                          f"{rendered.commit[:12]}: refusing to empty "
                          f"{args.out or args.push_branch or args.push_oci} "
                          "(use --allow-empty); nothing written", file=sys.stderr)
                    return 1
                if args.out:
                    try:
                        write_tree(rendered.files, Path(args.out))
                    except OutputError as err:
                        print(f"error: {err}", file=sys.stderr)
                        return 1
                    print(f"rendered {rendered.commit} to {args.out} "
                          f"({len(rendered.files)} files)", file=sys.stderr)
                    return 0
                if args.push_oci:
                    return push_oci(args, source, rendered.files, rendered.commit)
                new = push_branch(source, rendered, args.push_branch, args.path)
            finally:
                source.close()
        except GitSourceError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if new is None:
        print(f"{args.push_branch} already holds the render of {rendered.commit}; "
              "no commit", file=sys.stderr)
    else:
        print(f"pushed {new} to {args.push_branch} (render of {rendered.commit})",
              file=sys.stderr)
    return 0


def push_oci(args: argparse.Namespace, source: GitSource, files: dict[str, str],
              commit: str) -> int:
    try:
        ref = Reference.parse(args.push_oci)
        oras = registry_client(args, ref.registry)
        try:
            pushed = push_artifact(oras, ref, files, source=source.display_url,
                                   revision=f"{source.ref}@sha1:{commit}")
        finally:
            oras.close()
    except OciError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if pushed.new:
        print(f"pushed {pushed.reference} as {ref} (render of {commit})", file=sys.stderr)
    else:
        print(f"{ref} already holds the render of {commit} ({pushed.reference}); "
              "nothing pushed", file=sys.stderr)
    print(pushed.reference)
    return 0
