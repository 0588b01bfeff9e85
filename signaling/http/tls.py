"""TLS for `liveclass serve`: the server's certificate (loaded, checked, reloaded in place) and the client
context nodes use to reach each other over https.

Browsers give a page the camera and microphone only in a secure context, so on any address but localhost the
pages must come over https. The server context is built once; a reload (SIGHUP) loads the new files into that
same context, so connections made afterwards get the new certificate while every open connection (and every
lesson's WebSocket) keeps the one it was made with. New files are checked in a scratch context first: a bad
or half-written pair is refused with a reason and the running certificate stays.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

log = logging.getLogger(__name__)

MAX_PEM_BYTES = 1 << 20   # a certificate chain and a key are a few KB; refuse anything absurd before parsing


class TlsConfigError(ValueError):
    """A certificate or key that cannot be used, with a reason an operator can act on."""


@dataclass(frozen=True)
class CertificateInfo:
    """What an operator checks of a certificate: who it names, until when, and its fingerprints."""
    subject: str
    names: tuple[str, ...]          # subjectAltName DNS names and IP addresses
    not_after: datetime
    sha256: str                     # SHA-256 of the leaf certificate (DER), colon-separated hex
    spki_sha256_b64: str            # base64 SHA-256 of its public key: what Chromium's SPKI pin list takes

    def summary(self) -> str:
        names = ", ".join(self.names) or self.subject
        return (f"certificate for {names}, valid until {self.not_after:%Y-%m-%d}; "
                f"SHA-256 fingerprint {self.sha256}")


def _read_pem(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_PEM_BYTES:
            raise TlsConfigError(f"{what} {path} is {size} bytes: not a PEM file")
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def certificate_info(cert_pem: bytes) -> CertificateInfo:
    """The leaf (first) certificate of a PEM chain."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise TlsConfigError(f"not a PEM certificate: {exc}") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple([*san.get_values_for_type(x509.DNSName),
                       *(str(a) for a in san.get_values_for_type(x509.IPAddress))])
    except x509.ExtensionNotFound:
        names = ()
    digest = cert.fingerprint(hashes.SHA256())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return CertificateInfo(cert.subject.rfc4514_string(), names, cert.not_valid_after_utc,
                           ":".join(f"{b:02X}" for b in digest),
                           base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii"))


def _load_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: Optional[bytes]) -> None:
    """load_cert_chain takes paths: give it private copies, so what is checked is exactly what is loaded."""
    with tempfile.TemporaryDirectory(prefix="liveclass-tls-") as tmp:
        cert_file = Path(tmp, "cert.pem")
        cert_file.write_bytes(cert_pem)
        key_file = None
        if key_pem is not None:
            key_file = Path(tmp, "key.pem")
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            raise TlsConfigError(f"certificate and key do not make a usable pair: {exc.reason or exc}") from None


def _new_server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class ServerCertificate:
    """The server's TLS context and where its certificate comes from; `reload()` swaps in new files."""

    def __init__(self, cert_path: Path, key_path: Optional[Path] = None) -> None:
        self.cert_path = Path(cert_path)
        self.key_path = Path(key_path) if key_path else None
        self.context = _new_server_context()
        self.info = self._load_into(self.context)

    def _load_into(self, ctx: ssl.SSLContext) -> CertificateInfo:
        cert_pem = _read_pem(self.cert_path, "certificate")
        key_pem = _read_pem(self.key_path, "key") if self.key_path else None
        info = certificate_info(cert_pem)
        scratch = _new_server_context()
        _load_pair(scratch, cert_pem, key_pem)       # refuses a bad pair before the live context is touched
        if ctx is not scratch:
            _load_pair(ctx, cert_pem, key_pem)
        return info

    def reload(self) -> tuple[bool, str]:
        """Load the files again into the running context. (True, summary) or (False, why; the old one stays)."""
        try:
            self.info = self._load_into(self.context)
        except TlsConfigError as exc:
            return False, str(exc)
        return True, self.info.summary()

    def expires_in_days(self, now: datetime) -> float:
        return (self.info.not_after - now).total_seconds() / 86400


def client_context(extra_ca: Iterable[Path] = (), trust_own: Optional[Path] = None) -> ssl.SSLContext:
    """What a node verifies other nodes' https with: the system's CAs, `--tls-ca` files, and this node's own
    certificate chain (nodes that share one certificate, or a self-signed one copied to each, then trust each
    other without a CA; partial-chain verification lets a leaf be its own anchor). Host names are checked."""
    ctx = ssl.create_default_context()
    for path in extra_ca:
        try:
            ctx.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cannot use CA file {path}: {exc}") from None
    if trust_own is not None:
        try:
            ctx.load_verify_locations(cafile=str(trust_own))
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cannot trust this node's own certificate {trust_own}: {exc}") from None
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def setup(app, cert: ServerCertificate, client: Optional[ssl.SSLContext] = None) -> None:
    """SIGHUP reloads the certificate files into the running context (lessons keep going); `client` (how this
    node verifies other nodes) then trusts the renewed certificate as well."""
    import asyncio
    import signal

    def reload() -> None:
        ok, detail = cert.reload()
        if ok and client is not None:  # other nodes sharing the renewed certificate are trusted too
            try:
                client.load_verify_locations(cafile=str(cert.cert_path))
            except (OSError, ssl.SSLError) as exc:
                log.warning("TLS: could not trust the renewed certificate for other nodes: %s", exc)
        if ok:
            log.info("TLS: reloaded %s", detail)
            print(f"TLS: reloaded the {detail}", flush=True)
        else:
            log.error("TLS: kept the running certificate: %s", detail)
            print(f"TLS: kept the running certificate: {detail}", flush=True)

    async def start(app) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests), or no signals
            log.info("TLS: no SIGHUP handler in this process; restart to load a new certificate")

    async def stop(app) -> None:
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
