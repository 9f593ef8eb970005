"""HTTP(S) endpoints: status, body and JSON checks, per-phase timings, TLS version and expiry.

One fresh `httpx.AsyncClient` per probe, so every probe opens its own connection and the connect
and TLS phases are measured each time (a pooled connection would hide them). Redirects are
followed here rather than by httpx, so that no response body, not even a redirect's, is ever
read into memory beyond `max_body_bytes`. The prober only ever fetches the configured URL and
the redirects its server sends: `/probe` takes a target name, never a URL.

Phases (`stackprobe_http_phase_duration_seconds{phase}`), from httpcore's `trace` extension,
summed over the redirects of one probe:

* connect: DNS lookup plus TCP connect (`connection.connect_tcp`; httpcore resolves inside it),
* tls: the TLS handshake (`connection.start_tls`); 0 for plain HTTP,
* request: sending the request headers and body (`http11.send_request_headers` and `_body`),
* first_byte: waiting for and reading the response headers (`http11.receive_response_headers`),
  i.e. the server's think time,
* transfer: reading the response body (`http11.receive_response_body`).

A phase cut short by a failure or the timeout counts until then, so a timed-out probe shows
where its time went; phases never reached are 0.

Failure reasons: dns, connect (refused, reset, or closed mid-response), timeout (also a
body_regex still searching when the timeout expires), tls, status (unexpected status, or more
than `max_redirects` redirects: the last answer is then a redirect the probe did not follow,
which is a status problem), body (regex, JSON, or content decoding), io (the password_file,
ca_file or a headers_from file cannot be read at probe time, or holds what cannot be a header value).

Hostile bodies are bounded: Content-Encoding is decoded here, a step of at most DECODE_STEP
bytes at a time, so a compression bomb costs time (bounded by the timeout), never memory;
stacked encodings (`gzip, gzip`: 1.8 KB on the wire, 1 GiB decoded) are refused. The regex
search, and the parsing of JSON bodies over INLINE_JSON_BYTES, run in a worker thread, off the
event loop; the search has a time limit (the `regex` package's timeout=, which the stdlib `re` lacks), JSON nesting is bounded by
the interpreter's recursion limit (~1,000 levels) and numbers by its 4,300-digit limit.
Configured headers, like Authorization, are only ever sent to the configured URL's origin: a
redirect elsewhere drops them. Their names and values are checked at load (no CR/LF: no header
injection); secret values come from `headers_from` (env or file), never the config itself.

httpx is imported at the first http target, so an exporter without one never loads it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, field_validator, model_validator

from stackprobe.configsource import StrictModel, header_name, header_value

from ..metrics import gauge, histogram
from .base import (ProbeContext, ProbeError, Prober, SecretRef, TargetConfig, TLSClientConfig, check_secret_source,
                   exception_chain, peer_certificates, read_secret)

if TYPE_CHECKING:
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

#: httpcore trace steps (event name without `.started`/`.complete`/`.failed`) -> phase.
_PHASE_OF_STEP: dict[str, str] = {
    "connection.connect_tcp": "connect",
    "connection.start_tls": "tls",
    "http11.send_request_headers": "request",
    "http11.send_request_body": "request",
    "http11.receive_response_headers": "first_byte",
    "http11.receive_response_body": "transfer",
}


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
    follow_redirects: bool = Field(True, description="Follow redirects (up to `max_redirects`).")
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
    """The httpcore `trace` callback: adds up how long each phase took."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._open: dict[str, float] = {}
        #: True once a request started going out, i.e. a connection was established.
        self.sent = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        step, _, state = event.rpartition(".")
        phase = _PHASE_OF_STEP.get(step)
        if phase is None:
            return
        if state == "started":
            self._open[phase] = time.monotonic()
            self.sent = self.sent or phase == "request"
        elif phase in self._open:  # complete or failed: the phase is over either way
            self.totals[phase] += time.monotonic() - self._open.pop(phase)

    def export(self, ctx: ProbeContext) -> None:
        """Record every phase; one still open (cut off by a failure) counts until now."""
        now = time.monotonic()
        for phase, began in self._open.items():
            self.totals[phase] += now - began
        self._open.clear()
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


def same_origin(a: "httpx.URL", b: "httpx.URL") -> bool:
    return (a.scheme, a.host, a.port or _DEFAULT_PORTS.get(a.scheme)) == (b.scheme, b.host, b.port or _DEFAULT_PORTS.get(b.scheme))


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


