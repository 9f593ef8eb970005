"""TLS certificates: when does each certificate of a server or of PEM files expire, and is it trusted?

Expiry is an alerting matter, not a probe failure: the probe succeeds whenever it could read at
least one certificate, expired or not, and alerts compare the exported dates with time().
For a server the chain is fetched with an unverified handshake, so expired or self-signed
certificates still report their dates; trust is a separate check (a second, verifying
handshake), so a broken chain is a metric (`stackprobe_cert_chain_verified` 0), not missing data.

Files (`files`, `ca_file`) are read in a worker thread of the target's own (ProbeContext.off_loop):
a hung mount stalls only that target, never the event loop nor the default thread pool that
asyncio resolves host names in. A FIFO or device in their place fails at once with reason io.
cryptography is imported at the first probe, so an exporter without cert targets never loads it.
"""

from __future__ import annotations

import asyncio
import glob
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, field_validator, model_validator

from ..metrics import gauge
from .base import ProbeContext, ProbeError, Prober, TargetConfig, peer_certificates, read_regular_file

if TYPE_CHECKING:
    from cryptography import x509

Found = list[tuple[str, "x509.Certificate"]]
#: A PEM file bigger than this is not a certificate bundle (a wrong glob, a log file).
PEM_FILE_LIMIT = 16 * 1024 * 1024


