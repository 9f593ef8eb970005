"""HTTP(S) endpoints: status, body and JSON checks, per-phase timings, TLS version and expiry.

Every probe, and every redirect it follows, opens its own connection (asyncio streams) and
speaks HTTP/1.1 through h11, so the connect and TLS phases are measured each time, as
blackbox_exporter does (a pooled connection would hide them). h11 parses; the rest is a few
lines here: httpx's client machinery (pool, auth flows, cookie jar, anyio) cost two thirds of a
probe's CPU for nothing a probe needs. Redirects are followed here, so that no response body,
not even a redirect's, is ever read into memory beyond `max_body_bytes`. The prober only ever
fetches the configured URL and the redirects its server sends: `/probe` takes a target name,
never a URL. Each probe has a fresh cookie jar (the stdlib's, as blackbox_exporter gives each
probe Go's), so a redirect chain that sets a session cookie (login -> health) works; the jar's
rules decide where a cookie goes (its host, or the domain it names, any port as RFC 6265 says;
host-only cookies never to another host), cookies are never logged, and none outlives the probe.

Phases (`stackprobe_http_phase_duration_seconds{phase}`), summed over the redirects of one probe:

* connect: DNS lookup plus TCP connect (none for an IP literal),
* tls: the TLS handshake; 0 for plain HTTP,
* request: sending the request headers and body,
* first_byte: waiting for and reading the response headers, i.e. the server's think time,
* transfer: reading the response body.

A phase cut short by a failure or the timeout counts until then, so a timed-out probe shows
where its time went; phases never reached are 0. The whole probe, the TLS handshake included,
is bounded by the scheduler's timeout, which cancels it (reason timeout).

Failure reasons: dns, connect (refused, reset, or closed mid-response), timeout (also a
body_regex still searching when the timeout expires), tls, status (unexpected status, or more
than `max_redirects` redirects: the last answer is then a redirect the probe did not follow,
which is a status problem; a redirect to an invalid or non-HTTP URL), body (regex, JSON, or content decoding), io (the password_file,
ca_file or a headers_from file cannot be read at probe time, or holds what cannot be a header value).

Hostile bodies are bounded: Content-Encoding is decoded here, a step of at most DECODE_STEP
bytes at a time, so a compression bomb costs time (bounded by the timeout), never memory;
stacked encodings (`gzip, gzip`: 1.8 KB on the wire, 1 GiB decoded) are refused. The regex
search, and the parsing of JSON bodies over INLINE_JSON_BYTES, run in a worker thread, off the
event loop; the search has a time limit (the `regex` package's timeout=, which the stdlib `re` lacks), JSON nesting is bounded by
the interpreter's recursion limit (~1,000 levels) and numbers by its 4,300-digit limit.
Configured headers, like Authorization, are only ever sent to the configured URL's origin: a
redirect elsewhere drops them (basic auth survives only an http -> https redirect of the same
host). Their names and values are checked at load (no CR/LF: no header
injection); secret values come from `headers_from` (env or file), never the config itself.

h11 and httpx (for its URL parsing) are imported at the first http target, so an exporter
without one never loads them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.message
import http.cookiejar
import json
import os
import socket
import ssl
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, field_validator, model_validator

import stackprobe
from stackprobe.configsource import StrictModel, header_name, header_value

from ..metrics import gauge, histogram
from .base import (ProbeContext, ProbeError, Prober, SecretRef, TargetConfig, TLSClientConfig, check_secret_source,
                   peer_certificates, read_secret)

if TYPE_CHECKING:
    import h11
    import httpx

#: The most bytes one decoding step produces: what a compressed body can cost in memory at once.
DECODE_STEP = 256 * 1024
#: What the prober can decode (see BoundedDecoder); br/zstd would need extra libraries.
ACCEPT_ENCODING = "gzip, deflate"
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: JSON bodies up to this size are parsed on the event loop (~0.2 ms, less than starting a
#: thread); bigger ones in the target's worker thread.
INLINE_JSON_BYTES = 16 * 1024

PHASES: tuple[str, ...] = ("connect", "tls", "request", "first_byte", "transfer")
#: Bytes asked of the socket per read.
READ_BYTES = 64 * 1024
#: The largest response head h11 buffers (its default is 16 KiB; httpcore allowed 100 KiB).
MAX_HEAD_BYTES = 100 * 1024
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: Methods whose request carries a body, so an empty one is announced as `Content-Length: 0`.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class JsonValue(StrictModel):
    """One value of a JSON response body to export."""

    path: str = Field(pattern=r"^[^.]+(\.[^.]+)*$", description="Dotted path into the JSON body, list items by index: `is_active`, `data.items.0.count`. Exported as `stackprobe_http_json_value{path}`.")


HeaderName = Annotated[str, AfterValidator(header_name)]


class HeaderSecret(StrictModel):
    """A request header's value kept out of the config, like a password: `env` or `file`."""

    env: str | None = Field(None, description="Environment variable holding the value.")
    file: Path | None = Field(None, description="File holding the value (trailing newline stripped); re-read at every probe.")

    @model_validator(mode="after")
    def _check_source(self) -> "HeaderSecret":
        if not (self.env or self.file):
            raise ValueError("set env or file")
        check_secret_source(self.env, self.file, "env", "file")
        if self.env and self.env in os.environ:  # unset: check-config may run without the secrets
            header_value(os.environ[self.env])
        return self

    def value(self, name: str) -> str:
        """The value as of now; one that cannot be a header value fails the probe with reason io.
        Blocking (the file may sit on a hung mount): call it from a worker thread."""
        value = read_secret(self.env, self.file, "file") or ""
        try:
            return header_value(value)
        except ValueError as e:
            raise ProbeError("io", f"headers_from {name}: {e}") from None


