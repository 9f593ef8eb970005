"""The web side as exporter-toolkit does it: the web config followed as it changes (certificate
rotation, removed users), bcrypt hashes and header values checked at load, over-long passwords a
401, and a listen backlog that holds hundreds of simultaneous scrapers."""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import httpx
import pytest
import trustme

from stackprobe.configsource import ConfigError
from stackprobe.exporter.collector import MetricsPage
from stackprobe.exporter.server import ExporterApp, bind
from stackprobe.exporter.snapshot import Snapshot
from stackprobe.exporter.webconfig import WebConfigSource, load_web_config

CONFIG = "backup:\n  - {name: b, service: s, path: /nonexistent, globs: ['*.sql'], interval: 1h}\n"


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def _touch_later(*paths: Path) -> None:
    """Give rewritten files an mtime surely different from the previous version's."""
    later = time.time() + 5
    for p in paths:
        os.utime(p, (later, later))


class WebFiles:
    def __init__(self, directory: Path):
        self.dir = directory
        self.ca = trustme.CA()
        self.ca.cert_pem.write_to_path(directory / "ca.pem")
        self.path = directory / "web.yml"

    def issue(self) -> bytes:
        """A new server certificate in cert.pem/key.pem; returns its DER."""
        cert = self.ca.issue_cert("127.0.0.1")
        cert.private_key_pem.write_to_path(self.dir / "key.pem")
        cert.cert_chain_pems[0].write_to_path(self.dir / "cert.pem")
        _touch_later(self.dir / "key.pem", self.dir / "cert.pem")
        return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())

    def write(self, users: dict[str, str], tls: bool = True, extra: str = "") -> None:
        text = "".join(f"  {u}: '{h}'\n" for u, h in users.items())
        tls_text = f"tls_server_config:\n  cert_file: {self.dir / 'cert.pem'}\n  key_file: {self.dir / 'key.pem'}\n"
        self.path.write_text((tls_text if tls else "") + (f"basic_auth_users:\n{text}" if users else "") + extra)
        _touch_later(self.path)

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.dir / "ca.pem"))


def _served_certificate(port: int, context: ssl.SSLContext) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)


def test_certificate_rotation_and_user_removal_take_effect_without_a_restart(start_exporter, tmp_path):
    files = WebFiles(tmp_path)
    first = files.issue()
    files.write({"alice": _hash("a-pass"), "bob": _hash("b-pass")})
    exporter = start_exporter(CONFIG, WebConfigSource(files.path))
    url = f"https://127.0.0.1:{exporter.port}/metrics"
    assert _served_certificate(exporter.port, files.context()) == first
    assert httpx.get(url, verify=files.context(), auth=("alice", "a-pass")).status_code == 200

    second = files.issue()  # rotated in place, web config untouched
    assert second != first
    assert _served_certificate(exporter.port, files.context()) == second

    files.write({"bob": _hash("b-pass")})  # alice removed
    assert httpx.get(url, verify=files.context(), auth=("alice", "a-pass")).status_code == 401
    assert httpx.get(url, verify=files.context(), auth=("bob", "b-pass")).status_code == 200

    files.write({"bob": "$2b$10$not-a-hash"})  # broken: refuse rather than serve the replaced config
    assert httpx.get(url, verify=files.context(), auth=("bob", "b-pass")).status_code == 500
    assert httpx.get(url.replace("/metrics", "/-/healthy"), verify=files.context()).status_code == 200
    files.write({"bob": _hash("b-pass")})
    assert httpx.get(url, verify=files.context(), auth=("bob", "b-pass")).status_code == 200


@pytest.mark.parametrize(("value", "words"), [
    ("$2b$10$short", "not a bcrypt hash"),
    ("$2b$99$" + "a" * 53, "not a bcrypt hash"),
    ("$2b$10$" + "a" * 52 + "!", "not a bcrypt hash"),
    ("$2x$10$" + "a" * 53, "not a bcrypt hash"),
    ("$2b$10$" + "a" * 53, "not a bcrypt hash"),  # the right shape, but a salt bcrypt refuses
])
def test_hashes_that_only_look_like_bcrypt_are_load_errors(tmp_path, value, words):
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  ok: '{_hash('x')}'\n  bad: '{value}'\n")
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    assert f"{path}:3: basic_auth_users.bad: {words}" in str(err.value)


@pytest.mark.parametrize(("headers", "line", "words"), [
    ('    X-Frame-Options: "deny\\r\\nSet-Cookie: session=stolen"\n', 3, "no line breaks"),
    ("    X-Frame-Options: allow\n", 2, "expected one of deny, sameorigin"),
    ('    Content-Security-Policy: "default-src \'self\'\\r\\nSet-Cookie: a=b"\n', 3, "no line breaks"),
    ("    Set-Cookie: a=b\n", 3, "HTTP header 'Set-Cookie' can not be configured"),
])
def test_header_values_are_validated(tmp_path, headers, line, words):
    path = tmp_path / "web.yml"
    path.write_text("http_server_config:\n  headers:\n" + headers)
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    assert f"{path}:{line}: http_server_config.headers" in str(err.value) and words in str(err.value), str(err.value)


def test_a_password_longer_than_bcrypt_reads_is_a_401_not_a_500(start_exporter, tmp_path):
    files = WebFiles(tmp_path)
    files.write({"alice": _hash("a-pass")}, tls=False)
    exporter = start_exporter(CONFIG, WebConfigSource(files.path))
    for user in ("alice", "nobody"):
        response = exporter.get("/metrics", auth=(user, "x" * 73))
        assert response.status_code == 401, response.text
    assert exporter.get("/metrics", auth=("alice", "a-pass")).status_code == 200


class _NoScheduler:
    config = None


def test_the_listen_backlog_holds_hundreds_of_simultaneous_connections():
    """300 clients connect while the server is not accepting (as when every handler thread is
    busy): with socketserver's backlog of 5 the kernel drops the SYNs beyond it; now every
    handshake completes, and each client then gets its answer."""
    app = ExporterApp(MetricsPage(Snapshot(), dict), _NoScheduler(), None)
    server = bind(app, "127.0.0.1:0")  # bound, not accepting
    port = server.server_address[1]
    clients, serving = [], False
    try:
        with selectors.DefaultSelector() as sel:
            for _ in range(300):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                sel.register(s, selectors.EVENT_WRITE)
                clients.append(s)
            pending = set(clients)
            deadline = time.monotonic() + 20
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1):
                    pending.discard(key.fileobj)
                    sel.unregister(key.fileobj)
        assert not pending, f"{len(pending)} of 300 connections not accepted by the kernel"
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in clients)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        serving = True

        def ask(s: socket.socket) -> bytes:
            s.setblocking(True)
            s.settimeout(60)
            s.sendall(b"GET /-/healthy HTTP/1.0\r\nHost: x\r\n\r\n")
            return s.recv(64)

        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(ask, clients))
        assert all(a.startswith(b"HTTP/1.0 200") for a in answers)
    finally:
        for s in clients:
            s.close()
        if serving:
            server.shutdown()
        server.server_close()