def split_address(address: str) -> tuple[str, int]:
    """("example.com", 443) from "example.com:443"; IPv6 literals in brackets: "[::1]:443"."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port (IPv6 as [addr]:port)")
    return host, int(port)


class CertTarget(TargetConfig):
    """A TLS server (`address`) or PEM files (`files`) whose certificates are watched."""

    # Certificates change rarely; an hourly look is plenty for expiry measured in days.
    default_interval: ClassVar[float] = 3600.0
    default_timeout: ClassVar[float] = 10.0

    address: str | None = Field(None, description="`host:port` of a TLS server (IPv6 as `[addr]:port`); its whole served chain is read. Set this or `files`.")
    server_name: str | None = Field(None, description="With `address`: the name sent as SNI and checked against the certificate (default: the host of `address`).")
    ca_file: Path | None = Field(None, description="With `address`: PEM file of the CAs the chain must lead to (default: the system's CAs).")
    files: list[str] | None = Field(None, min_length=1, description="PEM files or glob patterns (single certificates and bundles); every certificate in them is reported. Set this or `address`.")

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "CertTarget":
        if (self.address is None) == (self.files is None):
            raise ValueError("set exactly one of address or files")
        if self.files is not None and (self.server_name or self.ca_file):
            raise ValueError("server_name and ca_file apply to address targets only")
        return self


def _common_name(name: "x509.Name") -> str:
    from cryptography.x509.oid import NameOID

    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def serial_hex(serial: int) -> str:
    """Upper-case hex padded to whole bytes, as `openssl x509 -noout -serial` prints it."""
    digits = f"{serial:X}"
    return digits.zfill(len(digits) + len(digits) % 2)


def hostname_matches(cert: "x509.Certificate", name: str) -> bool:
    """Does the certificate's subjectAltName cover `name` (RFC 6125: one left-most `*` label)?

    The stdlib only checks names inside a verifying handshake, which stops at the first error,
    so an untrusted or expired certificate would get no hostname answer; this check stands alone.
    Like browsers, it ignores the subject CN.
    """
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    except ValueError:  # extensions that are not valid DER: a name they cannot state is not covered
        return False
    try:
        return ipaddress.ip_address(name) in san.get_values_for_type(x509.IPAddress)
    except ValueError:
        pass
    name = name.lower().rstrip(".")
    first, _, rest = name.partition(".")
    for pattern in (p.lower().rstrip(".") for p in san.get_values_for_type(x509.DNSName)):
        if pattern == name or (pattern.startswith("*.") and first and rest and pattern[2:] == rest):
            return True
    return False


def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    """Trusts ca_file or the system CAs; the hostname is checked separately (hostname_matches).

    Built once per version of ca_file (loading a CA store costs ~30 ms of CPU). Blocking: for a
    worker thread.
    """
    try:
        key = (ca_file, os.stat(ca_file).st_mtime_ns if ca_file else None)
        context = _VERIFYING_CONTEXTS.get(key)
        if context is None:
            cadata = read_regular_file(ca_file, "ca_file", PEM_FILE_LIMIT).decode("ascii", errors="replace") if ca_file else None
            context = ssl.create_default_context(cadata=cadata)
            context.check_hostname = False
            if len(_VERIFYING_CONTEXTS) >= 64:  # stale versions of rotated files
                _VERIFYING_CONTEXTS.clear()
            _VERIFYING_CONTEXTS[key] = context
    except (OSError, ssl.SSLError) as e:
        raise ProbeError("io", f"cannot load ca_file {ca_file}: {getattr(e, 'strerror', None) or e}") from None
    return context


_VERIFYING_CONTEXTS: dict[tuple, ssl.SSLContext] = {}


#: What this prober exports (exporter/metrics.py collects every prober's FAMILIES).
FAMILIES = (
    gauge("cert_not_after_timestamp_seconds", "NotAfter of each certificate found (leaf and chain); serial in upper-case hex.", "source", "subject_cn", "issuer_cn", "serial"),
    gauge("cert_not_before_timestamp_seconds", "NotBefore of each certificate found (leaf and chain).", "source", "subject_cn", "issuer_cn", "serial"),
    gauge("cert_earliest_not_after_timestamp_seconds", "The earliest NotAfter over every certificate of the target."),
    gauge("cert_chain_verified", "Server targets: 1 if the served chain verifies against the system or configured CAs (expiry included), else 0.", "source"),
    gauge("cert_hostname_match", "Server targets: 1 if the leaf certificate's subjectAltName matches the expected host name, else 0.", "source"),
)


class CertProber(Prober[CertTarget]):
    name = "cert"
    families = FAMILIES
    target_model = CertTarget
    summary = "expiry, trust and host name of TLS certificates, served or in PEM files"

    async def probe(self, target: CertTarget, ctx: ProbeContext) -> None:
        found: Found = []
        try:
            if target.address is not None:
                await self._probe_server(target, target.address, ctx, found)
            else:
                await ctx.off_loop("read of the files", self._read_files, target.files or [], ctx, found)
        finally:  # whatever was read is reported, even when the probe then fails
            for source, cert in found:
                labels = dict(source=source, subject_cn=_common_name(cert.subject),
                              issuer_cn=_common_name(cert.issuer), serial=serial_hex(cert.serial_number))
                ctx.set("cert_not_after_timestamp_seconds", cert.not_valid_after_utc.timestamp(), **labels)
                ctx.set("cert_not_before_timestamp_seconds", cert.not_valid_before_utc.timestamp(), **labels)
            if found:
                ctx.set("cert_earliest_not_after_timestamp_seconds",
                        min(cert.not_valid_after_utc.timestamp() for _, cert in found))

    async def _probe_server(self, target: CertTarget, address: str, ctx: ProbeContext, found: Found) -> None:
        host, port = split_address(address)
        server_name = target.server_name or host
        chain = await self._handshake(host, port, server_name, _unverified_context(), ctx)
        if not chain:
            raise ProbeError("empty", f"{address} sent no certificate")
        found.extend((address, cert) for cert in chain)
        ctx.log(f"{address}: {len(chain)} certificates, leaf {chain[0].subject.rfc4514_string()}")
        ctx.set("cert_hostname_match", 1 if hostname_matches(chain[0], server_name) else 0, source=address)
        verifying = await ctx.off_loop("read of ca_file", _verifying_context, target.ca_file)
        try:
            await self._handshake(host, port, server_name, verifying, ctx)
            ctx.set("cert_chain_verified", 1, source=address)
        except ssl.SSLCertVerificationError as e:
            ctx.log(f"{address}: chain not verified: {e.verify_message}")
            ctx.set("cert_chain_verified", 0, source=address)

    @staticmethod
    async def _handshake(host: str, port: int, server_name: str, tls: ssl.SSLContext, ctx: ProbeContext) -> list["x509.Certificate"]:
        """One TLS handshake; returns the chain the server sent (the connection is closed at once).

        A verification failure propagates as ssl.SSLCertVerificationError for the caller to judge.
        """
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls, server_hostname=server_name), ctx.remaining())
        except asyncio.TimeoutError:
            raise ProbeError("timeout", f"no TLS handshake with {host}:{port} within the timeout") from None
        except ssl.SSLCertVerificationError:
            raise
        except ssl.SSLError as e:
            raise ProbeError("tls", f"TLS handshake with {host}:{port} failed: {e.reason or e}") from None
        except socket.gaierror as e:
            raise ProbeError("dns", f"cannot resolve {host}: {e.strerror}") from None
        except OSError as e:
            raise ProbeError("connect", f"cannot connect to {host}:{port}: {e.strerror or e}") from None
        try:
            return peer_certificates(writer.get_extra_info("ssl_object"))
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), ctx.remaining())
            except (OSError, asyncio.TimeoutError):
                pass  # the certificates are already in hand; a rude close does not matter

    @staticmethod
    def _read_files(patterns: list[str], ctx: ProbeContext, found: Found) -> None:
        """Every certificate in the matching files; unreadable files fail the probe with `io`."""
        from cryptography import x509

        unreadable: list[str] = []
        for pattern in patterns:
            is_glob = glob.escape(pattern) != pattern
            paths = sorted(glob.glob(pattern)) if is_glob else [pattern]
            if not paths:
                ctx.log(f"{pattern}: matched no file")
            for path in paths:
                try:
                    data = read_regular_file(path, "file", PEM_FILE_LIMIT)
                except ProbeError as e:
                    unreadable.append(str(e))
                    continue
                try:
                    certs = x509.load_pem_x509_certificates(data)
                except ValueError as e:
                    ctx.log(f"{path}: no certificate could be read ({e})")
                    continue
                ctx.log(f"{path}: {len(certs)} certificates")
                found.extend((path, cert) for cert in certs)
        if unreadable:
            raise ProbeError("io", "; ".join(unreadable))
        if not found:
            raise ProbeError("empty", f"no certificate in {', '.join(patterns)}")


PROBER = CertProber()
