"""The HTTP prober against real loopback HTTP(S) servers, through a real exporter."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import subprocess
import sys
import threading
import tracemalloc
from typing import Any

import pytest
import yaml
from prometheus_client.utils import floatToGoString

from fixtures.exporter import RunningExporter, Series, parse_scrape
from fixtures.http_servers import (BIG_BODY_BYTES, BOMB_BYTES, JSON_BODY, PASSWORD, SESSION_COOKIE, USERNAME, HttpPeer,
                                   TlsPeer, encoded_bodies)
from fixtures.net import free_port
from fixtures.probing import probe_result
from stackprobe.configsource import ConfigError
from stackprobe.exporter import config as config_mod
from stackprobe.exporter import metrics
from stackprobe.exporter.probers import http as http_prober
from stackprobe.exporter.probers.http import PHASES, BodyBuffer, search_body

P = metrics.PREFIX


def config_text(*targets: dict[str, Any]) -> str:
    """Exporter YAML with the given http targets; a long interval keeps background probes rare."""
    return yaml.safe_dump({"http": [{"service": "app", "interval": "1h", **t} for t in targets]})


def probe(exporter: RunningExporter, name: str) -> Series:
    response = exporter.get(f"/probe?target={name}")
    assert response.status_code == 200, response.text
    return parse_scrape(response.text)


def value(series: Series, name: str, **labels: str) -> float | None:
    matches = [v for (n, ls), v in series.items() if n == name and set(labels.items()) <= ls]
    assert len(matches) <= 1, f"{name}{labels} matches {len(matches)} series"
    return matches[0] if matches else None


def errors(series: Series) -> dict[str, float]:
    """The non-zero error counters by reason."""
    return {dict(ls)["reason"]: v for (n, ls), v in series.items() if n == P + "probe_errors_total" and v}


def assert_phases(series: Series) -> dict[str, float]:
    phases = {p: value(series, P + "http_phase_duration_seconds", phase=p) for p in PHASES}
    assert all(v is not None and v >= 0 for v in phases.values()), phases
    return phases


def test_json_endpoint(start_exporter, http_server: HttpPeer) -> None:
    exporter = start_exporter(config_text({
        "name": "status", "url": http_server.url + "/json", "body_regex": r'"is_active":\s*true',
        "json_values": [{"path": "is_active"}, {"path": "count"}, {"path": "data.items.0.count"}],
    }))
    s = probe(exporter, "status")
    assert errors(s) == {}
    assert value(s, P + "probe_success") == 1
    assert value(s, P + "http_up") == 1
    assert value(s, P + "http_status_code") == 200
    assert value(s, P + "http_response_size_bytes") == len(JSON_BODY)
    assert value(s, P + "http_redirects") == 0
    assert value(s, P + "http_json_value", path="is_active") == 1
    assert value(s, P + "http_json_value", path="count") == 3
    assert value(s, P + "http_json_value", path="data.items.0.count") == 7
    assert value(s, P + "http_version_info", http_version="HTTP/1.1", tls_version="") == 1
    assert value(s, P + "http_cert_earliest_not_after_timestamp_seconds") is None
    assert assert_phases(s)["tls"] == 0
    assert value(s, P + "http_request_duration_seconds_count") == 1
    assert {r.method for r in http_server.requests} == {"GET"}
    assert {r.headers["connection"] for r in http_server.requests} == {"close"}  # one request per connection


@pytest.mark.parametrize(("valid", "up", "reasons"), [(None, 0, {"status": 1}), ([500, 503], 1, {})])
def test_status_codes(start_exporter, http_server: HttpPeer, valid, up, reasons) -> None:
    extra = {"valid_status_codes": valid} if valid else {}
    exporter = start_exporter(config_text({"name": "err", "url": http_server.url + "/status/500", **extra}))
    s = probe(exporter, "err")
    assert value(s, P + "http_status_code") == 500  # exported even when unexpected
    assert value(s, P + "http_up") == up
    assert value(s, P + "http_response_size_bytes") == len(b"status 500\n")
    assert errors(s) == reasons
    assert value(s, P + "http_request_duration_seconds_count") == 1  # answered, so observed


def test_json_value_missing_or_not_a_number(start_exporter, http_server: HttpPeer) -> None:
    exporter = start_exporter(config_text({
        "name": "status", "url": http_server.url + "/json",
        "json_values": [{"path": "count"}, {"path": "data.items.5.count"}, {"path": "name"}],
    }))
    response = exporter.get("/probe?target=status&debug=true")
    s = parse_scrape(response.text.split("Metrics that would have been returned:\n", 1)[1])
    assert errors(s) == {"body": 1}
    assert value(s, P + "http_up") == 0
    assert value(s, P + "http_status_code") == 200
    assert value(s, P + "http_json_value", path="count") == 3  # the values that resolve are kept
    assert value(s, P + "http_json_value", path="data.items.5.count") is None
    assert value(s, P + "http_json_value", path="name") is None
    assert "data.items.5.count: no '5'" in response.text and "name: str is not a number" in response.text


def test_body_regex_mismatch(start_exporter, http_server: HttpPeer) -> None:
    exporter = start_exporter(config_text({"name": "status", "url": http_server.url + "/json", "body_regex": '"is_active": false'}))
    s = probe(exporter, "status")
    assert errors(s) == {"body": 1}
    assert (value(s, P + "http_up"), value(s, P + "http_status_code")) == (0, 200)


def test_trickling_server_times_out(start_exporter, http_server: HttpPeer) -> None:
    exporter = start_exporter(config_text({"name": "slow", "url": http_server.url + "/slow", "timeout": "1s"}))
    s = probe(exporter, "slow")
    assert errors(s) == {"timeout": 1}
    assert value(s, P + "http_up") == 0
    assert value(s, P + "http_status_code") == 200  # the headers came; the body never finished
    assert value(s, P + "http_response_size_bytes") is None
    assert_phases(s)
    assert value(s, P + "http_request_duration_seconds_count") == 1


def test_connection_closed_mid_response(start_exporter, http_server: HttpPeer) -> None:
    exporter = start_exporter(config_text({"name": "cut", "url": http_server.url + "/truncated"}))
    s = probe(exporter, "cut")
    assert errors(s) == {"connect": 1}
    assert (value(s, P + "http_up"), value(s, P + "http_status_code")) == (0, 200)


def test_redirect_chain(start_exporter, http_server: HttpPeer) -> None:
    exporter = start_exporter(config_text({"name": "moved", "url": http_server.url + "/redirect/2",
                                           "json_values": [{"path": "count"}]}))
    s = probe(exporter, "moved")
    assert errors(s) == {}
    assert value(s, P + "http_redirects") == 2
    assert value(s, P + "http_status_code") == 200
    assert value(s, P + "http_json_value", path="count") == 3
    assert {"/redirect/2", "/redirect/1", "/redirect/0"} <= {r.path for r in http_server.requests}


def test_a_session_cookie_set_by_a_redirect_is_sent_on_and_never_shown(start_exporter, http_server: HttpPeer, caplog) -> None:
    """login -> session: the second hop requires the cookie the first set (as blackbox_exporter's
    per-probe jar); the cookie is in no log, page or metric, and the next probe starts without it."""
    caplog.set_level(logging.DEBUG)
    exporter = start_exporter(config_text({"name": "login", "url": http_server.url + "/login", "json_values": [{"path": "count"}]}))
    for _ in range(2):
        s = probe(exporter, "login")
        assert errors(s) == {}
        assert (value(s, P + "http_redirects"), value(s, P + "http_json_value", path="count")) == (1, 3)
    logins = [r for r in http_server.requests if r.path == "/login"]
    assert len(logins) >= 2 and not any("cookie" in r.headers for r in logins)  # a fresh jar each probe
    assert {r.headers.get("cookie") for r in http_server.requests if r.path == "/session"} == {f"session={SESSION_COOKIE}"}
    pages = [exporter.get(path).text for path in ("/probe?target=login&debug=true", "/", "/metrics")]
    assert "Logs for the probe" in pages[0]
    assert not [text for text in (*pages, caplog.text) if SESSION_COOKIE in text]


def test_a_cookie_never_goes_to_another_host(http_server: HttpPeer) -> None:
    """127.0.0.1 sets the cookie, gets it back on its next hop, then redirects to localhost (same
    address, another host name): the cookie stays with its host, so the last hop is refused."""
    other = HttpPeer()
    try:
        result = probe_target(url=f"{http_server.url}/login//elsewhere/http://localhost:{other.port}/session")
        assert (result.success, result.reason, result.samples[(P + "http_status_code", ())]) == (False, "status", 401)
        assert [r.headers.get("cookie") for r in http_server.requests] == [None, f"session={SESSION_COOKIE}"]
        [foreign] = other.requests
        assert foreign.path == "/session" and "cookie" not in foreign.headers
        assert SESSION_COOKIE not in result.message
    finally:
        other.close()


def test_redirect_loop_fails_with_status(start_exporter, http_server: HttpPeer) -> None:
    exporter = start_exporter(config_text({"name": "loop", "url": http_server.url + "/loop", "max_redirects": 3}))
    s = probe(exporter, "loop")
    assert errors(s) == {"status": 1}
    assert value(s, P + "http_redirects") == 3
    assert value(s, P + "http_status_code") == 302
    assert value(s, P + "http_up") == 0


@pytest.mark.parametrize(("valid", "reasons"), [(None, {"status": 1}), ([302], {})])
def test_redirect_not_followed(start_exporter, http_server: HttpPeer, valid, reasons) -> None:
    extra = {"valid_status_codes": valid} if valid else {}
    exporter = start_exporter(config_text({"name": "moved", "url": http_server.url + "/redirect/1", "follow_redirects": False, **extra}))
    s = probe(exporter, "moved")
    assert errors(s) == reasons
    assert (value(s, P + "http_status_code"), value(s, P + "http_redirects")) == (302, 0)


API_KEY = "hunter3-api-key-secret"
FILE_TOKEN = "hunter3-file-token-secret"


def test_post_with_headers_body_and_basic_auth(start_exporter, http_server: HttpPeer, monkeypatch, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HTTP_TEST_PASSWORD", PASSWORD)
    monkeypatch.setenv("HTTP_WRONG_PASSWORD", PASSWORD + "-wrong")
    monkeypatch.setenv("HTTP_TEST_API_KEY", API_KEY)
    token_file = tmp_path / "token"
    token_file.write_text(FILE_TOKEN + "\n")
    common = {"url": http_server.url + "/auth", "method": "POST", "headers": {"X-Probe": "stackprobe"},
              "headers_from": {"X-Api-Key": {"env": "HTTP_TEST_API_KEY"}, "X-Token": {"file": str(token_file)}},
              "body": "ping", "username": USERNAME}
    exporter = start_exporter(config_text(
        {"name": "ok", **common, "password_env": "HTTP_TEST_PASSWORD"},
        {"name": "wrong", **common, "password_env": "HTTP_WRONG_PASSWORD"},
    ))
    assert errors(probe(exporter, "ok")) == {}
    # Background probes of both targets may have run too: check every request, and that one
    # carried the right credentials.
    assert {(r.method, r.body, r.headers["x-probe"], r.headers["x-api-key"], r.headers["x-token"]) for r in http_server.requests} == {
        ("POST", b"ping", "stackprobe", API_KEY, FILE_TOKEN)}
    assert "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode() in {r.headers["authorization"] for r in http_server.requests}
    for name in ("ok", "wrong"):
        text = exporter.get(f"/probe?target={name}&debug=true").text
        assert "Logs for the probe" in text
        assert not {PASSWORD, API_KEY, FILE_TOKEN} & {w for w in (PASSWORD, API_KEY, FILE_TOKEN) if w in text}
    s = probe(exporter, "wrong")
    assert (errors(s), value(s, P + "http_status_code")) == ({"status": 1}, 401)
    for text in (exporter.get("/").text, exporter.get("/metrics").text, caplog.text):
        assert not [w for w in (PASSWORD, API_KEY, FILE_TOKEN) if w in text]


INJECTED = "hunter3-secret\r\nX-Evil: 1"


@pytest.mark.parametrize(("yaml_lines", "problem"), [
    ('headers: {X-Api-Key: "hunter3-secret\\r\\nX-Evil: 1"}', "5: http[0].headers.X-Api-Key: a header value may only hold visible ASCII"),
    ('headers: {X-Api-Key: "hunter3-secret\\nX-Evil: 1"}', "5: http[0].headers.X-Api-Key: a header value may only hold visible ASCII"),
    ('headers: {X-Api-Key: "hunter3-secr\u00e9t"}', "5: http[0].headers.X-Api-Key: a header value may only hold visible ASCII"),
    ('headers: {"X-Api-Key:": v}', "5: http[0].headers.X-Api-Key:: 'X-Api-Key:' is not a valid HTTP header name"),
    ("headers_from: {X-Api-Key: {env: HTTP_INJECTED_KEY}}", "5: http[0].headers_from.X-Api-Key: a header value may only hold visible ASCII"),
    ("headers_from: {X-Api-Key: {}}", "5: http[0].headers_from.X-Api-Key: set env or file"),
    ("headers: {x-api-key: a}\n    headers_from: {X-Api-Key: {env: HOME}}", "2: http[0]: header x-api-key is set in both headers and headers_from"),
])
def test_header_injection_is_refused_at_load_with_file_line_exit_2(tmp_path, yaml_lines: str, problem: str) -> None:
    """Issue 14: CR/LF in a header value passed check-config; the probe then logged the secret."""
    path = tmp_path / "stackprobe.yml"
    path.write_text(f"http:\n  - name: t\n    service: s\n    url: http://127.0.0.1:1/\n    {yaml_lines}\n")
    proc = subprocess.run([sys.executable, "-m", "stackprobe.exporter", "check-config", str(path)], capture_output=True,
                          text=True, env={**os.environ, "HTTP_INJECTED_KEY": INJECTED})
    assert proc.returncode == 2, proc.stdout
    assert f"error: {path}:{problem}" in proc.stderr, proc.stderr
    assert "hunter3-secret" not in proc.stderr


def test_a_request_the_http_library_refuses_fails_without_quoting_it(http_server: HttpPeer) -> None:
    """Should a bad value slip past the load checks, h11's LocalProtocolError quotes it: the probe
    message must not (it reaches the log, /probe?debug=true and the status page)."""
    target = config_mod.parse("<test>", config_text({"name": "t", "url": http_server.url + "/json"})).targets[0]
    target = target.model_copy(update={"headers": {"X-Api-Key": INJECTED}})  # as if unvalidated
    result = asyncio.run(probe_result(target, "http"))
    assert (result.success, result.reason) == (False, "internal"), result.message
    assert "LocalProtocolError" in result.message
    assert "hunter3" not in result.message + "\n".join(result.log)
    assert not [r for r in http_server.requests if "x-evil" in r.headers]


def test_a_headers_from_file_with_a_line_break_fails_with_io_and_is_not_sent(http_server: HttpPeer, tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(INJECTED + "\n")  # the trailing newline is stripped; the inner CR/LF is not
    result = probe_target(url=http_server.url + "/json", headers_from={"X-Api-Key": {"file": str(key_file)}})
    assert (result.success, result.reason) == (False, "io"), result.message
    assert "headers_from X-Api-Key: a header value may only hold" in result.message
    assert "hunter3" not in result.message + "\n".join(result.log)
    assert not [r for r in http_server.requests if "x-api-key" in r.headers]


def test_https_verified_with_ca_file(start_exporter, https_server: TlsPeer) -> None:
    exporter = start_exporter(config_text({"name": "tls", "url": https_server.server.url + "/json",
                                           "tls": {"ca_file": str(https_server.ca_file)}}))
    s = probe(exporter, "tls")
    assert errors(s) == {}
    assert value(s, P + "http_up") == 1
    assert value(s, P + "http_cert_earliest_not_after_timestamp_seconds") == https_server.not_after
    assert value(s, P + "http_version_info", http_version="HTTP/1.1", tls_version=https_server.tls_version) == 1
    assert_phases(s)
    # The whole served chain was read (leaf and intermediate), not only the leaf.
    assert f"{https_server.chain_length} certificate(s) served" in exporter.get("/probe?target=tls&debug=true").text


def test_https_untrusted_ca_fails_with_tls(start_exporter, https_server: TlsPeer) -> None:
    exporter = start_exporter(config_text({"name": "tls", "url": https_server.server.url + "/json",
                                           "tls": {"ca_file": str(https_server.untrusted_ca_file)}}))
    s = probe(exporter, "tls")
    assert errors(s) == {"tls": 1}
    assert (value(s, P + "http_up"), value(s, P + "http_status_code")) == (0, 0)
    assert value(s, P + "http_request_duration_seconds_count") is None  # no request was sent


def test_https_without_verification_still_exports_expiry(start_exporter, https_server: TlsPeer) -> None:
    exporter = start_exporter(config_text({"name": "tls", "url": https_server.server.url + "/json", "tls": {"verify": False}}))
    s = probe(exporter, "tls")
    assert errors(s) == {}
    assert value(s, P + "http_cert_earliest_not_after_timestamp_seconds") == https_server.not_after


def test_ca_file_gone_after_start(start_exporter, https_server: TlsPeer, tmp_path) -> None:
    ca_file = tmp_path / "rotated-ca.pem"
    ca_file.write_bytes(https_server.ca_file.read_bytes())
    exporter = start_exporter(config_text({"name": "tls", "url": https_server.server.url + "/json", "tls": {"ca_file": str(ca_file)}}))
    ca_file.unlink()
    s = probe(exporter, "tls")
    assert errors(s) == {"io": 1}
    assert value(s, P + "http_request_duration_seconds_count") is None


@pytest.mark.parametrize("reason", ["connect", "dns"])
def test_unreachable(start_exporter, reason: str) -> None:
    # Nothing listens on the free port; `.invalid` never resolves (RFC 6761).
    host = f"127.0.0.1:{free_port()}" if reason == "connect" else "stackprobe-test.invalid"
    exporter = start_exporter(config_text({"name": "gone", "url": f"http://{host}/"}))
    s = probe(exporter, "gone")
    assert errors(s) == {reason: 1}
    assert (value(s, P + "http_up"), value(s, P + "http_status_code")) == (0, 0)
    assert value(s, P + "http_request_duration_seconds_count") is None


def test_histogram_counts_every_probe(start_exporter, http_server: HttpPeer) -> None:
    """Each failed probe adds one error and one observation, so both counters move together."""
    exporter = start_exporter(config_text({"name": "err", "url": http_server.url + "/status/503", "interval": "1s"}))
    exporter.wait_for_probe("err", count=3)
    s = exporter.scrape()
    count = value(s, P + "http_request_duration_seconds_count")
    assert count >= 3 and count == value(s, P + "probe_errors_total", reason="status")
    buckets = [value(s, P + "http_request_duration_seconds_bucket", le=floatToGoString(b)) for b in metrics.family("http_request_duration_seconds").buckets]
    assert buckets == sorted(buckets) and value(s, P + "http_request_duration_seconds_bucket", le="+Inf") == count
    assert value(s, P + "http_request_duration_seconds_sum") > 0


def test_big_body_is_streamed_not_held(http_server: HttpPeer) -> None:
    target = config_mod.parse("<test>", config_text(
        {"name": "big", "url": http_server.url + "/big", "timeout": "60s", "max_body_bytes": 1024 * 1024})).targets[0]
    tracemalloc.start()
    try:
        result = asyncio.run(probe_result(target, "http"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.success, result.reason) == (True, None)
    assert result.samples[(P + "http_response_size_bytes", ())] == BIG_BODY_BYTES
    assert peak < 20 * 1024 * 1024, f"peak {peak} bytes traced while reading a {BIG_BODY_BYTES}-byte body"


def test_body_buffer_keeps_only_the_limit() -> None:
    buffer = BodyBuffer(limit=100)
    for _ in range(7):
        buffer.feed(b"z" * 33)
    assert (buffer.size, bytes(buffer.kept), buffer.truncated) == (231, b"z" * 100, True)
    assert "first 100 of 231 bytes" in buffer.note()


def test_probe_endpoint_runs_only_configured_targets(start_exporter, http_server: HttpPeer) -> None:
    exporter = start_exporter(config_text({"name": "a", "url": http_server.url + "/json"},
                                          {"name": "b", "url": http_server.url + "/status/500"}))
    s = probe(exporter, "a")
    assert {dict(ls).get("target") for (_, ls) in s} == {"a"}
    debug = exporter.get("/probe?target=a&debug=true").text
    assert f"GET {http_server.url}/json -> 200 HTTP/1.1" in debug and "probe succeeded" in debug
    assert exporter.get("/probe?target=nope").status_code == 400
    assert exporter.get("/probe", params={"target": "http://example.com"}).status_code == 400
    assert exporter.get("/probe", params={"target": http_server.url + "/json?canary"}).status_code == 400
    assert not [r for r in http_server.requests if "canary" in r.path]


@pytest.mark.parametrize(("target", "problem"), [
    ({"url": "ftp://127.0.0.1/"}, "http[0].url: the URL must be http:// or https://"),
    ({"url": "http://user:secret@127.0.0.1/"}, "http[0].url: credentials in the URL are not allowed; use username and password_env/password_file"),
    ({"url": "http://127.0.0.1/", "body_regex": "("}, "http[0].body_regex: invalid regular expression"),
    ({"url": "http://127.0.0.1/", "password_env": "HOME"}, "http[0]: password_env/password_file need a username"),
    ({"url": "http://127.0.0.1/", "json_values": [{"path": "a"}, {"path": "a"}]}, "http[0]: json_values lists a path twice"),
    ({"url": "http://127.0.0.1/", "json_values": [{"path": "a..b"}]}, "http[0].json_values[0].path:"),
])
def test_config_errors(target: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_mod.parse("c.yaml", config_text({"name": "t", **target}))
    assert problem in str(e.value)
    assert "secret" not in str(e.value)


def probe_target(**target: Any):
    """One probe of one target, in this process (no exporter): for checks of a single result."""
    parsed = config_mod.parse("<test>", config_text({"name": "t", **target})).targets[0]
    return asyncio.run(probe_result(parsed, "http"))


def test_a_runaway_body_regex_ends_at_the_timeout_and_never_blocks_metrics(start_exporter, http_server: HttpPeer, monkeypatch) -> None:
    """Issue 14: a backtracking regex on a long line stalled every /metrics for 60+ s."""
    # The search holds until the test has its scrape: if it ran on the event loop, no scrape
    # could be answered meanwhile and the wait would run out instead of being released.
    searching, scraped_meanwhile = threading.Event(), threading.Event()
    released_by_the_scrape: list[bool] = []

    def held_search(*args: Any) -> bool:
        searching.set()
        released_by_the_scrape.append(scraped_meanwhile.wait(60))
        return search_body(*args)
    monkeypatch.setattr(http_prober, "search_body", held_search)
    exporter = start_exporter(config_text({"name": "regex", "url": http_server.url + "/text/30000",
                                           "body_regex": "(x+x+)+y", "timeout": "2s"}))
    outcome: dict[str, Any] = {}
    prober = threading.Thread(target=lambda: outcome.setdefault("probe", probe(exporter, "regex")))
    prober.start()
    assert searching.wait(60), "the body_regex search never started"
    scraped = exporter.get("/metrics")
    scraped_meanwhile.set()
    prober.join(60)
    assert scraped.status_code == 200 and released_by_the_scrape[0]
    s = outcome["probe"]
    assert errors(s) == {"timeout": 1}
    assert (value(s, P + "http_up"), value(s, P + "http_status_code")) == (0, 200)


@pytest.mark.parametrize(("name", "says"), [
    ("deep-json", "nested too deeply"),
    ("deep-json-small", "nested too deeply"),
    ("float-overflow", "n: the number is too large"),
    ("long-number", "the body is not JSON"),
])
def test_hostile_json_bodies_fail_with_body(http_server: HttpPeer, name: str, says: str) -> None:
    result = probe_target(url=http_server.url + f"/hostile/{name}", json_values=[{"path": "n"}])
    assert (result.success, result.reason) == (False, "body"), result.message
    assert says in result.message


def test_a_gzip_bomb_is_decoded_in_bounded_memory(http_server: HttpPeer) -> None:
    """max_body_bytes bounds what is decoded at once, not only what is kept."""
    encoded_bodies()  # built before tracing: the fixture's own memory is not the prober's
    tracemalloc.start()
    try:
        result = probe_target(url=http_server.url + "/encoded/bomb", timeout="60s", max_body_bytes=1024, body_regex="^\\x00+$")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.success, result.reason) == (True, None), result.message
    assert result.samples[(P + "http_response_size_bytes", ())] == BOMB_BYTES
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes traced while decoding a {BOMB_BYTES}-byte bomb"


@pytest.mark.parametrize(("name", "says"), [
    ("stacked", "stacks encodings"),
    ("broken", "not valid gzip data"),
    ("br", "'br' is not supported"),
])
def test_hostile_content_encodings_fail_with_body(http_server: HttpPeer, name: str, says: str) -> None:
    result = probe_target(url=http_server.url + f"/encoded/{name}")
    assert (result.success, result.reason) == (False, "body"), result.message
    assert says in result.message
    assert result.samples[(P + "http_status_code", ())] == 200


def test_configured_headers_and_credentials_stay_with_the_configured_origin(http_server: HttpPeer, monkeypatch) -> None:
    other = HttpPeer()
    try:
        monkeypatch.setenv("HTTP_TEST_PASSWORD", PASSWORD)
        monkeypatch.setenv("HTTP_TEST_TOKEN", "token-for-the-configured-host-only")
        secret_headers = {"X-Api-Key": "key-for-the-configured-host-only", "Cookie": "session=abc"}
        own = dict(headers=secret_headers, headers_from={"X-Token": {"env": "HTTP_TEST_TOKEN"}},
                   username=USERNAME, password_env="HTTP_TEST_PASSWORD")
        result = probe_target(url=http_server.url + "/redirect/1", **own)
        assert result.success, result.message
        same_origin = [r for r in http_server.requests if r.path in ("/redirect/1", "/redirect/0")]
        assert len(same_origin) == 2 and all(r.headers["x-api-key"] == secret_headers["X-Api-Key"] for r in same_origin)
        assert all("authorization" in r.headers and "x-token" in r.headers for r in same_origin)

        result = probe_target(url=f"{http_server.url}/elsewhere/{other.url}/json", **own)
        assert result.success, result.message
        [foreign] = other.requests
        assert foreign.path == "/json"
        assert {"x-api-key", "cookie", "x-token", "authorization"}.isdisjoint(foreign.headers)
    finally:
        other.close()


def test_a_tls_handshake_that_never_completes_is_timeout(silent_listener) -> None:
    result = probe_target(url=f"https://127.0.0.1:{silent_listener.port}/", timeout="500ms")
    assert (result.success, result.reason) == (False, "timeout"), result.message
    assert result.samples[(P + "http_status_code", ())] == 0


def test_the_body_search_itself_stops_at_its_time_limit() -> None:
    """The worker thread ends too (a thread cannot be killed): regex's own timeout= stops it."""
    with pytest.raises(TimeoutError):
        search_body("(x+x+)+y", b"x" * 30000, "utf-8", 0.2)
    assert search_body('"status": *"ok"', b'{"status": "ok"}', "utf-8", 1.0)
    assert search_body("ok", b"ok", "rot13", 1.0)  # a server's charset naming a non-text codec


