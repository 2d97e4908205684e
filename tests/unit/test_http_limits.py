"""What a hostile, slow or idle client can do to the service's HTTP servers (the webhook
over real TLS, the health/metrics/trigger server), over loopback sockets."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from sync.apply.kube import Kube, Obj
from sync.cli.parser import build_parser
from sync.options import Options, RevisionOptions
from sync.report.metrics import Metrics
from sync.serve.bounded import Limits
from sync.serve.health import HealthServer
from sync.serve.trigger import RateLimit, Trigger, TriggerAuth, TriggerConfigError
from sync.webhook.admission import NamespaceScope, make_mutator
from sync.webhook.certs import CertRotator
from sync.webhook.server import (
    MAX_REVIEW_BYTES,
    Mutate,
    Mutation,
    WebhookMetrics,
    WebhookServer,
    review,
)

TOKEN = b"0123456789abcdef-trigger"
REVIEW = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "u1", "kind": {"kind": "Pod"}, "namespace": "ns",
                      "object": {"metadata": {}, "spec": {}}}}
GOOD = json.dumps(REVIEW).encode()
CERTS = CertRotator(["127.0.0.1"], dt.timedelta(days=1))


def unchanged(obj: Obj, kind: str, namespace: str) -> Mutation:
    return Mutation()


@contextmanager
def webhook(mutate: Mutate = unchanged, **limits: Any) -> Iterator[WebhookServer]:
    server = WebhookServer("127.0.0.1:0", CERTS, mutate, WebhookMetrics(CollectorRegistry()),
                           **({"limits": Limits(**limits)} if limits else {}))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def tls() -> ssl.SSLContext:
    return ssl._create_unverified_context()  # the certificate is not what is tested here


def https(port: int) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, context=tls(), timeout=5)


def raw_tls(port: int) -> ssl.SSLSocket:
    sock = tls().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="127.0.0.1")
    return sock


def response(sock: socket.socket) -> tuple[int, str, str | None]:
    """Status, body and Connection header of the next response on a raw socket."""
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    return answer.status, answer.read().decode(), answer.getheader("Connection")


def threads_of_server() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("Thread-"))


# ----- the webhook ------------------------------------------------------------------------
def test_a_body_over_the_api_servers_limit_is_refused_before_it_is_read() -> None:
    """The probe's 200 MB POST: 413 from the headers alone, nothing buffered."""
    with webhook() as server:
        sock = raw_tls(server.port)
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\n"
                     + b"{" * 65536)
        status, body, connection = response(sock)
        assert (status, connection) == (413, "close")
        assert f"over the limit of {MAX_REVIEW_BYTES}" in body
        assert server.httpd.budget.free == server.httpd.budget.total


def test_the_limit_admits_a_review_of_the_largest_object_the_api_server_takes() -> None:
    """kube-apiserver takes bodies up to 3 MiB; such a Pod's review is answered."""
    big = json.loads(GOOD)
    big["request"]["object"]["metadata"]["annotations"] = {"a": "x" * (3 * 1024 * 1024 - 100)}
    body = json.dumps(big).encode()
    assert 3 * 1024 * 1024 < len(body) <= MAX_REVIEW_BYTES
    with webhook() as server:
        conn = https(server.port)
        conn.request("POST", "/mutate", body=body)
        assert conn.getresponse().status == 200


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "empty body"),
    (b"not json", "body is not JSON"),
    (b"[1, 2]", "got a JSON list"),
    (b'{"request": "x"}', "request: expected an object"),
    (b'{"request": {"uid": "u"}}', "request.kind: expected an object"),
    (b'{"request": {"uid": 1, "kind": {}, "object": {}}}', "request.uid: expected a string"),
    (b"\xff\xfe{}", "body is not JSON"),
    (b"[" * 200_000, "body is not JSON"),
])
def test_malformed_bodies_get_400_with_the_reason_and_the_connection_lives_on(
    body: bytes, reason: str
) -> None:
    with webhook() as server:
        conn = https(server.port)
        conn.request("POST", "/mutate", body=body)
        answer = conn.getresponse()
        assert answer.status == 400
        assert reason in answer.read().decode()
        conn.request("POST", "/mutate", body=GOOD)  # same connection: still usable
        assert json.loads(conn.getresponse().read())["response"]["allowed"] is True


@pytest.mark.parametrize(("header", "status", "reason"), [
    (b"Content-Length: abc\r\n", 400, "invalid Content-Length"),
    (b"Content-Length: -1\r\n", 400, "invalid Content-Length"),
    (b"Content-Length: 1e3\r\n", 400, "invalid Content-Length"),
    (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400, "invalid Content-Length"),
    (b"Transfer-Encoding: chunked\r\n", 411, "send Content-Length"),
])
def test_bad_framing_gets_an_answer_then_the_connection_closes(
    header: bytes, status: int, reason: str
) -> None:
    with webhook() as server:
        sock = raw_tls(server.port)
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n{}")
        got, body, connection = response(sock)
        assert (got, connection) == (status, "close")
        assert reason in body


