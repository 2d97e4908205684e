"""Mutating admission webhook: annotated Pods and Jobs are wired to their cache.

Served over TLS by every replica of the sync service (admission is not leader-only).
The serving certificate comes from a `CertSource` (generated and rotated, or read from a
cert dir); this module keeps the CA in the MutatingWebhookConfiguration's caBundle,
merging the CAs of every replica and dropping expired ones, so several replicas with
their own CAs can serve behind one Service. A source that knows no CA (a cert dir
without ca.crt, caBundle injected by cert-manager) leaves the caBundle alone.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry, Counter, Histogram

from sync.apply.kube import ApiError, Kube, Obj
from sync.serve.bounded import BoundedHandler, BoundedHTTPServer, Limits
from sync.serve.health import parse_addr
from sync.webhook.certs import CertSource

log = logging.getLogger(__name__)
MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


class AdmissionDenied(Exception):
    """The request is refused; the message reaches the user (kubectl prints it)."""

    code = 400
    reason = "BadRequest"


class NamespaceNotServed(AdmissionDenied):
    """The same answer whatever the request holds: nothing is looked up."""

    code = 403
    reason = "Forbidden"

    def __init__(self, namespace: str) -> None:
        super().__init__(f"namespace {namespace!r} is not served by this webhook")


@dataclass(frozen=True)
class Mutation:
    """What admission does to one object: `obj` None leaves it as it is; `warnings`
    reach the user (kubectl prints them) whether or not the object changed."""

    obj: Obj | None = None
    warnings: tuple[str, ...] = ()


# (object, kind, namespace) -> the mutation.
Mutate = Callable[[Obj, str, str], Mutation]


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.admissions = Counter("orascache_admissions", "Admission reviews by result "
                                  "(wired, unchanged, denied, error, malformed = "
                                  "not an AdmissionReview).", ["result"],
                                  registry=registry)
        self.latency = Histogram(
            "orascache_admission_duration_seconds", "Time to answer an admission review.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1), registry=registry)


# kube-apiserver refuses request bodies over 3 MiB (`MaxRequestBodyBytes` in
# k8s.io/apiserver/pkg/server/config.go: twice etcd's 1.5 MiB request limit, as JSON can
# be that much larger than the stored protobuf), so a Pod or Job it admits is at most
# that much JSON; a review (CREATE only: no oldObject) wraps it once in a few KiB.
MAX_REVIEW_BYTES = 3 * 1024 * 1024 + 64 * 1024
WEBHOOK_LIMITS = Limits(
    max_connections=64,
    # The API server keeps connections to webhooks alive; 30 s idle, then closed.
    read_timeout=30.0,
    max_body=MAX_REVIEW_BYTES,
    # Parsed JSON takes up to ~20 times its size in Python objects (`[{},{},...]`): two
    # reviews of the largest size at once, any number of ordinary ones (a few KiB each).
    body_budget=2 * MAX_REVIEW_BYTES,
)


class BadReview(Exception):
    """Not an AdmissionReview request; answered with HTTP 400 and this reason."""


def parse_review(body: bytes) -> Obj:
    """The `request` of an AdmissionReview, checked for the fields the webhook reads."""
    if not body.strip():
        raise BadReview("empty body: expected an AdmissionReview (JSON)")
    try:
        review_obj = json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise BadReview(f"body is not JSON: {str(err)[:200]}") from None
    if not isinstance(review_obj, dict):
        raise BadReview(f"expected an AdmissionReview object, got a JSON "
                        f"{type(review_obj).__name__}")
    req = review_obj.get("request")
    if not isinstance(req, dict):
        raise BadReview("request: expected an object")
    for key, kind, what in (("uid", str, "a string"), ("kind", dict, "an object"),
                            ("object", dict, "an object")):
        if not isinstance(req.get(key), kind):
            raise BadReview(f"request.{key}: expected {what}")
    if not isinstance(req["kind"].get("kind"), str):
        raise BadReview("request.kind.kind: expected a string")
    if not isinstance(req.get("namespace") or "", str):
        raise BadReview("request.namespace: expected a string")
    return req


def review(request_body: bytes, mutate: Mutate, metrics: WebhookMetrics) -> Obj:
    """Answer one AdmissionReview (v1). Raises `BadReview` for what is not one; errors
    of the mutation become denials."""
    started = time.perf_counter()
    req = parse_review(request_body)
    response: Obj = {"uid": req["uid"], "allowed": True}
    result = "unchanged"
    try:
        obj = req["object"]
        mutation = mutate(obj, req["kind"]["kind"], req.get("namespace") or "")
        if mutation.warnings:
            response["warnings"] = list(mutation.warnings)
        mutated = mutation.obj
        if mutated is not None and mutated != obj:
            patch = [{"op": "replace", "path": "/spec", "value": mutated["spec"]}]
            if mutated.get("metadata") != obj.get("metadata"):
                patch.append({"op": "replace", "path": "/metadata",
                              "value": mutated["metadata"]})
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
            result = "wired"
    except AdmissionDenied as err:
        response = {"uid": response["uid"], "allowed": False,
                    "status": {"code": err.code, "reason": err.reason, "message": str(err)}}
        result = "denied"
    except Exception as err:  # a bug: deny with a message rather than fail the call
        log.exception("admission review failed")
        response = {"uid": response["uid"], "allowed": False,
                    "status": {"code": 500, "message": f"orascache webhook error: {err}"}}
        result = "error"
    metrics.admissions.labels(result=result).inc()
    metrics.latency.observe(time.perf_counter() - started)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": response}


class WebhookServer:
    def __init__(self, addr: str, certs: CertSource, mutate: Mutate,
                 metrics: WebhookMetrics, limits: Limits = WEBHOOK_LIMITS) -> None:
        self.certs = certs

        class Handler(BoundedHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the API server reuses connections

            def handle(self) -> None:
                try:  # here, in this connection's own thread, within the read deadline
                    self.request.do_handshake()
                except OSError:  # not TLS, gone, or cut while idle: nothing to answer
                    self.close_connection = True
                    return
                super().handle()

            def do_POST(self) -> None:
                if self.path.split("?")[0] != "/mutate":
                    self.refuse(404, "not found: the webhook serves POST /mutate")
                    return
                read = self.read_body(limits.max_body)
                if read is None:
                    return
                body, held = read
                try:
                    answer = review(body, mutate, metrics)
                except BadReview as err:
                    metrics.admissions.labels(result="malformed").inc()
                    self.reply(400, f"{err}\n".encode())
                    return
                finally:
                    self.server.budget.release(held)
                self.reply(200, json.dumps(answer).encode(), "application/json")

        self.httpd = _TLSServer(parse_addr(addr), Handler, certs.server_context(), limits)
        self.port = self.httpd.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, name="webhook", daemon=True).start()
        log.info("serving the admission webhook on port %d", self.port)

    def drain(self, seconds: float) -> None:
        """Before ``stop``: see ``BoundedHTTPServer.drain``."""
        self.httpd.drain(seconds)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _TLSServer(BoundedHTTPServer):
    """TLS handshakes in the connection threads, not in the accepting one (a slow or
    stalled client must not hold up everyone else's admission)."""

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext, limits: Limits) -> None:
        self.context = context
        super().__init__(addr, handler, limits)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), addr


