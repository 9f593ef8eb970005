"""End to end: the exporter, the generated rules and the generated Alertmanager config in a real
Prometheus and Alertmanager, with real things broken (issue 7).

One stack for the module, on free loopback ports: a private MariaDB, two Redis servers (one
plain, one TLS with an ACL user), HTTP(S) endpoints (healthy, slow, failing), TLS servers (one
certificate expires in 10 days), backup directories, `stackprobe run` with a config derived
from deploy/stackprobe.yml (same targets, pointed here), Prometheus with a config derived from
deploy/prometheus.yml (both scrape jobs) and the rules `gen-rules build` compiles from the test
catalogue tests/e2e/catalogue/ (production KPIs, `for` in seconds), and Alertmanager with the
generated alertmanager.yml, every receiver a webhook to a local sink.

The failures are induced together and watched by one poller (the `incidents` fixture), which
records when each alert fired in Prometheus and reached the sink; each test then checks one
outcome through Prometheus' and Alertmanager's own HTTP APIs.
"""

from __future__ import annotations

import gzip
import re
import shutil
import io
import os
import ssl
import string
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import trustme
import yaml

from fixtures.http_servers import HttpPeer
from fixtures.mariadb import MariaDB, _binary as mariadb_binary
from fixtures.net import wait_until
from fixtures.prom_stack import Alertmanager, Prometheus, StackprobeExporter, WebhookSink, report
from fixtures.promtools import run
from fixtures.redis_server import REDIS_SERVER, RedisServer
from fixtures.tls import Pki, TlsServer
from stackprobe.grafana.queries import REPO_ROOT, generated_queries
from stackprobe.rules import model

DEPLOY = REPO_ROOT / "deploy"
TEST_CATALOGUE = Path(__file__).parent / "e2e" / "catalogue"
PASSWORDS = {"STACKPROBE_MYSQL_PASSWORD": "e2e-Mysql-pw", "STACKPROBE_REDIS_PASSWORD": "e2e-Redis-pw"}
#: Probe interval (= timeout) per prober: seconds, so failures show within a few scrapes.
INTERVALS = {"mysql": 5, "redis": 2, "http": 5, "backup": 2, "cert": 5}
SLOW_SECONDS = 2.5  # portfolio-home: above the test catalogue's 1 s warning and 2 s critical P95
HOUR, DAY = 3600, 86400
#: Upper bound for the whole incident sequence; only there so a broken stack cannot hang CI.
DEADLINE = 180

#: Indicators read from exporters that do not run here (the indicator library names them
#: node_exporter or application); their recording rules and panels have no data by design.
EXTERNAL_INDICATORS = {"cpu_usage", "memory_usage", "disk_usage", "oom_kills", "app_error_ratio", "app_throughput",
                       "app_job_success_ratio", "app_request_success_ratio"}
#: stackprobe series that cannot have data in this run, by name, and why.
NO_DATA_HERE = {
    "service_target:stackprobe_http_latency_avg:ratio_change1w":
        "compares with `offset 1w`; this Prometheus is a few minutes old",
    "service_target:stackprobe_http_latency_avg6d:ratio_change1w":
        "compares with `offset 1w`; this Prometheus is a few minutes old",
    "stackprobe_mysql_replication_lag_seconds": "the private MariaDB is a primary (test_mysql.py covers a replica)",
    "stackprobe_mysql_replication_running": "the private MariaDB is a primary",
    "service_target:stackprobe_mysql_replication_lag:max_seconds": "recorded from the replication lag: primary",
    "service_target:stackprobe_mysql_replication_running:min": "recorded from replication_running: primary",
    "stackprobe_redis_master_link_up": "both Redis servers are primaries (test_redis.py covers a replica)",
}

#: (service, recorded series) with no data by the test's own doing: a query of that series for
#: that service must be empty, and the same series of other services still has data.
INDUCED_GAPS = {
    ("portfolio", "service_target:stackprobe_backup_newest:age_seconds"): "portfolio-backups' directory is removed",
    ("portfolio", "service_target:stackprobe_backup_verify:failed"): "portfolio-backups' directory is removed",
    ("portfolio", "service_target:stackprobe_redis_keyspace_hits:ratio_rate5m"):
        "portfolio-cache is idle: its only lookups are the prober's own, which the ratio leaves out",
    ("universal-gallery", "service:maintenance:active"):
        "universal-gallery is in maintenance all run: its SLIs without the maintenance samples are empty",
}


# --------------------------------------------------------------------------------------------
# The peers: what each target of deploy/stackprobe.yml points at in this test
# --------------------------------------------------------------------------------------------

