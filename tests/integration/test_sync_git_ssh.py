"""The git source over real SSH (tests/integration/sshgitserver.py: paramiko, public-key
auth, `git upload-pack`) with `ssh-privatekey` + `known_hosts` credentials, against the
real control plane: the right key applies; a wrong key or a host key that does not match
`known_hosts` is refused with a clear error, applies nothing and never shows the key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from sync.apply.applyset import LAST_COMMIT, LAST_MESSAGE, LAST_RESULT
from sync.apply.kube import Kube
from tests.harness import LocalCluster
from tests.integration.gitserver import WorkRepo
from tests.integration.sshgitserver import GitSshServer, SshKey
from tests.integration.syncproc import SyncProcess, sts, svc, trigger_token_file
from tests.integration.test_sync_git import cache_yaml, orascache, parent, recorded, settle

Start = Callable[..., SyncProcess]


@pytest.fixture
def repo(tmp_path: Path) -> WorkRepo:
    return WorkRepo(tmp_path / "remote" / "caches.git")


@pytest.fixture
def client_key() -> SshKey:
    return SshKey.generate()


@pytest.fixture
def server(repo: WorkRepo, client_key: SshKey) -> Iterator[GitSshServer]:
    srv = GitSshServer(repo.path.parent, authorized=client_key).start()
    yield srv
    srv.stop()


@pytest.fixture
def start_sync(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[Start]:
    procs: list[SyncProcess] = []

    def start(url: str, *args: str) -> SyncProcess:
        log = tmp_path / f"sync-git-ssh-{len(procs)}.log"
        proc = SyncProcess(cluster.kubeconfig, [
            "--source", "git", "--repo", url, "--ref", "main", "--path", "caches",
            "--namespace", namespace, "--interval", "1h", "--log-format", "text",
            "--git-dir", str(tmp_path / f"clone-{len(procs)}"),
            "--trigger-token-file", str(trigger_token_file(tmp_path)), *args], log)
        procs.append(proc.start())
        return proc.wait_ready(60)

    yield start
    for proc in procs:
        if not proc.exited():
            proc.stop()


def ssh_credentials(directory: Path, key: SshKey, known_hosts: str) -> Path:
    """A mounted Secret: one read-only file per key."""
    directory.mkdir()
    for name, text in (("ssh-privatekey", key.private), ("known_hosts", known_hosts)):
        (directory / name).write_text(text)
        (directory / name).chmod(0o400)
    return directory


def key_lines(key: SshKey) -> list[str]:
    """The base64 lines of the private key: none may appear anywhere. (The first is the
    same in every unencrypted ed25519 key, so it tells nothing.)"""
    return [line for line in key.private.splitlines()[2:] if "PRIVATE KEY" not in line]


def leaks(text: str, key: SshKey) -> list[str]:
    return [line for line in key_lines(key) if line in text]


def processes() -> list[tuple[str, str]]:
    """(command line, environment) of every process this user can read."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found.append(((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"), (proc / "environ").read_bytes().decode(errors="replace")))
            except OSError:
                continue
    return found


def test_ssh_key_and_known_hosts_apply_and_follow(
    start_sync: Start, server: GitSshServer, repo: WorkRepo, client_key: SshKey,
    kube: Kube, namespace: str, tmp_path: Path,
) -> None:
    seen: list[list[tuple[str, str]]] = []
    server.on_exec = lambda: seen.append(processes())  # while the client's ssh is running
    creds = ssh_credentials(tmp_path / "creds", client_key, server.known_hosts())
    first = repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(server.url("caches.git"), "--credentials-file", str(creds))
    ann = recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == first,
                   what="first revision applied over ssh")
    assert ann[LAST_RESULT] == "Applied"
    assert sts(kube, namespace, "a") is not None and svc(kube, namespace, "a") is not None

    second = repo.write("caches/b.yaml", cache_yaml("b")).commit("add b")
    settle(proc, kube, namespace, second)
    assert sts(kube, namespace, "b") is not None
    assert proc.metric('orascache_git_fetches_total{result="ok"}') >= 2

    # Every fetch really went over SSH: authenticated with the key, upload-pack only.
    assert server.auths and all(ok for _, ok in server.auths)
    assert len(server.execs) >= 2
    assert set(server.execs) == {("git-upload-pack '/caches.git'", True)}

    # The key went to ssh as a path (-i FILE); its text in no argument or environment
    # of any process, nor in the log or the service's own arguments.
    assert len(seen) == len(server.execs)
    ssh = [cmd for snapshot in seen for cmd, _ in snapshot
           if cmd.startswith("ssh ") and "IdentitiesOnly=yes" in cmd]
    assert ssh, "no ssh client process seen while the server ran upload-pack"
    assert all(" -i " in cmd and "StrictHostKeyChecking=yes" in cmd for cmd in ssh)
    key_file = Path(ssh[0].split(" -i ")[1].split()[0])
    assert key_file.parent != creds  # a private 0700 copy, not the mounted file
    for snapshot in seen:
        for cmd, env in snapshot:
            assert not leaks(cmd, client_key) and not leaks(env, client_key), cmd
    assert not leaks(proc.output(), client_key)
    assert not leaks(" ".join(proc.argv), client_key)

    proc.stop()
    assert not key_file.exists(), "the key copy outlived the service"


