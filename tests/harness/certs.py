"""Certificates for the local control plane, made with ``cryptography``.

One CA signs the kube-apiserver serving certificate and every client certificate
(admin = ``O=system:masters``, or any user/groups to test RBAC by acting as them).
A separate RSA key pair signs and verifies service-account tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
SERVING_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# loopback, the first IP of the service range (the `kubernetes` Service's ClusterIP) and the
# test node's bridge address (node.Network.gateway), where Pods reach the API server.
SERVING_IPS = ("127.0.0.1", "10.0.0.1", "10.209.0.1")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    """Write a PEM file; private keys are created 0600 from the start."""
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA kept on disk (``ca.crt``/``ca.key``) so other processes can reuse it."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path

    @classmethod
    def create(
        cls, directory: Path, common_name: str = "oras-cache-local-ca"
    ) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = _write(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
        key_path = _write(directory / "ca.key", _key_pem(key), private=True)
        return cls(cert, key, cert_path, key_path)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{key_path} is not an EC key")
        return cls(cert, key, cert_path, key_path)

    def issue(
        self,
        directory: Path,
        stem: str,
        common_name: str,
        organizations: tuple[str, ...] = (),
        *,
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:
        """Sign a leaf: a server certificate if it has SANs, otherwise a client certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        server = bool(dns_names or ip_addresses)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
            sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        directory.mkdir(parents=True, exist_ok=True)
        return (
            _write(directory / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            _write(directory / f"{stem}.key", _key_pem(key), private=True),
        )


@dataclass(frozen=True)
class Pki:
    """Every file the control plane needs, all under one directory."""

    ca: CertificateAuthority
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_private_key: Path
    sa_public_key: Path

    @property
    def ca_cert(self) -> Path:
        return self.ca.cert_path


def _service_account_keys(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return (
        _write(directory / "sa.key", _key_pem(key), private=True),
        _write(directory / "sa.pub", public),
    )


def create_pki(directory: Path) -> Pki:
    """A fresh CA, apiserver serving cert, admin client cert and service-account key pair."""
    ca = CertificateAuthority.create(directory)
    serving = ca.issue(
        directory, "apiserver", "kube-apiserver", dns_names=SERVING_DNS, ip_addresses=SERVING_IPS
    )
    admin = ca.issue(directory, "admin", "admin", ("system:masters",))
    sa_private, sa_public = _service_account_keys(directory)
    return Pki(ca, *serving, *admin, sa_private, sa_public)


def client_cert(
    pki_dir: Path, user: str, groups: tuple[str, ...] = (), out_dir: Path | None = None
) -> tuple[Path, Path]:
    """A client certificate for any user and groups, signed by the cluster's CA."""
    ca = CertificateAuthority.load(pki_dir)
    stem = "user-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
    return ca.issue(out_dir or pki_dir, stem, user, groups)