def _backup_dir(path: Path, names: list[str], verify: str) -> Path:
    """Backup files (plain SQL, gzip or tar.gz as `verify` expects) one day apart, the newest two hours old."""
    path.mkdir(parents=True)
    now = time.time()
    for age, name in enumerate(reversed(names)):
        file = path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        data = b"-- dump %d\n" % age * (1000 + age)
        if verify == "tar":
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                info = tarfile.TarInfo("dump.sql")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            file.write_bytes(buffer.getvalue())
        elif verify == "gzip":
            file.write_bytes(gzip.compress(data))
        else:
            file.write_bytes(data)
        mtime = now - 2 * HOUR - age * DAY
        os.utime(file, (mtime, mtime))
    return path


@dataclass
class Peers:
    mariadb: MariaDB
    redis: RedisServer  # vedfolnir-redis: stopped and restarted by the test
    redis_tls: RedisServer
    http: HttpPeer
    https: HttpPeer
    ca_file: Path
    tls_valid: TlsServer
    tls_expiring: TlsServer
    backups: dict[str, Path]
    cert_dir: Path

    def local_targets(self) -> dict[str, dict[str, Any]]:
        """Per target name of deploy/stackprobe.yml: the fields that point it here (the rest stays)."""
        ca = {"ca_file": str(self.ca_file)}
        db = {"host": "127.0.0.1", "port": self.mariadb.port}

        def https(path: str) -> dict[str, Any]:
            return {"url": f"{self.https.url}{path}", "tls": ca}
        return {
            "gallery-db": db,
            "vedfolnir-db": db,
            "genart-db": db,
            "genart-redis": {"url": f"{self.redis_tls.url}/0", "tls": {"ca_file": str(self.redis_tls.ca_file)}},
            "genart-ipfs-gateway": {"url": f"{self.http.url}/json"},
            "vedfolnir-redis": {"url": f"{self.redis.url}/0"},
            # An idle cache: the prober's own lookups of its keys (one missing) are its only traffic.
            "portfolio-cache": {"url": f"{self.redis_tls.url}/0", "tls": {"ca_file": str(self.redis_tls.ca_file)},
                                "keys": [{"key": "image-processing-queue"}, {"key": "no-such-queue"}]},
            "gallery-cache": {"url": f"{self.redis_tls.url}/0", "tls": {"ca_file": str(self.redis_tls.ca_file)}},
            "gallery-home": https("/status/503"),  # down for the whole run, inside its maintenance window
            "portfolio-home": https(f"/delay/{SLOW_SECONDS}"),
            "templates-home": https("/json"),
            "vedfolnir-maintenance-status": {"url": f"{self.http.url}/json"},
            "genart-frontend-health": {"url": f"{self.http.url}/json"},
            "genart-api-health": {"url": f"{self.http.url}/json"},
            "genart-worker-health": {"url": f"{self.http.url}/status/503"},
            "gallery-db-dumps": {"path": str(self.backups["gallery-db-dumps"])},
            "vedfolnir-backups": {"path": str(self.backups["vedfolnir-backups"])},
            "templates-backups": {"path": str(self.backups["templates-backups"])},
            "portfolio-backups": {"path": str(self.backups["portfolio-backups"])},
            "genart-backups": {"path": str(self.backups["genart-backups"])},
            "gallery-tls": {"address": self.tls_valid.address, **ca},
            "portfolio-tls": {"address": self.tls_expiring.address, **ca},
            "templates-tls": {"address": self.tls_valid.address, **ca},
            "vedfolnir-tls": {"address": self.tls_valid.address, **ca},
            "genart-tls": {"address": self.tls_valid.address, **ca},
            "local-certificates": {"files": [str(self.cert_dir / "*.pem")]},
        }


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory, pki: Pki,
          mariadb_tls: tuple[Path, Path, Path]) -> Iterator[Peers]:
    """Every server the targets point at; certificates from the session's test PKI (pki.valid's
    files are mariadb_tls's)."""
    if mariadb_binary("mariadbd") is None or mariadb_binary("mariadb-install-db") is None:
        pytest.skip("mariadbd / mariadb-install-db not installed (apt-get install mariadb-server)")
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    base = tmp_path_factory.mktemp("e2e-peers")
    stops = []
    try:
        db = MariaDB(base / "mariadb")
        db.start()
        stops.append(db.stop)
        for schema in ("gallery", "vedfolnir", "genart"):
            db.sql(f"CREATE DATABASE {schema}")
            db.sql(f"CREATE TABLE {schema}.images (id INT PRIMARY KEY AUTO_INCREMENT, title VARCHAR(64), KEY (title))")
            db.sql(f"INSERT INTO {schema}.images (title) VALUES ('a'), ('b'), ('c')")
        # The README's GRANTs, for TCP from 127.0.0.1 (the server skips name resolution).
        db.sql("CREATE USER 'stackprobe'@'127.0.0.1' IDENTIFIED BY %s", (PASSWORDS["STACKPROBE_MYSQL_PASSWORD"],))
        for grant in ("SELECT ON gallery.*", "SELECT ON vedfolnir.*", "SELECT ON genart.*", "SLAVE MONITOR ON *.*"):
            db.sql(f"GRANT {grant} TO 'stackprobe'@'127.0.0.1'")

        password = PASSWORDS["STACKPROBE_REDIS_PASSWORD"]
        maxmemory = ("--maxmemory", "64mb")  # redis_memory_usage is only defined with a limit
        redis = RedisServer(base / "redis", password=password, extra_args=maxmemory)
        redis.start()
        stops.append(redis.stop)
        redis.client().set("vedfolnir:session:1", "x")
        redis_tls = RedisServer(base / "redis-tls", user=("stackprobe", password), tls=trustme.CA(), extra_args=maxmemory)
        redis_tls.start()
        stops.append(redis_tls.stop)
        redis_tls.client().rpush("image-processing-queue", "a", "b")

        ca, chain, key = mariadb_tls
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain, key)
        http, https = HttpPeer(), HttpPeer(context)
        stops += [http.close, https.close]
        tls_valid, tls_expiring = TlsServer(pki.chain(pki.valid), base), TlsServer(pki.chain(pki.expiring), base)
        stops += [tls_valid.stop, tls_expiring.stop]
        cert_dir = base / "certs"
        cert_dir.mkdir()
        (cert_dir / "local.pem").write_bytes(pki.valid.pem)

        backups = {
            "gallery-db-dumps": _backup_dir(base / "backup", ["gallery-1.sql.gz", "gallery-2.sql.gz", "gallery-3.sql.gz"], "gzip"),
            "vedfolnir-backups": _backup_dir(base / "vedfolnir", ["vedfolnir_1.sql", "vedfolnir_2.sql"], "none"),
            "templates-backups": _backup_dir(base / "templates", ["site-1.tar.gz", "site-2.tar.gz"], "tar"),
            "portfolio-backups": _backup_dir(base / "portfolio", ["portfolio-1.sql.gz", "portfolio-2.sql.gz"], "gzip"),
            "genart-backups": _backup_dir(base / "genart", ["art-1.sql.gz", "art-2.sql.gz", "art-3.sql.gz"], "gzip"),
        }
        yield Peers(db, redis, redis_tls, http, https, ca, tls_valid, tls_expiring, backups, cert_dir)
    finally:
        for stop in reversed(stops):
            stop()


