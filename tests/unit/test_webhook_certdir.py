"""Webhook serving certificates from a cert dir (cert-manager's Secret as a volume), and
the rotator behind the same `CertSource` interface. Real TLS over loopback."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry

from sync.apply.kube import Kube
from sync.cli import main
from sync.cluster_service import StartupError, SyncService
from sync.options import Options
from sync.webhook.certs import CertDir, CertDirError, CertRotator, CertSource
from sync.webhook.server import CaBundleKeeper, Mutation, WebhookMetrics, WebhookServer
from tests.certdir import TestCA, kubelet_write, secret_files

REVIEW = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                     "request": {"uid": "u1", "kind": {"kind": "Pod"}, "namespace": "ns",
                                 "object": {"metadata": {}, "spec": {}}}}).encode()


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


@contextmanager
def serve(certs: CertSource) -> Iterator[int]:
    server = WebhookServer("127.0.0.1:0", certs, lambda obj, kind, ns: Mutation(),
                           WebhookMetrics(CollectorRegistry()))
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def client_context(*cas: TestCA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata="".join(c.pem.decode() for c in cas))
    return ctx


def presented(port: int, *cas: TestCA) -> bytes:
    """The certificate a new handshake gets (DER), verified against `cas`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            client_context(*cas).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def admit(conn: http.client.HTTPSConnection) -> dict[str, Any]:
    conn.request("POST", "/mutate", body=REVIEW, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    answer: dict[str, Any] = json.loads(response.read())
    return answer


def peer(conn: http.client.HTTPSConnection) -> bytes:
    assert isinstance(conn.sock, ssl.SSLSocket)
    der = conn.sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_serves_the_pair_from_the_dir(tmp_path: Path, ca: TestCA) -> None:
    issued = ca.issue()
    kubelet_write(tmp_path, secret_files(issued, ca))
    certs = CertDir(tmp_path)
    assert certs.ca_bundle() == ca.pem
    with serve(certs) as port:
        assert presented(port, ca) == issued.der
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(ca))
        assert admit(conn)["response"] == {"uid": "u1", "allowed": True}
        conn.close()


def test_kubelet_swap_reloads_for_new_handshakes_only(tmp_path: Path, ca: TestCA) -> None:
    first, second = ca.issue(cn="first"), ca.issue(cn="second")
    kubelet_write(tmp_path, secret_files(first, ca))
    certs = CertDir(tmp_path, check_every=0.05)
    keeper = CaBundleKeeper(cast(Kube, None), certs, config_name=None)
    with serve(certs) as port:
        keeper.start()
        try:
            in_flight = http.client.HTTPSConnection("127.0.0.1", port,
                                                    context=client_context(ca))
            admit(in_flight)
            assert peer(in_flight) == first.der
            kubelet_write(tmp_path, secret_files(second, ca))
            deadline = time.monotonic() + 10
            while presented(port, ca) != second.der:
                assert time.monotonic() < deadline, "the new pair was never served"
                time.sleep(0.05)
            admit(in_flight)  # the connection made before the swap keeps working
            assert peer(in_flight) == first.der
            in_flight.close()
        finally:
            keeper.stop()
    assert certs.ca_bundle() == ca.pem, "same CA: nothing new to trust"


def test_a_new_ca_is_published_before_the_switch(tmp_path: Path) -> None:
    old_ca, new_ca = TestCA("old"), TestCA("new")
    first, second = old_ca.issue(), new_ca.issue()
    kubelet_write(tmp_path, secret_files(first, old_ca))
    certs = CertDir(tmp_path, settle=0.01)
    seen: list[tuple[str, Any]] = []
    with serve(certs) as port:
        kubelet_write(tmp_path, secret_files(second, new_ca))

        def publish() -> None:
            seen.append(("publish", certs.ca_bundle()))
            seen.append(("serving", presented(port, old_ca)))

        assert certs.refresh(publish, lambda s: seen.append(("wait", s)))
        assert seen == [("publish", old_ca.pem + new_ca.pem), ("serving", first.der),
                        ("wait", 0.01)]
        assert presented(port, new_ca) == second.der
    assert set(x509.load_pem_x509_certificates(certs.ca_bundle())) == {
        old_ca.cert, new_ca.cert}, "the old CA stays trusted"


def test_unchanged_content_is_not_a_reload(tmp_path: Path, ca: TestCA) -> None:
    files = secret_files(ca.issue(), ca)
    kubelet_write(tmp_path, files)
    certs = CertDir(tmp_path)
    context = certs.context
    kubelet_write(tmp_path, files)  # a resync: new timestamped dir, same bytes

    def publish() -> None:
        raise AssertionError("nothing to publish")

    assert not certs.refresh(publish, lambda s: None)
    assert certs.context is context


