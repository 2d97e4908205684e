"""`POST /trigger` of the git source: off unless a token is configured.

Authenticated as Flux's notification-controller authenticates a Receiver: a token from a
Secret, which the caller shows in one of three ways, each compared in constant time
(`hmac.compare_digest`):
- `Authorization: Bearer TOKEN` (curl, a CI job);
- `X-Gitlab-Token: TOKEN` (a GitLab webhook's secret token);
- `X-Hub-Signature-256: sha256=HEX`, the HMAC-SHA256 of the body keyed with TOKEN (a
  GitHub webhook's secret).
The token is read from a file (a mounted Secret's key), never from an argument or the
environment, and never logged. Every request, good or bad, takes from one token bucket:
a flood gets 429 before anything is read or hashed (it can delay a fetch by at most the
interval: the next one comes anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from email.message import Message
from pathlib import Path

from constructs_lib.mounts import TRIGGER_MOUNT

TOKEN_KEY = "token"
# GitHub caps webhook payloads at 25 MB; the body is hashed in pieces, never held.
MAX_TRIGGER_BODY = 25 * 1000 * 1000


class TriggerConfigError(Exception):
    """The token cannot be used; the message names the file, never its content."""


def token_path(token_file: str | None, secret: str | None) -> Path | None:
    """`--trigger-token-file PATH`, or in a Pod `--trigger-secret NAME`: the Secret's
    `token` key, mounted by the Deployment at `TRIGGER_MOUNT`."""
    if token_file:
        return Path(token_file)
    if secret:
        return Path(TRIGGER_MOUNT) / TOKEN_KEY
    return None


MIN_TOKEN_BYTES = 16  # 128 bits: not guessable at any request rate


class TriggerAuth:
    def __init__(self, token: bytes) -> None:
        if len(token) < MIN_TOKEN_BYTES:
            raise TriggerConfigError(
                f"the trigger token must have at least {MIN_TOKEN_BYTES} bytes")
        self._token = token

    @classmethod
    def from_file(cls, path: Path) -> TriggerAuth:
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise TriggerConfigError(f"trigger token {path}: {err.strerror}") from None
        try:
            return cls(raw.strip())  # `kubectl create secret --from-file` keeps a newline
        except TriggerConfigError as err:
            raise TriggerConfigError(f"trigger token {path}: {err}") from None

    def signer(self) -> hmac.HMAC:
        """Feed it the body; `allowed` checks a GitHub signature against it."""
        return hmac.new(self._token, digestmod=hashlib.sha256)

    def allowed(self, headers: Message, signed: hmac.HMAC) -> bool:
        shown = [_bytes(headers.get("X-Gitlab-Token"))]
        bearer = _bytes(headers.get("Authorization"))
        if bearer[:7].lower() == b"bearer ":
            shown.append(bearer[7:].strip())
        ok = False
        for value in shown:
            ok |= bool(value) and hmac.compare_digest(value, self._token)
        signature = _bytes(headers.get("X-Hub-Signature-256"))
        if signature:
            ok |= hmac.compare_digest(signature, b"sha256=" + signed.hexdigest().encode())
        return ok


def _bytes(value: str | None) -> bytes:
    # Header values are decoded as latin-1, so this never fails; compare_digest on str
    # would raise on anything not ASCII.
    return (value or "").encode("latin-1", errors="replace")


class RateLimit:
    """Token bucket: `burst` at once, then `rate` per second."""

    def __init__(self, rate: float = 1.0, burst: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when allowed, else the seconds until the next request would be."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate


class Trigger:
    """What the HTTP server needs to serve POST /trigger."""

    def __init__(self, auth: TriggerAuth, fire: Callable[[], None],
                 limit: RateLimit | None = None) -> None:
        self.auth = auth
        self.fire = fire
        self.limit = limit or RateLimit()
