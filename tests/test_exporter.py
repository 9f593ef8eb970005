"""The exporter as Prometheus sees it: scheduling isolation, exposition formats, endpoints,
web-config TLS and basic auth, SIGHUP reloads and SIGTERM, and `promtool check metrics`."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import bcrypt
import httpx
import pytest
import trustme
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from stackprobe.configsource import ConfigError
from stackprobe.exporter import metrics
from stackprobe.exporter.collector import OPENMETRICS, TEXT, WRITE_RUN_BYTES, MetricsPage, _runs, join
from stackprobe.exporter.probers import PROBERS
from stackprobe.exporter.probers.base import BlockingProber, ProbeContext, ProbeError, TargetConfig
from stackprobe.exporter import scheduler as scheduler_mod
from stackprobe.exporter.scheduler import _phase
from stackprobe.exporter.shard import Shard
from stackprobe.exporter.snapshot import Snapshot, TargetResult
from stackprobe.exporter.webconfig import load_web_config

from fixtures.exporter import parse_scrape
from fixtures.http_servers import HttpPeer
from fixtures.net import free_port, wait_for_port, wait_until


def backup_dir(tmp_path: Path, name: str = "backups") -> Path:
    """A directory with one day-old dump, so a backup target has something stable to report."""
    d = tmp_path / name
    d.mkdir()
    dump = d / "db-20261123.sql"
    dump.write_bytes(b"-- dump\n" * 100)
    day_ago = time.time() - 86400
    os.utime(dump, (day_ago, day_ago))
    return d


def backup_target(name: str, path: Path, interval: str = "1s") -> str:
    return f"  - {{name: {name}, service: portfolio, path: '{path}', globs: ['*.sql'], interval: {interval}, timeout: {interval}}}\n"


def test_a_hung_target_delays_neither_other_targets_nor_metrics(start_exporter, tmp_path, silent_listener):
    exporter = start_exporter(
        "http:\n"
        f"  - {{name: hung, service: portfolio, url: 'http://127.0.0.1:{silent_listener.port}/', interval: 10s, timeout: 8s}}\n"
        "backup:\n" + backup_target("fast", backup_dir(tmp_path), "1s"))
    exporter.wait_for_probe("fast")
    # The hung probe cannot end before its 8 s timeout; meanwhile the fast target completes
    # several more probes and /metrics serves them, with no series of the hung one yet.
    exporter.wait_for_probe("fast", count=3)
    assert exporter.exporter.snapshot.get("hung") is None
    series = exporter.scrape()
    assert series[("stackprobe_probe_success", frozenset({("prober", "backup"), ("service", "portfolio"), ("target", "fast")}))] == 1
    assert not [labels for _, labels in series if ("target", "hung") in labels]
    exporter.wait_for_probe("hung")
    assert exporter.value("stackprobe_probe_success", target="hung") == 0
    assert exporter.value("stackprobe_probe_errors_total", target="hung", reason="timeout") == 1
    assert exporter.value("stackprobe_probe_errors_total", target="hung", reason="connect") == 0


def test_metrics_negotiates_openmetrics_and_gzip(start_exporter, tmp_path):
    exporter = start_exporter("backup:\n" + backup_target("b", backup_dir(tmp_path)))
    exporter.wait_for_probe("b")
    plain = exporter.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    om = httpx.get(exporter.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0",
                                                        "Accept-Encoding": "gzip"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.headers["content-encoding"] == "gzip"
    assert om.text.rstrip().endswith("# EOF")  # httpx already gunzipped it
    with httpx.stream("GET", exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert b"stackprobe_build_info" in gzip.decompress(raw)
    series = parse_scrape(plain.text)
    assert ("stackprobe_build_info", frozenset({("version", "0.1.0"), ("python_version", sys.version.split()[0])})) in series
    assert any(name == "process_resident_memory_bytes" for name, _ in series)
    assert exporter.value("stackprobe_targets", prober="backup") == 1
    assert exporter.value("stackprobe_config_last_reload_successful") == 1


def test_endpoints_and_status_page(start_exporter, tmp_path):
    exporter = start_exporter("backup:\n" + backup_target("nightly-dump", backup_dir(tmp_path)))
    assert exporter.get("/-/healthy").status_code == 200
    wait_until(lambda: exporter.get("/-/ready").status_code == 200, what="readiness")
    page = exporter.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-target="nightly-dump"' in page.text and ">portfolio<" in page.text and ">backup<" in page.text
    assert 'href="/metrics"' in page.text
    assert exporter.get("/nope").status_code == 404


def test_status_page_escapes_what_it_shows(start_exporter, tmp_path):
    exporter = start_exporter("backup:\n" + backup_target("b", tmp_path / "missing<script>"))
    exporter.wait_for_probe("b")
    page = exporter.get("/").text
    assert "<script>" not in page and "missing&lt;script&gt;" in page


@pytest.fixture
def tls_web_config(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    hashed = bcrypt.hashpw(b"s3cret-scrape", bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "web-config.yml"
    path.write_text(f"""
