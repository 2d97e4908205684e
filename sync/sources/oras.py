"""The oras CLI as the project's OCI registry client (push, resolve, fetch).

Why the CLI and not a Python client: the registry side that matters in production is
authentication (basic, and the bearer-token challenge of ghcr.io, Docker Hub, ECR, GAR,
Harbor), TLS and retries. oras does all of it, is the ORAS project's own tool, and is the
client the workflow Pods already run; a hand-written client would re-implement the token
flow and could only be tested here against basic auth. The cost is one binary next to
`git` in the service image and a process per call, which is nothing at poll intervals.

Credentials never reach a process argument or the environment: they are written as a
docker-style `config.json` (`auths.<host>.auth`, base64 of `user:password`) in a 0700
temporary directory, and oras gets only its path (`--registry-config`). Without
credentials oras uses its own defaults (an earlier `oras login`). Every error shown is
passed through `redact`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync.sources.git import Credentials, redact

ORAS_ENV = "ORASCACHE_ORAS"  # path of the oras binary (default: `oras` on PATH)
# What oras needs from the environment: proxies and CA bundles, nothing else.
_PASS_ENV = ("PATH", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
             "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")
_REFERENCE = re.compile(r"^(?P<registry>[^/]+)/(?P<repository>[a-z0-9]+(?:[._/-]+[a-z0-9]+)*)"
                        r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
                        r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


class OciError(Exception):
    """A registry operation failed; the message is already redacted."""


@dataclass(frozen=True)
class Reference:
    """`host[:port]/repository[:tag][@digest]`; an `oci://` prefix (Flux's) is accepted."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        match = _REFERENCE.match(text.removeprefix("oci://"))
        if match is None or not (match["tag"] or match["digest"]):
            raise OciError(f"{text!r} is not an OCI reference with a tag: expected "
                           "HOST[:PORT]/REPOSITORY:TAG (e.g. ghcr.io/org/caches:main)")
        return cls(match["registry"], match["repository"], match["tag"], match["digest"])

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"

    def at(self, digest: str) -> str:
        """The same repository pinned to `digest` (what is fetched after a resolve)."""
        return f"{self.name}@{digest}"


@dataclass
class Oras:
    """One oras binary, one registry's credentials, plain HTTP or not."""

    registry: str
    credentials: Credentials = field(default_factory=Credentials)
    plain_http: bool = False
    binary: str | None = None
    timeout: float = 120.0
    _dir: Path | None = None

    def __post_init__(self) -> None:
        self.binary = self.binary or os.environ.get(ORAS_ENV) or shutil.which("oras")
        if not self.binary:
            raise OciError(f"the oras CLI was not found on PATH (or set ${ORAS_ENV})")

    def _config(self) -> Path | None:
        """The 0700 directory's config.json holding the credentials (written once)."""
        creds = self.credentials
        if not creds.password:
            return None
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="orascache-oras-"))
            os.chmod(self._dir, 0o700)
            pair = f"{creds.username or ''}:{creds.password}".encode()
            auth = {"auth": base64.b64encode(pair).decode()}
            hosts = {self.registry}
            if self.registry in ("docker.io", "registry-1.docker.io", "index.docker.io"):
                hosts.add("https://index.docker.io/v1/")
            text = json.dumps({"auths": dict.fromkeys(sorted(hosts), auth)})
            fd = os.open(self._dir / "config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        return self._dir / "config.json"

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def secrets(self) -> list[str]:
        secrets = self.credentials.secrets()
        if self.credentials.password:
            pair = f"{self.credentials.username or ''}:{self.credentials.password}"
            secrets.append(base64.b64encode(pair.encode()).decode())
        return secrets

    def run(self, *args: str, cwd: Path | None = None, what: str) -> str:
        """Run `oras ARGS` with the registry options; stdout, or OciError (redacted)."""
        argv = [str(self.binary), *args]
        config = self._config()
        if config is not None:
            argv += ["--registry-config", str(config)]
        if self.plain_http:
            argv.append("--plain-http")
        env = {k: v for k, v in os.environ.items() if k in _PASS_ENV}
        # oras keeps nothing under HOME when --registry-config is given; without it, it
        # reads the user's own login.
        env["HOME"] = str(self._dir) if config is not None else os.environ.get("HOME", "/tmp")
        try:
            done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise OciError(f"{what}: oras did not finish in {self.timeout:.0f}s") from None
        except OSError as exc:
            raise OciError(f"{what}: cannot run oras ({exc.strerror})") from None
        if done.returncode != 0:
            detail = " ".join(line.strip() for line in done.stderr.splitlines()
                              if line.strip()) or f"exit code {done.returncode}"
            raise OciError(redact(f"{what} failed: {detail}", self.secrets()))
        return done.stdout

    def resolve(self, ref: Reference) -> str:
        """The digest `ref`'s tag names now."""
        out = self.run("resolve", str(ref), what=f"resolving {ref}").strip()
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", out):
            raise OciError(f"resolving {ref}: unexpected answer {out[:100]!r}")
        return out

    def manifest(self, ref: str) -> dict[str, Any]:
        out = self.run("manifest", "fetch", ref, what=f"fetching the manifest of {ref}")
        try:
            loaded = json.loads(out)
        except json.JSONDecodeError:
            raise OciError(f"the manifest of {ref} is not JSON") from None
        if not isinstance(loaded, dict):
            raise OciError(f"the manifest of {ref} is not a JSON object")
        return loaded

    def blob(self, ref: Reference, digest: str, output: Path) -> None:
        self.run("blob", "fetch", "--output", str(output), ref.at(digest),
                 what=f"fetching blob {digest[:19]} of {ref.name}")