def test_idle_connections_neither_hold_threads_nor_lock_out_the_api_server() -> None:
    """200 clients that connect and say nothing (not even the TLS handshake)."""
    with webhook() as server:
        before = threads_of_server()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
        try:
            for _ in range(5):
                conn = https(server.port)
                started = time.monotonic()
                conn.request("POST", "/mutate", body=GOOD)
                assert conn.getresponse().status == 200
                assert time.monotonic() - started < 2
                conn.close()
            assert threads_of_server() - before <= 64
            assert server.httpd.connections() <= 64
        finally:
            for sock in idle:
                sock.close()


def test_a_slow_sender_is_cut_at_the_read_deadline() -> None:
    """Slowloris: one header byte at a time keeps a per-read timeout alive for ever; the
    deadline is for the whole request."""
    with webhook(read_timeout=1.0) as server:
        sock = raw_tls(server.port)
        sock.sendall(b"POST /mutate HTTP/1.1\r\n")
        started = time.monotonic()
        with pytest.raises(OSError):
            while time.monotonic() - started < 5:
                sock.sendall(b"X")
                time.sleep(0.2)
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        raise ConnectionError("closed")
                except ssl.SSLWantReadError:
                    pass
                finally:
                    sock.setblocking(True)
        assert time.monotonic() - started < 3


def test_busy_connections_are_bounded_and_new_ones_refused_not_queued() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow(obj: Obj, kind: str, namespace: str) -> Mutation:
        entered.release()
        release.wait(10)
        return Mutation()

    with webhook(slow, max_connections=2, read_timeout=5.0, max_body=MAX_REVIEW_BYTES,
                 body_budget=MAX_REVIEW_BYTES) as server:
        busy = [https(server.port) for _ in range(2)]
        for conn in busy:
            conn.request("POST", "/mutate", body=GOOD)
        assert entered.acquire(timeout=5) and entered.acquire(timeout=5)
        refused = https(server.port)
        with pytest.raises(OSError):
            refused.request("POST", "/mutate", body=GOOD)
            refused.getresponse()
        assert server.httpd.refused >= 1
        release.set()
        assert all(conn.getresponse().status == 200 for conn in busy)


# ----- namespaces ---------------------------------------------------------------------------
def test_namespaces_outside_the_configured_set_are_refused_without_a_lookup() -> None:
    looked_up: list[str] = []

    def cached(key: str) -> Obj | None:
        looked_up.append(key)
        return {"metadata": {"name": "payroll"}, "spec": {}} if key.endswith("/payroll") else None

    mutate = make_mutator(cast(Kube, None), cached, NamespaceScope.of(["team-a"]))
    answers = []
    for cache in ("payroll", "missing"):
        req = json.loads(GOOD)
        req["request"]["namespace"] = "kube-system"
        req["request"]["object"]["metadata"]["annotations"] = {
            "oras.converged-computing.github.io/oras-cache": cache,
            "oras.converged-computing.github.io/input-uri": "a/b:1"}
        answers.append(review(json.dumps(req).encode(), mutate,
                              WebhookMetrics(CollectorRegistry()))["response"])
    assert answers[0] == answers[1] == {
        "uid": "u1", "allowed": False, "status": {
            "code": 403, "reason": "Forbidden",
            "message": "namespace 'kube-system' is not served by this webhook"}}
    assert looked_up == []


def test_every_namespace_means_all_but_kube_system_and_the_services_own() -> None:
    scope = NamespaceScope.of(None, "oras-cache-system")
    assert scope.serves("team-a") and scope.serves("default")
    assert not scope.serves("kube-system") and not scope.serves("oras-cache-system")
    assert not scope.serves("")
    only = NamespaceScope.of(["a", "b"])
    assert only.serves("a") and not only.serves("c") and not only.serves("kube-system")


# ----- health, metrics, trigger -------------------------------------------------------------
class Probe:
    metrics = Metrics()

    def ready(self) -> tuple[bool, str]:
        return True, "synced"


@contextmanager
def health(trigger: Trigger | None = None) -> Iterator[HealthServer]:
    server = HealthServer("127.0.0.1:0", Probe(), trigger)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    conn.request("GET", path)
    return conn.getresponse().status


def test_healthz_answers_under_200_idle_connections_with_bounded_threads() -> None:
    """Issue 19, fault 9, in process (the real process: tests/integration)."""
    with health() as server:
        before = threads_of_server()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
        try:
            for _ in range(5):
                assert get(server.port, "/healthz") == 200
            assert threads_of_server() - before <= 32
        finally:
            for sock in idle:
                sock.close()


def post(port: int, body: bytes = b"{}", **headers: str) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", "/trigger", body=body,
                 headers={k.replace("_", "-"): v for k, v in headers.items()})
    answer = conn.getresponse()
    answer.read()
    return answer.status, dict(answer.getheaders())


def github(body: bytes, key: bytes = TOKEN) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def test_trigger_is_off_unless_configured() -> None:
    with health() as server:
        assert post(server.port, Authorization="Bearer " + TOKEN.decode())[0] == 404