class HttpTarget(SecretRef, TargetConfig):
    """An HTTP(S) endpoint (playbook 002: the application's status API)."""

    default_interval: ClassVar[float] = 30.0
    default_timeout: ClassVar[float] = 10.0

    url: str = Field(description="The URL to fetch (http or https). Credentials go in `username` and `password_env`/`password_file`, not in the URL.")
    method: str = Field("GET", pattern=r"^[A-Z]+$", description="HTTP method.")
    headers: dict[HeaderName, Annotated[str, AfterValidator(header_value)]] = Field(default_factory=dict, description="Extra request headers (not for secrets: see `headers_from`).")
    headers_from: dict[HeaderName, HeaderSecret] = Field(default_factory=dict, description="Request headers whose values are secrets, each read at every probe from `{env: VARIABLE}` or `{file: PATH}`: `X-Api-Key: {env: API_KEY}`.")
    body: str | None = Field(None, description="Request body (e.g. for POST).")
    valid_status_codes: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list, description="Status codes that count as up; empty means any 2xx.")
    body_regex: str | None = Field(None, description="A regular expression the body (its first `max_body_bytes`) must contain a match for.")
    json_values: list[JsonValue] = Field(default_factory=list, description="JSON values of the body to export; a missing or non-numeric value fails the probe with reason `body`.")
    follow_redirects: bool = Field(True, description="Follow redirects (up to `max_redirects`), with a cookie jar of the probe's own: a cookie a redirect sets goes on to the next hops to its host (a login -> health chain works).")
    max_redirects: int = Field(10, ge=0, description="More redirects than this fail the probe with reason `status`.")
    tls: TLSClientConfig = Field(default_factory=TLSClientConfig, description="TLS for https:// URLs: `ca_file`, `cert_file`/`key_file`, `verify` (false still exports the certificate's expiry).")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=0, description="Only this many bytes of the body are kept for `body_regex` and `json_values`; the rest is read, counted and discarded.")
    username: str | None = Field(None, description="User name for HTTP basic auth.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        import httpx

        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as e:
            raise ValueError(f"invalid URL: {e}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("the URL must be http:// or https:// with a host")
        if url.userinfo:
            raise ValueError("credentials in the URL are not allowed; use username and password_env/password_file")
        connect_address(url)
        return value

    @field_validator("body_regex")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            import regex

            try:
                regex.compile(value)
            except regex.error as e:
                raise ValueError(f"invalid regular expression: {e}") from None
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> "HttpTarget":
        if (self.password_env or self.password_file) and self.username is None:
            raise ValueError("password_env/password_file need a username")
        both = {n.lower() for n in self.headers} & {n.lower() for n in self.headers_from}
        if both:
            raise ValueError(f"header {', '.join(sorted(both))} is set in both headers and headers_from")
        paths = [v.path for v in self.json_values]
        if len(paths) != len(set(paths)):
            raise ValueError("json_values lists a path twice")
        return self

    @property
    def own_headers(self) -> list[str]:
        """The names of the configured headers, secret or not."""
        return [*self.headers, *self.headers_from]

    def secret_headers(self) -> dict[str, str]:
        """headers_from as of now. Blocking (files): call it from a worker thread."""
        return {name: source.value(name) for name, source in self.headers_from.items()}


class PhaseTimer:
    """Adds up how long each phase took over one probe's requests."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        #: True once a request started going out, i.e. a connection was established.
        self.sent = False

    @contextlib.contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        """Times the block into `phase`; a block cut off by a failure or the timeout counts until then."""
        self.sent = self.sent or phase == "request"
        began = time.monotonic()
        try:
            yield
        finally:
            self.totals[phase] += time.monotonic() - began

    def export(self, ctx: ProbeContext) -> None:
        for phase, seconds in self.totals.items():
            ctx.set("http_phase_duration_seconds", seconds, phase=phase)


class BoundedDecoder:
    """Content-Encoding decoding (identity, gzip or deflate) that yields at most DECODE_STEP bytes
    at a time, however much one compressed chunk expands to; one level of encoding only."""

    def __init__(self, header: str):
        encodings = [e.strip().lower() for e in header.split(",") if e.strip().lower() not in ("", "identity")]
        if len(encodings) > 1:
            raise ProbeError("body", f"Content-Encoding {header!r} stacks encodings; at most one is decoded")
        self.encoding = encodings[0] if encodings else "identity"
        if self.encoding in ("gzip", "x-gzip"):
            self._zlib: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == "deflate":  # zlib-wrapped as the RFC says; raw deflate is tried below
            self._zlib = zlib.decompressobj()
        elif self.encoding == "identity":
            self._zlib = None
        else:
            raise ProbeError("body", f"Content-Encoding {self.encoding!r} is not supported (the probe asks for {ACCEPT_ENCODING})")
        self._started = False

    def decode(self, data: bytes) -> Any:
        """The decoded pieces of one raw chunk (a generator: the caller may stop or yield between)."""
        if self._zlib is None:
            yield data
            return
        while data:
            try:
                piece = self._zlib.decompress(data, DECODE_STEP)
            except zlib.error as e:
                if self.encoding == "deflate" and not self._started:  # servers that send raw deflate
                    self._zlib, self._started = zlib.decompressobj(-zlib.MAX_WBITS), True
                    continue
                raise ProbeError("body", f"the body is not valid {self.encoding} data: {e}") from None
            self._started = True
            data = self._zlib.unconsumed_tail
            if piece:
                yield piece


class BodyBuffer:
    """Counts every byte of a streamed body but keeps only the first `limit` bytes."""

    def __init__(self, limit: int):
        self.limit = limit
        self.kept = bytearray()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.size > len(self.kept)

    def note(self) -> str:
        """A hint for error messages when a check only saw part of the body."""
        return f" (only the first {len(self.kept)} of {self.size} bytes were checked: max_body_bytes)" if self.truncated else ""


def search_body(pattern: str, body: bytes, encoding: str, timeout: float) -> bool:
    """body_regex in the decoded body, giving up after `timeout` seconds (TimeoutError); for a
    worker thread: concurrent=True lets the search release the GIL."""
    import regex

    try:
        text = body.decode(encoding, errors="replace")
    except LookupError:  # a charset naming a codec that is not a text encoding (rot13, base64)
        text = body.decode("utf-8", errors="replace")
    return regex.search(pattern, text, concurrent=True, timeout=timeout) is not None


def parse_json(body: bytes) -> Any:
    """The JSON document of a body; ValueError (with a reason) for anything that is not one."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def connect_address(url: "httpx.URL") -> tuple[str, int]:
    """The host (ASCII, IDNA-encoded) and port to connect to; ValueError for what httpx.URL takes
    but no connect can: a port over 65535, an empty or over-63-character host label (getaddrinfo
    would raise UnicodeError or OverflowError, not an OSError)."""
    port = url.port or _DEFAULT_PORTS[url.scheme]
    if not 0 < port <= 65535:
        raise ValueError(f"port {port} is out of range (1-65535)")
    host = url.raw_host.decode("ascii")
    try:
        host.encode("idna")
    except UnicodeError:
        raise ValueError(f"{host!r} is not a host name: empty or over-63-character label") from None
    return host, port


def same_origin(a: "httpx.URL", b: "httpx.URL") -> bool:
    return (a.scheme, a.host, a.port or _DEFAULT_PORTS.get(a.scheme)) == (b.scheme, b.host, b.port or _DEFAULT_PORTS.get(b.scheme))


def https_upgrade(a: "httpx.URL", b: "httpx.URL") -> bool:
    """b is a's host on HTTPS, both on their default ports: where basic auth may follow (as in httpx)."""
    return (a.scheme, b.scheme, a.host, a.port, b.port) == ("http", "https", b.host, None, None)


def json_number(document: Any, path: str) -> float:
    """The value at a dotted path as a number (true=1, false=0); LookupError or ValueError if none."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise LookupError(f"{path}: no {part!r} in the JSON body")
    if isinstance(node, (bool, int, float)):
        try:
            return float(node)
        except OverflowError:  # an integer beyond float range
            raise ValueError(f"{path}: the number is too large") from None
    raise ValueError(f"{path}: {type(node).__name__} is not a number or boolean")


def failure_reason(exc: OSError) -> str:
    """Map a socket or TLS error to a reason of metrics.ERROR_REASONS."""
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, TimeoutError):  # the kernel gave up connecting (ETIMEDOUT)
        return "timeout"
    return "connect"  # refused, unreachable, reset, closed


@dataclass
class Request:
    """One request of a probe: the configured one, or a redirect's."""

    method: str
    url: "httpx.URL"
    #: lower-case name -> (name as configured, value); Host and Content-Length are added when sent.
    headers: dict[str, tuple[str, str]]
    body: bytes | None
    #: Headers of this request only, never carried to a redirect's: the cookie jar's Cookie.
    unredirected: dict[str, tuple[str, str]] = field(default_factory=dict)

    def head(self) -> "h11.Request":
        import h11

        headers = {"host": ("Host", self.url.netloc.decode("ascii")), **self.unredirected, **self.headers}
        if self.body is not None or self.method in _BODY_METHODS:
            headers["content-length"] = ("Content-Length", str(len(self.body or b"")))
        return h11.Request(method=self.method, target=self.url.raw_path, headers=list(headers.values()))

    def redirected(self, status: int, location: str, own_headers: list[str]) -> "Request":
        """The request that follows this one's redirect (httpx's rules: 303, and 302 and POST 301,
        become GET without a body); configured headers only stay with the same origin."""
        import httpx

        try:
            url = self.url.join(location)
        except httpx.InvalidURL as e:
            raise ProbeError("status", f"{status} to an invalid URL: {e}") from None
        if url.scheme not in _DEFAULT_PORTS or not url.host:
            raise ProbeError("status", f"{status} to {url}, not an http(s) URL")
        try:
            connect_address(url)
        except ValueError as e:
            raise ProbeError("status", f"{status} to an invalid URL: {e}") from None
        method = self.method
        if (status in (302, 303) and method != "HEAD") or (status == 301 and method == "POST"):
            method = "GET"
        headers = dict(self.headers)
        if not same_origin(self.url, url):
            for name in own_headers:
                headers.pop(name.lower(), None)
            if not https_upgrade(self.url, url):
                headers.pop("authorization", None)
        return Request(method, url, headers, self.body if method == self.method else None)


#: Host-only cookies (no Domain attribute) go back to their host only, not to its subdomains (RFC
#: 6265, and Go's cookiejar); no third-party blocking, as in blackbox_exporter.
COOKIE_POLICY = http.cookiejar.DefaultCookiePolicy(strict_ns_domain=http.cookiejar.DefaultCookiePolicy.DomainStrictNonDomain)


class CookieRequest:
    """A Request as http.cookiejar sees one (the part of urllib.request.Request's interface it uses)."""

    unverifiable = False  # see COOKIE_POLICY

    def __init__(self, request: Request):
        self._request = request

    @property
    def type(self) -> str:
        return self._request.url.scheme

    @property
    def host(self) -> str:
        return self._request.url.netloc.decode("ascii")

    @property
    def origin_req_host(self) -> str:
        return self._request.url.host

    def get_full_url(self) -> str:
        return str(self._request.url)

    def has_header(self, name: str) -> bool:
        return name.lower() in self._request.headers or name.lower() in self._request.unredirected

    def get_header(self, name: str, default: str | None = None) -> str | None:
        pair = self._request.headers.get(name.lower()) or self._request.unredirected.get(name.lower())
        return pair[1] if pair else default

    def add_unredirected_header(self, name: str, value: str) -> None:
        self._request.unredirected[name.lower()] = (name, value)


class CookieResponse:
    """A response head as http.cookiejar sees one: info() and its get_all()."""

    def __init__(self, headers: list[tuple[bytes, bytes]]):
        self._headers = headers

    def info(self) -> "CookieResponse":
        return self

    def get_all(self, name: str, default: Any = None) -> Any:
        key = name.lower().encode("ascii")
        return [v.decode("latin-1") for n, v in self._headers if n == key] or default


async def next_event(connection: "h11.Connection", reader: asyncio.StreamReader) -> Any:
    """h11's next event, reading from the socket as needed."""
    import h11

    while (event := connection.next_event()) is h11.NEED_DATA:
        connection.receive_data(await reader.read(READ_BYTES))
    return event


@dataclass(frozen=True)
class Response:
    """A response's head, with its connection still open for the body."""

    request: Request
    status_code: int
    http_version: str
    headers: list[tuple[bytes, bytes]]
    connection: "h11.Connection"
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def header(self, name: bytes) -> str | None:
        """A header's value (h11 gives names in lower case), the values of a repeated one joined."""
        values = [v.decode("latin-1") for n, v in self.headers if n == name]
        return ", ".join(values) if values else None

    @property
    def encoding(self) -> str:
        """The charset of Content-Type (utf-8 if none); search_body copes with one that is no codec."""
        message = email.message.Message()
        message["content-type"] = self.header(b"content-type") or ""
        return message.get_content_charset() or "utf-8"

    @property
    def next_location(self) -> str | None:
        return self.header(b"location") if self.status_code in _REDIRECT_CODES else None

    async def raw_chunks(self) -> Any:
        """The body as sent (Content-Encoding still applied), until its end."""
        import h11

        while not isinstance(event := await next_event(self.connection, self.reader), h11.EndOfMessage):
            if isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the server closed the connection before the end of the body")
            yield event.data

    def close(self) -> None:
        """Closed without waiting for the peer (a TLS close_notify finishes in the background)."""
        self.writer.close()


# The playbooks' latency thresholds (0.3 s target, 0.5 s average, 1/2/5 s P95 tiers) are bucket
# bounds, so averages and quantiles computed from the histogram are exact at those lines.
HTTP_DURATION_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)

#: What this prober exports (exporter/metrics.py collects every prober's FAMILIES).
FAMILIES = (
    gauge("http_up", "1 if the endpoint answered with an expected status and its body passed the configured checks, else 0."),
    gauge("http_status_code", "HTTP status code of the last response, also when unexpected (0 if none)."),
    gauge("http_phase_duration_seconds", "Duration of each phase of the last probe, summed over its redirects: connect (DNS lookup and TCP connect), tls (handshake; 0 for plain HTTP), request (sending headers and body), first_byte (waiting for the response headers), transfer (reading the body). A phase cut off by a failure counts until the failure.", "phase"),
    histogram("http_request_duration_seconds", "Total duration of each probe's request, redirects and body included, accumulated since the exporter started; probes that failed before the request was sent (DNS, connect or TLS failures) are not observed.", buckets=HTTP_DURATION_BUCKETS),
    gauge("http_response_size_bytes", "Bytes of the last response body (after Content-Encoding decoding), counted in full even beyond max_body_bytes."),
    gauge("http_redirects", "Redirects followed by the last request."),
    gauge("http_version_info", "HTTP and TLS versions of the last response (tls_version empty for plain HTTP); always 1.", "http_version", "tls_version"),
    gauge("http_cert_earliest_not_after_timestamp_seconds", "For HTTPS: the earliest NotAfter of the certificates the server of the final URL sent (the served chain; just the leaf on Python builds that do not expose the chain)."),
    gauge("http_json_value", "A configured JSON value of the response body, by dotted path (true=1, false=0, numbers as is).", "path"),
)


class HttpProber(Prober[HttpTarget]):
    name = "http"
    families = FAMILIES
    target_model = HttpTarget
    summary = "HTTP(S) endpoint: status, body regex, JSON values, phase timings, TLS expiry."

    async def probe(self, target: HttpTarget, ctx: ProbeContext) -> None:
        import h11

        ctx.set("http_up", 0)
        ctx.set("http_status_code", 0)
        phases = PhaseTimer()
        started = time.monotonic()
        try:
            await self._fetch_and_check(target, ctx, phases)
        except h11.LocalProtocolError as e:
            # h11 refused to send our own request; its text quotes the offending request data
            # (a header's value: maybe a key), so it is withheld. Config validation makes this a
            # stackprobe bug, never a fault of the target.
            raise ProbeError("internal", f"{type(e).__name__}: the request could not be sent (details withheld: they quote request headers)") from None
        except h11.RemoteProtocolError as e:  # not HTTP, or closed mid-response: no answer came
            raise ProbeError("connect", f"{type(e).__name__}: {e}") from None
        except OSError as e:
            raise ProbeError(failure_reason(e), f"{type(e).__name__}: {e}") from None
        finally:
            phases.export(ctx)
            # Probes that never got a connection have no request latency to speak of; their
            # failures are counted in probe_errors_total.
            if phases.sent:
                ctx.observe("http_request_duration_seconds", time.monotonic() - started)

    async def _fetch_and_check(self, target: HttpTarget, ctx: ProbeContext, phases: PhaseTimer) -> None:
        import httpx

        # Connection: close, as blackbox_exporter sends: the connection serves this request only.
        headers = {"User-Agent": f"stackprobe/{stackprobe.__version__}", "Accept": "*/*", "Accept-Encoding": ACCEPT_ENCODING,
                   "Connection": "close", **target.headers, **await self._secret_headers(target, ctx)}
        if target.username is not None:
            credentials = f"{target.username}:{await target.read_password(ctx) or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        request = Request(target.method, httpx.URL(target.url), {name.lower(): (name, value) for name, value in headers.items()},
                          None if target.body is None else target.body.encode())
        jar = http.cookiejar.CookieJar(COOKIE_POLICY)
        response = await self._send(request, jar, target.tls, phases, ctx)
        try:
            redirects = 0
            while target.follow_redirects and (location := response.next_location) is not None and redirects < target.max_redirects:
                request = response.request.redirected(response.status_code, location, target.own_headers)
                ctx.log(f"{response.request.method} {response.request.url} -> {response.status_code}, redirected to {request.url}")
                response.close()
                redirects += 1
                response = await self._send(request, jar, target.tls, phases, ctx)
            ctx.set("http_redirects", redirects)
            ctx.set("http_status_code", response.status_code)
            ctx.log(f"{request.method} {request.url} -> {response.status_code} {response.http_version}")
            self._export_connection(response, ctx)
            with phases.timing("transfer"):
                body = await self._read_body(response, target.max_body_bytes)
            ctx.set("http_response_size_bytes", body.size)
            ctx.log(f"read {body.size} body bytes, kept {len(body.kept)}")
        finally:
            response.close()
        if target.follow_redirects and response.next_location is not None:
            raise ProbeError("status", f"more than {target.max_redirects} redirects (max_redirects); the last was {response.status_code} to {response.next_location}")
        await self._check(target, response, body, ctx)
        ctx.set("http_up", 1)

    @staticmethod
    async def _send(request: Request, jar: http.cookiejar.CookieJar, tls: TLSClientConfig, phases: PhaseTimer,
                    ctx: ProbeContext) -> Response:
        """Sends the request, with the jar's cookies for it, over a new connection; returns once
        the response head is in and its cookies are in the jar."""
        import h11

        if jar:  # the jar costs ~50 µs a hop even when empty, and most probes never see a cookie
            jar.add_cookie_header(CookieRequest(request))

        host, port = connect_address(request.url)
        # The TLS files are checked (a worker thread when there are files) while TCP connects.
        ssl_context = asyncio.ensure_future(tls.load_ssl_context(ctx)) if request.url.scheme == "https" else None
        try:
            with phases.timing("connect"):  # no lookup for an IP literal: asyncio sees it is one
                reader, writer = await asyncio.open_connection(host, port)
        except BaseException:
            # The connect failure is the one reported: the TLS files' check is dropped, cancelled
            # or, if it ended already, its outcome taken so that asyncio does not log it.
            if ssl_context is not None and not ssl_context.cancel() and not ssl_context.cancelled():
                ssl_context.exception()
            raise
        try:
            if ssl_context is not None:
                context = await ssl_context
                with phases.timing("tls"):  # bounded by the probe's timeout, not asyncio's 60 s
                    await writer.start_tls(context, server_hostname=host, ssl_handshake_timeout=ctx.remaining() + 1)
            connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
            with phases.timing("request"):
                data = connection.send(request.head())
                if request.body:
                    data += connection.send(h11.Data(data=request.body))
                writer.write(data + connection.send(h11.EndOfMessage()))
                await writer.drain()
            with phases.timing("first_byte"):
                while not isinstance(head := await next_event(connection, reader), h11.Response):
                    if isinstance(head, h11.ConnectionClosed):
                        raise h11.RemoteProtocolError("the server closed the connection without answering")
                    # else an InformationalResponse (1xx): the answer is still to come
            headers = list(head.headers)
            if any(name == b"set-cookie" for name, _ in headers):
                jar.extract_cookies(CookieResponse(headers), CookieRequest(request))
            return Response(request, head.status_code, f"HTTP/{head.http_version.decode('ascii')}", headers,
                            connection, reader, writer)
        except BaseException:
            writer.close()
            raise

    @staticmethod
    async def _read_body(response: Response, limit: int) -> BodyBuffer:
        """The body, decoded with a bounded step; the first `limit` decoded bytes are kept."""
        decoder = BoundedDecoder(response.header(b"content-encoding") or "")
        body = BodyBuffer(limit)
        async for chunk in response.raw_chunks():
            for piece in decoder.decode(chunk):
                body.feed(piece)
                if len(piece) == DECODE_STEP:  # a chunk that expands a lot: let others run, and the timeout land
                    await asyncio.sleep(0)
        return body

    @staticmethod
    async def _secret_headers(target: HttpTarget, ctx: ProbeContext) -> dict[str, str]:
        """headers_from read now, so a rotated key is used at the next probe; files off the loop."""
        if any(source.file for source in target.headers_from.values()):
            return await ctx.off_loop("headers_from", target.secret_headers)
        return target.secret_headers()

    @staticmethod
    def _export_connection(response: Response, ctx: ProbeContext) -> None:
        """HTTP/TLS versions and the certificate expiry, read while the connection is open."""
        ssl_object = response.writer.get_extra_info("ssl_object")
        tls_version = (ssl_object.version() or "") if ssl_object is not None else ""
        ctx.set("http_version_info", 1, http_version=response.http_version, tls_version=tls_version)
        if ssl_object is not None:
            certs = peer_certificates(ssl_object)
            if certs:
                earliest = min(c.not_valid_after_utc for c in certs)
                ctx.set("http_cert_earliest_not_after_timestamp_seconds", earliest.timestamp())
                ctx.log(f"{tls_version}, {len(certs)} certificate(s) served, earliest NotAfter {earliest.isoformat()}")

    @staticmethod
    async def _check(target: HttpTarget, response: Response, body: BodyBuffer, ctx: ProbeContext) -> None:
        code = response.status_code
        if not (code in target.valid_status_codes if target.valid_status_codes else 200 <= code < 300):
            expected = ", ".join(map(str, target.valid_status_codes)) or "2xx"
            raise ProbeError("status", f"status {code}, expected {expected}")
        kept = bytes(body.kept)
        if target.body_regex is not None:
            try:
                found = await ctx.off_loop("body_regex", search_body, target.body_regex, kept,
                                           response.encoding, ctx.remaining())
            except TimeoutError:
                raise ProbeError("timeout", f"body_regex {target.body_regex!r} still searching when the timeout expired{body.note()}") from None
            if not found:
                raise ProbeError("body", f"no match for body_regex {target.body_regex!r}{body.note()}")
        if target.json_values:
            try:  # linear in the body's size: a small one is parsed faster than a thread starts
                document = parse_json(kept) if len(kept) <= INLINE_JSON_BYTES else await ctx.off_loop("JSON parsing", parse_json, kept)
            except ValueError as e:
                raise ProbeError("body", f"the body is not JSON: {e}{body.note()}") from None
            problems = []
            for value in target.json_values:
                try:
                    ctx.set("http_json_value", json_number(document, value.path), path=value.path)
                except (LookupError, ValueError) as e:
                    problems.append(str(e))
            if problems:
                raise ProbeError("body", "; ".join(problems))


PROBER = HttpProber()
