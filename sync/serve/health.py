"""HTTP endpoints for operations: /healthz, /readyz, /metrics, and POST /trigger when
configured (sync.serve.trigger). Served with the bounds of sync.serve.bounded: the kubelet's
probes keep being answered whatever idle or slow clients hold open."""

from __future__ import annotations

import logging
import math
import threading
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sync.report.metrics import Metrics
from sync.serve.bounded import BoundedHandler, BoundedHTTPServer, Limits
from sync.serve.trigger import MAX_TRIGGER_BODY, Trigger

log = logging.getLogger(__name__)
HEALTH_LIMITS = Limits(max_connections=32, read_timeout=10.0, max_body=MAX_TRIGGER_BODY,
                       body_budget=0)  # no body is ever held: /trigger's is hashed in pieces


class Service(Protocol):
    metrics: Metrics

    def ready(self) -> tuple[bool, str]: ...


def parse_addr(addr: str) -> tuple[str, int]:
    """`:8080` binds every interface (in a Pod: the kubelet probes the Pod's IP);
    `127.0.0.1:0` a free local port."""
    host, _, port = addr.rpartition(":")
    return host or "0.0.0.0", int(port)


class HealthServer:
    def __init__(self, addr: str, service: Service, trigger: Trigger | None = None,
                 limits: Limits = HEALTH_LIMITS) -> None:
        self.service = service
        self.trigger = trigger
        self.httpd = BoundedHTTPServer(parse_addr(addr), self._handler(), limits)
        self.port = self.httpd.server_address[1]

    def _handler(self) -> type[BoundedHandler]:
        service = self.service
        trigger = self.trigger

        class Handler(BoundedHandler):
            def do_POST(self) -> None:
                if self.path != "/trigger" or trigger is None:
                    self.refuse(404, "not found")
                    return
                wait = trigger.limit.take()
                if wait:
                    self.refuse(429, "too many requests",
                                headers={"Retry-After": str(math.ceil(wait))})
                    return
                length = self.content_length(MAX_TRIGGER_BODY)
                if length is None:
                    return
                signed = trigger.auth.signer()
                for piece in self.chunks(length):
                    signed.update(piece)
                if not trigger.auth.allowed(self.headers, signed):
                    log.warning("refused POST /trigger from %s: no valid token or signature",
                                self.client_address[0])
                    self.reply(401, b"unauthorized\n", headers={
                        "WWW-Authenticate": 'Bearer realm="orascache"'})
                    return
                trigger.fire()
                self.reply(202, b"fetch triggered\n")

            def do_GET(self) -> None:
                self.server.busy(self.request)
                if self.path == "/healthz":
                    self.reply(200, b"ok\n")
                elif self.path == "/readyz":
                    ok, why = service.ready()
                    self.reply(200 if ok else 503, f"{why}\n".encode())
                elif self.path == "/metrics":
                    self.reply(200, generate_latest(service.metrics.registry),
                               CONTENT_TYPE_LATEST)
                else:
                    self.reply(404, b"not found\n")

        return Handler

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True).start()
        log.info("serving /healthz /readyz /metrics%s on port %d",
                 " and POST /trigger" if self.trigger else "", self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