# --------------------------------------------------------------------------------------------
# The stack: exporter, Prometheus, Alertmanager, all configured from deploy/ and the catalogue
# --------------------------------------------------------------------------------------------

def targets_of(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of an exporter config (`modules:` holds settings targets inherit, not targets)."""
    return [t for prober, targets in config.items() if prober != "modules" for t in targets]


def target_names(config: dict[str, Any]) -> set[str]:
    return {t["name"] for t in targets_of(config)}


def exporter_config(local: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """deploy/stackprobe.yml with every target pointed here and probed every few seconds."""
    config = yaml.safe_load((DEPLOY / "stackprobe.yml").read_text())
    names = target_names(config)
    assert names == set(local), (f"deploy/stackprobe.yml and this test disagree on the targets: "
                                 f"only in the file {sorted(names - set(local))}, only here {sorted(set(local) - names)}")
    for prober, targets in config.items():
        if prober == "modules":
            continue
        for target in targets:
            target.update(local[target["name"]], interval=f"{INTERVALS[prober]}s", timeout=f"{INTERVALS[prober]}s")
    return config


def compile_catalogue(workdir: Path, sink_url: str) -> Path:
    """`gen-rules build` of the test catalogue, its routing pointed at the sink; returns the --out root."""
    catalogue = workdir / "catalogue"
    catalogue.mkdir()
    for source in TEST_CATALOGUE.glob("*.yaml"):
        (catalogue / source.name).write_text(string.Template(source.read_text()).substitute(sink=sink_url))
    out = workdir / "out"
    gen_rules = Path(sys.executable).with_name("gen-rules")
    result = run(gen_rules, "build", "--catalogue", catalogue, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def prometheus_config(exporter: str, alertmanager: str, rule_files: list[Path]) -> dict[str, Any]:
    """deploy/prometheus.yml with 1 s scrapes and evaluations, pointed at this test's processes."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(p) for p in rule_files]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["stackprobe"]["static_configs"] = [{"targets": [exporter]}]
    probe = jobs["stackprobe-probe"]
    probe.update(scrape_interval="5s", scrape_timeout="5s")
    [to_exporter] = [r for r in probe["relabel_configs"] if r.get("target_label") == "__address__"]
    to_exporter["replacement"] = exporter
    return config


@dataclass
class Stack:
    peers: Peers
    exporter: StackprobeExporter
    prometheus: Prometheus
    alertmanager: Alertmanager
    sink: WebhookSink
    generated: Path  # the --out root of the test catalogue's `gen-rules build`
    exporter_config: dict[str, Any]
    prometheus_config: dict[str, Any]
    started_at: float  # time.time() when Prometheus was ready: the start of the static failures


@pytest.fixture(scope="module")
def stack(peers: Peers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("e2e-stack")
    sink = WebhookSink()
    processes = []
    try:
        config = exporter_config(peers.local_targets())
        (work / "stackprobe.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        exporter = StackprobeExporter(work / "stackprobe.yml", work, PASSWORDS)
        processes.append(exporter)

        generated = compile_catalogue(work, sink.url)
        alertmanager = Alertmanager(generated / "rules/generated/alertmanager.yml", work)
        processes.append(alertmanager)

        prom_config = prometheus_config(f"127.0.0.1:{exporter.port}", f"127.0.0.1:{alertmanager.port}",
                                        sorted((generated / "rules/generated").glob("*.rules.yml")))
        (work / "prometheus.yml").write_text(yaml.safe_dump(prom_config, sort_keys=False))
        prometheus = Prometheus(work / "prometheus.yml", work)
        processes.append(prometheus)
        yield Stack(peers, exporter, prometheus, alertmanager, sink, generated, config, prom_config, time.time())
    finally:
        for process in reversed(processes):
            process.stop()
        sink.close()


# --------------------------------------------------------------------------------------------
# The incidents: induce every failure at once, watch them fire, notify and (Redis) resolve
# --------------------------------------------------------------------------------------------

@dataclass
class Incident:
    failure: str
    alertname: str
    target: str
    severity: str
    priority: str
    path: str  # the receiver's webhook path in tests/e2e/catalogue/routing.yaml
    induced_at: float
    inhibits: str | None = None  # the warning this critical alert must inhibit
    fired_at: float | None = None  # first seen firing in Prometheus (polled every 0.5 s)
    notified_at: float | None = None  # first firing notification at the sink
    am_alert: dict | None = None  # Alertmanager's view of the alert while firing
    am_inhibited: dict | None = None  # and of the warning it inhibits, read in the same answer

    def line(self) -> str:
        fire = f"{self.fired_at - self.induced_at:5.1f}s" if self.fired_at else "  never"
        note = f"{self.notified_at - self.induced_at:5.1f}s" if self.notified_at else "  never"
        return (f"{self.failure:<44} {self.alertname:<34} {self.priority} -> {self.path:<15} "
                f"firing seen after {fire}, notified after {note}")


@dataclass
class Incidents:
    by_alert: dict[str, Incident]
    redis_restarted_at: float | None = None
    redis_resolved_at: float | None = None  # gone from Prometheus' alerts
    redis_resolved_notified_at: float | None = None  # resolved notification at the sink
    seen: set[tuple[str, str, str]] = field(default_factory=set)  # (alertname, target, state), whole run
    failed_once: float | None = None  # when genart-backups' single failed probe was seen and undone
    redis_after_restart: str = ""  # what the exporter said of vedfolnir-redis when the wait ended


def _probe_success(stack: Stack, target: str) -> float | None:
    """The exporter's current stackprobe_probe_success of a target, as exposed."""
    text = httpx.get(stack.exporter.url + "/metrics", timeout=30).text
    m = re.search(r'^stackprobe_probe_success\{[^}]*target="' + re.escape(target) + r'"[^}]*\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def _fail_one_backup_probe(stack: Stack, target: str) -> float:
    """Take a backup directory away until the exporter reports one failed probe, then put it back
    at once (probes run every 2 s): exactly one probe fails."""
    path = stack.peers.backups[target]
    wait_until(lambda: _probe_success(stack, target) == 1, timeout=30, interval=0.1, what=f"{target} probed ok")
    path.rename(path.with_name(path.name + ".away"))
    try:
        wait_until(lambda: _probe_success(stack, target) == 0, timeout=30, interval=0.05, what=f"{target} failing")
    finally:
        path.with_name(path.name + ".away").rename(path)
    return time.time()


def _wait_for(prometheus: Prometheus, expr: str, what: str) -> None:
    wait_until(lambda: prometheus.query(expr), timeout=60, interval=0.5, what=what)


@pytest.fixture(scope="module")
def incidents(stack: Stack, request: pytest.FixtureRequest) -> Incidents:
    prom, peers = stack.prometheus, stack.peers
    # Broken things must have been seen healthy first, or "time to fire" would mean nothing.
    _wait_for(prom, 'service_target:stackprobe_redis_up:min{target="vedfolnir-redis"} == 1', "Redis seen up")
    _wait_for(prom, f'service_target:stackprobe_backup_newest:age_seconds{{target="vedfolnir-backups"}} < {DAY}',
              "fresh vedfolnir backups seen")

    failed_once = _fail_one_backup_probe(stack, "genart-backups")

    induced = time.time()
    peers.redis.stop()
    shutil.rmtree(peers.backups["portfolio-backups"])
    stale = induced - 3 * DAY  # past the 48 h critical threshold
    for file in peers.backups["vedfolnir-backups"].glob("vedfolnir_*.sql"):
        os.utime(file, (stale, stale))

    started = stack.started_at
    all_incidents = [
        Incident("Redis stopped (vedfolnir-redis)", "VedfolnirRedisDownCritical", "vedfolnir-redis",
                 "critical", "P0", "/page", induced),
        Incident(f"HTTP endpoint {SLOW_SECONDS} s slow (portfolio-home)", "PortfolioLatencyP95Critical",
                 "portfolio-home", "critical", "P1", "/team-leads", started, inhibits="PortfolioLatencyP95Warning"),
        Incident("HTTP endpoint returns 503 (genart-worker-health)", "GenerativeArtGalleryServiceDownCritical",
                 "genart-worker-health", "critical", "P0", "/page", started),
        Incident("certificate expires in 10 days (portfolio-tls)", "PortfolioCertExpiryWarning",
                 "portfolio-tls", "warning", "P2", "/business-hours", started),
        Incident("backups made 3 days old with os.utime", "VedfolnirBackupAgeCritical", "vedfolnir-backups",
                 "critical", "P1", "/team-leads", induced, inhibits="VedfolnirBackupAgeWarning"),
        Incident("backup directory removed (portfolio-backups)", "PortfolioBackupProbeFailing", "portfolio-backups",
                 "critical", "P1", "/team-leads", induced),
    ]
    result = Incidents({i.alertname: i for i in all_incidents}, failed_once=failed_once)
    deadline = time.monotonic() + DEADLINE

    def done() -> bool:
        return all(i.notified_at and i.am_alert for i in all_incidents) and result.redis_resolved_notified_at is not None

    while not done() and time.monotonic() < deadline:
        now = time.time()
        firing = {}
        for alert in prom.alerts():
            labels = alert["labels"]
            result.seen.add((labels["alertname"], labels.get("target", ""), alert["state"]))
            if alert["state"] == "firing":
                firing[labels["alertname"]] = alert
        am_alerts = {a["labels"]["alertname"]: a for a in stack.alertmanager.alerts()}
        for incident in all_incidents:
            if incident.alertname in firing and incident.fired_at is None:
                incident.fired_at = now
            if incident.notified_at is None and (note := stack.sink.first(incident.alertname)):
                incident.notified_at = note.at
            # Read the inhibition while the warning is known to Alertmanager as well.
            if (incident.am_alert is None and incident.alertname in am_alerts
                    and am_alerts[incident.alertname]["status"]["state"] == "active"
                    and (incident.inhibits is None or incident.inhibits in am_alerts)):
                incident.am_alert = am_alerts[incident.alertname]
                incident.am_inhibited = am_alerts.get(incident.inhibits)
        redis = result.by_alert["VedfolnirRedisDownCritical"]
        if redis.notified_at and redis.am_alert and result.redis_restarted_at is None:
            peers.redis.start()
            result.redis_restarted_at = time.time()
        if result.redis_restarted_at:
            if result.redis_resolved_at is None and redis.alertname not in firing:
                result.redis_resolved_at = now
            if result.redis_resolved_notified_at is None and (note := stack.sink.first(redis.alertname, "resolved")):
                result.redis_resolved_notified_at = note.at
        time.sleep(0.5)

    result.redis_after_restart = _target_state(stack, "vedfolnir-redis")
    for incident in all_incidents:
        report(request.config, incident.line())
    if result.redis_restarted_at and result.redis_resolved_notified_at:
        report(request.config, f"{'Redis restarted':<44} {'VedfolnirRedisDownCritical':<34} resolved -> /page "
                               f"notified after {result.redis_resolved_notified_at - result.redis_restarted_at:.1f}s")
    return result


def _target_state(stack: Stack, target: str) -> str:
    """The exporter's own account of a target (its series, its log lines) and the machine's load:
    when a recovery is not seen, this tells a stuck target from a starved machine."""
    text = httpx.get(stack.exporter.url + "/metrics", timeout=30).text
    series = [line for line in text.splitlines() if f'target="{target}"' in line
              and line.startswith(("stackprobe_probe_", "stackprobe_redis_up"))]
    log = [line for line in stack.exporter.tail(20_000).splitlines() if f"target={target} " in line]
    return (f"load average {os.getloadavg()}, now {time.time():.1f}; /metrics:\n" + "\n".join(series)
            + "\nexporter log:\n" + "\n".join(log[-10:]))


def _check_incident(incidents: Incidents, stack: Stack, alertname: str) -> Incident:
    """Fired in Prometheus with the catalogue's labels, routed by Alertmanager, notified at one receiver."""
    incident = incidents.by_alert[alertname]
    assert incident.fired_at is not None, f"{alertname} never fired in Prometheus (log: {stack.prometheus.log})"
    assert incident.am_alert is not None, f"{alertname} never reached Alertmanager"
    labels = incident.am_alert["labels"]
    assert (labels["target"], labels["severity"], labels["priority"]) == (
        incident.target, incident.severity, incident.priority)
    routing = yaml.safe_load((stack.generated / "rules/generated/alertmanager.yml").read_text())
    receiver = next(r["name"] for r in routing["receivers"]
                    if r["webhook_configs"][0]["url"] == stack.sink.url + incident.path)
    assert [r["name"] for r in incident.am_alert["receivers"]] == [receiver]
    assert incident.am_alert["status"]["state"] == "active"
    assert incident.notified_at is not None, f"{alertname} never reached the {incident.path} receiver"
    paths = {n.path for n in stack.sink.received() if any(
        a["labels"]["alertname"] == alertname for a in n.alerts("firing"))}
    assert paths == {incident.path}
    return incident


# --------------------------------------------------------------------------------------------
# The induced failures
# --------------------------------------------------------------------------------------------

def test_redis_stopped_pages_the_on_call_engineer(incidents, stack):
    _check_incident(incidents, stack, "VedfolnirRedisDownCritical")


def test_redis_back_resolves_the_alert(incidents, stack):
    assert incidents.redis_restarted_at is not None, "Redis was never restarted (its alert did not page)"
    assert incidents.redis_resolved_at is not None, (
        f"the alert was still firing in Prometheus after Redis came back at {incidents.redis_restarted_at:.1f}; "
        f"{incidents.redis_after_restart}")
    assert incidents.redis_resolved_notified_at is not None, "no resolved notification reached /page"
    resolved = stack.sink.first("VedfolnirRedisDownCritical", "resolved")
    assert resolved.path == "/page"
    up = 'service_target:stackprobe_redis_up:min{target="vedfolnir-redis"} == 1'
    wait_until(lambda: stack.prometheus.query(up), timeout=60, what="redis_up back to 1 in Prometheus")


def test_failing_endpoint_pages_the_on_call_engineer(incidents, stack):
    _check_incident(incidents, stack, "GenerativeArtGalleryServiceDownCritical")


def test_expiring_certificate_warns_in_business_hours(incidents, stack):
    _check_incident(incidents, stack, "PortfolioCertExpiryWarning")
    [days] = stack.prometheus.query('service_target:stackprobe_cert_expiry:days{target="portfolio-tls"}')
    assert 9.9 < float(days["value"][1]) <= 10


@pytest.mark.parametrize("critical", ["PortfolioLatencyP95Critical", "VedfolnirBackupAgeCritical"])
def test_critical_alert_fires_and_inhibits_its_warning(incidents, stack, critical):
    incident = _check_incident(incidents, stack, critical)
    # As Alertmanager answered while both were active: read again later, on a starved machine the
    # warning may have resolved meanwhile (its probe timing out until its series went).
    warning = incident.am_inhibited
    assert warning["status"]["state"] == "suppressed"
    assert warning["status"]["inhibitedBy"] == [incident.am_alert["fingerprint"]]
    assert (incident.inhibits, incident.target, "firing") in incidents.seen, "the warning tier never fired in Prometheus"
    assert stack.sink.first(incident.inhibits) is None, f"{incident.inhibits} was notified despite the inhibition"


def test_backup_directory_removed_reaches_the_team_leads(incidents, stack):
    """The backup prober fails (the directory is gone): its liveness alert, not silence, at the
    priority of the most urgent backup KPI it blinds (P1), to that priority's receiver."""
    _check_incident(incidents, stack, "PortfolioBackupProbeFailing")
    [errors] = stack.prometheus.query('sum(stackprobe_probe_errors_total{target="portfolio-backups"})')
    assert float(errors["value"][1]) > 0


def test_a_single_failed_probe_notifies_nobody(incidents, stack):
    assert incidents.failed_once is not None
    failed = stack.prometheus.query('min_over_time(stackprobe_probe_success{target="genart-backups"}[10m]) == 0')
    assert failed, "Prometheus never saw the failed probe"
    assert _probe_success(stack, "genart-backups") == 1
    assert not {s for s in incidents.seen if s[0] == "GenerativeArtGalleryBackupProbeFailing" and s[2] == "firing"}
    assert stack.sink.first("GenerativeArtGalleryBackupProbeFailing") is None


def test_an_idle_cache_pages_nobody(incidents, stack):
    """portfolio-cache's only lookups are the prober's own (one of its keys is missing: a miss per
    probe), which used to read as a 67 % hit ratio; they are left out, and a ratio of nothing is
    no ratio (min_events)."""
    own = stack.prometheus.query('rate(stackprobe_redis_probe_lookups_total{target="portfolio-cache",result="miss"}[1m]) > 0')
    assert own, "the prober's own misses were not seen"
    assert not stack.prometheus.query('service_target:stackprobe_redis_keyspace_hits:ratio_rate5m{target="portfolio-cache"} < 0.8')
    fired = {s for s in incidents.seen if s[0].startswith("PortfolioCacheHitRatio")}
    assert not fired
    assert stack.sink.first("PortfolioCacheHitRatioWarning") is None and stack.sink.first("PortfolioCacheHitRatioCritical") is None


def test_an_outage_inside_a_maintenance_window_raises_nothing(incidents, stack):
    """gallery-home answers 503 all along, inside universal-gallery's maintenance window: the
    rules know the window (service:maintenance:active), so the P0 never even goes pending, and
    nothing is notified. (That nothing fires *after* a window closes is proven by the generated
    `[maintenance]` promtool cases: this window never closes.)"""
    assert _probe_success(stack, "gallery-home") == 0
    assert stack.prometheus.query('service:maintenance:active{service="universal-gallery"} == 1')
    assert not {s for s in incidents.seen if s[0].startswith("UniversalGallery")}
    assert not [n for n in stack.sink.received() for a in n.alerts() if a["labels"].get("service") == "universal-gallery"]


def test_healthy_targets_raise_nothing(incidents, stack):
    """Over the whole run, Prometheus fired alerts only for the broken targets, and the sink got only those.

    (Pending is not checked: a fresh Prometheus evaluates the `absent()` alerts once or twice
    before its first scrape, so they are pending for a second; their `for` is 10 minutes.)
    """
    expected = {(i.alertname, i.target) for i in incidents.by_alert.values()}
    expected |= {(i.inhibits, i.target) for i in incidents.by_alert.values() if i.inhibits}
    assert {(name, target) for name, target, state in incidents.seen if state == "firing"} == expected
    notified = {a["labels"]["alertname"] for n in stack.sink.received() for a in n.alerts()}
    assert notified == set(incidents.by_alert)
    # And the healthy targets really were probed, and passed.
    failing = {"genart-worker-health", "gallery-home", "portfolio-backups"}
    success = {r["metric"]["target"]: r["value"][1]
               for r in stack.prometheus.query('stackprobe_probe_success{job="stackprobe"}')}
    assert set(success) == target_names(stack.exporter_config)
    assert {t for t, v in success.items() if v != "1"} == failing


# --------------------------------------------------------------------------------------------
# Every recording rule and every dashboard query has data on the live Prometheus
# --------------------------------------------------------------------------------------------

def _external_names() -> dict[str, str]:
    """Record and metric names of the external indicators, for every production service."""
    resolved = model.load()
    bound = [i for s in resolved.services for i in s.indicators if i.provider != "stackprobe"]
    assert {i.id for i in bound} == EXTERNAL_INDICATORS, "the catalogue's external indicators changed; update the list"
    names = {}
    for indicator in bound:
        names[indicator.record] = indicator.provider
        names |= {m: indicator.provider for m in indicator.metrics}
    return names


def _metric_names(expr: str) -> set[str]:
    """The metric name of every vector selector of a PromQL expression."""
    found = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.add(node.name)
    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _excuses(expr: str, by_name: dict[str, str]) -> set[str]:
    """Why `expr` may be empty here: the allow-listed metrics it reads (empty set: none)."""
    return _metric_names(expr) & set(by_name)


def _check_all_have_data(prometheus: Prometheus, queries: list[tuple[str, str]]) -> set[str]:
    """Each (where, expr) returns data unless it reads an allow-listed series, which must then be
    empty; returns the allow-list entries that were needed."""
    by_name = _external_names() | NO_DATA_HERE
    empty, unexpected, used = [], [], set()
    for where, expr in queries:
        result = prometheus.query(expr)
        gaps = [why for (service, name), why in INDUCED_GAPS.items()
                if name in _metric_names(expr) and f'service="{service}"' in expr]
        if gaps:
            assert not result, f"{where}: {expr} has data, but {gaps[0]}"
            continue
        excuses = _excuses(expr, by_name)
        used |= excuses
        if not excuses and not result:
            empty.append(f"{where}: {expr}")
        elif excuses and result:
            unexpected.append(f"{where}: {expr} (allow-listed: {sorted(excuses)})")
    assert not empty, "no data:\n" + "\n".join(empty)
    assert not unexpected, "data where the allow-list says there is none; shorten the list:\n" + "\n".join(unexpected)
    return used


def test_every_generated_recording_rule_has_data(incidents, stack):
    """The committed recording rules, run live: stackprobe ones by their recorded name (the same
    rules are loaded here: the test catalogue compiles the same indicator library), external ones
    by their expression (it must run; nothing here provides node_exporter or application data)."""
    loaded = (stack.generated / "rules/generated/indicators.rules.yml").read_text()
    assert loaded == (REPO_ROOT / "rules/generated/indicators.rules.yml").read_text()
    queries, records = [], set()
    for path in sorted((REPO_ROOT / "rules/generated").glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    live = path.name == "indicators.rules.yml"
                    queries.append((f"{path.name} {rule['record']}", rule["record"] if live else rule["expr"]))
                    records.add(rule["record"])
    live_records = {r["name"] for g in stack.prometheus.rule_groups() for r in g["rules"] if r["type"] == "recording"}
    assert records >= live_records
    _check_all_have_data(stack.prometheus, queries)


def test_every_dashboard_query_has_data(incidents, stack):
    """Every panel and variable query of the committed dashboards (grafana/generated/)."""
    queries = [(f"{q.dashboard} / {q.panel} {q.ref}", q.concrete()) for q in generated_queries()]
    assert len(queries) > 100
    used = _check_all_have_data(stack.prometheus, queries)
    stale = set(NO_DATA_HERE) - used
    assert not stale, f"allow-list entries no query needs; remove them: {sorted(stale)}"


# --------------------------------------------------------------------------------------------
# The files a user copies (deploy/) stay valid
# --------------------------------------------------------------------------------------------

def test_promtool_checks_the_deploy_prometheus_config(promtool):
    """deploy/prometheus.yml as committed: rule_files relative to it resolve to the generated rules."""
    result = run(promtool, "check", "config", DEPLOY / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rule files found" in result.stdout


def test_deploy_exporter_config_is_valid():
    script = Path(sys.executable).with_name("stackprobe")
    result = subprocess.run([script, "check-config", DEPLOY / "stackprobe.yml"], capture_output=True, text=True,
                            env={**os.environ, **PASSWORDS}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK, 26 targets" in result.stdout


def test_probe_job_scrapes_a_configured_target_on_demand(stack):
    """The /probe multi-target job of deploy/prometheus.yml, relabelled as committed, scrapes the exporter."""
    [job] = [j for j in stack.prometheus_config["scrape_configs"] if j["job_name"] == "stackprobe-probe"]
    names = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert set(names) <= target_names(stack.exporter_config)
    wait_until(lambda: all(t["health"] == "up" for t in stack.prometheus.targets()
                           if t["labels"]["job"] == "stackprobe-probe"), timeout=30, what="the /probe job up")
    probed = wait_until(lambda: stack.prometheus.query('stackprobe_probe_success{job="stackprobe-probe"}'),
                        timeout=30, what="series from the /probe job")
    assert {(r["metric"]["instance"], r["metric"]["target"], r["value"][1]) for r in probed} == {
        (name, name, "1") for name in names}


def test_a_scrape_with_every_prober_passes_promtool_check_metrics(incidents, stack, promtool):
    """The exporter of this stack runs all five probers against real servers; its exposition is
    what Prometheus has been ingesting, and promtool's linter finds nothing in it."""
    text = httpx.get(stack.exporter.url + "/metrics", timeout=30).text
    probers = {line.split('prober="', 1)[1].split('"', 1)[0]
               for line in text.splitlines() if line.startswith("stackprobe_probe_success{")}
    assert probers == {"mysql", "redis", "http", "backup", "cert"}
    result = subprocess.run([str(promtool), "check", "metrics"], input=text, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
