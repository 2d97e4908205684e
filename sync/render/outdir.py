"""Writing a rendered tree into a directory that may hold other things (a git checkout,
a user's own files, a symbolic link someone planted).

- Only this tool's files change: a file is ours when it is a regular file whose text
  starts with the render header (every file we write does; a JSON file, which cannot
  hold a comment, with `json_marker`). A stale file of ours is removed, and then only
  the directories that removal emptied; another file in the way of one we write is an
  error, never overwritten. Hidden directories (`.git`, the
  staging directory) are never looked into.
- Nothing outside the directory is touched: no symbolic link below it is followed, to
  write, to read or to remove (the directory itself may be a link: the caller named it).
- All or nothing: every check that can fail runs before the first change; every new file
  is staged in a private directory inside DIR (same filesystem, so each move is one
  rename) and every file to be replaced or removed is kept there (a hard link, else a
  copy) until the end, so a failure while moving puts everything back. The staging
  directory is removed in every case. Only a crash between the first and the last
  rename can leave a mix, each file of which is whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

STAGING_PREFIX = ".orascache-staging-"
SUFFIXES = (".yaml", ".yml", ".json")


def json_marker(header: str) -> str:
    """How a JSON file of ours starts (JSON has no comments): an object whose first member
    `__comment` holds the header's text."""
    text = header.strip().removeprefix("#").strip()
    return '{\n  "__comment": ' + json.dumps(text) + ",\n"


def marker(path: Path, header: str) -> str:
    """What a file of ours at `path` starts with: the header, or `json_marker` for .json."""
    return json_marker(header) if path.suffix == ".json" else header


class OutputError(Exception):
    """The tree cannot be written as asked; nothing was changed."""


@dataclass
class _Plan:
    root: Path
    writes: list[tuple[Path, str, bool]] = field(default_factory=list)  # target, text, exists
    stale: list[Path] = field(default_factory=list)
    missing_root: list[Path] = field(default_factory=list)  # DIR and parents to create


def read_ours(path: Path, header: str) -> bytes | None:
    """The content of `path` when it is a regular file (not a link) whose text starts
    with `header`, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        wanted = header.encode()
        if handle.read(len(wanted)) != wanted:
            return None
        return wanted + handle.read()


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _plan(files: Mapping[str, str], outdir: Path, header: str) -> _Plan:
    missing: list[Path] = []
    probe = outdir
    while _lstat(probe) is None and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():  # follows a link: the caller named this path
        raise OutputError(f"{probe}: not a directory")
    plan = _Plan(outdir, missing_root=missing[::-1])
    for rel in sorted(files):
        target = _checked_target(outdir, rel)
        st = _lstat(target)
        if st is not None:
            if stat.S_ISLNK(st.st_mode):
                raise OutputError(f"{target}: is a symbolic link; links in the output "
                                  "directory are not followed")
            if stat.S_ISDIR(st.st_mode):
                raise OutputError(f"{target}: is a directory, where orascache writes a file")
            old = read_ours(target, marker(target, header))
            if old is None:
                raise OutputError(f"{target}: exists and was not written by orascache; "
                                  "not overwritten (move it away)")
            if old == files[rel].encode():
                continue  # unchanged: not rewritten
        plan.writes.append((target, files[rel], st is not None))
    if not missing:
        plan.stale = _stale(files, outdir, header)
    return plan


def _checked_target(outdir: Path, rel: str) -> Path:
    """Where `rel` goes: inside outdir, below existing directories only (no links)."""
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise OutputError(f"{rel!r}: not a relative path inside {outdir}")
    for depth in range(1, len(parts)):
        below = outdir.joinpath(*parts[:depth])
        st = _lstat(below)
        if st is None:
            break
        if stat.S_ISLNK(st.st_mode):
            raise OutputError(f"{below}: is a symbolic link; links in the output "
                              "directory are not followed")
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{below}: is not a directory, but {rel} goes in it")
    return outdir.joinpath(*parts)


def _stale(files: Mapping[str, str], outdir: Path, header: str) -> list[Path]:
    """Files of ours under outdir that `files` no longer has (links and hidden
    directories skipped, never followed)."""
    stale: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(outdir, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not (here / d).is_symlink())
        for name in sorted(filenames):
            path = here / name
            if (name.endswith(SUFFIXES) and path.relative_to(outdir).as_posix() not in files
                    and read_ours(path, marker(path, header)) is not None):
                stale.append(path)
    return stale


def _keep(path: Path, aside: Path) -> None:
    """Keep `path`'s current content at `aside` (a hard link; a copy where links fail)."""
    try:
        os.link(path, aside, follow_symlinks=False)
    except OSError:
        shutil.copy2(path, aside, follow_symlinks=False)


def write_tree(files: Mapping[str, str], outdir: Path, header: str) -> None:
    """Make `files` (relative path -> text) the files of ours under `outdir`.
    Raises OutputError, having changed nothing, when that cannot be done."""
    plan = _plan(files, outdir, header)
    created: list[Path] = []
    try:
        for directory in plan.missing_root:
            directory.mkdir()
            created.append(directory)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=outdir))
    except OSError as exc:
        _remove_dirs(created)
        raise OutputError(f"cannot write to {outdir}: {exc.strerror or exc}") from None
    try:
        _apply(plan, staging, created)
    except OutputError:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_dirs(created)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    _prune_emptied(plan)


def _apply(plan: _Plan, staging: Path, created: list[Path]) -> None:
    new: list[Path] = []
    kept: dict[Path, Path] = {}
    try:
        for index, (target, text, exists) in enumerate(plan.writes):
            fd, tmp = tempfile.mkstemp(dir=staging, prefix=f"{index}.")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            new.append(Path(tmp))
            if exists:
                kept[target] = staging / f"{index}.old"
                _keep(target, kept[target])
        for index, path in enumerate(plan.stale):
            kept[path] = staging / f"stale-{index}"
            _keep(path, kept[path])
    except OSError as exc:
        raise OutputError(f"cannot write to {plan.root}: {exc.strerror or exc}") from None
    moved: list[Path] = []
    removed: list[Path] = []
    current = plan.root
    try:
        for (target, _, _), staged in zip(plan.writes, new, strict=True):
            current = target
            for parent in reversed(target.relative_to(plan.root).parents[:-1]):
                directory = plan.root / parent
                if _lstat(directory) is None:
                    directory.mkdir()
                    created.append(directory)
            os.replace(staged, target)
            moved.append(target)
        for path in plan.stale:
            current = path
            path.unlink()
            removed.append(path)
    except OSError as exc:
        for target in reversed(moved):
            with contextlib.suppress(OSError):
                if target in kept:
                    os.replace(kept[target], target)
                else:
                    target.unlink()
        for path in removed:
            with contextlib.suppress(OSError):
                os.replace(kept[path], path)
        raise OutputError(f"cannot write {current}: {exc.strerror or exc}; "
                          f"nothing in {plan.root} was changed") from None


def _remove_dirs(created: list[Path]) -> None:
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _prune_emptied(plan: _Plan) -> None:
    """Remove the directories that removing stale files emptied (never `outdir`)."""
    for path in plan.stale:
        directory = path.parent
        while directory != plan.root and plan.root in directory.parents:
            try:
                directory.rmdir()  # only succeeds when empty
            except OSError:
                break
            directory = directory.parent


def write_file(path: Path, text: str) -> None:
    """One file, replaced in one rename; no temp file is left behind on failure."""
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    if path.exists() and not path.is_file():
        # The rename would replace a device or a FIFO (as root, `-o /dev/full`).
        raise OutputError(f"{path}: not a regular file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
