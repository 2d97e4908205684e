"""Source stage for git: clone once, then fetch; resolve a branch, tag or commit.

Credentials come from `--credentials-file PATH`: either a directory holding one file per
key (a mounted Secret; keys `username`, `password` or `token`, `ssh-privatekey`,
`known_hosts`) or a YAML mapping with the same keys. `--credentials-secret NAME` is the
in-cluster form: the Deployment mounts the Secret NAME at `GIT_CREDENTIALS_MOUNT`, and the
flag resolves to that directory; the service never calls the Secrets API.

Credentials never reach a URL, a process argument, a log line, an error message or a
file outside one 0700 directory: passwords go through `GIT_ASKPASS` (HTTP) or
`SSH_ASKPASS` (SSH), a tiny script that prints files of that directory, SSH keys through
`GIT_SSH_COMMAND` with the key *path*, and every git error is passed through `redact`
before it is shown. A URL given with `user:pass@` is split into a clean URL (the one
git's config holds) and percent-decoded credentials, as git itself would decode them; a
URL whose secret cannot be moved out (a query string, a password in an scp-like address)
or would be dropped (a user name or token without a password) is refused with a reason.

The checkout is the repository's boundary: a commit whose tree holds a symbolic link
that resolves outside the work tree (or into `.git`) is refused before any of its files
is read (`UnsafeRevision`), as Argo CD's repo-server refuses out-of-bounds links.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import git
import yaml

from constructs_lib.mounts import GIT_CREDENTIALS_MOUNT
from sync.sources import kubeyaml

log = logging.getLogger(__name__)

COMMIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "orascache", "GIT_AUTHOR_EMAIL": "orascache@localhost",
    "GIT_COMMITTER_NAME": "orascache", "GIT_COMMITTER_EMAIL": "orascache@localhost"}

KEYS = ("username", "password", "token", "ssh-privatekey", "known_hosts")
HEX = re.compile(r"^[0-9a-f]{7,40}$")
# git's and ssh's own words for refused credentials (not a bare "401": ports hold digits)
_AUTH_FAILED = re.compile(r"Authentication failed|could not read Username|"
                          r"returned error: 40[13]\b|Permission denied \(")
# Answers git's (HTTP) and ssh's password prompts; anything else (a host key question,
# a key passphrase) gets no answer.
ASKPASS = """#!/bin/sh
case "$1" in
  [Uu]sername*) cat "$ORASCACHE_GIT_SECRETS/username" ;;
  *[Pp]assword*) cat "$ORASCACHE_GIT_SECRETS/password" ;;
  *) exit 1 ;;
