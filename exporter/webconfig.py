"""The `--web.config.file` format of Prometheus exporter-toolkit: TLS and basic auth.

Users of Go exporters can point stackprobe at the web-config.yml they already have. Supported:
tls_server_config (cert_file, key_file, client_auth_type, client_ca_file, min_version),
http_server_config.headers and basic_auth_users (bcrypt hashes); anything else is an error.
"""

from __future__ import annotations

import hmac
import os
import ssl
import threading
from pathlib import Path
from typing import Annotated, Literal

import bcrypt
from pydantic import AfterValidator, Field, model_validator

from stackprobe.configsource import StrictModel, load

_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


class TLSServerConfig(StrictModel):
    cert_file: Path
    key_file: Path
    # RequireAnyClientCert (a client certificate without verification) has no OpenSSL mode in
    # Python's ssl module, so it is rejected rather than silently weakened.
    client_auth_type: Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"

    @model_validator(mode="after")
    def _files_exist(self) -> "TLSServerConfig":
        for field in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, field)
            if path is not None and not path.is_file():
                raise ValueError(f"{field} {path} does not exist")
        if self.client_auth_type.startswith(("Verify", "RequireAndVerify")) and not self.client_ca_file:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        try:  # a key that does not match its certificate is a config mistake, found at load time
            self.ssl_context()
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot use the certificate and key: {getattr(e, 'reason', None) or e}") from None
        return self

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
        ctx.verify_mode = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                           "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}[self.client_auth_type]
        return ctx


class HTTPServerConfig(StrictModel):
    headers: dict[str, str] = Field(default_factory=dict)


def _bcrypt_hash(value: str) -> str:
    if not value.startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("not a bcrypt hash (make one with: htpasswd -nBC 10 USER)")
    return value


class WebConfig(StrictModel):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, Annotated[str, AfterValidator(_bcrypt_hash)]] = Field(default_factory=dict)



def load_web_config(path: str | Path) -> WebConfig:
    return load(WebConfig, path)


_DUMMY_HASH = bcrypt.hashpw(b"stackprobe: no such user", bcrypt.gensalt(rounds=10))


class BasicAuth:
    """Checks credentials against bcrypt hashes, caching successes (bcrypt costs ~100 ms a check,
    too much for every scrape; exporter-toolkit caches the same way). The cache holds only a keyed
    digest of the credentials, never the password."""

    def __init__(self, users: dict[str, str]):
        self._users = {u: h.encode() for u, h in users.items()}
        self._key = os.urandom(32)
        self._ok: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, user: str, password: str) -> bool:
        hashed = self._users.get(user)
        if hashed is None:
            # Spend a bcrypt check anyway, so response times do not tell which users exist.
            bcrypt.checkpw(password.encode(), _DUMMY_HASH)
            return False
        token = hmac.new(self._key, f"{user}\0{password}".encode(), "sha256").digest()
        with self._lock:
            if token in self._ok:
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._ok.add(token)
        return True
