"""Rendered manifests from git: `orascache render --repo URL --ref REF --path DIR`.

Renders exactly the fetched commit to the dist/ layout (`<namespace>/<name>.yaml` plus a
`kustomization.yaml`) and writes it to a directory, or commits it to a branch of the
same remote (the rendered-manifests pattern: Argo CD or Flux follow that branch). A
commit is made only when the rendered tree differs from the branch's tip, with the
source commit id in its message; git plumbing with a private index, so the clone's work
tree is never touched.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import git

from sync.render.synth import cache_files
from sync.sources.git import GitSource, GitSourceError

IDENTITY = {"GIT_AUTHOR_NAME": "orascache", "GIT_AUTHOR_EMAIL": "orascache@localhost",
            "GIT_COMMITTER_NAME": "orascache", "GIT_COMMITTER_EMAIL": "orascache@localhost"}


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
    repo = source.repo()
    tracking = f"refs/remotes/origin/{branch}"
    try:
        parent: str | None = repo.git.rev_parse("--verify", "--quiet", f"{tracking}^{{commit}}")
    except git.GitCommandError:
        parent = None
    with tempfile.TemporaryDirectory(prefix="orascache-render-") as tmp:
        work = Path(tmp) / "tree"
        for rel, text in rendered.files.items():
            target = work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        work.mkdir(exist_ok=True)
        env = {**IDENTITY, "GIT_INDEX_FILE": str(Path(tmp) / "index"),
               "GIT_DIR": str(repo.git_dir), "GIT_WORK_TREE": str(work)}
        plumbing = git.Git(str(work))
        try:
            plumbing.execute(["git", "add", "-A", "."], env=env)
            tree = str(plumbing.execute(["git", "write-tree"], env=env))
            if parent is not None and repo.git.rev_parse(f"{parent}^{{tree}}") == tree:
                return None
            message = (f"Render {path} from {rendered.commit}\n\n"
                       f"Source: {source.display_url} {source.ref} at {rendered.commit}\n")
            argv = ["git", "commit-tree", str(tree), "-m", message]
            if parent is not None:
                argv += ["-p", parent]
            new = str(plumbing.execute(argv, env=env))
        except git.GitCommandError as exc:
            raise source.error("commit", exc) from None
    try:
        repo.git.push("origin", f"{new}:refs/heads/{branch}", env=source.env(),
                      kill_after_timeout=source.timeout)
    except git.GitCommandError as exc:
        raise source.error("push", exc) from None
    repo.git.update_ref(tracking, new)
    return new


__all__ = ["GitSourceError", "Rendered", "push_branch", "render_commit"]