esac
"""
HTTP_SCHEMES = ("http", "https")
TOKEN_LIKE = 16  # characters: GitHub's and GitLab's tokens are longer
SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")
_SCP_LIKE = re.compile(r"^[^/]+:")  # [user@]host:path, git's other ssh syntax
_SCP_PASSWORD = re.compile(r"^[^/@]*:[^/@]*@[^/:]+:")  # user:password@host:path


class GitSourceError(Exception):
    """A fetch, resolve or checkout failed; the message is already redacted."""


class UnsafeRevision(GitSourceError):
    """The commit cannot be read safely (links out of the repository); nothing of it
    was read. The message names the offending paths, never what they point to."""


@dataclass
class Credentials:
    username: str | None = None
    password: str | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None
    token: bool = False  # the password is a token given without a user name
    secret_username: bool = False  # a URL's lone user name: maybe a token

    def secrets(self) -> list[str]:
        # A lone user name as long as a token is redacted too (a short one, such as
        # "git", would only mangle every message).
        hidden = [self.username] if self.secret_username and len(
            self.username or "") >= TOKEN_LIKE else []
        return [s for s in (self.password, self.ssh_key, *hidden) if s]

    @property
    def empty(self) -> bool:
        return not (self.password or self.ssh_key)


def credentials_path(file: str | None, secret: str | None) -> Path | None:
    if file:
        return Path(file)
    if secret:
        return Path(GIT_CREDENTIALS_MOUNT)
    return None


def load_credentials(path: Path | None) -> Credentials:
    if path is None:
        return Credentials()
    values: dict[str, str] = {}
    try:
        if path.is_dir():
            for key in KEYS:
                if (path / key).is_file():
                    values[key] = (path / key).read_text(encoding="utf-8")
        else:
            # kubeyaml: the same reading as the caches' files, and its alias limit (a
            # billion laughs in a value would otherwise expand in str() below).
            docs = list(kubeyaml.load_all(path.read_bytes().decode("utf-8")))
            loaded: Any = (docs[0] if docs else None) or {}
            if not isinstance(loaded, dict):
                raise GitSourceError(f"credentials file {path}: expected a mapping of "
                                     f"{', '.join(KEYS)}")
            values = {str(k): str(v) for k, v in loaded.items() if k in KEYS}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        # The YAML error could quote the file: say only where it is.
        raise GitSourceError(f"cannot read credentials from {path}: "
                             f"{type(exc).__name__}") from None
    token = values.get("token", "").strip()
    password = values.get("password", "").strip() or token or None
    username = values.get("username", "").strip() or ("x-access-token" if token else None)
    return Credentials(username=username, password=password,
                       ssh_key=values.get("ssh-privatekey") or None,
                       known_hosts=values.get("known_hosts") or None,
                       token=bool(token) and not values.get("username", "").strip())


def is_ssh(url: str) -> bool:
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    return scheme in SSH_SCHEMES or (not scheme and bool(_SCP_LIKE.match(url)))


def split_url(url: str) -> tuple[str, Credentials]:
    """Move the secrets out of a remote URL: `https://user:pass@host/r` -> (`https://host/r`,
    credentials), `ssh://git:pass@host/r` -> (`ssh://git@host/r`, the password); user
    name and password percent-decoded (git decodes them too). Raises GitSourceError for a
    URL whose secret could only stay in it."""
    if "://" not in url:
        if _SCP_PASSWORD.match(url):
            raise GitSourceError(
                "a password in an scp-like address (user:password@host:path) would reach "
                "ssh's command line and git's config: use ssh://user@host/path with the "
                "password in --credentials-file, or an ssh-privatekey")
        return url, Credentials()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in HTTP_SCHEMES and parts.query:
        raise GitSourceError(
            f"{redact(url, [])}: a git remote takes no query string (git sends it as part "
            "of the path, and a token there would be shown and stored): give the token "
            "with --credentials-file (key token)")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, Credentials()
    raw_user, colon, raw_password = userinfo.partition(":")
    username, password = unquote(raw_user) or None, unquote(raw_password) or None
    if scheme in HTTP_SCHEMES:
        clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
        return clean, Credentials(username=username, password=password)
    if not colon:
        return url, Credentials()  # ssh://git@host: a user name, no secret
    if scheme in SSH_SCHEMES:
        netloc = f"{raw_user}@{hostport}" if raw_user else hostport
        clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return clean, Credentials(password=password)
    raise GitSourceError(f"{redact(url, [])}: a password in a {scheme}:// URL is not "
                         "supported; use https:// or ssh:// with --credentials-file")


def merge_credentials(given: Credentials, inline: Credentials, url: str) -> Credentials:
    """The credentials of `--credentials-file` (`given`) with those taken out of the URL
    (`inline`); never one silently dropped for the other."""
    if inline.password:
        if given.password:
            raise GitSourceError(f"{url}: a password both in the URL and in the "
                                 "credentials file: give it in one place")
        return replace(given, username=inline.username or given.username,
                       password=inline.password, token=False)
    if inline.username:  # http(s)://NAME@host: a user name, or a token
        if not given.password:
            raise GitSourceError(
                f"{url}: the URL names a user (or holds a token) but gives no password, "
                "and the service never prompts: put a token in the credentials file (key "
                "token) or the password there, or give user:password in the URL")
        if given.username and not given.token and given.username != inline.username:
            raise GitSourceError(f"{url}: one user name in the URL, another in the "
                                 "credentials file: give it in one place")
        return replace(given, username=inline.username, token=False, secret_username=True)
    return given


def redact(text: str, secrets: list[str]) -> str:
    """Remove userinfo and query values from URLs, and every known secret value, from
    `text` (git's own `service=` query is kept)."""
    text = re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)
    text = re.sub(r"([?&](?!service=)[^=&?\s'\"#/]+=)[^&?\s'\"#]+", r"\1***", text)
    for secret in secrets:
        for part in {secret, secret.strip()}:
            if part:
                text = text.replace(part, "***")
    return text


@dataclass
class Revision:
    commit: str
    ref: str
    kind: str  # branch | tag | commit
    worktree: Path


