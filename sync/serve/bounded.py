"""HTTP serving with bounds on what a slow, idle or hostile client can hold.

Both servers of the service (health/metrics/trigger and the admission webhook) are the
standard library's `ThreadingHTTPServer`: one thread per connection, simple and fast for
the few callers they expect (the kubelet's probes, Prometheus, the API server). Left
alone, a connection that never sends a request holds its thread for ever, and a body is
read whole whatever its size. Here:
- at most `Limits.max_connections` connections, so as many threads. When full, a new
  connection evicts the one that has waited longest for its request (an idle keep-alive
  or a slow sender): idle clients can never lock out the next caller. When every
  connection is busy answering, the new one is closed at once;
- a request must arrive whole (line, headers, body) within `Limits.read_timeout` of the
  connection starting to wait for it; this also closes idle keep-alive connections;
- a body needs a valid `Content-Length` of at most `Limits.max_body` (else 400, 411 or
  413 with the reason, and the connection is closed: its framing is unknown), and the
  bodies held at once share `Limits.body_budget` bytes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)
_DECIMAL = re.compile(r"[0-9]{1,15}")
CHUNK = 64 * 1024
DRAIN_BYTES, DRAIN_SECONDS = 256 * 1024, 0.5


@dataclass(frozen=True)
class Limits:
    max_connections: int = 32
    read_timeout: float = 10.0  # seconds for a whole request, and an idle keep-alive
    max_body: int = 1 << 20
    body_budget: int = 4 << 20  # bytes of request bodies held in memory at once


class ByteBudget:
    """Bodies in memory at once: a request waits (up to a timeout) for room for its own."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._cond = threading.Condition()

    def acquire(self, size: int, timeout: float) -> bool:
        if size > self.total:
            return False
        with self._cond:
            return self._cond.wait_for(lambda: self.free >= size, timeout) and self._take(size)

    def _take(self, size: int) -> bool:
        self.free -= size
        return True

    def release(self, size: int) -> None:
        with self._cond:
            self.free += size
            self._cond.notify_all()


def _cut(sock: socket.socket) -> None:
    """Unblock the connection's thread (its read returns end of file). The plain socket's
    shutdown: an SSLSocket's own would drop its TLS state under the reading thread."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 drops the SYNs of a burst of new connections
    # (retried after 1 s, 3 s, ...): a probe would wait behind them.
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 limits: Limits) -> None:
        self.limits = limits
        self.budget = ByteBudget(limits.body_budget)
        # connection -> monotonic time it started waiting for a request; None: answering
        self._waiting: dict[Any, float | None] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.draining = False  # every answer closes its connection (see drain)
        self.evicted = 0
        self.refused = 0
        super().__init__(addr, handler)
        threading.Thread(target=self._reap, name="http-reaper", daemon=True).start()

    # ----- connection book-keeping ---------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._waiting) >= self.limits.max_connections and not self._evict_oldest():
                self.refused += 1
                full = True
            else:
                self._waiting[request] = time.monotonic()
                full = False
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def _evict_oldest(self) -> bool:
        idle = [(since, conn) for conn, since in self._waiting.items() if since is not None]
        if not idle:
            return False
        _, conn = min(idle, key=lambda pair: pair[0])
        del self._waiting[conn]
        self.evicted += 1
        _cut(conn)
        return True

    def waiting(self, request: Any) -> None:
        with self._lock:
            if request in self._waiting:
                self._waiting[request] = time.monotonic()

    def busy(self, request: Any) -> None:
        """The request has been read; its connection is no longer evictable."""
        with self._lock:
            if request in self._waiting:
                self._waiting[request] = None

    def connections(self) -> int:
        with self._lock:
            return len(self._waiting)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._waiting.pop(request, None)
        super().shutdown_request(request)

    def _reap(self) -> None:
        period = min(1.0, self.limits.read_timeout / 4)
        while not self._closed.wait(period):
            deadline = time.monotonic() - self.limits.read_timeout
            with self._lock:
                late = [c for c, since in self._waiting.items()
                        if since is not None and since < deadline]
                for conn in late:
                    del self._waiting[conn]
            for conn in late:
                _cut(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Logged, not printed to stderr; the connection closes. A connection that broke
        (the client left, or was cut here) is no news."""
        peer = client_address[0] if client_address else "?"
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("connection from %s broke", peer, exc_info=True)
        else:
            log.exception("error answering %s", peer)

    def drain(self, seconds: float) -> None:
        """Keep serving for up to ``seconds`` (until no connection is left), every answer
        with ``Connection: close``: a client's kept-alive connection is closed by the client
        after its next answer, never by us under a request already on its way. For a Pod
        being deleted: its Service stops sending new connections meanwhile."""
        self.draining = True
        deadline = time.monotonic() + seconds
        while self.connections() and time.monotonic() < deadline:
            time.sleep(0.05)

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()


class BoundedHandler(BaseHTTPRequestHandler):
    """Request handling on a `BoundedHTTPServer`: phases reported to it, bodies checked."""

    server: BoundedHTTPServer
    # Headers and body go out as two writes; with Nagle's algorithm the body waits for
    # the client's delayed ACK.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.read_timeout)  # each read and write

    def handle_one_request(self) -> None:
        self.server.waiting(self.request)
        super().handle_one_request()

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True  # the client went away, or was cut: nothing to say

    def content_length(self, limit: int) -> int | None:
        """The body's length, or None after answering why it is refused."""
        if self.headers.get("Transfer-Encoding") is not None:
            self.refuse(411, "chunked bodies are not accepted: send Content-Length")
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return 0  # no body (RFC 9112, 6.3)
        if len(set(values)) != 1 or not _DECIMAL.fullmatch(values[0].strip()):
            self.refuse(400, "invalid Content-Length")
            return None
        length = int(values[0])
        if length > limit:
            self.refuse(413, f"body of {length} bytes is over the limit of {limit}")
            return None
        return length

    def chunks(self, length: int) -> Iterator[bytes]:
        """The body in pieces (never held whole); a short body closes the connection."""
        left = length
        while left:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                self.close_connection = True
                raise ConnectionError("the client closed the connection mid-body")
            left -= len(piece)
            yield piece
        self.server.busy(self.request)

    def read_body(self, limit: int) -> tuple[bytes, int] | None:
        """(body, bytes held from the budget), or None after answering. The caller gives
        the bytes back with `self.server.budget.release(held)` once done with the body."""
        length = self.content_length(limit)
        if length is None:
            return None
        if not self.server.budget.acquire(length, self.server.limits.read_timeout):
            self.refuse(503, "too many request bodies at once; retry")
            return None
        try:
            body = b"".join(self.chunks(length))
        except BaseException:
            self.server.budget.release(length)
            raise
        return body, length

    def refuse(self, code: int, reason: str, headers: dict[str, str] | None = None) -> None:
        """Answer with the reason and close: the rest of the request is not read. A
        little of it is drained first (as Go's net/http does): closing with unread data
        sends a reset, which can reach a client still sending before it reads the
        answer."""
        self.close_connection = True
        self.reply(code, f"{reason}\n".encode(), close=True, headers=headers)
        self.wfile.flush()
        with contextlib.suppress(OSError, ValueError):
            self.connection.settimeout(DRAIN_SECONDS)
            left = DRAIN_BYTES
            while left > 0:
                piece = self.connection.recv(min(CHUNK, left))
                if not piece:
                    break
                left -= len(piece)

    def reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              close: bool = False, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close or getattr(self.server, "draining", False):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # probes every few seconds and every admission would drown the log