def failure_reason(exc: "httpx.HTTPError") -> str:
    """Map an httpx exception to a reason of metrics.ERROR_REASONS."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        causes = list(exception_chain(exc))
        if any(isinstance(c, socket.gaierror) for c in causes):
            return "dns"
        if any(isinstance(c, ssl.SSLError) for c in causes):
            return "tls"
        return "connect"
    if isinstance(exc, httpx.UnsupportedProtocol):  # redirected to a non-HTTP URL
        return "status"
    # Reset, closed mid-response, or not HTTP at all: the connection did not carry an answer.
    return "connect"


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
        import httpx

        ctx.set("http_up", 0)
        ctx.set("http_status_code", 0)
        phases = PhaseTimer()
        started = time.monotonic()
        # httpx's timeouts are per operation; the scheduler's bounds the whole probe (a server
        # trickling bytes forever) by cancelling it, and the `finally` still records the phases.
        try:
            await self._fetch_and_check(target, ctx, phases)
        except httpx.LocalProtocolError as e:
            # h11 refused to send our own request; its text quotes the offending request data
            # (a header's value: maybe a key), so it is withheld. Config validation makes this a
            # stackprobe bug, never a fault of the target.
            raise ProbeError("internal", f"{type(e).__name__}: the request could not be sent (details withheld: they quote request headers)") from None
        except httpx.HTTPError as e:
            raise ProbeError(failure_reason(e), f"{type(e).__name__}: {e}") from None
        finally:
            phases.export(ctx)
            # Probes that never got a connection have no request latency to speak of; their
            # failures are counted in probe_errors_total.
            if phases.sent:
                ctx.observe("http_request_duration_seconds", time.monotonic() - started)

    async def _fetch_and_check(self, target: HttpTarget, ctx: ProbeContext, phases: PhaseTimer) -> None:
        import httpx

        auth = await self._auth(target, ctx)
        ssl_context = await target.tls.load_ssl_context(ctx)
        headers = {"Accept-Encoding": ACCEPT_ENCODING, **target.headers, **await self._secret_headers(target, ctx)}
        # trust_env=False: no proxy variables and no .netrc; the probe measures the endpoint itself.
        async with httpx.AsyncClient(verify=ssl_context, timeout=httpx.Timeout(ctx.remaining()),
                                     trust_env=False, follow_redirects=False) as client:
            request = client.build_request(target.method, target.url, headers=headers, content=target.body,
                                           extensions={"trace": phases})
            response = await client.send(request, auth=auth, stream=True)
            try:
                redirects = 0
                while target.follow_redirects and response.next_request is not None and redirects < target.max_redirects:
                    ctx.log(f"{response.request.method} {response.request.url} -> {response.status_code}, redirected to {response.next_request.url}")
                    await response.aclose()
                    redirects += 1
                    response = await client.send(self._without_own_headers(target, request, response.next_request, ctx), stream=True)
                ctx.set("http_redirects", redirects)
                ctx.set("http_status_code", response.status_code)
                ctx.log(f"{response.request.method} {response.request.url} -> {response.status_code} {response.http_version}")
                self._export_connection(response, ctx)
                body = await self._read_body(response, target.max_body_bytes)
                ctx.set("http_response_size_bytes", body.size)
                ctx.log(f"read {body.size} body bytes, kept {len(body.kept)}")
            finally:
                await response.aclose()
        if target.follow_redirects and response.next_request is not None:
            raise ProbeError("status", f"more than {target.max_redirects} redirects (max_redirects); the last was {response.status_code} to {response.next_request.url}")
        await self._check(target, response, body, ctx)
        ctx.set("http_up", 1)

    @staticmethod
    def _without_own_headers(target: HttpTarget, first: "httpx.Request", redirect: "httpx.Request", ctx: ProbeContext) -> "httpx.Request":
        """The redirect's request, minus the configured headers if it leaves the configured URL's
        origin (httpx itself drops only Authorization): an X-Api-Key must not reach another host."""
        if not same_origin(first.url, redirect.url):
            dropped = [name for name in target.own_headers if name in redirect.headers]
            for name in dropped:
                del redirect.headers[name]
            if dropped:
                ctx.log(f"redirect to another origin: configured headers {', '.join(dropped)} not sent")
        return redirect

    @staticmethod
    async def _read_body(response: "httpx.Response", limit: int) -> BodyBuffer:
        """The body, decoded with a bounded step; the first `limit` decoded bytes are kept."""
        decoder = BoundedDecoder(response.headers.get("Content-Encoding", ""))
        body = BodyBuffer(limit)
        async for chunk in response.aiter_raw():
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
    async def _auth(target: HttpTarget, ctx: ProbeContext) -> "httpx.BasicAuth | None":
        """Basic auth with the password read now, so a rotated secret is used at the next probe."""
        import httpx

        if target.username is None:
            return None
        return httpx.BasicAuth(target.username, await target.read_password(ctx) or "")

    @staticmethod
    def _export_connection(response: "httpx.Response", ctx: ProbeContext) -> None:
        """HTTP/TLS versions and the certificate expiry, read while the connection is open."""
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        tls_version = (ssl_object.version() or "") if ssl_object is not None else ""
        ctx.set("http_version_info", 1, http_version=response.http_version, tls_version=tls_version)
        if ssl_object is not None:
            certs = peer_certificates(ssl_object)
            if certs:
                earliest = min(c.not_valid_after_utc for c in certs)
                ctx.set("http_cert_earliest_not_after_timestamp_seconds", earliest.timestamp())
                ctx.log(f"{tls_version}, {len(certs)} certificate(s) served, earliest NotAfter {earliest.isoformat()}")

    @staticmethod
    async def _check(target: HttpTarget, response: "httpx.Response", body: BodyBuffer, ctx: ProbeContext) -> None:
        code = response.status_code
        if not (code in target.valid_status_codes if target.valid_status_codes else 200 <= code < 300):
            expected = ", ".join(map(str, target.valid_status_codes)) or "2xx"
            raise ProbeError("status", f"status {code}, expected {expected}")
        kept = bytes(body.kept)
        if target.body_regex is not None:
            try:
                found = await ctx.off_loop("body_regex", search_body, target.body_regex, kept,
                                           response.encoding or "utf-8", ctx.remaining())
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
