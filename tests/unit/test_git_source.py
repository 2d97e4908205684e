"""Pure parts of the git source: credentials, redaction, URL splitting, ref resolution."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import git
import pytest

from constructs_lib.mounts import GIT_CREDENTIALS_MOUNT
from sync.cli.parser import duration
from sync.sources.git import (
    Credentials,
    GitSource,
    GitSourceError,
    UnsafeRevision,
    credentials_path,
    escaping_links,
    load_credentials,
    redact,
    split_url,
)


def test_credentials_from_a_mounted_secret_dir_and_a_yaml_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "username").write_text("robot\n")
    (secret / "password").write_text("pw\n")
    (secret / "ignored").write_text("x")
    creds = load_credentials(secret)
    assert (creds.username, creds.password, creds.ssh_key) == ("robot", "pw", None)

    token = tmp_path / "token.yaml"
    token.write_text("token: abc\n")
    creds = load_credentials(token)
    assert (creds.username, creds.password) == ("x-access-token", "abc")

    broken = tmp_path / "broken.yaml"
    broken.write_text("password: [hunter2\n")
    with pytest.raises(GitSourceError) as err:
        load_credentials(broken)
    assert "hunter2" not in str(err.value)
    assert credentials_path(None, "git-creds") == Path(GIT_CREDENTIALS_MOUNT)
    assert credentials_path(None, None) is None
    assert load_credentials(None).empty


@pytest.mark.timeout(20)
def test_hostile_credentials_files_are_refused_quickly_without_their_bytes(
    tmp_path: Path,
) -> None:
    bomb = tmp_path / "bomb.yaml"
    text = 'l0: &a0 ["hunter2","x","x","x","x","x","x","x","x"]\n'
    for level in range(1, 12):
        text += f"l{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]\n"
    bomb.write_text(text + "password: *a11\n")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"password: hunter\xe9\n")
    for path in (bomb, latin1):
        with pytest.raises(GitSourceError) as err:
            load_credentials(path)
        assert "hunter" not in str(err.value)


def test_secrets_never_survive_redaction() -> None:
    url, creds = split_url("https://user:hunter2@git.example.com:8443/r.git")
    assert url == "https://git.example.com:8443/r.git"
    assert (creds.username, creds.password) == ("user", "hunter2")
    assert split_url("ssh://git@example.com/r.git")[0] == "ssh://git@example.com/r.git"
    text = "fatal: unable to access 'https://u:hunter2@h/r/': token hunter2 rejected"
    assert "hunter2" not in redact(text, ["hunter2"])
    assert "https://***@h/r/" in redact(text, [])


def test_env_passes_secrets_by_file_only(tmp_path: Path) -> None:
    source = GitSource("https://robot:hunter2@example.com/r.git", "main", tmp_path / "clone")
    try:
        env = source.env()
        assert "hunter2" not in repr(env) and "hunter2" not in source.display_url
        askpass = Path(env["GIT_ASKPASS"])
        assert askpass.parent.stat().st_mode & 0o077 == 0
        assert (askpass.parent / "password").read_text() == "hunter2\n"
    finally:
        source.close()
    assert not askpass.exists()


HOST_KEY_CHANGED = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
The fingerprint for the ED25519 key sent by the remote host is
SHA256:x401yZ403Permission+/denied.
Host key for [127.0.0.1]:44017 has changed and you have requested strict checking.
Host key verification failed.
fatal: Could not read from remote repository.

Please make sure you have the correct access rights
and the repository exists."""


@pytest.mark.parametrize(("stderr", "hint"), [
    (HOST_KEY_CHANGED, "check known_hosts"),
    ("Host key verification failed.\nfatal: Could not read from remote repository.",
     "check known_hosts"),
    ("fatal: Authentication failed for 'http://127.0.0.1:9/r.git/'", "check the credentials"),
    ("fatal: could not read Username for 'http://127.0.0.1:9': terminal prompts disabled",
     "check the credentials"),
    ("fatal: unable to access 'http://127.0.0.1:9/r.git/': The requested URL returned "
     "error: 403", "check the credentials"),
    ("git@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote "
     "repository.", "check the credentials"),
    ("fatal: unable to access 'http://127.0.0.1:44017/r.git/': Failed to connect to "
     "127.0.0.1 port 44017 after 0 ms: Couldn't connect to server", None),
])
def test_fetch_errors_say_what_to_check(tmp_path: Path, stderr: str, hint: str | None) -> None:
    """The hint follows git's and ssh's words, not digits that happen to be in the text
    (a port such as 44017, a key fingerprint)."""
    source = GitSource("ssh://git@127.0.0.1:9/r.git", "main", tmp_path / "clone")
    exc = git.GitCommandError(["git", "fetch"], 128, stderr=stderr)
    message = str(source.error("fetch", exc))
    hints = {h for h in ("check known_hosts", "check the credentials") if h in message}
    assert hints == ({hint} if hint else set()), message


