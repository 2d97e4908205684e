"""The real OCI registry (distribution) and the real oras CLI, built from the Go module proxy.

``python -m tests.harness.oras_tools build`` (``make oras-tools-build``) installs both
with ``go install`` into ``~/.cache/oras-cache/<tool>-<version>/bin`` (outside the repo,
keyed by version), under the same fcntl lock and atomic rename as the Kubernetes build
(see build.py), and verifies each with its version command; a verified cache is a no-op.

`LocalRegistry` runs the registry on a free 127.0.0.1 port with a temporary storage
directory and, optionally, htpasswd basic auth (bcrypt hashes from the ``bcrypt`` package,
a dev dependency).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import bcrypt

from tests.harness.build import (
    BuildError,
    _build_lock,
    _go,
    _go_env,
    _log,
    _progress,
    build_command,
    cache_root,
)
from tests.harness.ports import HOST, free_ports

REGISTRY_VERSION = os.environ.get("ORAS_CACHE_REGISTRY_VERSION") or "v3.1.2"
ORAS_VERSION = os.environ.get("ORAS_CACHE_ORAS_VERSION") or "v1.3.6"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Tool:
    name: str
    package: str
    version: str
    version_args: tuple[str, ...]
    expected: str  # substring of the version output

    @property
    def workdir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    @property
    def path(self) -> Path:
        return self.workdir / "bin" / self.name


@dataclass(frozen=True)
class OrasTools:
    registry: Path
    oras: Path
    registry_version: str
    oras_version: str


def registry_tool(version: str = REGISTRY_VERSION) -> Tool:
    return Tool(
        "registry",
        "github.com/distribution/distribution/v3/cmd/registry",
        version,
        ("--version",),
        f"distribution/v3 {version}",
    )


def oras_tool(version: str = ORAS_VERSION) -> Tool:
    return Tool(
        "oras", "oras.land/oras/cmd/oras", version, ("version",),
        f"Version:    {version.removeprefix('v')}",
    )


def version_ok(tool: Tool) -> bool:
    if not tool.path.is_file() or not os.access(tool.path, os.X_OK):
        return False
    try:
        proc = subprocess.run(
            [str(tool.path), *tool.version_args],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and tool.expected in proc.stdout + proc.stderr


def _install(tool: Tool) -> float:
    """`go install pkg@version` into a private GOBIN, then rename into place."""
    start = time.monotonic()
    bindir = tool.path.parent
    bindir.mkdir(parents=True, exist_ok=True)
    gobin = Path(tempfile.mkdtemp(prefix=".gobin.", dir=tool.workdir))
    try:
        env = _go_env(module_mode=False)
        env["GOBIN"] = str(gobin)
        with _progress(f"go install {tool.package}@{tool.version}"):
            proc = subprocess.run(
                [_go(), "install", "-trimpath", f"{tool.package}@{tool.version}"],
                cwd=tool.workdir, env=env, capture_output=True, text=True, check=False,
            )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise BuildError(f"go install {tool.package}@{tool.version} failed:\n{tail}")
        os.replace(gobin / tool.name, tool.path)
    finally:
        shutil.rmtree(gobin, ignore_errors=True)
    if not version_ok(tool):
        raise BuildError(f"{tool.path} was built but does not report {tool.expected!r}")
    return time.monotonic() - start


def ensure_tool(tool: Tool) -> tuple[Path, float]:
    """The verified binary and the seconds spent building it (0 when cached)."""
    if version_ok(tool):
        return tool.path, 0.0
    with _build_lock(tool.workdir):
        if version_ok(tool):  # someone else built it while we waited
            return tool.path, 0.0
        return tool.path, _install(tool)


def ensure_oras_tools() -> OrasTools:
    registry, reg_s = ensure_tool(registry_tool())
    oras, oras_s = ensure_tool(oras_tool())
    if reg_s or oras_s:
        _log(f"oras tools build times: registry {reg_s:.1f} s, oras {oras_s:.1f} s")
    return OrasTools(registry, oras, REGISTRY_VERSION, ORAS_VERSION)


def htpasswd_line(user: str, password: str) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}\n"


class LocalRegistry:
    """A distribution registry on 127.0.0.1:<free port>; ``address`` is ``host:port``."""

    def __init__(
        self, binary: Path | None = None, *, auth: tuple[str, str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.binary = binary or ensure_oras_tools().registry
        self.auth = auth
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="oras-cache-registry-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "registry.log"

    def _config(self) -> str:
        storage = self.dir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.address}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.auth:
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text(htpasswd_line(*self.auth))
            lines += ["auth:", "  htpasswd:", "    realm: oras-cache-test",
                      f"    path: {htpasswd}"]
        return "\n".join(lines) + "\n"

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError as err:
            return err.code == 401  # with auth, 401 means up
        except OSError:
            return False

    def start(self) -> LocalRegistry:
        for _attempt in range(3):
            (self.port,) = free_ports(1)
            config = self.dir / "config.yml"
            config.write_text(self._config())
            env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(self.binary), "serve", str(config)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, start_new_session=True,
                )
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._up():
                    return self
                time.sleep(0.05)
            self.stop()
            if "address already in use" not in self.log_path.read_text(errors="replace"):
                break
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the registry did not start on {self.address}:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return build_command("oras_tools", "the registry and oras binaries", ensure_oras_tools,
                         lambda t: {"REGISTRY": t.registry, "ORAS": t.oras}, argv)

if __name__ == "__main__":
    sys.exit(main())
