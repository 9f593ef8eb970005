"""The exporter's HTTP side: /metrics, /probe, /-/healthy, /-/ready and the status page at /.

A small threaded WSGI server, so a slow scraper never blocks another. /metrics only joins the
exposition pieces stored with the snapshot's results (collector.MetricsPage); /probe runs one
configured target on the scheduler's event loop and waits for it. TLS and basic auth come from an exporter-toolkit
web-config file.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import html
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import stackprobe

from .collector import GZIP_LEVEL, TEXT, Format, MetricsPage, join, negotiate
from .scheduler import Scheduler, next_result
from .webconfig import WebConfigSource, WebState

log = logging.getLogger("stackprobe.server")

StartResponse = Callable[..., object]


class ExporterApp:
    """The WSGI application; everything it needs is passed in, so tests can build one directly."""

    def __init__(self, metrics_page: MetricsPage, scheduler: Scheduler, loop: asyncio.AbstractEventLoop,
                 web: WebConfigSource | None = None):
        self.metrics_page = metrics_page
        self.scheduler = scheduler
        self.loop = loop
        self.web = web or WebConfigSource()
        self._routes = {
            "/": self._status_page,
            "/metrics": self._metrics,
            "/probe": self._probe,
            "/-/healthy": self._healthy,
            "/-/ready": self._ready,
        }

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        handler = self._routes.get(path)
        web = self.web.current()
        extra_headers = list(web.config.http_server_config.headers.items())

        def respond(status, headers, exc_info=None):
            return start_response(status, list(headers) + extra_headers, exc_info)

        if handler is None:
            return _text(respond, "404 Not Found", f"no such page: {path}\n")
        # /-/healthy stays open so container health checks work without credentials; it says
        # nothing but "OK".
        if path == "/-/healthy":
            return handler(environ, respond)
        if web.error is not None:
            return _text(respond, "500 Internal Server Error", "the web config file is invalid; see the exporter log\n")
        if web.auth.enabled and not self._authorised(web, environ):
            respond("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("WWW-Authenticate", 'Basic realm="stackprobe"')])
            return [b"Unauthorized\n"]
        return handler(environ, respond)

    @staticmethod
    def _authorised(web: WebState, environ: dict) -> bool:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return web.auth.check(user, password)

    def _metrics(self, environ: dict, respond: StartResponse) -> Iterable[bytes]:
        fmt = negotiate(environ.get("HTTP_ACCEPT", ""))
        compress = _accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        return _exposition(environ, respond, fmt, self.metrics_page.writes(fmt, gzip=compress), compress)

    def _healthy(self, environ: dict, respond: StartResponse) -> Iterable[bytes]:
        return _text(respond, "200 OK", "OK\n")

    def _ready(self, environ: dict, respond: StartResponse) -> Iterable[bytes]:
        if self.scheduler.ready():
            return _text(respond, "200 OK", "Ready\n")
        return _text(respond, "503 Service Unavailable", "Not ready: not every target has completed its first probe\n")

    def _probe(self, environ: dict, respond: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        name = (query.get("target") or [""])[0]
        config = self.scheduler.config
        target = config.by_name().get(name) if config else None
        if target is None and config and name in config.elsewhere:
            # 421 Misdirected Request: the right name, the wrong replica; say which one to ask.
            return _text(respond, "421 Misdirected Request",
                         f"target {name!r} is probed by shard {config.elsewhere[name]}, not by this replica; "
                         "ask that one (its stackprobe_shard_info says which it is)\n")
        if target is None:
            # Only configured targets: /probe must never become a proxy to arbitrary URLs.
            return _text(respond, "400 Bad Request", f"unknown target {name!r}: /probe only runs targets named in the config\n")
        future = asyncio.run_coroutine_threadsafe(self.scheduler.probe_now(target), self.loop)
        try:
            outcome, prober_name = future.result(timeout=target.timeout + 5)
        except TimeoutError:
            future.cancel()
            return _text(respond, "504 Gateway Timeout", f"probe of {name!r} did not finish\n")
        result = next_result(outcome, target, prober_name, None)
        if (query.get("debug") or [""])[0].lower() == "true":
            body = "Logs for the probe:\n" + "\n".join(result.log) + "\n\nMetrics that would have been returned:\n"
            return _text(respond, "200 OK", body + join([result.pieces], TEXT).decode())
        fmt = negotiate(environ.get("HTTP_ACCEPT", ""))
        body = join([result.pieces], fmt) + fmt.eof
        compress = _accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        return _exposition(environ, respond, fmt, [gzip.compress(body, GZIP_LEVEL) if compress else body], compress)

    def _status_page(self, environ: dict, respond: StartResponse) -> Iterable[bytes]:
        body = render_status_page(self.scheduler)
        respond("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body.encode()]


def _accepts_gzip(accept_encoding: str) -> bool:
    return "gzip" in (e.split(";")[0].strip() for e in accept_encoding.split(","))


def _exposition(environ: dict, respond: StartResponse, fmt: Format, writes: list[bytes], compressed: bool) -> list[bytes]:
    headers = [("Content-Type", fmt.content_type), ("Content-Length", str(sum(map(len, writes))))]
    if compressed:
        headers.append(("Content-Encoding", "gzip"))
    respond("200 OK", headers + [("Vary", "Accept, Accept-Encoding")])
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else writes


def _text(respond: StartResponse, status: str, body: str) -> list[bytes]:
    respond(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


def render_status_page(scheduler: Scheduler) -> str:
    """Plain server-rendered HTML: links, then one row per target with its latest result."""
    now = time.time()
    rows = []
    config = scheduler.config
    for target in config.targets if config else ():
        r = scheduler.snapshot.get(target.name)
        if r is None or r.finished_at is None:
            state, cls, duration, reason, age = "pending", "pending", "", "", ""
        else:
            state, cls = ("up", "ok") if r.success else ("down", "fail")
            duration, reason, age = f"{r.duration:.3f}s", r.reason or "", f"{now - r.finished_at:.0f}s ago"
        message = html.escape(r.message) if r is not None and not r.success else ""
        name = html.escape(target.name)
        rows.append(
            f'<tr class="{cls}" data-target="{name}"><td>{name}</td><td>{html.escape(target.service)}</td>'
            f"<td>{config.prober_of(target)}</td><td class=\"state\">{state}</td><td>{duration}</td>"
            f'<td class="reason">{html.escape(reason)}</td><td class="message">{message}</td><td>{age}</td>'
            f'<td><a href="/probe?target={name}&amp;debug=true">debug probe</a></td></tr>'
        )
    return _PAGE.format(version=stackprobe.__version__, source=html.escape(config.source if config else ""),
                        count=len(rows), rows="\n".join(rows))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stackprobe</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }}
td.message {{ color: #57606a; font-size: .9em; white-space: normal; }} tr.ok .state {{ color: #1a7f37; }} tr.fail .state {{ color: #cf222e; font-weight: bold; }} tr.pending .state {{ color: #9a6700; }}
</style></head>
<body>
<h1>stackprobe {version}</h1>
<p><a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a> ·
Config: <code>{source}</code></p>
<h2>Targets ({count})</h2>
<table id="targets">
<thead><tr><th>Target</th><th>Service</th><th>Prober</th><th>State</th><th>Duration</th><th>Error reason</th><th>Last error</th><th>Result age</th><th></th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


class _QuietHandler(WSGIRequestHandler):
    #: Seconds a client may stay silent before its connection is dropped (slow-loris guard).
    timeout = 30
    #: Buffered: the status line, each header and the body go out in one send when the response
    #: ends, not one send each (socketserver's default is unbuffered).
    wbufsize = -1

    def log_message(self, format: str, *args) -> None:
        log.debug("http %s %s", self.address_string(), format % args)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    #: The listen backlog. socketserver's default of 5 made 200 simultaneous scrapers wait for
    #: SYN retransmits (seconds) or time out; like Go's net.Listen, ask for the most the kernel
    #: allows (it clamps this to net.core.somaxconn).
    request_queue_size = socket.SOMAXCONN
    web: WebConfigSource

    def handle_error(self, request, client_address) -> None:
        # A port scanner, a plain-HTTP client on the TLS port or an idle client cut off: one
        # debug line, not a traceback in the middle of the logfmt log.
        log.debug("http connection from %s ended with an error", client_address[0], exc_info=True)

    def get_request(self):
        sock, addr = super().get_request()
        tls_context = self.web.current().tls_context  # a rotated certificate is used from the next connection
        if tls_context is not None:
            # The handshake happens in the request's own thread, on first read, so a client that
            # never finishes it cannot stall the accept loop.
            sock = tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:18947`, `0.0.0.0:18947`, `[::1]:18947` or `localhost:18947` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {address!r} is not HOST:PORT with a port from 0 to 65535")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"listen address {address!r}: write an IPv6 address in brackets, e.g. [::1]:18947")
    return host.removeprefix("[").removesuffix("]"), int(port)


def serve(app: ExporterApp, address: str) -> _ThreadingServer:
    """Bind and start serving in a daemon thread; returns the server (for its port and shutdown)."""
    server = bind(app, address)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def bind(app: ExporterApp, address: str) -> _ThreadingServer:
    """The listening server, not yet accepting connections."""
    host, port = parse_listen_address(address)
    server_class = type("Server", (_ThreadingServer,), {})
    if ":" in host:
        server_class.address_family = socket.AF_INET6
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    server.web = app.web
    return server