tls_server_config:
  cert_file: {tmp_path / 'cert.pem'}
  key_file: {tmp_path / 'key.pem'}
basic_auth_users:
  prometheus: '{hashed}'
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
""")
    return path, tmp_path / "ca.pem"


def test_web_config_tls_and_basic_auth(start_exporter, tmp_path, tls_web_config):
    path, ca = tls_web_config
    exporter = start_exporter("backup:\n" + backup_target("b", backup_dir(tmp_path)), load_web_config(path))
    url = f"https://127.0.0.1:{exporter.port}"
    trusted = ssl.create_default_context(cafile=str(ca))
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/metrics")  # not trusted without the CA
    assert httpx.get(url + "/metrics", verify=trusted).status_code == 401
    assert httpx.get(url + "/metrics", verify=trusted, auth=("prometheus", "wrong")).status_code == 401
    ok = httpx.get(url + "/metrics", verify=trusted, auth=("prometheus", "s3cret-scrape"))
    assert ok.status_code == 200 and "stackprobe_build_info" in ok.text
    assert ok.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(url + "/-/healthy", verify=trusted).status_code == 200  # open for health checks
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://127.0.0.1:{exporter.port}/metrics")  # plain HTTP is not served


def test_web_config_mistakes_name_the_line(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  alice: plaintext\ntls_server_config:\n  cert_file: /nope.pem\n  key_file: /nope.key\n  ciphers: [x]\n")
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    text = str(err.value)
    assert f"{path}:2: basic_auth_users.alice: not a bcrypt hash" in text and "not a bcrypt hash" in text
    assert f"{path}:6: tls_server_config.ciphers: unknown field" in text


class ExporterProcess:
    """The real `stackprobe` command in a subprocess (signals need a main thread of their own)."""

    def __init__(self, config: Path, log: Path):
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stackprobe.exporter", "run", f"--config.file={config}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=log.open("w"))
        wait_for_port(self.port)

    def series(self) -> dict:
        return parse_scrape(httpx.get(f"http://127.0.0.1:{self.port}/metrics").text)

    def targets(self) -> set[str]:
        return {dict(labels)["target"] for name, labels in self.series() if name == "stackprobe_probe_success"}


def test_sighup_reloads_and_keeps_the_old_config_when_the_new_one_is_broken(tmp_path):
    backups = backup_dir(tmp_path)
    config = tmp_path / "stackprobe.yml"
    config.write_text("backup:\n" + backup_target("first", backups))
    p = ExporterProcess(config, tmp_path / "stderr.log")
    try:
        wait_until(lambda: p.targets() == {"first"}, what="first target probed")
        config.write_text("backup:\n" + backup_target("first", backups) + backup_target("second", backups))
        p.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: p.targets() == {"first", "second"}, what="second target after SIGHUP")

        config.write_text("backup:\n" + backup_target("first", backups) + "  - name: third\n    sevrice: x\n")
        p.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: p.series().get(("stackprobe_config_last_reload_successful", frozenset())) == 0,
                   what="failed reload reported")
        assert p.targets() == {"first", "second"}  # still probing with the previous config
        log = (tmp_path / "stderr.log").read_text()
        assert f"{config}:4: backup[1].sevrice: unknown field" in log

        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(timeout=30) == 0
        assert "shutting down" in (tmp_path / "stderr.log").read_text()
    finally:
        p.proc.kill()


def test_a_broken_config_at_start_exits_2(tmp_path):
    config = tmp_path / "stackprobe.yml"
    config.write_text("backup:\n  - name: b\n    service: s\n    path: /tmp\n    interval: soon\n")
    proc = subprocess.run([sys.executable, "-m", "stackprobe.exporter", "run", f"--config.file={config}",
                           f"--web.listen-address=127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{config}:5: backup[0].interval:" in proc.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_check_metrics_is_clean(start_exporter, tmp_path, silent_listener):
    exporter = start_exporter(
        "backup:\n" + backup_target("b", backup_dir(tmp_path)) +
        "http:\n"
        f"  - {{name: h, service: portfolio, url: 'http://127.0.0.1:{silent_listener.port}/', interval: 2s, timeout: 1s}}\n")
    exporter.wait_for_probe("b")
    exporter.wait_for_probe("h")
    text = exporter.get("/metrics").text
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr


def test_every_declared_family_has_help_and_conventional_name():
    for fam in metrics.FAMILIES:
        assert fam.name.startswith("stackprobe_") and fam.help.endswith(".")
        assert (fam.kind == "counter") == fam.name.endswith("_total"), fam.name
        assert not fam.name.endswith(("_milliseconds", "_ms", "_kb", "_mb", "_percent")), fam.name
        assert set(fam.labels).isdisjoint({"service", "target", "le", "instance", "job"}), fam.name


def test_a_hung_blocking_probe_is_not_joined_by_another_thread_each_interval():
    """A worker thread cannot be killed; piling one more onto it per interval would fill the
    shared pool and starve every other blocking target."""
    release, runs = threading.Event(), []

    class Stuck(BlockingProber):
        name, target_model = "stuck", TargetConfig

        def probe_blocking(self, target, ctx):
            runs.append(target.name)
            release.wait(30)

    prober = Stuck()
    target = TargetConfig(name="nfs-backups", service="s", interval=1, timeout=0.2)

    async def scenario() -> list[str]:
        outcomes = []
        for _ in range(3):
            try:
                async with asyncio.timeout(target.timeout):
                    await prober.probe(target, ProbeContext(target))
                outcomes.append("ok")
            except TimeoutError:
                outcomes.append("timed out")
            except ProbeError as e:
                outcomes.append(f"{e.reason}: {e}")
        release.set()
        await asyncio.wait_for(asyncio.shield(prober._running["nfs-backups"]), 30)
        await prober.probe(target, ProbeContext(target))  # the thread is free again: runs anew
        return outcomes

    outcomes = asyncio.run(scenario())
    assert outcomes == ["timed out"] + ["timeout: the previous probe of this target is still running"] * 2
    assert runs == ["nfs-backups", "nfs-backups"]


def test_a_key_that_does_not_match_its_certificate_is_a_config_error(tmp_path):
    ca = trustme.CA()
    one, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    one.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    other.private_key_pem.write_to_path(tmp_path / "key.pem")
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {tmp_path / 'cert.pem'}\n  key_file: {tmp_path / 'key.pem'}\n")
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    assert f"{path}:1: tls_server_config: cannot use the certificate and key: KEY_VALUES_MISMATCH" in str(err.value)


def _samples(families) -> set[tuple[str, frozenset, float]]:
    """Every sample but the process_*/python_gc_* ones, which move between two scrapes."""
    return {(s.name, frozenset(s.labels.items()), s.value) for fam in families for s in fam.samples
            if not s.name.startswith(("process_", "python_gc_"))}


def test_openmetrics_body_passes_the_openmetrics_parser_and_matches_the_text_body(start_exporter, tmp_path, http_server):
    exporter = start_exporter(
        "backup:\n" + backup_target("b", backup_dir(tmp_path), "1h") +
        "http:\n"
        f"  - {{name: h, service: portfolio, url: '{http_server.url}/json', interval: 1h, json_values: [{{path: count}}]}}\n")
    exporter.wait_for_all()
    accept = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"}
    om = exporter.get("/metrics", headers=accept | {"Accept-Encoding": "identity"})
    om_zipped = exporter.get("/metrics", headers=accept | {"Accept-Encoding": "gzip"})  # httpx gunzips it
    text = exporter.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert om_zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in om.headers
    parsed = _samples(openmetrics_families(om.text))  # raises on any OpenMetrics violation
    assert parsed == _samples(openmetrics_families(om_zipped.text)) == _samples(text_string_to_metric_families(text.text))
    names = {name for name, _, _ in parsed}
    assert {"stackprobe_probe_errors_total", "stackprobe_http_request_duration_seconds_bucket",
            "stackprobe_http_json_value", "stackprobe_backup_files", "stackprobe_build_info"} <= names
    probed = exporter.get("/probe?target=h", headers=accept)
    assert probed.headers["content-type"].startswith("application/openmetrics-text")
    assert ("stackprobe_http_json_value", frozenset({("service", "portfolio"), ("target", "h"), ("path", "count")}), 3.0) \
        in _samples(openmetrics_families(probed.text))


def _backup_result(name: str, files: float, *, label_value: str = "x") -> TargetResult:
    target = PROBERS["backup"].target_model(name=name, service="portfolio", path="/nonexistent", globs=["*"])
    ctx = ProbeContext(target)
    ctx.set("backup_files", files)
    return TargetResult(target, "backup").completed(ctx, success=True, reason=None, message="", duration=0.1,
                                                    finished_at=time.time())


def test_each_scrape_joins_the_latest_results_and_caches_nothing_stale():
    snapshot = Snapshot()
    state = {"reload_ok": True, "reload_success_at": 1.0, "targets": {"backup": 2}, "shard": Shard()}
    page = MetricsPage(snapshot, lambda: state)
    snapshot.publish(_backup_result("one", 1))
    snapshot.publish(_backup_result("two", 2))

    def files(body: bytes) -> dict[str, float]:
        return {s.labels["target"]: s.value for fam in text_string_to_metric_families(body.decode())
                for s in fam.samples if s.name == "stackprobe_backup_files"}

    for fmt in (TEXT, OPENMETRICS):
        assert files(page.body(fmt)) == {"one": 1, "two": 2}
    snapshot.publish(_backup_result("one", 5))  # only one target's result changes
    for fmt in (TEXT, OPENMETRICS):
        plain, zipped = page.body(fmt), gzip.decompress(page.body(fmt, gzip=True))
        assert files(plain) == files(zipped) == {"one": 5, "two": 2}
        # One HELP/TYPE per family, and the families in the declared order.
        headers = [line.split()[2] for line in plain.decode().splitlines() if line.startswith("# TYPE stackprobe_")]
        assert len(headers) == len(set(headers))
        declared = [f.base_name if fmt is OPENMETRICS else f.name for f in metrics.FAMILIES]
        assert headers == sorted(headers, key=declared.index)
    snapshot.retain({"two"})
    assert files(page.body(TEXT)) == files(gzip.decompress(page.body(TEXT, gzip=True))) == {"two": 2}


def test_a_plain_body_is_written_as_its_large_pieces_and_runs_of_small_ones():
    big = b"x" * WRITE_RUN_BYTES
    parts = [b"head", big, *[b"a" * 1000] * 100, b"tail"]
    writes = _runs(parts)
    assert b"".join(writes) == b"".join(parts)
    assert writes[1] is big  # not copied
    assert all(len(w) < 2 * WRITE_RUN_BYTES for w in writes) and len(writes) == 5


def test_label_values_are_escaped_in_both_formats():
    target = PROBERS["redis"].target_model(name="r", service="cache", url="redis://127.0.0.1:1/0")
    ctx = ProbeContext(target)
    awkward = 'queue "a"\\b\nc'
    ctx.set("redis_key_length", 3, db="0", key=awkward, type="list")
    ctx.set_many("redis_db_keys", ("db",), (), [((awkward,), (), 1), (("0",), (), 2)])  # the path rendering lines at once
    result = TargetResult(target, "redis").completed(ctx, success=True, reason=None, message="", duration=0.1,
                                                     finished_at=time.time())
    page_text = join([result.pieces], TEXT).decode()
    page_om = (join([result.pieces], OPENMETRICS) + OPENMETRICS.eof).decode()
    for families in (text_string_to_metric_families(page_text), openmetrics_families(page_om)):
        samples = [s for fam in families for s in fam.samples]
        assert {s.labels["key"] for s in samples if s.name == "stackprobe_redis_key_length"} == {awkward}
        assert {s.labels["db"] for s in samples if s.name == "stackprobe_redis_db_keys"} == {awkward, "0"}


def _name_with_phase(prefix: str, low: float, high: float) -> str:
    """A target name whose schedule phase (hence first probe, phase x 10 s after start) is in [low, high)."""
    return next(f"{prefix}-{i}" for i in range(1000)
                if low <= _phase(TargetConfig(name=f"{prefix}-{i}", service="s", interval=3600)) < high)


def test_probe_and_the_schedule_share_a_running_probe_of_a_slow_server(start_exporter, mariadb_factory, monkeypatch):
    """A /probe of a target whose scheduled probe is running, and a scheduled probe that comes
    while a /probe runs, share the one probe: neither fails with `timeout` (a blocking prober
    refuses a second probe while the first holds its thread), and no error is counted."""
    # Every request for a probe, and whether one of that target was running then (it joins it):
    # the test waits for what the scheduler did, not for a moment on the clock.
    asks: list[tuple[str, bool]] = []
    share = scheduler_mod.Scheduler._probe

    async def recorded(self, target, prober_name):
        asks.append((target.name, target.name in self._running))
        return await share(self, target, prober_name)
    monkeypatch.setattr(scheduler_mod.Scheduler, "_probe", recorded)
    server = mariadb_factory()
    pid = int((server.base / "mysqld.pid").read_text())
    early = _name_with_phase("early", 0.05, 0.15)  # scheduled first, at 0.5-1.5 s: /probe joins it
    late = _name_with_phase("late", 0.4, 0.5)  # /probe first, at once: the schedule joins it at 4-5 s
    targets = "".join(f"  - {{name: {n}, service: gallery, unix_socket: '{server.socket}', user: root,"
                      " interval: 1h, timeout: 20s}\n" for n in (early, late))
    responses: dict[str, httpx.Response] = {}

    def probe(name: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: responses.__setitem__(name, exporter.get(f"/probe?target={name}")))
        thread.start()
        return thread

    os.kill(pid, signal.SIGSTOP)  # the server accepts connections but answers nothing: a slow target
    try:
        exporter = start_exporter("mysql:\n" + targets)
        threads = [probe(late)]
        scheduler = exporter.exporter.scheduler
        wait_until(lambda: early in scheduler._running, what="the scheduled probe of the early target")
        threads.append(probe(early))
        # The late target's scheduled probe (at its phase, 4-5 s after start) joins the running one.
        wait_until(lambda: len(asks) == 4, timeout=60, what="the /probe and the schedule of both targets")
    finally:
        os.kill(pid, signal.SIGCONT)
    # Each target: the first request started the probe, the second joined it while it ran.
    assert sorted(asks) == sorted([(early, False), (early, True), (late, False), (late, True)]), asks
    for thread in threads:
        thread.join(30)
    exporter.wait_for_all()
    for name in (early, late):
        assert responses[name].status_code == 200, responses[name].text
        probed = parse_scrape(responses[name].text)
        labels = frozenset({("service", "gallery"), ("target", name), ("prober", "mysql")})
        assert probed[("stackprobe_probe_success", labels)] == 1
        published = exporter.exporter.snapshot.get(name)
        assert published.success and dict(published.errors) == {}
        # One probe, two readers: the /probe answer is the very probe the schedule published.
        assert probed[("stackprobe_probe_last_run_timestamp_seconds", labels)] == published.finished_at
        assert exporter.value("stackprobe_probe_errors_total", target=name, reason="timeout") == 0


def _exposition_of(exporter, name: str, failures: int) -> dict:
    """The series of `name`'s result once it has failed `failures` probes in a row: parsed from
    that very result, so a probe finishing meanwhile cannot change what is checked."""
    wait_until(lambda: exporter.exporter.snapshot.get(name).failures_in_a_row == failures,
               timeout=30, what=f"{failures} failed probes of {name} in a row")
    return parse_scrape(join([exporter.exporter.snapshot.get(name).pieces], TEXT).decode())


def test_a_failed_probe_keeps_the_last_samples_for_two_probes_then_drops_them(start_exporter, tmp_path):
    directory = backup_dir(tmp_path)
    exporter = start_exporter("backup:\n" + backup_target("b", directory))
    exporter.wait_for_probe("b")
    good = exporter.exporter.snapshot.get("b")
    assert good.success
    target = frozenset({("service", "portfolio"), ("target", "b")})
    probe = target | {("prober", "backup")}
    newest = good.samples[("stackprobe_backup_newest_timestamp_seconds", ())]
    shutil.rmtree(directory)  # a real problem, not a blip: the directory is gone
    for failures in (1, 2):
        series = _exposition_of(exporter, "b", failures)
        assert series[("stackprobe_probe_success", probe)] == 0
        assert series[("stackprobe_probe_last_success_timestamp_seconds", probe)] == good.finished_at
        assert series[("stackprobe_probe_errors_total", probe | {("reason", "io")})] == failures
        assert series[("stackprobe_backup_newest_timestamp_seconds", target)] == newest  # still there: no alert resolves
    series = _exposition_of(exporter, "b", 3)
    assert series[("stackprobe_probe_success", probe)] == 0
    assert series[("stackprobe_probe_last_success_timestamp_seconds", probe)] == good.finished_at
    assert not [n for n, _ in series if n.startswith("stackprobe_backup_")]  # dropped: old values no longer pose as news
    backup_dir(tmp_path)  # back again: the next probe succeeds and exports fresh samples
    wait_until(lambda: exporter.exporter.snapshot.get("b").success, timeout=30, what="a successful probe again")
    assert exporter.value("stackprobe_backup_files", target="b") == 1


def test_up_is_never_kept_from_an_earlier_probe(start_exporter):
    server = HttpPeer()
    exporter = start_exporter(
        "http:\n"
        f"  - {{name: h, service: portfolio, url: '{server.url}/json', interval: 1s, json_values: [{{path: count}}]}}\n")
    exporter.wait_for_probe("h")
    assert exporter.exporter.snapshot.get("h").success
    server.close()  # connection refused from now on
    series = _exposition_of(exporter, "h", 1)
    target = frozenset({("service", "portfolio"), ("target", "h")})
    assert series[("stackprobe_http_up", target)] == 0  # what this probe found
    assert series[("stackprobe_http_status_code", target)] == 0  # this probe got no response
    assert series[("stackprobe_http_json_value", target | {("path", "count")})] == 3  # kept from the last success

    # A probe that measured nothing at all (here: a Redis probe that timed out) still says up 0.
    redis_target = PROBERS["redis"].target_model(name="r", service="cache", url="redis://127.0.0.1:1/0")
    ok = ProbeContext(redis_target)
    ok.set("redis_up", 1)
    ok.set("redis_connected_clients", 4)
    result = TargetResult(redis_target, "redis").completed(ok, success=True, reason=None, message="", duration=0.1,
                                                           finished_at=time.time())
    failed = result.completed(ProbeContext(redis_target), success=False, reason="timeout", message="", duration=10,
                              finished_at=time.time())
    assert dict(failed.samples) == {("stackprobe_redis_up", ()): 0.0, ("stackprobe_redis_connected_clients", ()): 4.0}


def test_a_failed_probe_replaces_a_set_many_family_whole():
    """A family set whole (set_many: a MySQL target's tables) that the failed probe set is its
    own, every series of it; the families it did not set keep the last success's series (and
    set() families series by series: the test below)."""
    target = PROBERS["mysql"].target_model(name="db", service="gallery", user="u")
    ok = ProbeContext(target)
    ok.set_many("mysql_table_rows", ("schema", "table"), (), [(("s", "a"), (), 10), (("s", "b"), (), 20)])
    ok.set("mysql_threads_connected", 4)
    result = TargetResult(target, "mysql").completed(ok, success=True, reason=None, message="", duration=0.1,
                                                     finished_at=time.time())
    partial = ProbeContext(target)
    partial.set_many("mysql_table_rows", ("schema", "table"), (), [(("s", "a"), (), 11)])
    partial.set("mysql_up", 1)
    failed = result.completed(partial, success=False, reason="query", message="", duration=0.1, finished_at=time.time())
    assert dict(failed.samples) == {
        ("stackprobe_mysql_up", ()): 1.0, ("stackprobe_mysql_threads_connected", ()): 4.0,
        ("stackprobe_mysql_table_rows", (("schema", "s"), ("table", "a"))): 11.0}


def test_a_prober_cannot_declare_a_family_outside_its_name_or_twice():
    class Declares(BlockingProber):
        name, target_model = "stuck", TargetConfig

    own = metrics.gauge("stuck_files", "Files.")
    Declares.families = (own,)
    assert metrics.collect([Declares()])[-1] == dataclasses.replace(own, prober="stuck")
    Declares.families = (metrics.gauge("backup_files", "Someone else's name."),)
    with pytest.raises(ValueError, match="must start with stackprobe_stuck_"):
        metrics.collect([Declares()])
    Declares.families = (own, own)
    with pytest.raises(ValueError, match="declared twice"):
        metrics.collect([Declares()])


def test_freed_memory_is_given_back_through_glibc():
    """The lookups of malloc_trim and mallopt must work on glibc (this machine, the Debian image):
    failing them would silently leave freed heap pages mapped (see release_free_memory and
    keep_large_allocations_mapped)."""
    from stackprobe.exporter import snapshot

    assert snapshot._malloc_trim is not None and snapshot._mallopt is not None
    snapshot.release_free_memory()
    assert snapshot._mallopt(snapshot._M_MMAP_THRESHOLD, snapshot.MMAP_THRESHOLD_BYTES) == 1  # glibc accepted it


def test_a_result_that_ends_in_malloc_trim_is_built_off_the_event_loop():
    """Few set() samples but megabytes rendered by set_many (a 2,000-table MySQL target): the
    result's building ends in malloc_trim, a walk of the whole heap, so it goes to a thread."""
    from stackprobe.exporter.snapshot import TRIM_AFTER_BYTES

    target = PROBERS["backup"].target_model(name="b", service="portfolio", path="/nonexistent", globs=["*"])
    ctx = ProbeContext(target)
    ctx.set("backup_files", 3)
    assert scheduler_mod.renders_inline(ctx)
    ctx.rendered["stackprobe_backup_file_size_bytes"] = b"x" * TRIM_AFTER_BYTES
    assert not scheduler_mod.renders_inline(ctx)


