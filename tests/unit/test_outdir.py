"""`synth -o DIR` (and `dist`, `render --out`, `crd -o`) into a directory that holds other
things: only our files change, no link below DIR is followed, and a write that fails
changes nothing and leaves no temp file."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from sync.cli import main
from sync.render.synth import HEADER, REPO_ROOT

CACHE = """\
apiVersion: cache.converged-computing.github.io/v1alpha1
kind: OrasCache
metadata: {name: %s, namespace: %s}
spec: {}
"""


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under root, links not followed: kind and content (or link text)."""
    found: dict[str, tuple[str, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", "")
            else:
                found[rel] = ("file", path.read_bytes())
    return found


def sources(tmp_path: Path, *caches: tuple[str, str]) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "caches.yaml").write_text("---\n".join(CACHE % c for c in caches))
    return src


def test_synth_into_a_fresh_git_repository_keeps_every_file_of_it(tmp_path: Path) -> None:
    """`synth examples -o <fresh git repo>` removed .git/refs/tags and friends (empty
    directories) and left a repository git no longer recognised."""
    repo = tmp_path / "repo"
    git.Repo.init(repo, initial_branch="main")
    (repo / "empty-of-mine").mkdir()
    before = snapshot(repo)
    assert "empty-of-mine" in before
    assert ".git/refs/tags" in before
    for _ in range(2):
        assert main(["synth", str(REPO_ROOT / "examples"), "-o", str(repo)]) == 0
        after = snapshot(repo)
        assert {k: v for k, v in after.items() if k in before} == before
    assert "kustomization.yaml" in after and "workflows/shared.yaml" in after
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, text=True,
                            capture_output=True, check=True).stdout
    assert "kustomization.yaml" in status

    # Stale files of ours go, and the directories that emptied; nothing else.
    src = sources(tmp_path, ("a", "team"))
    assert main(["synth", str(src), "-o", str(repo)]) == 0
    after = snapshot(repo)
    assert {k: v for k, v in after.items() if k in before} == before
    assert "workflows" not in after and "_unnamespaced" not in after
    assert sorted(k for k in after if k not in before) == [
        "kustomization.yaml", "team", "team/a.yaml"]


def test_links_below_the_output_directory_are_never_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "old.yaml").write_text(HEADER + "kind: Ours\n")  # would look stale
    out = tmp_path / "out"
    out.mkdir()
    (out / "team").symlink_to(elsewhere)
    (out / "linked").symlink_to(elsewhere)
    (out / "file.yaml").symlink_to(elsewhere / "old.yaml")
    before, outside = snapshot(out), snapshot(elsewhere)

    # A namespace directory that is a link: refused, nothing written here or there.
    assert main(["synth", str(sources(tmp_path, ("a", "team"))), "-o", str(out)]) == 1
    assert snapshot(out) == before and snapshot(elsewhere) == outside

    # Links in the way of nothing: neither followed to look for stale files nor removed.
    assert main(["synth", str(sources(tmp_path, ("a", "other"))), "-o", str(out)]) == 0
    assert snapshot(elsewhere) == outside
    after = snapshot(out)
    assert {k: after[k] for k in before} == before
    assert "other/a.yaml" in after


def test_a_directory_where_a_file_goes_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to write the files before it, then fail with a temp file left behind."""
    out = tmp_path / "out"
    assert main(["synth", str(sources(tmp_path, ("a", "team"))), "-o", str(out)]) == 0
    (out / "team" / "b.yaml").mkdir()
    before = snapshot(out)
    src = sources(tmp_path, ("a", "team"), ("b", "team"), ("c", "zz"))
    (src / "caches.yaml").write_text((src / "caches.yaml").read_text().replace(
        "spec: {}", "spec: {port: 6000}", 1))
    capsys.readouterr()
    assert main(["synth", str(src), "-o", str(out)]) == 1
    assert snapshot(out) == before
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "b.yaml: is a directory" in err
    assert "Traceback" not in err


def test_a_file_we_did_not_write_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / "team").mkdir(parents=True)
    (out / "team" / "a.yaml").write_text("# my own notes\n")
    before = snapshot(out)
    assert main(["synth", str(sources(tmp_path, ("a", "team"))), "-o", str(out)]) == 1
    assert snapshot(out) == before
    assert "not written by orascache" in capsys.readouterr().err


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """A real fault for a root user: an immutable directory (chattr +i) refuses new
    entries even to root."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_failure_while_moving_files_into_place_puts_everything_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["synth", str(sources(tmp_path, ("a", "team"), ("old", "team"))),
                 "-o", str(out)]) == 0
    (out / "zz").mkdir()
    before = snapshot(out)
    # kustomization.yaml and team/a.yaml are replaced, team/old.yaml is removed, then
    # zz/x.yaml cannot be created: the first two must be put back.
    src = sources(tmp_path, ("a", "team"), ("x", "zz"))
    (src / "caches.yaml").write_text((src / "caches.yaml").read_text().replace(
        "spec: {}", "spec: {port: 6000}", 1))
    with immutable(out / "zz"):
        capsys.readouterr()
        assert main(["synth", str(src), "-o", str(out)]) == 1
        assert snapshot(out) == before
        assert capsys.readouterr().err == (f"error: cannot write {out}/zz/x.yaml: Operation "
                                           f"not permitted; nothing in {out} was changed\n")
    assert main(["synth", str(src), "-o", str(out)]) == 0
    assert "6000" in (out / "team" / "a.yaml").read_text()
    assert not (out / "team" / "old.yaml").exists()


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = sources(tmp_path, ("a", "team"))
    assert main(["synth", str(src), "-o", str(out)]) == 0
    inode = (out / "team" / "a.yaml").stat().st_ino
    assert main(["synth", str(src), "-o", str(out)]) == 0
    assert (out / "team" / "a.yaml").stat().st_ino == inode


def test_crd_to_a_directory_is_an_error_without_a_temp_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "crd.yaml"
    target.mkdir()
    assert main(["crd", "-o", str(target)]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["crd.yaml"]
