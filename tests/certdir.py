"""Test helpers for `--webhook-cert-dir`: a CA issuing serving certificates, and a
directory written the way the kubelet writes a Secret volume (files in a timestamped
directory, `..data` pointing at it, swapped atomically; the visible names are symlinks
through `..data`)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes

    @property
    def der(self) -> bytes:
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        return cert.public_bytes(serialization.Encoding.DER)


class TestCA:
    """A CA like a cert-manager CA Issuer's."""

    __test__ = False  # not a pytest class

    def __init__(self, cn: str = "test-ca") -> None:
        now = dt.datetime.now(dt.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, host: str = "127.0.0.1", cn: str = "webhook",
              valid: dt.timedelta = dt.timedelta(hours=1)) -> Issued:
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        cert = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + valid)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def secret_files(issued: Issued, ca: TestCA | None) -> dict[str, bytes]:
    """The keys of a cert-manager Certificate Secret (ca.crt only with a CA issuer)."""
    files = {"tls.crt": issued.cert_pem, "tls.key": issued.key_pem}
    if ca is not None:
        files["ca.crt"] = ca.pem
    return files


def kubelet_write(directory: Path, files: dict[str, bytes]) -> None:
    """Write (or update) `directory` as the kubelet's atomic writer does."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "..data"
    old = data.resolve() if data.is_symlink() else None
    stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns()}"
    stamp.mkdir(mode=0o755)
    for name, content in files.items():
        (stamp / name).write_bytes(content)
        os.chmod(stamp / name, 0o644)
    tmp = directory / "..data_tmp"
    tmp.symlink_to(stamp.name)
    os.replace(tmp, data)  # the atomic step: every name now resolves to the new files
    for name in files:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    for link in directory.iterdir():
        if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
            link.unlink()
    if old is not None:
        shutil.rmtree(old)