def test_resolve_branch_tag_and_commit(tmp_path: Path) -> None:
    origin = git.Repo.init(tmp_path / "origin", initial_branch="main")
    with origin.config_writer() as cfg:
        cfg.set_value("user", "name", "t")
        cfg.set_value("user", "email", "t@e")
    origin.git.commit("--allow-empty", "-m", "one")
    first = origin.head.commit.hexsha
    origin.git.tag("v1")
    origin.git.commit("--allow-empty", "-m", "two")
    second = origin.head.commit.hexsha
    url = f"file://{tmp_path / 'origin'}"
    assert GitSource(url, "main", tmp_path / "a").fetch() == second
    tag = GitSource(url, "v1", tmp_path / "b")
    assert tag.fetch() == first and tag.resolve()[1] == "tag"
    commit = GitSource(url, first[:10], tmp_path / "c")
    assert commit.fetch() == first and commit.resolve()[1] == "commit"
    with pytest.raises(GitSourceError, match="not a branch, tag or commit"):
        GitSource(url, "nope", tmp_path / "d").fetch()
    with pytest.raises(GitSourceError, match="git fetch of file://"):
        GitSource(f"file://{tmp_path / 'missing'}", "main", tmp_path / "e").fetch()


def test_durations() -> None:
    assert duration("1m") == 60 and duration("30s") == 30 and duration("2") == 2
    assert duration("1h") == 3600
    with pytest.raises(argparse.ArgumentTypeError):
        duration("soon")


