"""Serving certificates for the admission webhook, from one of two sources.

`CertSource` is the one interface: the listening context picks the source's current
certificate at every handshake (SNI callback), so a new pair applies to new handshakes
while connections in flight keep theirs. A change is two steps (`prepare`, then
`commit`), so the caBundle can trust a new CA before the server presents a certificate
signed by it.

- `CertRotator` (default): a CA made at start, in memory only, and a new CA and serving
  certificate before expiry; the caBundle holds the old and the new CA for one period.
- `CertDir` (`--webhook-cert-dir`): `tls.crt`, `tls.key` and optional `ca.crt` from a
  directory, e.g. a cert-manager Certificate's Secret mounted as a volume; polled and
  reloaded when the kubelet swaps the files (atomic `..data` symlink swap).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingPair:
    ca_pem: bytes  # b"": not known (a cert dir without ca.crt)
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


class CertSource(ABC):
    """Where the serving SSL context comes from. Subclasses say what the next pair is
    (`next_pair`); this class swaps contexts and keeps the CAs to publish."""

    def __init__(self, pair: ServingPair, check_every: float, settle: float) -> None:
        self.check_every = check_every  # seconds between `refresh` calls
        self.settle = settle  # seconds the API server gets to see a new caBundle
        self._lock = threading.Lock()
        self.pair = pair
        self.context = ssl_context(pair)
        self.pending: tuple[ServingPair, ssl.SSLContext] | None = None
        self.previous_ca: bytes | None = None

    @abstractmethod
    def next_pair(self) -> ServingPair | None:
        """The pair to serve next, or None to keep the current one."""

    def ca_bundle(self) -> bytes:
        """Every CA a client may meet now or after the next step; b"" when none is known
        (then the caBundle is someone else's business)."""
        with self._lock:
            cas = [self.pair.ca_pem, self.pending[0].ca_pem if self.pending else None,
                   self.previous_ca]
        return b"".join(ca for ca in cas if ca)

    def prepare(self) -> bool:
        """Step 1: load the next pair, if any; publish `ca_bundle()` before `commit()`."""
        pair = self.next_pair()
        if pair is None:
            return False
        context = ssl_context(pair)
        with self._lock:
            self.pending = (pair, context)
        return True

    def commit(self) -> None:
        """Step 2: new handshakes get the new certificate."""
        with self._lock:
            if self.pending is None:
                return
            if self.pair.ca_pem != self.pending[0].ca_pem:
                self.previous_ca = self.pair.ca_pem or None
            (self.pair, self.context), self.pending = self.pending, None

    def refresh(self, publish: Callable[[], None], wait: Callable[[float], object]) -> bool:
        """Called every `check_every` seconds: switch to the next pair, if any; a new CA is
        published (and given `settle` seconds) first. True when the pair changed."""
        if not self.prepare():
            return False
        with self._lock:
            new_ca = self.pending is not None and self.pending[0].ca_pem not in (
                b"", self.pair.ca_pem)
        if new_ca:
            publish()
            wait(self.settle)
        self.commit()
        return True

    def server_context(self) -> ssl.SSLContext:
        """A listening context that picks the current certificate at every handshake."""
        with self._lock:
            outer = ssl_context(self.pair)

        def pick(sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            with self._lock:
                sock.context = self.context

        outer.sni_callback = pick
        return outer


class CertRotator(CertSource):
    """A CA and serving certificate made in memory; a new pair when a third of the
    validity is left."""

    def __init__(self, hosts: Sequence[str], validity: dt.timedelta,
                 settle: float = 2.0) -> None:
        self.hosts = list(hosts)
        self.validity = validity
        super().__init__(make_pair(self.hosts, validity),
                         check_every=min(60.0, validity.total_seconds() / 20), settle=settle)

    def due(self, now: dt.datetime | None = None) -> bool:
        """Rotate when less than a third of the validity is left."""
        now = now or dt.datetime.now(dt.UTC)
        return self.pair.not_after - now < self.validity / 3

    def next_pair(self) -> ServingPair | None:
        if not self.due():
            return None
        log.info("rotating the webhook serving certificate")
        return make_pair(self.hosts, self.validity)


class CertDirError(Exception):
    """The cert dir cannot be served from; the message names the file and the problem."""


CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertDirError(f"{path}: not found (expected {CERT_FILE} and {KEY_FILE}, "
                           "e.g. a cert-manager Certificate's Secret mounted here)") from None
    except OSError as err:
        raise CertDirError(f"{path}: cannot read: {err.strerror or err}") from None


def load_cert_dir(directory: Path) -> ServingPair:
    """Read and check a pair from `directory`. Errors name the file, never show a key."""
    if not directory.is_dir():
        raise CertDirError(f"{directory}: not a directory (--webhook-cert-dir)")
    cert_path, key_path, ca_path = (directory / CERT_FILE, directory / KEY_FILE,
                                    directory / CA_FILE)
    cert_pem, key_pem = _read(cert_path), _read(key_path)
    ca_pem = _read(ca_path) if ca_path.exists() else b""  # only with a CA issuer
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        chain = []
    if not chain:
        raise CertDirError(f"{cert_path}: no PEM certificate")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The library's message is not shown: it could quote what it failed to parse.
        raise CertDirError(f"{key_path}: not an unencrypted PEM private key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise CertDirError(f"{key_path}: does not match the certificate in {cert_path}")
    if ca_pem:
        try:
            x509.load_pem_x509_certificates(ca_pem)
        except ValueError:
            raise CertDirError(f"{ca_path}: no PEM certificate") from None
    return ServingPair(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem,
                       not_after=chain[0].not_valid_after_utc)


def _usable(directory: Path, pair: ServingPair) -> ServingPair:
    """What OpenSSL itself refuses (e.g. a key type it does not serve with)."""
    try:
        ssl_context(pair)
    except ssl.SSLError as err:
        raise CertDirError(f"{directory}: cannot serve {CERT_FILE} with {KEY_FILE}: "
                           f"{err.reason or err}") from None
    return pair


def _describe(pair: ServingPair) -> str:
    cert = x509.load_pem_x509_certificates(pair.cert_pem)[0]
    return (f"serial {cert.serial_number:x}, subject {cert.subject.rfc4514_string()}, "
            f"valid until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


class CertDir(CertSource):
    """`tls.crt`, `tls.key` and optional `ca.crt` from a directory, reloaded when they
    change. A change that does not load (e.g. half-written files) is logged once and
    the current pair kept; the next good one is taken."""

    def __init__(self, directory: Path, check_every: float = 2.0,
                 settle: float = 2.0) -> None:
        self.directory = directory
        pair = _usable(directory, load_cert_dir(directory))  # at start, errors stop us
        self._rejected: str | None = None
        super().__init__(pair, check_every=check_every, settle=settle)
        self._warn_expired(pair)
        log.info("webhook serving certificate from %s: %s", directory, _describe(pair))

    @staticmethod
    def _content(pair: ServingPair) -> tuple[bytes, ...]:
        return pair.cert_pem, pair.key_pem, pair.ca_pem

    def _warn_expired(self, pair: ServingPair) -> None:
        if pair.not_after <= dt.datetime.now(dt.UTC):
            log.warning("the webhook serving certificate in %s expired at %s",
                        self.directory, f"{pair.not_after:%Y-%m-%dT%H:%M:%SZ}")

    def _changed(self) -> ServingPair | None:
        pair = load_cert_dir(self.directory)
        with self._lock:
            current = self._content(self.pair)
        return None if self._content(pair) == current else _usable(self.directory, pair)

    def next_pair(self) -> ServingPair | None:
        # Reading the files is the check: a few small files every few seconds, and no
        # reliance on mtimes (a kubelet update swaps a symlink; the files keep theirs).
        try:
            pair = self._changed()
        except CertDirError:
            time.sleep(0.2)  # read in the middle of a swap (old tls.crt, new tls.key)?
            try:
                pair = self._changed()
            except CertDirError as err:
                if self._rejected != str(err):
                    log.warning("not reloading the webhook certificate: %s", err)
                    self._rejected = str(err)
                return None
        self._rejected = None
        if pair is None:
            return None
        log.info("reloading the webhook serving certificate from %s: %s",
                 self.directory, _describe(pair))
        self._warn_expired(pair)
        return pair
