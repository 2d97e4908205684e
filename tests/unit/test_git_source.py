"""Pure parts of the git source: credentials, redaction, URL splitting, ref resolution."""

from __future__ import annotations

import argparse
from pathlib import Path

import git
import pytest

from sync.cli import duration
from sync.git_source import (
    CREDENTIALS_MOUNT,
    GitSource,
    GitSourceError,
    credentials_path,
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
    assert credentials_path(None, "git-creds") == Path(CREDENTIALS_MOUNT)
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
    from sync.cli import build_parser  # noqa: PLC0415
    from sync.git_sync import GitOptions  # noqa: PLC0415

    base = ["sync", "--source", "git", "--repo", "file:///r"]
    assert build_parser().parse_args(base).drift_correction is True
    assert build_parser().parse_args([*base, "--no-drift-correction"]).drift_correction is False
    assert GitOptions().drift_correction is True