def test_ssh_key_and_known_hosts_by_path(tmp_path: Path) -> None:
    """No sshd on this machine: the SSH path is checked up to the command git would run."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "ssh-privatekey").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nKEYDATA")
    (secret / "known_hosts").write_text("git.example.com ssh-ed25519 AAAA\n")
    source = GitSource("ssh://git@git.example.com/r.git", "main", tmp_path / "clone",
                       credentials=load_credentials(secret))
    try:
        env = source.env()
        command = env["GIT_SSH_COMMAND"]
        assert "KEYDATA" not in repr(env) and "GIT_ASKPASS" not in env
        key = Path(command.split(" -i ")[1].split()[0])
        assert key.read_text().endswith("KEYDATA\n") and key.stat().st_mode & 0o777 == 0o600
        assert "StrictHostKeyChecking=yes" in command and "BatchMode=yes" in command
        assert f"UserKnownHostsFile={key.parent / 'known_hosts'}" in command
    finally:
        source.close()


def test_drift_correction_is_on_by_default_and_can_be_turned_off() -> None:
    from sync.cli.parser import build_parser  # noqa: PLC0415
    from sync.options import RevisionOptions  # noqa: PLC0415

    base = ["sync", "--source", "git", "--repo", "file:///r"]
    assert build_parser().parse_args(base).drift_correction is True
    assert build_parser().parse_args([*base, "--no-drift-correction"]).drift_correction is False
    assert RevisionOptions().drift_correction is True


# ----- links out of the repository ---------------------------------------------------------
def origin_with(tmp_path: Path, files: dict[str, str], links: dict[str, str]) -> str:
    """A repository (branch main) with `files` and symbolic `links` (path -> target)."""
    origin = git.Repo.init(tmp_path / "origin", initial_branch="main")
    with origin.config_writer() as cfg:
        cfg.set_value("user", "name", "t")
        cfg.set_value("user", "email", "t@e")
    root = tmp_path / "origin"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel, target in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(target)
    origin.git.add("-A")
    origin.git.commit("--allow-empty", "-m", "c")
    return f"file://{root}"


HOST_VALUE = "host-only-value-7f3a"
CACHE = ("apiVersion: cache.converged-computing.github.io/v1alpha1\nkind: OrasCache\n"
         "metadata: {name: %s}\nspec: {port: %s}\n")


def test_links_out_of_the_repository_refuse_the_revision(tmp_path: Path) -> None:
    """As Argo CD's repo-server: a link resolving outside the clone (or into .git) fails
    the checkout, naming the link and never what it points to or contains."""
    outside = tmp_path / "host" / "secret.yaml"
    outside.parent.mkdir()
    outside.write_text(CACHE % ("x", HOST_VALUE))
    url = origin_with(tmp_path, {"caches/a.yaml": CACHE % ("a", 5000)}, {
        "caches/host.yaml": str(outside),
        "caches/up.yaml": "../../host/secret.yaml",
        "caches/chain.yaml": "up.yaml",
        "caches/gitconfig.yaml": "../.git/config",
        "root": "/",
        "docs/caches": "../caches",  # inside: fine
        "docs/a.yaml": "../caches/a.yaml",  # inside: fine
    })
    source = GitSource(url, "main", tmp_path / "clone")
    with pytest.raises(UnsafeRevision) as err:
        source.checkout(source.fetch())
    message = str(err.value)
    named = message.rpartition("not followed: ")[2].split(", ")
    assert sorted(named) == ["caches/chain.yaml", "caches/gitconfig.yaml", "caches/host.yaml",
                             "caches/up.yaml", "root"]
    assert HOST_VALUE not in message and str(outside) not in message
    assert isinstance(err.value, GitSourceError)


def test_a_caches_link_to_root_is_refused_at_once(tmp_path: Path) -> None:
    """`caches -> /` made the source walk the host's whole filesystem."""
    from sync.apply.applyset import ApplySet  # noqa: PLC0415
    from sync.render.tree import render_tree  # noqa: PLC0415

    url = origin_with(tmp_path, {"README.md": "x"}, {"caches": "/"})
    source = GitSource(url, "main", tmp_path / "clone")
    started = time.monotonic()
    with pytest.raises(UnsafeRevision, match=r"not followed: caches$"):
        source.checkout(source.fetch())
    assert time.monotonic() - started < 10
    # The path itself may not lead out of the repository either.
    desired = render_tree(tmp_path / "clone", "../..", ApplySet("p", "ns"), "ns")
    assert desired.errors == ["path '../..' is outside the repository"]


def test_escaping_links_follows_chains_and_stays_quiet_inside(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / ".git").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "a" / "in").symlink_to("../b")
    (root / "a" / "out").symlink_to("../../elsewhere")
    (root / "a" / "via").symlink_to("out")
    (root / "a" / "git").symlink_to("../.git")
    (root / "dangling").symlink_to("nowhere")
    assert escaping_links(root, ["a/in", "a/out", "a/via", "a/git", "dangling"]) == [
        "a/out", "a/via", "a/git"]


# ----- credentials in URLs ----------------------------------------------------------------
def test_ssh_password_leaves_the_url_and_git_config(tmp_path: Path) -> None:
    """`ssh://user:password@...` kept the password in .git/config and on `git remote
    add`'s command line; it goes to ssh through SSH_ASKPASS (a file of the 0700 dir)."""
    source = GitSource("ssh://git:pa%40ss-Word@127.0.0.1:9/r.git", "main", tmp_path / "c")
    try:
        assert source.url == "ssh://git@127.0.0.1:9/r.git"
        source.repo()
        config = (tmp_path / "c" / ".git" / "config").read_text()
        assert "pa%40ss" not in config and "pa@ss" not in config
        assert "url = ssh://git@127.0.0.1:9/r.git" in config
        env = source.env()
        assert "pa@ss" not in repr(env) and "pa%40ss" not in repr(env)
        assert env["SSH_ASKPASS"] == env["GIT_ASKPASS"]
        assert env["SSH_ASKPASS_REQUIRE"] == "force"
        assert "StrictHostKeyChecking=yes" in env["GIT_SSH_COMMAND"]
        assert "BatchMode=yes" not in env["GIT_SSH_COMMAND"]  # it turns passwords off
        secrets = Path(env["GIT_ASKPASS"]).parent
        assert secrets.stat().st_mode & 0o777 == 0o700
        assert (secrets / "password").read_text() == "pa@ss-Word\n"
    finally:
        source.close()


