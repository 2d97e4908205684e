"""HTTP endpoints for operations: /healthz, /readyz, /metrics (and POST hooks)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sync.metrics import Metrics

log = logging.getLogger(__name__)


class Service(Protocol):
    metrics: Metrics

    def ready(self) -> tuple[bool, str]: ...


def parse_addr(addr: str) -> tuple[str, int]:
    """`:8080` binds every interface (in a Pod); `127.0.0.1:0` a free local port."""
    host, _, port = addr.rpartition(":")
    return host or "0.0.0.0", int(port)


PostHandler = Callable[[], tuple[int, str]]


class HealthServer:
    def __init__(self, addr: str, service: Service,
                 post: Mapping[str, PostHandler] | None = None) -> None:
        self.service = service
        self.post = dict(post or {})
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(parse_addr(addr), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self.service
        post = self.post

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                handler = post.get(self.path)
                if handler is None:
                    self._send(404, b"not found\n")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(min(length, 1 << 20))  # a webhook's payload is unused
                code, body = handler()
                self._send(code, body.encode())

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200, b"ok\n")
                elif self.path == "/readyz":
                    ok, why = service.ready()
                    self._send(200 if ok else 503, f"{why}\n".encode())
                elif self.path == "/metrics":
                    self._send(200, generate_latest(service.metrics.registry),
                               CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would drown the log

        return Handler

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True).start()
        log.info("serving /healthz /readyz /metrics on port %d", self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
