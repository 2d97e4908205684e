"""Poll health endpoints until they answer, failing fast (with the log) if the process dies."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.harness.procs import log_tail


class ClusterError(RuntimeError):
    """The control plane did not start or stop as expected; carries the component's log tail."""


def tls_context(ca_cert: Path | None, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """Verify against our CA (or not at all, for a component's self-signed serving cert)."""
    if ca_cert is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=str(ca_cert))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def http_get(
    url: str, context: ssl.SSLContext | None = None, timeout: float = 5.0
) -> tuple[int, str]:
    """GET and return (status, body); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def wait_healthy(
    name: str,
    url: str,
    *,
    log: str | Path,
    alive: Callable[[], bool],
    context: ssl.SSLContext | None = None,
    timeout: float = 60.0,
    ok: Callable[[int, str], bool] = lambda status, _body: status == 200,
) -> float:
    """Poll ``url`` until ``ok``; return the seconds waited. Raise ClusterError with the log."""
    start = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - start < timeout:
        if not alive():
            raise ClusterError(f"{name} exited during start-up; last log lines:\n{log_tail(log)}")
        try:
            status, body = http_get(url, context, timeout=2.0)
        except (OSError, urllib.error.URLError) as err:
            last = repr(err)
        else:
            if ok(status, body):
                return time.monotonic() - start
            last = f"HTTP {status}: {body[-500:]}"
        time.sleep(0.1)
    raise ClusterError(
        f"{name} not healthy at {url} after {timeout:.0f} s ({last}); last log lines:\n"
        f"{log_tail(log)}"
    )