def test_a_failed_probe_keeps_the_last_successes_series_of_a_family_it_set_only_partly():
    """A failed MySQL probe that ran its first section only: the sections it did not reach keep
    their collector_success of the last success, the one it ran says what it found now, so a
    firing MysqlCollectorFailing neither resolves nor restarts its `for` on one failed probe."""
    target = PROBERS["mysql"].target_model(name="db", service="gallery", user="u")
    ok = ProbeContext(target)
    ok.set("mysql_up", 1)
    for collector, value in (("global_status", 1), ("tables", 0)):
        ok.set("mysql_collector_success", value, collector=collector)
    first = TargetResult(target, "mysql").completed(ok, success=True, reason=None, message="", duration=0.1, finished_at=1.0)
    partial = ProbeContext(target)
    partial.set("mysql_up", 1)
    partial.set("mysql_collector_success", 1, collector="global_status")
    failed = first.completed(partial, success=False, reason="timeout", message="", duration=5.0, finished_at=2.0)
    success = {dict(labels)["collector"]: value for (name, labels), value in failed.samples.items()
               if name == "stackprobe_mysql_collector_success"}
    assert success == {"global_status": 1, "tables": 0}
    for _ in range(2):  # past KEEP_SAMPLES_THROUGH_FAILURES, only what the probe itself found
        failed = failed.completed(partial, success=False, reason="timeout", message="", duration=5.0, finished_at=3.0)
    assert {dict(labels)["collector"] for (name, labels) in failed.samples if name == "stackprobe_mysql_collector_success"} == {"global_status"}
