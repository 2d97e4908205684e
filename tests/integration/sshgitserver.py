"""A real SSH git remote for tests: paramiko on 127.0.0.1, public-key auth for exactly one
client key (and, when given, password auth for one password), and `git upload-pack`
(fetch only) run per exec request.

The host key is made per server; `known_hosts()` is the line a client needs. Every auth
attempt and exec request is recorded, so tests can tell "refused before auth" (host key)
from "refused at auth" (wrong key). `on_exec` runs while the client's ssh is connected.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.harness.ports import free_ports


@dataclass(frozen=True)
class SshKey:
    private: str  # OpenSSH private key text (what a `ssh-privatekey` Secret key holds)
    public: str  # "ssh-ed25519 AAAA..."

    @classmethod
    def generate(cls) -> SshKey:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        return cls(private, public)

    def paramiko(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key(StringIO(self.private))


class GitSshServer(paramiko.ServerInterface):
    """Serves repositories under `root` at ssh://git@127.0.0.1:PORT/<name> (fetch only)."""

    def __init__(self, root: Path, authorized: SshKey, user: str = "git",
                 password: str | None = None) -> None:
        self.root, self.authorized, self.user = root.resolve(), authorized, user
        self.password = password  # also accept this password (keys stay accepted)
        self.host_key = SshKey.generate()
        self.port = free_ports(1)[0]
        self.auths: list[tuple[str, bool]] = []  # (user, accepted)
        self.execs: list[tuple[str, bool]] = []  # (command, accepted)
        self.on_exec: Callable[[], None] | None = None
        self._sock: socket.socket | None = None
        self._transports: list[paramiko.Transport] = []
        self._env: dict[paramiko.Channel, dict[str, str]] = {}

    def url(self, name: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}/{name}"

    def known_hosts(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.public}\n"

    # ----- paramiko.ServerInterface --------------------------------------------------------
    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password" if self.password is not None else "publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = self.password is not None and username == self.user and password == self.password
        self.auths.append((username, ok))
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == self.user and f"{key.get_name()} {key.get_base64()}" == (
            self.authorized.public.strip())
        self.auths.append((username, ok))
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else (
            paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED)

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes,
                                  value: bytes) -> bool:
        if name == b"GIT_PROTOCOL":
            self._env.setdefault(channel, {})["GIT_PROTOCOL"] = value.decode()
            return True
        return False

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        try:
            words = shlex.split(command.decode(errors="replace"))
        except ValueError:
            words = []
        repo = (self.root / words[1].lstrip("/")).resolve() if len(words) == 2 else None
        ok = (words[:1] == ["git-upload-pack"] and repo is not None
              and repo.is_relative_to(self.root) and repo.is_dir())
        self.execs.append((command.decode(errors="replace"), ok))
        if ok:
            if self.on_exec is not None:
                self.on_exec()
            threading.Thread(target=self._serve, args=(channel, repo), daemon=True).start()
        return ok

    # ----- serving -------------------------------------------------------------------------
    def _serve(self, channel: paramiko.Channel, repo: Path) -> None:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **self._env.pop(channel, {})}
        proc = subprocess.Popen(["git", "upload-pack", str(repo)], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdin and proc.stdout and proc.stderr

        def pump_in() -> None:
            try:
                while data := channel.recv(65536):
                    proc.stdin.write(data)  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
            except (OSError, EOFError):
                pass
            finally:
                proc.stdin.close()  # type: ignore[union-attr]

        def pump_out(stream: object, send: Callable[[bytes], None]) -> None:
            try:
                while data := stream.read1(65536):  # type: ignore[attr-defined]
                    send(data)
            except OSError:  # the client went away
                proc.kill()

        threading.Thread(target=pump_in, daemon=True).start()
        outs = [threading.Thread(target=pump_out, args=(proc.stdout, channel.sendall)),
                threading.Thread(target=pump_out, args=(proc.stderr, channel.sendall_stderr))]
        for thread in outs:
            thread.start()
        for thread in outs:
            thread.join()
        channel.send_exit_status(proc.wait())
        channel.close()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed by stop()
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key.paramiko())
            self._transports.append(transport)
            # Negotiation runs in the transport's own thread (a failure ends only it).
            transport.start_server(event=threading.Event(), server=self)

    def start(self) -> GitSshServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(8)
        self._sock = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
            self._sock.close()
            self._sock = None
        for transport in self._transports:
            transport.close()
        self._transports.clear()