def askpass(source: GitSource, prompt: str) -> subprocess.CompletedProcess[str]:
    env = source.env()
    return subprocess.run([env["GIT_ASKPASS"], prompt], env={**os.environ, **env},
                          capture_output=True, text=True, check=False)


def test_askpass_answers_password_prompts_only(tmp_path: Path) -> None:
    source = GitSource("https://robot:hunter2@example.com/r.git", "main", tmp_path / "c")
    try:
        assert askpass(source, "Username for 'https://example.com': ").stdout == "robot\n"
        assert askpass(source, "Password for 'https://robot@example.com': ").stdout == (
            "hunter2\n")
        assert askpass(source, "git@example.com's password: ").stdout == "hunter2\n"
        for prompt in ("Are you sure you want to continue connecting (yes/no)? ",
                       "Enter passphrase for key '/x/id': "):
            done = askpass(source, prompt)
            assert (done.returncode, done.stdout) == (1, ""), prompt
    finally:
        source.close()


def test_percent_encoded_credentials_are_decoded() -> None:
    url, creds = split_url("https://r%40bot:p%40ss%3Aw%2Frd%25@h.example:8443/r.git")
    assert url == "https://h.example:8443/r.git"
    assert (creds.username, creds.password) == ("r@bot", "p@ss:w/rd%")
    url, creds = split_url("ssh://git:p%20w@[::1]:2222/r.git")
    assert (url, creds.password, creds.username) == ("ssh://git@[::1]:2222/r.git", "p w", None)


def test_a_token_alone_in_the_url_is_used_or_refused_with_a_reason(tmp_path: Path) -> None:
    """`http://TOKEN@host` silently dropped the token."""
    token = "ghp_T0KEN42abcdefXYZ"
    url = f"https://{token}@example.com/r.git"
    with pytest.raises(GitSourceError, match="never prompts") as err:
        GitSource(url, "main", tmp_path / "a")
    assert token not in str(err.value)
    # With a password from the credentials file, the URL's name is the user name (and,
    # maybe a token, never shown).
    source = GitSource(url, "main", tmp_path / "b", credentials=Credentials(password="pw"))
    assert (source.credentials.username, source.credentials.password) == (token, "pw")
    assert token not in source.display_url
    assert token not in redact(f"for 'https://example.com/{token}'",
                               source.credentials.secrets())
    assert GitSource("https://git@example.com/r.git", "main", tmp_path / "f",
                     credentials=Credentials(password="pw")).credentials.secrets() == ["pw"]
    from_file = Credentials(username="x-access-token", password="t", token=True)
    merged = GitSource("https://oauth2@example.com/r.git", "main", tmp_path / "c",
                       credentials=from_file).credentials
    assert (merged.username, merged.password) == ("oauth2", "t")
    with pytest.raises(GitSourceError, match="one user name in the URL"):
        GitSource("https://someone@example.com/r.git", "main", tmp_path / "d",
                  credentials=Credentials(username="robot", password="pw"))
    with pytest.raises(GitSourceError, match="both in the URL and in the credentials"):
        GitSource("https://u:p@example.com/r.git", "main", tmp_path / "e",
                  credentials=Credentials(username="u", password="q"))


def test_query_string_tokens_are_refused_and_never_shown(tmp_path: Path) -> None:
    with pytest.raises(GitSourceError, match="no query string") as err:
        GitSource("https://gitlab.example.com/g/r.git?private_token=glpat-S3CR3T", "main",
                  tmp_path / "a")
    assert "glpat-S3CR3T" not in str(err.value)
    text = ("fatal: unable to access 'https://h/r.git?private_token=glpat-S3CR3T&x=1/"
            "info/refs?service=git-upload-pack': 404")
    shown = redact(text, [])
    assert "glpat-S3CR3T" not in shown and "service=git-upload-pack" in shown


def test_a_password_in_an_scp_like_address_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GitSourceError, match="scp-like") as err:
        GitSource("git:hunter2@example.com:org/r.git", "main", tmp_path / "a")
    assert "hunter2" not in str(err.value)
    source = GitSource("git@example.com:org/r.git", "main", tmp_path / "b",
                       credentials=Credentials(password="pw"))
    try:
        assert source.url == "git@example.com:org/r.git"
        assert "SSH_ASKPASS" in source.env()  # scp-like is ssh too
    finally:
        source.close()