def test_wrong_key_refused_clear_error_without_key(
    start_sync: Start, server: GitSshServer, repo: WorkRepo, kube: Kube, namespace: str,
    tmp_path: Path,
) -> None:
    wrong = SshKey.generate()
    creds = ssh_credentials(tmp_path / "creds", wrong, server.known_hosts())
    repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(server.url("caches.git"), "--credentials-file", str(creds))
    ann = recorded(kube, namespace, lambda a: bool(a.get(LAST_RESULT)), what="result recorded")
    assert ann[LAST_RESULT] == "FetchFailed"
    message = ann[LAST_MESSAGE]
    assert "git fetch of ssh://" in message and "Permission denied (publickey)" in message
    assert "authentication failed" in message
    assert "authentication failed" in proc.output()
    assert server.auths and not any(ok for _, ok in server.auths)
    assert server.execs == []
    assert sts(kube, namespace, "a") is None and LAST_COMMIT not in parent(kube, namespace)
    for text in (message, proc.output(), " ".join(proc.argv)):
        assert not leaks(text, wrong)
    assert proc.metric("orascache_git_last_sync_ok") == 0


@pytest.mark.parametrize("mismatch", ["changed", "unknown"])
def test_host_key_not_in_known_hosts_refused(
    start_sync: Start, server: GitSshServer, repo: WorkRepo, client_key: SshKey,
    kube: Kube, namespace: str, tmp_path: Path, mismatch: str,
) -> None:
    """A server whose host key `known_hosts` does not list for it gets no authentication
    attempt at all (so no signature by the key) and nothing is applied."""
    other = SshKey.generate().public
    known_hosts = {"changed": f"[127.0.0.1]:{server.port} {other}\n",
                   "unknown": f"git.example.com {server.host_key.public}\n"}[mismatch]
    creds = ssh_credentials(tmp_path / "creds", client_key, known_hosts)
    repo.write("caches/a.yaml", cache_yaml("a")).commit()
    proc = start_sync(server.url("caches.git"), "--credentials-file", str(creds))
    ann = recorded(kube, namespace, lambda a: bool(a.get(LAST_RESULT)), what="result recorded")
    assert ann[LAST_RESULT] == "FetchFailed"
    assert "Host key verification failed" in ann[LAST_MESSAGE]
    assert "check known_hosts" in ann[LAST_MESSAGE]
    assert server.auths == [] and server.execs == []
    assert sts(kube, namespace, "a") is None
    assert not leaks(proc.output(), client_key)


def test_render_over_ssh(
    server: GitSshServer, repo: WorkRepo, client_key: SshKey, tmp_path: Path
) -> None:
    repo.write("caches/a.yaml", cache_yaml("a")).commit()
    creds = tmp_path / "creds.yaml"  # the YAML form of the same keys
    creds.write_text(yaml.safe_dump({"ssh-privatekey": client_key.private,
                                     "known_hosts": server.known_hosts()}))
    out = tmp_path / "out"
    done = orascache("render", "--repo", server.url("caches.git"), "--ref", "main",
                     "--path", "caches", "--out", str(out), "--credentials-file", str(creds))
    assert done.returncode == 0, done.stderr
    assert not leaks(done.stdout + done.stderr, client_key)
    kinds = {d["kind"] for f in out.rglob("*.yaml") if f.name != "kustomization.yaml"
             for d in yaml.safe_load_all(f.read_text()) if d}
    assert {"StatefulSet", "Service"} <= kinds
    assert server.execs == [("git-upload-pack '/caches.git'", True)]

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"ssh-privatekey": SshKey.generate().private,
                                     "known_hosts": server.known_hosts()}))
    done = orascache("render", "--repo", server.url("caches.git"), "--path", "caches",
                     "--out", str(tmp_path / "out2"), "--credentials-file", str(wrong))
    assert done.returncode != 0
    assert "Permission denied (publickey)" in done.stderr


def test_ssh_password_in_the_url_never_on_a_command_line_or_on_disk(
    start_sync: Start, repo: WorkRepo, client_key: SshKey, kube: Kube, namespace: str,
    tmp_path: Path,
) -> None:
    """`ssh://user:password@...` put the password in .git/config and on `git remote
    add`'s command line. It now reaches ssh only through SSH_ASKPASS and a file of the
    0700 credentials directory; percent-encoding is decoded as git would."""
    password = "pa@ss w0rd:x/%"
    encoded = quote(password, safe="")
    server = GitSshServer(repo.path.parent, authorized=client_key, password=password).start()
    try:
        seen: list[list[tuple[str, str]]] = []
        server.on_exec = lambda: seen.append(processes())
        creds = tmp_path / "creds"  # known_hosts only: the password comes from the URL
        creds.mkdir()
        (creds / "known_hosts").write_text(server.known_hosts())
        first = repo.write("caches/a.yaml", cache_yaml("a")).commit()
        url = server.url("caches.git").replace("ssh://git@", f"ssh://git:{encoded}@")
        proc = start_sync(url, "--credentials-file", str(creds))
        recorded(kube, namespace, lambda a: a.get(LAST_COMMIT) == first,
                 what="applied over ssh with a password")
        assert ("git", True) in server.auths
        assert seen, "no process snapshot taken while upload-pack ran"
        for snapshot in seen:
            for cmd, env in snapshot:
                if "sync.cli" in cmd:
                    continue  # the service's own arguments: the URL its user gave
                for secret in (password, encoded):
                    assert secret not in cmd and secret not in env, cmd
        clone = tmp_path / "clone-0"
        config = (clone / ".git" / "config").read_text()
        assert f"url = ssh://git@127.0.0.1:{server.port}/caches.git" in config
        for path in clone.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                assert password.encode() not in data and encoded.encode() not in data, path
        assert password not in proc.output() and encoded not in proc.output()

        wrong = server.url("caches.git").replace("ssh://git@", "ssh://git:not-it@")
        done = orascache("render", "--repo", wrong, "--path", "caches", "--out",
                         str(tmp_path / "out"), "--credentials-file", str(creds))
        assert done.returncode == 1
        assert "authentication failed" in done.stderr and "not-it" not in done.stderr
    finally:
        server.stop()
