"""Real git remotes for tests: `git http-backend` behind a small HTTP server with basic
auth on 127.0.0.1, and working repositories made with GitPython in temp dirs.

The server is real git smart HTTP (fetch and push): `git http-backend` runs as a CGI
program per request. `stop()` closes the port (the remote becomes unreachable) and
`start()` opens it again on the same port.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import git

from tests.harness.ports import free_ports

IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}


class WorkRepo:
    """A working repository (branch main) that tests edit and commit to."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.repo = git.Repo.init(path, initial_branch="main")
        with self.repo.config_writer() as cfg:
            cfg.set_value("user", "name", "test")
            cfg.set_value("user", "email", "test@example.com")
            cfg.set_value("receive", "denyCurrentBranch", "updateInstead")

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def write(self, rel: str, text: str) -> WorkRepo:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return self

    def remove(self, rel: str) -> WorkRepo:
        (self.path / rel).unlink()
        return self

    def commit(self, message: str = "change") -> str:
        self.repo.git.add("-A")
        self.repo.git.commit("--allow-empty", "-m", message)
        return self.repo.head.commit.hexsha

    def tag(self, name: str, commit: str = "HEAD") -> None:
        self.repo.git.tag("-f", name, commit)

    def reset_hard(self, commit: str) -> None:
        self.repo.git.reset("--hard", commit)

    def log(self, branch: str) -> list[tuple[str, str]]:
        out = self.repo.git.log("--format=%H %s", branch)
        return [(line[:40], line[41:]) for line in out.splitlines()]


class GitHttpServer:
    """Serves every repository under `root` at http://HOST:PORT/<name>, with basic auth
    (HOST: 127.0.0.1, or the test node's bridge address for Pods)."""

    def __init__(self, root: Path, username: str, password: str,
                 host: str = "127.0.0.1") -> None:
        self.root = root
        self.host = host
        self.username = username
        self.password = password
        self.port = free_ports(1)[0]
        self.httpd: ThreadingHTTPServer | None = None
        self.requests = 0

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        expected = "Basic " + base64.b64encode(
            f"{self.username}:{self.password}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._cgi()

            def do_POST(self) -> None:
                self._cgi()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _cgi(self) -> None:
                server.requests += 1
                body = self._body() if self.command == "POST" else b""
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                env = {
                    "PATH": os.environ.get("PATH", ""),
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": server.username,
                    "REMOTE_ADDR": "127.0.0.1",
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                }
                proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                                      capture_output=True, check=False)
                head, _, payload = proc.stdout.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = proc.stdout.partition(b"\n\n")
                status = 200
                headers: list[tuple[str, str]] = []
                for line in head.decode("latin-1").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler

    def start(self) -> GitHttpServer:
        self.httpd = ThreadingHTTPServer((self.host, self.port), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