def test_without_ca_crt_the_ca_bundle_is_left_to_the_injector(tmp_path: Path,
                                                              ca: TestCA) -> None:
    kubelet_write(tmp_path, secret_files(ca.issue(), None))
    certs = CertDir(tmp_path)
    assert certs.ca_bundle() == b""
    # A Kube that fails on any use: publishing must not even try.
    keeper = CaBundleKeeper(cast(Kube, object()), certs, config_name="orascache")
    keeper.publish()
    kubelet_write(tmp_path, secret_files(ca.issue(cn="next"), None))
    keeper.refresh()
    assert certs.pair.cert_pem == (tmp_path / "tls.crt").read_bytes()


def _encrypted_key(ca: TestCA) -> bytes:
    key = serialization.load_pem_private_key(ca.issue().key_pem, None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"pw"))


@pytest.mark.parametrize(("damage", "file", "fragment"), [
    ("no-dir", "", "not a directory"),
    ("no-key", "tls.key", "not found"),
    ("no-cert", "tls.crt", "not found"),
    ("garbage-cert", "tls.crt", "no PEM certificate"),
    ("garbage-key", "tls.key", "not an unencrypted PEM private key"),
    ("encrypted-key", "tls.key", "not an unencrypted PEM private key"),
    ("other-key", "tls.key", "does not match the certificate in"),
    ("unreadable-key", "tls.key", "cannot read"),
    ("garbage-ca", "ca.crt", "no PEM certificate"),
])
def test_bad_files_are_a_clear_error_naming_the_file(
    tmp_path: Path, ca: TestCA, caplog: pytest.LogCaptureFixture,
    damage: str, file: str, fragment: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    directory = tmp_path / "certs"
    files = secret_files(ca.issue(), ca)
    if damage == "no-key":
        del files["tls.key"]
    elif damage == "no-cert":
        del files["tls.crt"]
    elif damage == "garbage-cert":
        files["tls.crt"] = b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    elif damage == "garbage-key":
        files["tls.key"] = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"
    elif damage == "encrypted-key":
        files["tls.key"] = _encrypted_key(ca)
    elif damage == "other-key":
        files["tls.key"] = ca.issue().key_pem
    elif damage == "garbage-ca":
        files["ca.crt"] = b"not a certificate"
    if damage != "no-dir":
        kubelet_write(directory, files)
    if damage == "unreadable-key":  # (as root, mode bits do not stop a read)
        (directory / "tls.key").unlink()
        (directory / "tls.key").mkdir()
    with pytest.raises(CertDirError) as err:
        CertDir(directory)
    message = str(err.value)
    assert str(directory / file).rstrip("/") in message and fragment in message
    assert "c2VjcmV0" not in message and "PRIVATE KEY" not in message + caplog.text

    with pytest.raises(StartupError, match="webhook serving certificate: .*" + fragment):
        SyncService._webhook_certs(Options(webhook_addr=":8443",
                                           webhook_cert_dir=str(directory)))


def test_a_bad_update_is_logged_once_and_the_next_good_one_taken(
    tmp_path: Path, ca: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = ca.issue(cn="first"), ca.issue(cn="second")
    kubelet_write(tmp_path, secret_files(first, ca))
    certs = CertDir(tmp_path)
    kubelet_write(tmp_path, {**secret_files(first, ca), "tls.key": second.key_pem})
    for _ in range(3):
        assert not certs.refresh(lambda: None, lambda s: None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "does not match" in warnings[0].getMessage()
    assert certs.pair.cert_pem == first.cert_pem, "still serving the last good pair"
    kubelet_write(tmp_path, secret_files(second, ca))
    assert certs.refresh(lambda: None, lambda s: None)
    assert certs.pair.cert_pem == second.cert_pem
    for pem in (first.key_pem, second.key_pem):
        body = b"".join(pem.splitlines()[1:-1]).decode()
        assert body[:40] not in caplog.text, "key material in the log"
    assert "serial" in caplog.text and "second" in caplog.text


def test_rotator_is_the_same_interface(ca: TestCA) -> None:
    rotator = CertRotator(["127.0.0.1"], dt.timedelta(seconds=1.5), settle=0.01)
    first_ca = rotator.ca_bundle()
    assert not rotator.refresh(lambda: None, lambda s: None), "not due yet"
    time.sleep(1.1)
    bundles: list[bytes] = []
    assert rotator.refresh(lambda: bundles.append(rotator.ca_bundle()), lambda s: None)
    assert len(bundles) == 1 and bundles[0].startswith(first_ca) and bundles[0] != first_ca
    assert rotator.ca_bundle().endswith(first_ca), "the previous CA is kept for overlap"


def test_cert_dir_needs_the_webhook(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "--webhook-cert-dir", "/nowhere", "--log-format", "text"]) == 2
    assert "--webhook-cert-dir needs --webhook-addr" in capsys.readouterr().err
