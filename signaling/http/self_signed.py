"""`liveclass serve --tls-self-signed`: a certificate for this node's names and addresses, made once and kept in
the library folder, for a quick start on a school LAN (the pages need https for the camera).

The certificate is reused while it names every current name and address and is valid for at least
RENEW_BEFORE_DAYS more; otherwise a new one is made with the same key, so a school's IT that trusted the key
(Chromium's SPKI pin, a policy) keeps trusting the node. Files are written to a temporary name and renamed,
so several workers starting at once never read half a file. `plan` is pure (time and names passed in).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

VALID_DAYS = 397          # the longest browsers accept from a public CA; a LAN certificate gets no longer
RENEW_BEFORE_DAYS = 30
FOLDER = "tls"
CERT_FILE = "self-signed-cert.pem"
KEY_FILE = "self-signed-key.pem"


@dataclass(frozen=True)
class Paths:
    cert: Path
    key: Path


def paths(library: Path) -> Paths:
    folder = Path(library) / FOLDER
    return Paths(folder / CERT_FILE, folder / KEY_FILE)


def node_names(host: str, extra: Iterable[Optional[str]] = (), hostname: Optional[str] = None,
               addresses: Optional[Iterable[str]] = None) -> list[str]:
    """Every name and address a browser may use for this node: localhost, the host name, every interface
    address (as ICE offers them), the listen address and the extra ones (--public-ip, --media-host, the
    advertise URL's host). Sorted, without duplicates."""
    if hostname is None:
        hostname = socket.gethostname()
    if addresses is None:
        from aioice.ice import get_host_addresses
        addresses = get_host_addresses(use_ipv4=True, use_ipv6=True)
    names = {"localhost", "127.0.0.1", "::1", hostname}
    names.update(a for a in addresses if not a.startswith("fe80"))
    names.update(x.strip("[]") for x in (host, *extra) if x and x not in ("0.0.0.0", "::"))
    return sorted(n for n in names if n)


def _split(names: Iterable[str]) -> tuple[set[str], set[str]]:
    dns, ips = set(), set()
    for n in names:
        try:
            ips.add(str(ipaddress.ip_address(n)))
        except ValueError:
            dns.add(n.lower())
    return dns, ips


def plan(existing_names: Optional[Iterable[str]], not_after: Optional[datetime.datetime], wanted: Iterable[str],
         now: datetime.datetime) -> Optional[str]:
    """Why a new certificate is needed (None: keep the existing one)."""
    if existing_names is None or not_after is None:
        return "no certificate yet"
    have_dns, have_ip = _split(existing_names)
    want_dns, want_ip = _split(wanted)
    missing = sorted((want_dns - have_dns) | (want_ip - have_ip))
    if missing:
        return "new names or addresses: " + ", ".join(missing)
    if (not_after - now).total_seconds() < RENEW_BEFORE_DAYS * 86400:
        return f"it expires on {not_after:%Y-%m-%d}"
    return None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_key(path: Path):
    """The private key in the PEM file at `path`, or None when it cannot be read (a new key is made then)."""
    from cryptography.hazmat.primitives import serialization
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None


def make(names: list[str], now: datetime.datetime, key=None) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): self-signed, P-256, for `names` (DNS names and IP addresses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = _split(names)
    san = [x509.DNSName(d) for d in sorted(dns)] + [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sorted(dns - {"localhost"} or dns)[0]
                                            if dns else "liveclass"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "liveclass (self-signed)")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure(library: Path, names: list[str], now: datetime.datetime) -> tuple[Paths, Optional[str]]:
    """The certificate files for `names`, made or renewed when needed: (paths, why it was made or None)."""
    from signaling.http.tls import TlsConfigError, certificate_info
    p = paths(library)
    existing_names = not_after = None
    if p.cert.exists() and p.key.exists():
        try:
            info = certificate_info(p.cert.read_bytes())
            existing_names, not_after = info.names, info.not_after
        except (OSError, TlsConfigError):
            pass
    why = plan(existing_names, not_after, names, now)
    if why is None:
        return p, None
    p.cert.parent.mkdir(parents=True, exist_ok=True)
    key = load_key(p.key) if p.key.exists() else None
    cert_pem, key_pem = make(names, now, key)
    _write_atomic(p.key, key_pem, 0o600)
    _write_atomic(p.cert, cert_pem, 0o644)
    return p, why