def test_a_peer_that_does_not_speak_http_is_connect() -> None:
    """A TCP peer that answers something else (an SSH banner) carries no HTTP answer."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\nProtocol mismatch.\r\n")
    threading.Thread(target=answer, daemon=True).start()
    try:
        result = probe_target(url=f"http://127.0.0.1:{listener.getsockname()[1]}/")
    finally:
        listener.close()
    assert (result.success, result.reason) == (False, "connect"), result.message
    assert "RemoteProtocolError" in result.message


def test_redirect_rules() -> None:
    """httpx's rules, kept by the prober's own redirect handling: 303 (and 302, and 301 after a
    POST) become a GET without the body; Authorization survives only the same origin or an
    http -> https upgrade of the host; configured headers only the same origin."""
    import httpx

    from stackprobe.exporter.probers.base import ProbeError
    from stackprobe.exporter.probers.http import Request

    headers = {"authorization": ("Authorization", "Basic x"), "x-api-key": ("X-Api-Key", "k"), "accept": ("Accept", "*/*")}
    post = Request("POST", httpx.URL("http://app.example/login"), headers, b"ping")
    own = ["X-Api-Key"]
    kept = post.redirected(307, "/next", own)
    assert (kept.method, kept.body, str(kept.url), set(kept.headers)) == ("POST", b"ping", "http://app.example/next", set(headers))
    for status in (301, 302, 303):
        assert (post.redirected(status, "/next", own).method, post.redirected(status, "/next", own).body) == ("GET", None)
    upgraded = post.redirected(308, "https://app.example/login", own)
    assert set(upgraded.headers) == {"authorization", "accept"}
    elsewhere = post.redirected(302, "http://other.example/", own)
    assert set(elsewhere.headers) == {"accept"}
    other_port = post.redirected(302, "https://app.example:8443/", own)
    assert set(other_port.headers) == {"accept"}
    # httpx.URL takes these two, but no connect can: getaddrinfo would raise UnicodeError or
    # OverflowError (reason internal), so they are an invalid URL, like one httpx refuses.
    for location in ("ftp://app.example/", "http://[::1/", "http://a..b/", "http://127.0.0.1:70000/"):
        with pytest.raises(ProbeError) as e:
            post.redirected(302, location, own)
        assert e.value.reason == "status"


@pytest.mark.parametrize("url, complaint", [
    ("http://127.0.0.1:70000/", "port 70000 is out of range"),
    ("http://a..b/health", "'a..b' is not a host name"),
    (f"http://{'x' * 64}.example/", "over-63-character label"),
])
def test_a_url_no_connect_can_reach_is_a_config_error(url: str, complaint: str) -> None:
    from stackprobe.configsource import ConfigError
    from stackprobe.exporter.config import parse

    with pytest.raises(ConfigError) as e:
        parse("t.yaml", f"http:\n  - {{name: web, service: s, url: '{url}'}}\n")
    [line] = e.value.format_lines()
    assert line.startswith("t.yaml:2: http[0].url") and complaint in line, line