def test_trigger_takes_a_token_or_a_signature_and_nothing_else() -> None:
    fired: list[int] = []
    body = b'{"ref": "refs/heads/main"}'
    trigger = Trigger(TriggerAuth(TOKEN), lambda: fired.append(1), RateLimit(burst=100))
    with health(trigger) as server:
        accepted = [
            {"Authorization": f"Bearer {TOKEN.decode()}"},
            {"X_Gitlab_Token": TOKEN.decode()},
            {"X_Hub_Signature_256": github(body)},
        ]
        refused = [
            {},
            {"Authorization": f"Bearer {TOKEN.decode()}x"},
            {"Authorization": f"Basic {TOKEN.decode()}"},
            {"X_Gitlab_Token": ""},
            {"X_Gitlab_Token": "\u00e9" * 24},
            {"X_Hub_Signature_256": github(body + b" ")},
            {"X_Hub_Signature_256": github(body, b"another-key-of-16-bytes")},
            {"X_Hub_Signature_256": "sha256="},
        ]
        for headers in accepted:
            assert post(server.port, body, **headers)[0] == 202, headers
        assert len(fired) == len(accepted)
        for headers in refused:
            assert post(server.port, body, **headers)[0] == 401, headers
        assert len(fired) == len(accepted)


def test_trigger_is_rate_limited_before_anything_is_read() -> None:
    fired: list[int] = []
    trigger = Trigger(TriggerAuth(TOKEN), lambda: fired.append(1), RateLimit(rate=0.5, burst=3))
    with health(trigger) as server:
        codes = [post(server.port, Authorization="Bearer wrong")[0] for _ in range(3)]
        assert codes == [401, 401, 401]
        code, headers = post(server.port, Authorization=f"Bearer {TOKEN.decode()}")
        assert code == 429 and int(headers["Retry-After"]) in (1, 2)
        assert fired == []


def test_rate_limit_refills() -> None:
    now = [0.0]
    limit = RateLimit(rate=2.0, burst=2, clock=lambda: now[0])
    assert [limit.take(), limit.take()] == [0.0, 0.0]
    assert limit.take() == pytest.approx(0.5)
    now[0] = 0.5
    assert limit.take() == 0.0


def test_trigger_body_over_githubs_cap_is_refused() -> None:
    trigger = Trigger(TriggerAuth(TOKEN), lambda: None)
    with health(trigger) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"POST /trigger HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n")
        assert response(sock)[0] == 413


def test_token_file_errors_name_the_file_never_the_content(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"tiny-secret\n")
    with pytest.raises(TriggerConfigError) as err:
        TriggerAuth.from_file(short)
    assert str(short) in str(err.value) and "tiny-secret" not in str(err.value)
    with pytest.raises(TriggerConfigError, match="No such file"):
        TriggerAuth.from_file(tmp_path / "missing")
    good = tmp_path / "token"
    good.write_bytes(TOKEN + b"\n")  # as `kubectl create secret --from-file` keeps it
    assert TriggerAuth.from_file(good).allowed(
        http.client.parse_headers(_headers(f"X-Gitlab-Token: {TOKEN.decode()}")),
        TriggerAuth(TOKEN).signer())


def _headers(*lines: str) -> Any:
    import io  # noqa: PLC0415

    return io.BytesIO("".join(f"{line}\r\n" for line in lines).encode() + b"\r\n")


def test_trigger_flags_are_refused_where_there_is_no_trigger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sync.cli import main  # noqa: PLC0415

    assert main(["sync", "--trigger-token-file", "/nonexistent"]) == 2
    assert "--source git and oci only" in capsys.readouterr().err
    assert main(["sync", "--source", "git", "--repo", "file:///nowhere",
                 "--trigger-token-file", "/nonexistent/token"]) == 1
    assert "error: trigger token /nonexistent/token: No such file" in capsys.readouterr().err


def test_servers_listen_on_loopback_unless_told_otherwise() -> None:
    assert build_parser().parse_args(["sync"]).http_addr == "127.0.0.1:8080"
    assert Options().http_addr == RevisionOptions().http_addr == "127.0.0.1:8080"
    assert build_parser().parse_args(["sync"]).webhook_addr is None


def test_draining_answers_close_their_connection_and_the_drain_ends_with_the_last() -> None:
    """A replica going away (SIGTERM) keeps answering, each answer with `Connection: close`,
    so the client closes its kept-alive connection itself; the drain ends once none is
    left, well before its limit."""
    with webhook() as server:
        conn = https(server.port)
        conn.request("POST", "/mutate", GOOD, {"Content-Type": "application/json"})
        first = conn.getresponse()
        first.read()
        assert first.getheader("Connection") is None  # kept alive
        ended = threading.Event()
        began = time.monotonic()
        drainer = threading.Thread(target=lambda: (server.drain(10.0), ended.set()))
        drainer.start()
        time.sleep(0.2)
        assert not ended.is_set()  # our connection is still open: still answering
        conn.request("POST", "/mutate", GOOD, {"Content-Type": "application/json"})
        second = conn.getresponse()
        assert second.status == 200
        assert second.getheader("Connection") == "close"
        second.read()
        conn.close()
        assert ended.wait(5.0)
        assert time.monotonic() - began < 5.0
        drainer.join()
