"""Rendered manifests from git: `orascache render --repo URL --ref REF --path DIR`.

Renders exactly the fetched commit to the dist/ layout (`<namespace>/<name>.yaml` plus a
`kustomization.yaml`) and writes it to a directory, or commits it to a branch of the
same remote (the rendered-manifests pattern: Argo CD or Flux follow that branch). A
commit is made only when the rendered tree differs from the branch's tip, with the
source commit id in its message (GitSource.push_tree).
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.render.synth import cache_files
from sync.sources.git import GitSource, GitSourceError


@dataclass
class Rendered:
    commit: str
    files: dict[str, str]
    errors: list[str]

    @property
    def empty(self) -> bool:
        """No cache rendered anything (the kustomization alone would empty the target)."""
        return not any(rel != "kustomization.yaml" for rel in self.files)


def render_commit(source: GitSource, path: str, render_workers: int | None = None,
                  ) -> Rendered:
    """Fetch, check out the ref's commit and render the caches under `path`."""
    commit = source.fetch()
    revision = source.checkout(commit)
    rel = path.strip("/")
    if not source.path_exists(commit, rel):
        return Rendered(commit, {}, [f"path {path!r} does not exist in {commit[:12]}"])
    target = revision.worktree / rel if rel not in ("", ".") else revision.worktree
    files = cache_files([target], render_workers)
    if isinstance(files, list):
        prefix = f"{revision.worktree}/"
        return Rendered(commit, {}, [str(e).replace(prefix, "") for e in files])
    return Rendered(commit, files, [])


def push_branch(source: GitSource, rendered: Rendered, branch: str, path: str) -> str | None:
    """Commit `rendered.files` as the whole tree of `branch` and push it; the new commit,
    or None when the branch already holds exactly that tree."""
    message = (f"Render {path} from {rendered.commit}\n\n"
               f"Source: {source.display_url} {source.ref} at {rendered.commit}\n")
    return source.push_tree(rendered.files, branch, message)


__all__ = ["GitSourceError", "Rendered", "push_branch", "render_commit"]