@dataclass
class GitSource:
    """One remote, one ref, one local clone (kept between fetches)."""

    url: str
    ref: str
    workdir: Path
    credentials: Credentials = field(default_factory=Credentials)
    timeout: float = 120.0
    _repo: git.Repo | None = None
    _secret_dir: Path | None = None

    def __post_init__(self) -> None:
        self.url, inline = split_url(self.url)
        self.credentials = merge_credentials(self.credentials, inline, self.display_url)
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def display_url(self) -> str:
        return redact(self.url, self.credentials.secrets())

    # ----- environment ---------------------------------------------------------------------
    def _secrets_dir(self) -> Path:
        if self._secret_dir is None:
            self._secret_dir = Path(tempfile.mkdtemp(prefix="orascache-git-"))
            os.chmod(self._secret_dir, 0o700)
            creds = self.credentials

            def put(name: str, text: str, mode: int = 0o600) -> None:
                path = self._secret_dir / name  # type: ignore[operator]
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)

            put("username", (creds.username or "git") + "\n")
            put("password", (creds.password or "") + "\n")
            put("askpass", ASKPASS, 0o700)
            if creds.ssh_key:
                key = creds.ssh_key if creds.ssh_key.endswith("\n") else creds.ssh_key + "\n"
                put("id", key)
            if creds.known_hosts:
                put("known_hosts", creds.known_hosts)
        return self._secret_dir

    def env(self) -> dict[str, str]:
        """Environment of every git command: never prompts, secrets only by file."""
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_HTTP_LOW_SPEED_LIMIT": "1", "GIT_HTTP_LOW_SPEED_TIME": "30"}
        creds = self.credentials
        ssh_password = bool(creds.password) and is_ssh(self.url)
        if creds.password:
            secrets = self._secrets_dir()
            env["GIT_ASKPASS"] = str(secrets / "askpass")
            env["ORASCACHE_GIT_SECRETS"] = str(secrets)
        if ssh_password:  # ssh asks the same script, never a terminal
            env["SSH_ASKPASS"] = env["GIT_ASKPASS"]
            env["SSH_ASKPASS_REQUIRE"] = "force"
        if creds.ssh_key or creds.known_hosts or ssh_password:
            secrets = self._secrets_dir()
            # BatchMode would turn password authentication off; with a password, host
            # keys are still checked strictly and one wrong password ends the attempt.
            ssh = ["ssh", "-o", "BatchMode=no", "-o", "NumberOfPasswordPrompts=1"] if (
                ssh_password) else ["ssh", "-o", "BatchMode=yes"]
            if creds.ssh_key:
                ssh += ["-i", str(secrets / "id"), "-o", "IdentitiesOnly=yes"]
            if creds.known_hosts:
                ssh += ["-o", f"UserKnownHostsFile={secrets / 'known_hosts'}"]
            if creds.known_hosts or ssh_password:
                ssh += ["-o", "StrictHostKeyChecking=yes"]
            env["GIT_SSH_COMMAND"] = shlex.join(ssh)  # git runs it through a shell
        return env

    def secrets(self) -> list[str]:
        return self.credentials.secrets()

    def close(self) -> None:
        if self._secret_dir is not None:
            shutil.rmtree(self._secret_dir, ignore_errors=True)
            self._secret_dir = None

    # ----- git -----------------------------------------------------------------------------
    def error(self, op: str, exc: Exception) -> GitSourceError:
        detail = getattr(exc, "stderr", "") or str(exc)
        detail = " ".join(line.strip() for line in str(detail).splitlines() if line.strip())
        detail = detail.removeprefix("stderr:").strip().strip("'").strip()
        # Host key first: its warning names the port and a fingerprint (either may hold "401").
        if "Host key verification failed" in detail:
            hint = (" (the server's host key is not the one known_hosts lists for it: "
                    "check known_hosts)")
        elif _AUTH_FAILED.search(detail):
            hint = " (authentication failed: check the credentials)"
        else:
            hint = ""
        message = f"git {op} of {self.display_url} failed{hint}: {detail}"
        return GitSourceError(redact(message, self.credentials.secrets()))

    def repo(self) -> git.Repo:
        if self._repo is None:
            try:
                self._repo = self._open()
            except (git.GitError, OSError, ValueError) as exc:  # e.g. a broken --git-dir
                raise GitSourceError(redact(
                    f"the clone in {self.workdir} is not usable ({type(exc).__name__}: "
                    f"{exc}): remove it, or give another --git-dir",
                    self.credentials.secrets())) from None
        return self._repo

    def _open(self) -> git.Repo:
        if (self.workdir / ".git").is_dir():
            repo = git.Repo(self.workdir)
        else:
            repo = git.Repo.init(self.workdir)
        with repo.config_writer() as cfg:
            cfg.set_value("core", "askPass", "")
            cfg.set_value("credential", "helper", "")
            cfg.set_value("gc", "auto", "0")
        if "origin" in [r.name for r in repo.remotes]:
            repo.remotes.origin.set_url(self.url)
        else:
            repo.create_remote("origin", self.url)
        return repo

    def fetch(self) -> str:
        """Fetch branches and tags (forced: force-pushes and moved tags follow); return
        the commit the ref now names."""
        repo = self.repo()
        try:
            repo.git.fetch("origin", "--prune", "--no-tags", "--force",
                           "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*",
                           env=self.env(), kill_after_timeout=self.timeout)
        except git.GitCommandError as exc:
            raise self.error("fetch", exc) from None
        return self.resolve()[0]

    def resolve(self) -> tuple[str, str]:
        """(commit sha, kind) of the ref in the local clone."""
        repo = self.repo()
        ref = self.ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        candidates = [(f"refs/remotes/origin/{ref}", "branch"), (f"refs/tags/{ref}", "tag")]
        if HEX.fullmatch(self.ref):
            candidates.append((self.ref, "commit"))
        for name, kind in candidates:
            try:
                return repo.git.rev_parse("--verify", "--quiet", f"{name}^{{commit}}"), kind
            except git.GitCommandError:
                continue
        raise GitSourceError(f"ref {self.ref!r} is not a branch, tag or commit of "
                             f"{self.display_url}")

    def checkout(self, commit: str) -> Revision:
        """Make the work tree exactly `commit` (tracked files only, nothing else).
        Raises UnsafeRevision when a link in it leads out of the repository."""
        repo = self.repo()
        try:
            repo.git.checkout("--force", "--detach", commit)
            repo.git.clean("-ffdqx")
            tree = repo.git.ls_tree("-r", "-z", "--full-tree", commit)
        except git.GitCommandError as exc:
            raise self.error("checkout", exc) from None
        links = [entry.partition("\t")[2] for entry in tree.split("\0")
                 if entry.startswith("120000 ")]
        escaping = escaping_links(self.workdir, links)
        if escaping:
            shown = escaping[:20]
            more = f" (and {len(escaping) - len(shown)} more)" if escaping[20:] else ""
            raise UnsafeRevision(
                f"{commit[:12]}: symbolic link(s) to a path outside the repository, not "
                f"followed: {', '.join(shown)}{more}")
        return Revision(commit, self.ref, self.resolve()[1], self.workdir)

    def path_exists(self, commit: str, path: str) -> bool:
        rel = path.strip("/")
        if not rel or rel == ".":
            return True
        try:
            self.repo().git.cat_file("-e", f"{commit}:{rel}")
        except git.GitCommandError:
            return False
        return True

    def push_tree(self, files: Mapping[str, str], branch: str, message: str) -> str | None:
        """Commit `files` as the whole tree of `branch` on top of its tip and push it; the
        new commit, or None when the branch already holds exactly that tree. Plumbing with
        a private index, so the clone's work tree is never touched."""
        repo = self.repo()
        tracking = f"refs/remotes/origin/{branch}"
        try:
            parent: str | None = repo.git.rev_parse("--verify", "--quiet",
                                                    f"{tracking}^{{commit}}")
        except git.GitCommandError:
            parent = None
        with tempfile.TemporaryDirectory(prefix="orascache-render-") as tmp:
            work = Path(tmp) / "tree"
            for rel, text in files.items():
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            work.mkdir(exist_ok=True)
            env = {**COMMIT_IDENTITY, "GIT_INDEX_FILE": str(Path(tmp) / "index"),
                   "GIT_DIR": str(repo.git_dir), "GIT_WORK_TREE": str(work)}
            plumbing = git.Git(str(work))
            try:
                plumbing.execute(["git", "add", "-A", "."], env=env)
                tree = str(plumbing.execute(["git", "write-tree"], env=env))
                if parent is not None and repo.git.rev_parse(f"{parent}^{{tree}}") == tree:
                    return None
                argv = ["git", "commit-tree", str(tree), "-m", message]
                if parent is not None:
                    argv += ["-p", parent]
                new = str(plumbing.execute(argv, env=env))
            except git.GitCommandError as exc:
                raise self.error("commit", exc) from None
        try:
            repo.git.push("origin", f"{new}:refs/heads/{branch}", env=self.env(),
                          kill_after_timeout=self.timeout)
        except git.GitCommandError as exc:
            raise self.error("push", exc) from None
        repo.git.update_ref(tracking, new)
        return new


def escaping_links(root: Path, links: list[str]) -> list[str]:
    """The links (paths relative to `root`) that resolve, through any chain of links,
    outside `root` or into its `.git`."""
    base = Path(os.path.realpath(root))
    gitdir = base / ".git"
    escaping = []
    for rel in links:
        target = Path(os.path.realpath(base / rel))
        if not target.is_relative_to(base) or target.is_relative_to(gitdir):
            escaping.append(rel)
    return escaping


def source_from_args(url: str, ref: str, workdir: Path, credentials_file: str | None,
                     credentials_secret: str | None) -> GitSource:
    creds = load_credentials(credentials_path(credentials_file, credentials_secret))
    return GitSource(url, ref, workdir, credentials=creds)
