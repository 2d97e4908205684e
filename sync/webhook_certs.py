"""Serving certificates for the admission webhook: a CA made at start, rotated before expiry.

The CA and key live only in memory. Rotation makes a new CA and serving certificate;
the caBundle published to the API server holds the old and the new CA for one period,
so requests in flight during a rotation keep verifying (no downtime).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServingPair:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    not_after: dt.datetime


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pair(hosts: Sequence[str], validity: dt.timedelta) -> ServingPair:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("orascache-webhook-ca")).issuer_name(_name("orascache-webhook-ca"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + validity * 2)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    not_after = now + validity
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0])).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ServingPair(
        ca_pem=ca.public_bytes(pem),
        cert_pem=cert.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
        not_after=not_after,
    )


def ssl_context(pair: ServingPair) -> ssl.SSLContext:
    """A server context; the key touches disk only in a private temp dir, then is gone."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(pair.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(pair.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


class CertRotator:
    """Holds the current serving context; rotation is two steps so the caBundle can
    trust the next CA before the server presents a certificate signed by it."""

    def __init__(self, hosts: Sequence[str], validity: dt.timedelta) -> None:
        self.hosts = list(hosts)
        self.validity = validity
        self._lock = threading.Lock()
        self.pair = make_pair(self.hosts, validity)
        self.pending: ServingPair | None = None
        self.previous_ca: bytes | None = None
        self.context = ssl_context(self.pair)

    def ca_bundle(self) -> bytes:
        """Every CA a client may meet now or after the next step."""
        with self._lock:
            cas = [self.pair.ca_pem, self.pending.ca_pem if self.pending else None,
                   self.previous_ca]
        return b"".join(ca for ca in cas if ca)

    def due(self, now: dt.datetime | None = None) -> bool:
        """Rotate when less than a third of the validity is left."""
        now = now or dt.datetime.now(dt.UTC)
        return self.pair.not_after - now < self.validity / 3

    def prepare(self) -> None:
        """Step 1: make the next pair; publish `ca_bundle()` before `commit()`."""
        pending = make_pair(self.hosts, self.validity)
        with self._lock:
            self.pending = pending

    def commit(self) -> None:
        """Step 2: new handshakes get the new certificate."""
        with self._lock:
            if self.pending is None:
                return
            context = ssl_context(self.pending)
            self.previous_ca = self.pair.ca_pem
            self.pair, self.pending, self.context = self.pending, None, context

    def server_context(self) -> ssl.SSLContext:
        """A listening context that picks the current certificate at every handshake."""
        outer = ssl_context(self.pair)

        def pick(sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            with self._lock:
                sock.context = self.context

        outer.sni_callback = pick
        return outer