def _valid_cas(pem_bundle: bytes, now: dt.datetime) -> list[bytes]:
    certs = x509.load_pem_x509_certificates(pem_bundle) if pem_bundle.strip() else []
    return [c.public_bytes(serialization.Encoding.PEM) for c in certs
            if c.not_valid_after_utc > now]


def publish_ca_bundle(kube: Kube, config_name: str, ours: bytes) -> None:
    """Merge our CAs into every webhook's caBundle of the configuration (optimistic lock)."""
    for _ in range(5):
        mwc = kube.request("GET", f"{MWC_PATH}/{config_name}")
        now = dt.datetime.now(dt.UTC)
        changed = False
        for hook in mwc.get("webhooks", []):
            client_config = hook.setdefault("clientConfig", {})
            current = base64.b64decode(client_config.get("caBundle") or b"")
            merged: list[bytes] = []
            for ca in _valid_cas(current, now) + _valid_cas(ours, now):
                if ca not in merged:
                    merged.append(ca)
            encoded = base64.b64encode(b"".join(merged)).decode()
            if client_config.get("caBundle") != encoded:
                client_config["caBundle"] = encoded
                changed = True
        if not changed:
            return
        try:
            kube.request("PUT", f"{MWC_PATH}/{config_name}", body=mwc)
            return
        except ApiError as err:
            if err.status != 409:
                raise
    raise RuntimeError(f"could not update the caBundle of {config_name}: conflicts")


class CaBundleKeeper:
    """Publishes the CA at start and keeps the serving certificate fresh: rotated before
    expiry, or reloaded from the cert dir (`CertSource.refresh`)."""

    def __init__(self, kube: Kube, certs: CertSource, config_name: str | None) -> None:
        self.kube = kube
        self.certs = certs
        self.config_name = config_name
        self._stop = threading.Event()

    def publish(self) -> None:
        bundle = self.certs.ca_bundle()
        if self.config_name and bundle:
            try:
                publish_ca_bundle(self.kube, self.config_name, bundle)
            except ApiError as err:
                log.warning("could not publish the webhook caBundle: %s",
                            err.message)

    def refresh(self) -> None:
        """A new CA is trusted first and the API server given time to see it, then the
        server switches."""
        try:
            changed = self.certs.refresh(self.publish, self._stop.wait)
        except Exception:  # keep serving the current certificate; try again later
            log.exception("refreshing the webhook serving certificate failed")
            return
        if changed:
            log.info("the webhook serves its new certificate")

    def start(self) -> None:
        self.publish()

        def loop() -> None:
            while not self._stop.wait(self.certs.check_every):
                self.refresh()

        threading.Thread(target=loop, name="webhook-certs", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
