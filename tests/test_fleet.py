"""The fleet end to end (issue 13): stackprobe sharded, scraped by a vmagent cluster into
VictoriaMetrics, the generated rules run by two vmalert replicas, notifications deduplicated by
an Alertmanager gossip cluster; then one of each is killed mid-run.

Everything on loopback, started here and stopped by PID:

    peers (tests/test_e2e.py's: MariaDB, Redis, HTTP(S), TLS servers, backup directories)
      <- stackprobe --shard=0/2, --shard=1/2       one config (deploy/stackprobe.yml's targets)
      <- vmagent memberNum 0 and 1 of 2            cluster mode, replicationFactor 2
      -> VictoriaMetrics single-node               dedup 1 s (replicated scrapes and rule results)
      <- vmalert x2                                rules of the e2e test catalogue, state written back
      -> Alertmanager x2, gossip cluster           the generated routing
      -> webhook sink                              one path per receiver

With replicationFactor 2 every vmagent member scrapes every shard (vmagent's own HA setup,
deduplicated by the store): a member that dies loses no target; with replicationFactor 1 its
share of the targets would go unscraped.

Phase 1: the failures of tests/test_e2e.py are induced; each alert must reach its receiver
exactly once although two rulers send it to two Alertmanagers. Phase 2: vmagent member 0, the
Alertmanager that sends the cluster's notifications (position 0) and stackprobe shard 1 are
killed with SIGKILL; Redis is restarted. The resolution still arrives once, the still-firing
alerts are not sent again, and every service with targets on the lost shard raises its per-target
absence alert (<Service>TargetAbsent, naming the dead instance) once; the services live on both
shards, so the whole-service <Service>ProbesAbsent must stay quiet. A final quiet period longer than Alertmanager's peer timeout (15 s: how long
the second member waits before sending what the first did not) shows that nothing arrives twice.
"""

from __future__ import annotations

import os
import string
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from fixtures.net import free_port, wait_until
from fixtures.prom_stack import Alertmanager, Notification, StackprobeExporter, WebhookSink, report
from fixtures.promtools import run
from fixtures.victoria import VictoriaMetrics, VMAgent, VMAlert
from stackprobe.exporter.shard import owner_of
from stackprobe.rules.model import camel
from test_e2e import DAY, DEPLOY, PASSWORDS, TEST_CATALOGUE, exporter_config, peers, target_names, targets_of  # noqa: F401  (peers: fixture)

SHARDS = 2
LOST_SHARD = 1
#: Inside a maintenance window all run (tests/e2e/catalogue): its absence alerts are muted too.
IN_MAINTENANCE = "universal-gallery"
#: Receiver of the absence alerts (absent.priority P1 in tests/e2e/catalogue/routing.yaml).
ABSENCE_PATH = "/team-leads"
#: The absence alerts' `for` in this test (10m in the catalogue default).
ABSENT_FOR = "10s"
#: Alertmanager's default --cluster.peer-timeout, plus margin: a duplicate would come by then.
QUIET_SECONDS = 25
DEADLINE = 150  # per phase; only so a broken fleet cannot hang CI


@dataclass(frozen=True)
class Expected:
    alertname: str
    target: str
    path: str  # receiver's webhook path (tests/e2e/catalogue/routing.yaml)


PHASE1 = (
    Expected("VedfolnirRedisDownCritical", "vedfolnir-redis", "/page"),
    Expected("PortfolioLatencyP95Critical", "portfolio-home", "/team-leads"),
    Expected("GenerativeArtGalleryServiceDownCritical", "genart-worker-health", "/page"),
    Expected("PortfolioCertExpiryWarning", "portfolio-tls", "/business-hours"),
    Expected("VedfolnirBackupAgeCritical", "vedfolnir-backups", "/team-leads"),
)
INHIBITED = ("PortfolioLatencyP95Warning", "VedfolnirBackupAgeWarning")


def lost_by_service(config: dict) -> dict[str, set[str]]:
    """The lost shard's targets per service (their series vanish with it), but the muted one."""
    out: dict[str, set[str]] = {}
    for t in targets_of(config):
        if owner_of(t["name"], SHARDS) == LOST_SHARD and t["service"] != IN_MAINTENANCE:
            out.setdefault(t["service"], set()).add(t["name"])
    return out


