"""FTPS (explicit, RFC 4217): the server's TLS context, and a self-signed certificate to test it.

TLS 1.2 is the oldest version accepted (1.0 and 1.1 are deprecated by RFC 8996).
"""

import ipaddress
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL


def _reason(error: SSL.Error) -> str:
    """The first (root) OpenSSL reason of an SSL.Error, e.g. 'no start line'."""
    reasons = [reason for *_, reason in error.args[0] if reason] if error.args else []
    return reasons[0] if reasons else str(error)


def server_context(cert: str | None, key: str | None) -> SSL.Context:
    """The TLS context of the FTP server, from a PEM certificate (with its chain) and its key.

    Raises ValueError, in one line naming the file and the problem, when either is not set,
    cannot be read, is not PEM, or when they do not match.
    """
    if not cert or not key:
        raise ValueError(
            "FTPS needs a certificate and its key: set DROPIMPORT_FTP_TLS_CERT and "
            "DROPIMPORT_FTP_TLS_KEY (`dropimport tls self-signed` makes a pair for a test), "
            "or DROPIMPORT_FTP_TLS=off"
        )
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                        | SSL.OP_NO_RENEGOTIATION)
    files = (("DROPIMPORT_FTP_TLS_CERT", "certificate", cert, context.use_certificate_chain_file),
             ("DROPIMPORT_FTP_TLS_KEY", "private key", key, context.use_privatekey_file))
    for variable, what, path, load in files:
        try:
            with open(path, "rb"):
                pass
            load(path)
        except OSError as error:
            raise ValueError(f"{variable}: cannot read {path}: {error.strerror}") from None
        except SSL.Error as error:
            reason = _reason(error)
            problem = (f"is not the key of the certificate {cert}"
                       if reason == "key values mismatch" else f"is not a PEM {what} ({reason})")
            raise ValueError(f"{variable}: {path} {problem}") from None
    return context


def _create(path: str | Path, data: bytes, mode: int) -> None:
    """Write a new file `path` with permissions `mode` from the start; never replace one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), mode)  # whatever the umask
        file.write(data)


def default_hosts() -> list[str]:
    """The names and addresses a client on this machine may connect to."""
    return ["localhost", "127.0.0.1", "::1", socket.gethostname()]


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def write_self_signed(cert_path: str | Path, key_path: str | Path, hosts: Iterable[str],
                      days: int = 365) -> None:
    """Write a new RSA key (mode 0600) and a certificate valid for each of `hosts` (names or
    addresses; the first is its common name), creating their folders."""
    hosts = list(dict.fromkeys(hosts))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_alt_name(h) for h in hosts]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    for path in (key_path, cert_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    _create(key_path, key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()), 0o600)
    try:
        _create(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError:
        os.remove(key_path)  # no key without its certificate
        raise
