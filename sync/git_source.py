"""Source stage for git: clone once, then fetch; resolve a branch, tag or commit.

Credentials come from `--credentials-file PATH`: either a directory holding one file per
key (a mounted Secret; keys `username`, `password` or `token`, `ssh-privatekey`,
`known_hosts`) or a YAML mapping with the same keys. `--credentials-secret NAME` is the
in-cluster form: the Deployment mounts the Secret NAME at `CREDENTIALS_MOUNT`, and the
flag resolves to that directory; the service never calls the Secrets API.

Credentials never reach a URL, a process argument, a log line or an error message:
HTTP(S) passwords go through `GIT_ASKPASS` (a tiny script that prints files of a 0700
directory), SSH keys through `GIT_SSH_COMMAND` with the key *path*, and every git error
is passed through `redact` before it is shown. A URL given with `user:pass@` is split
into a clean URL and credentials.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import git
import yaml

from sync import kubeyaml

log = logging.getLogger(__name__)

CREDENTIALS_MOUNT = "/etc/orascache/git-credentials"
KEYS = ("username", "password", "token", "ssh-privatekey", "known_hosts")
HEX = re.compile(r"^[0-9a-f]{7,40}$")
# git's and ssh's own words for refused credentials (not a bare "401": ports hold digits)
_AUTH_FAILED = re.compile(r"Authentication failed|could not read Username|"
                          r"returned error: 40[13]\b|Permission denied \(")
ASKPASS = """#!/bin/sh
case "$1" in
  [Uu]sername*) cat "$ORASCACHE_GIT_SECRETS/username" ;;
  *) cat "$ORASCACHE_GIT_SECRETS/password" ;;
esac
"""


class GitSourceError(Exception):
    """A fetch, resolve or checkout failed; the message is already redacted."""


@dataclass
class Credentials:
    username: str | None = None
    password: str | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.ssh_key) if s]

    @property
    def empty(self) -> bool:
        return not (self.password or self.ssh_key)


def credentials_path(file: str | None, secret: str | None) -> Path | None:
    if file:
        return Path(file)
    if secret:
        return Path(CREDENTIALS_MOUNT)
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
                       known_hosts=values.get("known_hosts") or None)


def split_url(url: str) -> tuple[str, Credentials]:
    """`https://user:pass@host/r` -> (`https://host/r`, credentials); others unchanged."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and (parts.username or parts.password):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return clean, Credentials(username=parts.username, password=parts.password)
    return url, Credentials()


def redact(text: str, secrets: list[str]) -> str:
    """Remove userinfo from URLs and every known secret value from `text`."""
    text = re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)
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

    @property
    def short(self) -> str:
        return self.commit[:12]


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
        if inline.password and self.credentials.empty:
            self.credentials = inline
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
        if creds.password:
            secrets = self._secrets_dir()
            env["GIT_ASKPASS"] = str(secrets / "askpass")
            env["ORASCACHE_GIT_SECRETS"] = str(secrets)
        if creds.ssh_key or creds.known_hosts:
            secrets = self._secrets_dir()
            ssh = ["ssh", "-o", "BatchMode=yes"]
            if creds.ssh_key:
                ssh += ["-i", str(secrets / "id"), "-o", "IdentitiesOnly=yes"]
            if creds.known_hosts:
                ssh += ["-o", f"UserKnownHostsFile={secrets / 'known_hosts'}",
                        "-o", "StrictHostKeyChecking=yes"]
            env["GIT_SSH_COMMAND"] = shlex.join(ssh)  # git runs it through a shell
        return env

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
            if (self.workdir / ".git").is_dir():
                self._repo = git.Repo(self.workdir)
            else:
                self._repo = git.Repo.init(self.workdir)
            with self._repo.config_writer() as cfg:
                cfg.set_value("core", "askPass", "")
                cfg.set_value("credential", "helper", "")
                cfg.set_value("gc", "auto", "0")
            if "origin" in [r.name for r in self._repo.remotes]:
                self._repo.remotes.origin.set_url(self.url)
            else:
                self._repo.create_remote("origin", self.url)
        return self._repo

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
        """Make the work tree exactly `commit` (tracked files only, nothing else)."""
        repo = self.repo()
        try:
            repo.git.checkout("--force", "--detach", commit)
            repo.git.clean("-ffdqx")
        except git.GitCommandError as exc:
            raise self.error("checkout", exc) from None
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


def source_from_args(url: str, ref: str, workdir: Path, credentials_file: str | None,
                     credentials_secret: str | None) -> GitSource:
    creds = load_credentials(credentials_path(credentials_file, credentials_secret))
    return GitSource(url, ref, workdir, credentials=creds)


def describe(env: Mapping[str, str]) -> str:
    """Which credential mechanisms an environment uses (for logs; never the values)."""
    used = [k for k in ("GIT_ASKPASS", "GIT_SSH_COMMAND") if k in env]
    return ",".join(used) or "none"