def absence_alerts(config: dict) -> set[str]:
    """What the lost shard must raise: per service it had targets of, the per-target absence
    alert; for a service it held entirely, the whole-service one too."""
    owned = {t["service"] for t in targets_of(config) if owner_of(t["name"], SHARDS) != LOST_SHARD}
    return {camel(s) + "TargetAbsent" for s in lost_by_service(config)} | {
        camel(s) + "ProbesAbsent" for s in lost_by_service(config) if s not in owned}


@dataclass
class Fleet:
    shards: list[StackprobeExporter]
    vm: VictoriaMetrics
    vmagents: list[VMAgent]
    vmalerts: list[VMAlert]
    alertmanagers: list[Alertmanager]
    sink: WebhookSink
    config: dict
    started_at: float
    timings: dict[str, float] = field(default_factory=dict)


def fleet_catalogue(work: Path, sink_url: str) -> Path:
    """`gen-rules build` of the e2e test catalogue, every service's absence alert after ABSENT_FOR."""
    catalogue = work / "catalogue"
    catalogue.mkdir()
    for source in TEST_CATALOGUE.glob("*.yaml"):
        text = string.Template(source.read_text()).substitute(sink=sink_url)
        if source.name != "routing.yaml":
            text += f"\nabsent: {{for: {ABSENT_FOR}}}\n"
        (catalogue / source.name).write_text(text)
    out = work / "out"
    result = run(Path(sys.executable).with_name("gen-rules"), "build", "--catalogue", catalogue, "--out", out)
    assert result.returncode == 0, result.stderr
    return out / "rules/generated"


