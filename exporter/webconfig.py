"""The `--web.config.file` format of Prometheus exporter-toolkit: TLS and basic auth.

Users of Go exporters can point stackprobe at the web-config.yml they already have. Supported:
tls_server_config (cert_file, key_file, client_auth_type, client_ca_file, min_version),
http_server_config.headers (the security headers exporter-toolkit allows) and basic_auth_users
(bcrypt hashes); anything else is an error. Like exporter-toolkit, the file is not read once:
WebConfigSource re-reads it, and the TLS files it names, whenever one of them changes.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import bcrypt
from pydantic import AfterValidator, Field, model_validator

from stackprobe.configsource import ConfigError, StrictModel, header_value, load

log = logging.getLogger("stackprobe.webconfig")

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


#: The headers exporter-toolkit lets a web config set, with the values it allows (None: any).
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}


def _header_name(name: str) -> str:
    if name not in ALLOWED_HEADERS:
        raise ValueError(f"HTTP header {name!r} can not be configured (allowed: {', '.join(ALLOWED_HEADERS)})")
    return name


def _allowed_values(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        allowed = ALLOWED_HEADERS[name]
        if allowed is not None and value not in allowed:
            raise ValueError(f"invalid value for {name}: expected one of {', '.join(allowed)}, got {value!r}")
    return headers


class HTTPServerConfig(StrictModel):
    headers: Annotated[
        dict[Annotated[str, AfterValidator(_header_name)], Annotated[str, AfterValidator(header_value)]],
        AfterValidator(_allowed_values),
    ] = Field(default_factory=dict)


#: What bcrypt itself accepts: version 2a/2b/2y, cost 04..31, 22 characters of salt and 31 of
#: hash. The salt's 22 characters encode 128 bits in 132, so its last one must leave the spare 4
#: bits zero (one of `.Oeu`): bcrypt refuses any other salt ("Invalid salt") at every request.
_BCRYPT_RE = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{31}")


def _bcrypt_hash(value: str) -> str:
    if not _BCRYPT_RE.fullmatch(value):
        raise ValueError("not a bcrypt hash: expected $2b$COST$ and 53 characters of salt and hash, cost 04 "
                         "to 31 (make one with: htpasswd -nBC 10 USER)")
    return value


class WebConfig(StrictModel):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, Annotated[str, AfterValidator(_bcrypt_hash)]] = Field(default_factory=dict)

    def files(self) -> tuple[Path, ...]:
        """The files this config reads besides itself (a change to one means re-reading them)."""
        tls = self.tls_server_config
        return tuple(p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p) if tls else ()


def load_web_config(path: str | Path) -> WebConfig:
    return load(WebConfig, path)


#: bcrypt only reads this many bytes of a password.
BCRYPT_MAX_PASSWORD_BYTES = 72
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
        secret = password.encode()
        if len(secret) > BCRYPT_MAX_PASSWORD_BYTES:
            return False  # no bcrypt hash can match it (bcrypt 5 raises rather than truncate)
        hashed = self._users.get(user)
        if hashed is None:
            # Spend a bcrypt check anyway, so response times do not tell which users exist.
            bcrypt.checkpw(secret, _DUMMY_HASH)
            return False
        token = hmac.new(self._key, f"{user}\0{password}".encode(), "sha256").digest()
        with self._lock:
            if token in self._ok:
                return True
        if not bcrypt.checkpw(secret, hashed):
            return False
        with self._lock:
            self._ok.add(token)
        return True


@dataclass(frozen=True)
class WebState:
    """The web config in force, with what serving needs built from it once."""

    config: WebConfig
    auth: BasicAuth
    tls_context: ssl.SSLContext | None
    #: Set while the file on disk is invalid: requests are refused (500) until it is fixed,
    #: as exporter-toolkit does, rather than served under a config the operator replaced.
    error: str | None = None

    @classmethod
    def of(cls, config: WebConfig) -> "WebState":
        tls = config.tls_server_config
        return cls(config, BasicAuth(config.basic_auth_users), tls.ssl_context() if tls else None)


class WebConfigSource:
    """The web config file, re-read when it or one of its TLS files changes.

    exporter-toolkit re-reads its file on every request, so a rotated certificate or a removed
    user takes effect at once; here an os.stat of each file per connection and request finds
    the change, and the file is only parsed again when one happened. `path=None` serves a fixed
    config (tests, or no --web.config.file).
    """

    def __init__(self, path: str | Path | None = None, config: WebConfig | None = None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._state = WebState.of(config or WebConfig())
        self._loaded: tuple = ()
        if self.path is not None:
            before = _stat_all((self.path,))
            self._state = WebState.of(load_web_config(self.path))  # ConfigError: the caller's to report
            self._loaded = before + _stat_all(self._state.config.files())

    def current(self) -> WebState:
        """The state to serve a connection or request with (re-read first if a file changed)."""
        if self.path is not None and self._changed():
            with self._lock:
                if self._changed():
                    self._reload()
        return self._state

    def _changed(self) -> bool:
        assert self.path is not None
        return _stat_all((self.path, *self._state.config.files())) != self._loaded

    def _reload(self) -> None:
        assert self.path is not None
        # Stat before reading: a write that lands while we read shows up as a change next time.
        before = _stat_all((self.path,))
        try:
            self._state = WebState.of(load_web_config(self.path))
            log.info("web config loaded file=%s users=%d tls=%s", self.path, len(self._state.config.basic_auth_users),
                     "on" if self._state.tls_context else "off")
        except (ConfigError, OSError, ssl.SSLError) as e:  # OSError, SSLError: a TLS file replaced since validation
            error = "; ".join(e.format_lines()) if isinstance(e, ConfigError) else f"{self.path}: {e}"
            log.error("web config invalid, refusing requests until it is fixed error=%s", error)
            old = self._state
            self._state = WebState(old.config, old.auth, old.tls_context, error)
        self._loaded = before + _stat_all(self._state.config.files())


def _stat_all(paths: tuple[Path, ...]) -> tuple:
    """(mtime, size, inode) of each path, None for a missing one: what tells a file was replaced."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)