def scrape_config(shards: list[StackprobeExporter]) -> dict:
    """deploy/prometheus.yml's `stackprobe` job at 1 s, listing every shard."""
    deploy = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [job] = [j for j in deploy["scrape_configs"] if j["job_name"] == "stackprobe"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{s.port}" for s in shards]}]
    return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": [job]}


@pytest.fixture(scope="module")
def fleet(peers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("fleet")
    started = time.monotonic()
    sink = WebhookSink()
    processes: list = []
    try:
        config = exporter_config(peers.local_targets())
        (work / "stackprobe.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        shards = [StackprobeExporter(work / "stackprobe.yml", work, PASSWORDS, [f"--shard={i}/{SHARDS}"],
                                     name=f"stackprobe-{i}") for i in range(SHARDS)]
        processes += shards
        vm = VictoriaMetrics(work)
        processes.append(vm)
        (work / "scrape.yml").write_text(yaml.safe_dump(scrape_config(shards)))
        vmagents = [VMAgent(work / "scrape.yml", work, vm.write_url, member=i, members=2, replication=2)
                    for i in range(2)]
        processes += vmagents

        rules = fleet_catalogue(work, sink.url)
        cluster_ports = [free_port(), free_port()]
        alertmanagers = []
        for i, port in enumerate(cluster_ports):
            peers_ = [f"127.0.0.1:{p}" for p in cluster_ports if p != port]
            alertmanagers.append(Alertmanager(rules / "alertmanager.yml", work, f"alertmanager-{i}", port, peers_))
            processes.append(alertmanagers[-1])
        wait_until(lambda: all(len(am.status()["cluster"]["peers"]) == 2 and am.status()["cluster"]["status"] == "ready"
                               for am in alertmanagers), timeout=60, interval=0.5, what="the Alertmanager cluster formed")

        # The rulers start once the store has every target: absent() must not see an empty store.
        names = target_names(config)
        wait_until(lambda: {r["metric"]["target"] for r in vm.query("stackprobe_probe_success")} == names,
                   timeout=60, interval=0.5, what="every target's series in VictoriaMetrics")
        vmalerts = [VMAlert(sorted(rules.glob("*.rules.yml")), work, vm.url, [am.url for am in alertmanagers], i)
                    for i in range(2)]
        processes += vmalerts
        fleet = Fleet(shards, vm, vmagents, vmalerts, alertmanagers, sink, config, time.time())
        fleet.timings["setup"] = time.monotonic() - started
        yield fleet
    finally:
        for process in reversed(processes):
            process.stop()
        sink.close()


def _firing(sink: WebhookSink, alertname: str) -> list[Notification]:
    return [n for n in sink.received() if any(a["labels"]["alertname"] == alertname for a in n.alerts("firing"))]


def _resolved(sink: WebhookSink, alertname: str) -> list[Notification]:
    return [n for n in sink.received() if any(a["labels"]["alertname"] == alertname for a in n.alerts("resolved"))]


def _sender(alertmanagers: list[Alertmanager]) -> int:
    """Index of the member at position 0 of the cluster (peers sorted by name): the one that
    notifies at once, while the others wait their position times the peer timeout."""
    names = [am.status()["cluster"]["name"] for am in alertmanagers]
    return names.index(min(names))


@dataclass
class Run:
    notified_after: dict[str, float] = field(default_factory=dict)  # alertname -> s after induction
    killed_at: float | None = None
    redis_resolved_after: float | None = None
    absence_after: dict[str, float] = field(default_factory=dict)  # alertname -> s after the shard was killed
    lost_targets: set[str] = field(default_factory=set)
    killed: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def fleet_run(fleet: Fleet, peers, request: pytest.FixtureRequest) -> Run:
    sink, result = fleet.sink, Run()
    wait_until(lambda: fleet.vm.query('service_target:stackprobe_redis_up:min{target="vedfolnir-redis"} == 1'),
               timeout=60, interval=0.5, what="Redis seen up through the fleet")
    induced = time.time()
    peers.redis.stop()
    stale = induced - 3 * DAY
    for file in peers.backups["vedfolnir-backups"].glob("vedfolnir_*.sql"):
        os.utime(file, (stale, stale))

    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline and len(result.notified_after) < len(PHASE1):
        for e in PHASE1:
            if e.alertname not in result.notified_after and (notes := _firing(sink, e.alertname)):
                result.notified_after[e.alertname] = notes[0].at - induced
        time.sleep(0.5)
    fleet.timings["phase1"] = time.time() - induced

    # Phase 2: one of each dies.
    sender = _sender(fleet.alertmanagers)
    result.lost_targets = {t["name"] for t in targets_of(fleet.config)
                           if owner_of(t["name"], SHARDS) == LOST_SHARD}
    result.killed_at = time.time()
    for what, process in (("vmagent", fleet.vmagents[0]), ("alertmanager", fleet.alertmanagers[sender]),
                          ("stackprobe", fleet.shards[LOST_SHARD])):
        process.proc.kill()
        process.proc.wait(timeout=10)
        result.killed[what] = str(process.proc.pid)
    peers.redis.start()
    restarted = time.time()
    deadline = time.monotonic() + DEADLINE
    absences = absence_alerts(fleet.config)
    while time.monotonic() < deadline and not (result.redis_resolved_after and result.absence_after.keys() == absences):
        if result.redis_resolved_after is None and (notes := _resolved(sink, "VedfolnirRedisDownCritical")):
            result.redis_resolved_after = notes[0].at - restarted
        for alertname in absences - result.absence_after.keys():
            if notes := _firing(sink, alertname):
                result.absence_after[alertname] = notes[0].at - result.killed_at
        time.sleep(0.5)
    time.sleep(QUIET_SECONDS)
    fleet.timings["phase2"] = time.time() - result.killed_at

    for e in PHASE1:
        after = result.notified_after.get(e.alertname)
        report(request.config, f"fleet: {e.alertname:<40} -> {e.path:<15} notified after "
                               + (f"{after:5.1f}s" if after is not None else "never"))
    for label, value in (("Redis restarted, resolved notified after", result.redis_resolved_after),
                         *((f"shard {LOST_SHARD} killed, {a} notified after", result.absence_after.get(a))
                           for a in sorted(absences))):
        report(request.config, f"fleet: {label} " + (f"{value:.1f}s" if value is not None else "never"))
    report(request.config, "fleet: " + ", ".join(f"{k} {v:.0f}s" for k, v in fleet.timings.items())
           + f" (phase 2 includes a {QUIET_SECONDS}s quiet period)")
    return result


# --------------------------------------------------------------------------------------------

def test_the_shards_split_the_config_without_gap_or_overlap(fleet: Fleet):
    """Before anything is killed (the fixture waited for every target in the store): each
    target's series come from one shard only, the one its name hashes to."""
    by_target = {}
    for r in fleet.vm.query('stackprobe_probe_success{job="stackprobe"}'):
        by_target.setdefault(r["metric"]["target"], set()).add(r["metric"]["instance"])
    ports = {f"127.0.0.1:{s.port}": i for i, s in enumerate(fleet.shards)}
    assert {t: {ports[i] for i in instances} for t, instances in by_target.items()} == {
        t["name"]: {owner_of(t["name"], SHARDS)} for t in targets_of(fleet.config)}
    info = {(r["metric"]["index"], r["metric"]["count"]) for r in fleet.vm.query("stackprobe_shard_info")}
    assert info == {("0", "2"), ("1", "2")}


def test_each_induced_failure_reaches_its_receiver_exactly_once(fleet_run: Run, fleet: Fleet):
    """Two rulers send every alert to two Alertmanagers; the cluster notifies once, over the whole
    run, kills included."""
    never = [e.alertname for e in PHASE1 if e.alertname not in fleet_run.notified_after]
    assert not never, f"never notified: {never} (logs in {fleet.vm.log.parent})"
    for e in PHASE1:
        notes = _firing(fleet.sink, e.alertname)
        assert [n.path for n in notes] == [e.path], f"{e.alertname}: {[(n.path, n.at) for n in notes]}"
        [alert] = [a for a in notes[0].alerts("firing") if a["labels"]["alertname"] == e.alertname]
        assert alert["labels"]["target"] == e.target
    for alertname in INHIBITED:
        assert not _firing(fleet.sink, alertname), f"{alertname} was notified despite its inhibition"


def test_after_the_kills_a_resolution_arrives_once(fleet_run: Run, fleet: Fleet):
    assert fleet_run.redis_resolved_after is not None, "Redis came back but no resolved notification arrived"
    assert [n.path for n in _resolved(fleet.sink, "VedfolnirRedisDownCritical")] == ["/page"]


def test_the_lost_shard_raises_its_targets_absence_alerts_once(fleet_run: Run, fleet: Fleet):
    """Every lost target of a service that lives on both shards raises its service's
    TargetAbsent once, naming the dead instance: the whole-service ProbesAbsent cannot (the
    other shard still reports the service), and the target's own alerts just resolve."""
    lost = f"127.0.0.1:{fleet.shards[LOST_SHARD].port}"
    surviving = {t["service"] for t in targets_of(fleet.config) if owner_of(t["name"], SHARDS) != LOST_SHARD}
    split = {s: targets for s, targets in lost_by_service(fleet.config).items() if s in surviving}
    assert split, "the test config must have a service on both shards"
    missing = absence_alerts(fleet.config) - fleet_run.absence_after.keys()
    assert not missing, f"never notified after shard {LOST_SHARD} died: {sorted(missing)}"
    for service, targets in split.items():
        notes = _firing(fleet.sink, camel(service) + "TargetAbsent")
        assert [n.path for n in notes] == [ABSENCE_PATH], [(n.path, n.at) for n in notes]
        alerts = notes[0].alerts("firing")
        assert sorted(a["labels"]["target"] for a in alerts) == sorted(targets)
        assert {a["labels"]["instance"] for a in alerts} == {lost}
    # The surviving scraper saw the shard go down; the shard's targets are gone from the store.
    assert [r["value"][1] for r in fleet.vm.query(f'up{{job="stackprobe", instance="{lost}"}}')] == ["0"]
    assert not {r["metric"]["target"] for r in fleet.vm.query("stackprobe_probe_success")} & fleet_run.lost_targets


def test_nothing_else_was_notified(fleet_run: Run, fleet: Fleet):
    """Every notification of the run is one of the expected ones: healthy targets and the
    survivors' still-firing alerts raised nothing new."""
    counts = Counter((n.path, a["labels"]["alertname"], a["labels"].get("target"), a["status"])
                     for n in fleet.sink.received() for a in n.alerts())
    expected_firing = {(e.path, e.alertname, "firing") for e in PHASE1} | {
        (ABSENCE_PATH, a, "firing") for a in absence_alerts(fleet.config)}
    firing = {(path, alertname, status) for path, alertname, _, status in counts if status == "firing"}
    assert firing == expected_firing
    assert all(n == 1 for n in counts.values()), counts  # per alert (a TargetAbsent notification holds several)
    # The only resolutions: Redis back, and the alerts whose targets died with the lost shard.
    resolved = {k[1] for k in counts if k[3] == "resolved"}
    lost_alerts = {e.alertname for e in PHASE1 if e.target in fleet_run.lost_targets}
    assert resolved <= {"VedfolnirRedisDownCritical"} | lost_alerts
    assert "VedfolnirRedisDownCritical" in resolved
