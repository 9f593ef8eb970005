"""gen-rules: the catalogue compiles into rules, tests and routing that the real promtool/amtool accept."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import promql_parser
import pytest
import yaml
from click.testing import CliRunner

from fixtures.promtools import run
from stackprobe.exporter.metrics import PREFIX, exported_series_names
from stackprobe.rules import cli, model
from stackprobe.rules.emit import alertmanager, prometheus, promtests
from stackprobe.rules.promql import keep_labels
from stackprobe.rules.spec import DEFAULT_DIRECTORY, PRIORITIES, load_catalogue, substitute

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"


@pytest.fixture(scope="module")
def catalogue():
    """The catalogue as written (spec)."""
    return load_catalogue()


@pytest.fixture(scope="module")
def resolved(catalogue):
    """The resolved model the emitters read."""
    return model.resolve(catalogue)


@pytest.fixture(scope="module")
def built(tmp_path_factory, catalogue) -> Path:
    """The outputs written by `gen-rules build` into a fresh directory."""
    out = tmp_path_factory.mktemp("out")
    result = CliRunner().invoke(cli.main, ["build", "--out", str(out), "--format", "prometheusrule"])
    assert result.exit_code == 0, result.output
    return out / "rules" / "generated"


def test_committed_outputs_are_up_to_date():
    result = CliRunner().invoke(cli.main, ["check", "--out", str(REPO)])
    assert result.exit_code == 0, result.output


def test_output_is_deterministic(resolved, tmp_path):
    first = cli.render(resolved)
    assert cli.render(model.load()) == first
    for _ in range(2):
        CliRunner().invoke(cli.main, ["build", "--out", str(tmp_path)])
        assert cli.on_disk(tmp_path, cli.managed_dirs(list(first))) == first


def test_promtool_check_rules(promtool, built, catalogue):
    files = sorted(built.glob("*.rules.yml"))
    result = run(promtool, "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = yaml.safe_load((built / "kubernetes" / "prometheusrule.yaml").read_text())
    assert manifest["kind"] == "PrometheusRule"
    rules_in_files = sum(len(g["rules"]) for f in files for g in yaml.safe_load(f.read_text())["groups"])
    assert sum(len(g["rules"]) for g in manifest["spec"]["groups"]) == rules_in_files


def assert_promtool_tests_pass(promtool, files: list[Path]) -> None:
    """`promtool test rules` of each file, as many at once as there are cores, the biggest first:
    all at once, the 18 files shared 2 cores and the slowest (~60 s of CPU alone) ran into the
    240 s limit of one call (seen at load average 4-8)."""
    by_size = sorted(files, key=lambda f: f.stat().st_size, reverse=True)
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda f: run(promtool, "test", "rules", f.name, cwd=f.parent), by_size))
    failed = [f"{f.name}:\n{r.stdout}{r.stderr}" for f, r in zip(by_size, results) if r.returncode != 0]
    assert not failed, "\n".join(failed)


def test_generated_rule_unit_tests_pass(promtool, built):
    files = sorted((built / "tests").glob("*.test.yml"))
    assert len(files) >= 5
    assert_promtool_tests_pass(promtool, files)


def test_every_alert_has_a_firing_and_a_quiet_case(resolved):
    for service in resolved.services:
        tests = [t for ts in promtests.cases(service).values() for t in ts]
        for alert in service.alerts:
            checks = [c for t in tests for c in t["alert_rule_test"] if c["alertname"] == alert.name]
            assert any(c["exp_alerts"] for c in checks), f"{alert.name} is never expected to fire"
            assert any(not c["exp_alerts"] for c in checks), f"{alert.name} is never expected to stay quiet"


def test_amtool_check_config(amtool, built):
    result = run(amtool, "check-config", built / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("priority", PRIORITIES)
def test_amtool_routes_each_service_and_priority_to_its_receiver(amtool, built, resolved, priority):
    """`amtool config routes test`: every service's alerts of a priority reach the receiver its
    playbook names (the model's policy), and alerts of no known service routing.yaml's default."""
    cases = [(s.id, s.policies[priority].receiver) for s in resolved.services]
    cases.append(("some-other-service", resolved.routing.policies[priority].receiver))
    for service, receiver in cases:
        result = run(amtool, "config", "routes", "test", f"--config.file={built / 'alertmanager.yml'}",
                     f"--verify.receivers={receiver}", f"priority={priority}", f"service={service}",
                     "severity=critical", "alertname=X")
        assert result.returncode == 0, (service, result.stdout + result.stderr)
        assert result.stdout.strip() == receiver, service


def test_playbook_routing_per_service(resolved):
    """The playbooks' own promises, not one copied to all: client-templates' P1 escalates to the
    Engineering Manager and the Director, its P2 answers within 30 minutes at any hour (004),
    portfolio's P1/P2 reach the Engineering Manager (001), universal-gallery's P2 waits for
    business hours and its P3 is one weekly summary (000)."""
    def receivers(service: str, priority: str) -> list[str]:
        policy = resolved.service(service).policies[priority]
        body = resolved.routing.receivers[policy.receiver]
        return [c["to"] for c in body.get("email_configs", [])]
    ct, ug = resolved.service("client-templates").policies, resolved.service("universal-gallery").policies
    assert "director-engineering@example.com" in receivers("client-templates", "P1")[0]
    assert "engineering-manager@example.com" in receivers("client-templates", "P1")[0]
    assert (ct["P2"].repeat_interval, ct["P2"].active_time_intervals) == (1800, ())
    assert ct["P0"].repeat_interval == 900 and ct["P1"].repeat_interval == 3600
    assert "engineering-manager@example.com" in receivers("portfolio", "P1")[0]
    assert "engineering-manager@example.com" in receivers("portfolio", "P2")[0]
    assert ug["P2"].active_time_intervals == ("business-hours",)
    assert (ug["P3"].active_time_intervals, ug["P3"].group_by, ug["P3"].repeat_interval) == (
        ("weekly-summary",), ("service", "priority"), 7 * 86400)
    assert resolved.service("vedfolnir").policies["P3"].active_time_intervals == ()


def test_routing_timing_and_time_intervals(resolved):
    """What amtool cannot evaluate (it ignores time): business hours, the weekly summary hour,
    maintenance mutes, and inhibition that keeps targets apart."""
    doc = alertmanager.config(resolved)
    trees = {r["matchers"][0]: r for r in doc["route"]["routes"] if "routes" in r}
    assert set(trees) == {f'service="{s.id}"' for s in resolved.services}

    def route(service: str, priority: str) -> dict:
        return next(r for r in trees[f'service="{service}"']["routes"] if r["matchers"] == [f'priority="{priority}"'])
    assert route("universal-gallery", "P0")["group_wait"] == "0s"
    assert [route("universal-gallery", p)["repeat_interval"] for p in PRIORITIES] == ["15m", "1h", "4h", "1w"]
    p2 = route("universal-gallery", "P2")
    assert p2["active_time_intervals"] == ["business-hours"]
    assert p2["mute_time_intervals"] == ["universal-gallery-weekly", "universal-gallery-monthly"]
    assert "active_time_intervals" not in route("client-templates", "P2")
    assert route("vedfolnir", "P1")["mute_time_intervals"] == ["vedfolnir-weekly-optimisation"]
    assert "mute_time_intervals" not in route("vedfolnir", "P0")
    intervals = {i["name"]: i["time_intervals"] for i in doc["time_intervals"]}
    assert intervals["universal-gallery-monthly"] == [{"weekdays": ["sunday"], "days_of_month": ["1:7"],
                                                       "times": [{"start_time": "01:00", "end_time": "06:00"}],
                                                       "location": "UTC"}]
    assert intervals["business-hours"][0]["weekdays"] == ["monday:friday"]
    assert intervals["weekly-summary"] == [{"weekdays": ["monday"], "times": [{"start_time": "09:00", "end_time": "10:00"}],
                                            "location": "UTC"}]
    assert "client-templates-business-hours" in intervals
    tiers, [liveness], collectors = doc["inhibit_rules"][:2], doc["inhibit_rules"][2:3], doc["inhibit_rules"][3:]
    assert all(rule["equal"] == ["service", "kpi", "target"] for rule in tiers)
    assert "VedfolnirMysqlDownCritical" in liveness["source_matchers"][0]
    assert "ClientTemplatesBackupProbeFailing" in liveness["source_matchers"][0]
    assert "CollectorFailing" not in liveness["source_matchers"][0]  # it silences only what it blinds
    assert liveness["equal"] == ["service", "target"]
    assert {"VedfolnirMysqlCollectorFailing", "UniversalGalleryMysqlCollectorFailing"} <= {
        r["source_matchers"][0].split('"')[1] for r in collectors}
    assert all(r["equal"] == ["service", "target"] for r in collectors)


def test_a_failing_mysql_section_alerts_for_the_kpis_it_blinds(resolved):
    """<Service>MysqlCollectorFailing watches exactly the sections the service's alertable KPIs
    read (vedfolnir's table growth is not alertable: `tables` unwatched), at the most urgent
    priority they carry, with ProbeFailing's `for`; in Alertmanager it silences those KPIs'
    alerts per section and target, and the target's down alert silences it."""
    alerts = {s.id: next((a for a in s.alerts if a.kind == "collector"), None) for s in resolved.services}
    assert {s for s, a in alerts.items() if a} == {"universal-gallery", "vedfolnir", "generative-art-gallery"}
    vedfolnir = alerts["vedfolnir"]
    assert vedfolnir.name == "VedfolnirMysqlCollectorFailing" and vedfolnir.for_ == 360
    assert vedfolnir.blinds == {
        "global_status": ("VedfolnirDbConnectionsUsageWarning", "VedfolnirDbSlowQueriesWarning"),
        "replica_status": ("VedfolnirReplicationLagWarning", "VedfolnirReplicationStoppedWarning")}
    assert 'collector=~"global_status|replica_status"} < 1\nunless on(service)' in vedfolnir.expr
    assert vedfolnir.labels["priority"] == "P1"
    gallery = alerts["universal-gallery"]
    probe_failing = next(a for a in resolved.service("universal-gallery").alerts if a.name == "UniversalGalleryMysqlProbeFailing")
    assert (gallery.labels["priority"], gallery.for_) == ("P2", probe_failing.for_)
    assert "/probe?target={{ $labels.target }}&debug=true" in vedfolnir.rule()["annotations"]["description"]
    rules = [r for r in alertmanager.inhibit_rules(resolved) if "Vedfolnir" in r["source_matchers"][0]]
    by_section = {r["source_matchers"][1]: r["target_matchers"] for r in rules if len(r["source_matchers"]) == 2}
    assert by_section == {'collector="replica_status"': ['alertname=~"VedfolnirReplicationLagWarning|VedfolnirReplicationStoppedWarning"'],
                          'collector="global_status"': ['alertname=~"VedfolnirDbConnectionsUsageWarning|VedfolnirDbSlowQueriesWarning"']}
    assert "VedfolnirMysqlDownCritical" in resolved.routing.liveness_alerts
    assert vedfolnir.name not in resolved.routing.liveness_alerts


def _selectors(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if isinstance(child, promql_parser.Expr):
                visit(child)
        for arg in getattr(node, "args", None) or []:
            visit(arg)

    visit(promql_parser.parse(expr))
    return names


def test_indicator_metrics_are_exported_or_attributed(catalogue, resolved):
    """Every name an indicator reads is stackprobe's own, or comes from the named external exporter."""
    exported = exported_series_names()
    bound = [(i.id, i.provider, i.expr, set(i.metrics)) for s in resolved.services for i in s.indicators]
    unused = [(i.id, i.provider, substitute(i.expr, dict(i.params, match='service="x"')),
               {substitute(m, i.params) for m in i.metrics})
              for i in catalogue.indicators.values() if i.id not in {b[0] for b in bound}]
    for iid, provider, expr, metrics in bound + unused:
        names = _selectors(expr)
        assert names == metrics, f"{iid}: metrics do not match its expr"
        for name in names:
            if provider == "stackprobe":
                assert name in exported, f"{iid} reads {name}, which stackprobe does not export"
            else:
                assert not name.startswith(PREFIX), f"{iid} ({provider}) reads stackprobe's {name}"


def test_alert_rules_read_only_recorded_series(catalogue, resolved):
    """Alerts read recording rules (indicators, their traffic, maintenance, the SLIs without it);
    only the absence alerts read raw series, the ones whose absence they report (and the
    per-target one `up`, whether the exporter that reported the target is still scraped)."""
    for service in resolved.services:
        records = {r.record for r in resolved.recordings} | {r.record for r in service.recordings}
        for alert in service.alerts:
            names = _selectors(alert.expr)
            if alert.kind == "external_absent":
                assert names <= {m for i in service.indicators for m in i.metrics} | records, alert.name
            elif alert.kind == "target_absent":
                assert names == {"stackprobe_probe_success", "up"} | (names & records), alert.name
            else:
                assert names <= records | {"stackprobe_probe_success"}, alert.name


def test_alerts_carry_routing_labels_and_runbooks(resolved):
    for service in resolved.services:
        for alert in service.alerts:
            assert set(alert.labels) >= {"service", "kpi", "severity", "priority"}
            assert alert.labels["severity"] in ("critical", "warning", "info")
            assert alert.labels["priority"] in PRIORITIES
            assert alert.rule()["annotations"]["runbook_url"].startswith(resolved.routing.runbook_base_url + service.playbook)


# --- the playbooks' numbers -----------------------------------------------------------------------

# (service, kpi, tier) -> threshold, in the indicator's unit; the table, row by row.
PLAYBOOK_THRESHOLDS = {
    ("universal-gallery", "availability", "warning"): 0.999,
    ("universal-gallery", "availability", "target"): 0.9999,
    ("universal-gallery", "latency_avg", "warning"): 0.5,
    ("universal-gallery", "latency_avg", "target"): 0.3,
    ("universal-gallery", "latency_p95", "target"): 1.0,
    ("universal-gallery", "error_rate", "warning"): 0.02,
    ("universal-gallery", "error_rate", "target"): 0.005,
    ("universal-gallery", "db_connections_usage", "warning"): 0.8,
    ("universal-gallery", "cache_hit_ratio", "warning"): 0.85,
    ("universal-gallery", "backup_age", "critical"): 86400,
    ("universal-gallery", "cert_expiry", "warning"): 30,
    ("universal-gallery", "throughput", "target"): 1000,
    ("universal-gallery", "latency_degradation", "critical"): 0.5,
    ("portfolio", "availability", "target"): 0.999,
    ("portfolio", "availability", "warning"): 0.995,
    ("portfolio", "availability", "critical"): 0.99,
    ("portfolio", "latency_p95", "target"): 1.0,
    ("portfolio", "latency_p95", "warning"): 2.0,
    ("portfolio", "latency_p95", "critical"): 5.0,
    ("portfolio", "error_rate", "target"): 0.001,
    ("portfolio", "error_rate", "warning"): 0.01,
    ("portfolio", "error_rate", "critical"): 0.05,
    ("portfolio", "image_processing_success", "target"): 0.99,
    ("portfolio", "image_processing_success", "warning"): 0.98,
    ("portfolio", "image_processing_success", "critical"): 0.95,
    ("portfolio", "cache_hit_ratio", "target"): 0.9,
    ("portfolio", "cache_hit_ratio", "warning"): 0.8,
    ("portfolio", "cache_hit_ratio", "critical"): 0.7,
    ("portfolio", "cpu", "warning"): 0.8,
    ("portfolio", "memory", "warning"): 0.8,
    ("portfolio", "disk", "warning"): 0.8,
    ("vedfolnir", "cpu", "warning"): 0.8,
    ("vedfolnir", "memory", "warning"): 0.85,
    ("vedfolnir", "disk", "warning"): 0.9,
    ("vedfolnir", "latency_avg", "warning"): 2.0,
    ("vedfolnir", "error_rate", "warning"): 0.05,
    ("vedfolnir", "db_connections_usage", "warning"): 0.8,
    ("vedfolnir", "db_slow_queries", "warning"): 10,
    ("vedfolnir", "redis_memory_usage", "warning"): 0.9,
    ("generative-art-gallery", "cpu", "warning"): 0.8,
    ("generative-art-gallery", "memory", "warning"): 0.85,
    ("generative-art-gallery", "disk", "warning"): 0.9,
    ("generative-art-gallery", "error_rate", "warning"): 0.01,
    ("generative-art-gallery", "latency_degradation", "warning"): 0.1,
}

# KPIs the table names without a number, or as conditions: they must exist (alertable or not).
PLAYBOOK_KPIS = {
    "universal-gallery": {"backup_verify", "target_down", "mttr", "user_satisfaction"},
    "portfolio": {"image_queue_length", "cert_expiry", "backup_age", "target_down"},
    "vedfolnir": {"replication_lag", "target_down", "mysql_down", "redis_down", "emergency_maintenance",
                  "maintenance_mode", "backup_verify", "backup_age", "backup_retention", "cert_expiry"},
    "generative-art-gallery": {"service_down", "backup_size_drop", "backup_size_growth", "backup_verify"},
    "client-templates": {"cert_expiry", "backup_age", "backup_verify", "alert_acknowledgement", "service_down"},
}


def test_catalogue_covers_the_playbooks(resolved):
    kpis = {(s.id, k.id): k for s in resolved.services for k in s.kpis}
    for (service, kpi, tier), threshold in PLAYBOOK_THRESHOLDS.items():
        assert kpis[(service, kpi)].tier(tier).threshold == pytest.approx(threshold), (service, kpi, tier)
    for service, ids in PLAYBOOK_KPIS.items():
        assert ids <= {k for s, k in kpis if s == service}, service
    gallery = resolved.service("universal-gallery")
    assert gallery.kpis[0].burn_rate and [w.name for w in gallery.maintenance] == ["universal-gallery-weekly",
                                                                                 "universal-gallery-monthly"]
    assert kpis[("vedfolnir", "cpu")].tier("warning").for_ == 300
    for kpi in kpis.values():
        assert kpi.alertable or kpi.not_alertable_reason


def test_provenance_names_real_playbook_sections(resolved):
    if not SEEDS.is_dir():
        pytest.skip(f"the playbooks are not next to the repository ({SEEDS})")
    def headings(playbook: str) -> set[str]:
        text = (SEEDS / playbook).read_text(encoding="utf-8")
        return {line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")}

    for service in resolved.services:
        for kpi in service.kpis:
            for source in {kpi.source, *(t.source for t in kpi.tiers)}:
                assert source.section in headings(source.playbook), \
                    f"{service.id}/{kpi.id}: no heading {source.section!r} in {source.playbook}"


# --- rules that travel (issue 13, item 2) ---------------------------------------------------------

def test_vmalert_dry_run_accepts_every_rule_file(vmalert, built, tmp_path):
    files = sorted(built.glob("*.rules.yml"))
    assert len(files) >= 6
    result = run(vmalert, "-dryRun", "-loggerLevel=ERROR", *(f"-rule={f}" for f in files))
    assert result.returncode == 0, result.stdout + result.stderr
    # The same run refuses a broken file, so the check above can fail.
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(files[0].read_text().replace("expr: ", "expr: sum(", 1))
    assert run(vmalert, "-dryRun", "-loggerLevel=ERROR", f"-rule={broken}").returncode != 0


def test_no_rule_group_exceeds_the_ruler_limit(built, resolved):
    """Mimir and Cortex refuse groups above 20 rules by default; a KPI's alerts stay in one group."""
    manifest = yaml.safe_load((built / "kubernetes" / "prometheusrule.yaml").read_text())
    for source, groups in [(f.name, yaml.safe_load(f.read_text())["groups"]) for f in sorted(built.glob("*.rules.yml"))] + [
            ("prometheusrule.yaml", manifest["spec"]["groups"])]:
        names = [g["name"] for g in groups]
        assert len(names) == len(set(names)), source
        assert all(0 < len(g["rules"]) <= prometheus.MAX_GROUP_RULES for g in groups), source
    split = [g for g in yaml.safe_load((built / "portfolio.rules.yml").read_text())["groups"] if "alerts" in g["name"]]
    assert [g["name"] for g in split] == ["portfolio-alerts", "portfolio-alerts-2"]  # 28 alerts
    group_of = {r["alert"]: g["name"] for g in split for r in g["rules"]}
    for kpi in resolved.service("portfolio").kpis:
        assert len({group_of[name] for name in kpi.alert_names}) <= 1, kpi.id


AGGREGATION_LABELS = ["cluster", "env"]


@pytest.fixture(scope="module")
def built_with_aggregation_labels(tmp_path_factory) -> Path:
    """The committed catalogue with `aggregation_labels: [cluster, env]` in its routing, built."""
    root = tmp_path_factory.mktemp("aggregated")
    catalogue = root / "catalogue"
    shutil.copytree(DEFAULT_DIRECTORY, catalogue)
    routing = catalogue / "routing.yaml"
    routing.write_text(routing.read_text() + f"\naggregation_labels: {AGGREGATION_LABELS}\n")
    result = CliRunner().invoke(cli.main, ["build", "--catalogue", str(catalogue), "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    return root / "out" / "rules" / "generated"


def test_aggregation_labels_are_kept_by_every_recording_rule(built_with_aggregation_labels):
    checked = 0
    for path in sorted(built_with_aggregation_labels.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" not in rule:
                    continue
                dropped = []

                def visit(node) -> None:
                    if isinstance(node, promql_parser.AggregateExpr):
                        m = node.modifier
                        kept = m is not None and ((m.type == promql_parser.AggModifierType.By and
                                                   set(AGGREGATION_LABELS) <= set(m.labels)) or
                                                  (m.type == promql_parser.AggModifierType.Without and
                                                   not set(AGGREGATION_LABELS) & set(m.labels)))
                        if not kept:
                            dropped.append(str(node))

                promql_parser.walk(promql_parser.parse(rule["expr"]), visit)
                assert not dropped, f"{path.name} {rule['record']}: {dropped}"
                checked += 1
    assert checked >= 30


def test_aggregation_labels_reach_every_alert_in_the_rule_unit_tests(built_with_aggregation_labels, promtool):
    """promtool evaluates the rules on series carrying cluster/env and expects them on each alert."""
    files = sorted((built_with_aggregation_labels / "tests").glob("*.test.yml"))
    expected = [a["exp_labels"] for f in files for t in yaml.safe_load(f.read_text())["tests"]
                for c in t["alert_rule_test"] for a in c["exp_alerts"]
                if not a["exp_labels"]["kpi"].endswith("absent")]  # absent(): no series, no labels to keep
    assert len(expected) > 80
    assert all(e["cluster"] == "cluster-1" and e["env"] == "env-1" for e in expected)
    assert_promtool_tests_pass(promtool, files)


def test_aggregation_labels_group_and_scope_notifications(built_with_aggregation_labels, amtool, vmalert):
    doc = yaml.safe_load((built_with_aggregation_labels / "alertmanager.yml").read_text())
    assert doc["route"]["group_by"][-2:] == AGGREGATION_LABELS
    # A critical alert in one cluster must not inhibit the warning of another.
    assert all(set(AGGREGATION_LABELS) <= set(rule["equal"]) for rule in doc["inhibit_rules"])
    result = run(amtool, "check-config", built_with_aggregation_labels / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted(built_with_aggregation_labels.glob("*.rules.yml"))
    result = run(vmalert, "-dryRun", "-loggerLevel=ERROR", *(f"-rule={f}" for f in files))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("expr, kept", [
    ("sum(rate(x[5m]))", "sum by (cluster, env)(rate(x[5m]))"),
    ("max by (service, cluster) (x)", "max by (service, cluster, env)(x)"),
    ("sum without (cluster, pod) (x)", "sum without (pod)(x)"),
    ("topk(3, x)", "topk by (cluster, env)(3, x)"),
    ('a / on (service) group_left (tier) b{l="q{}"}', '(a) / on (service, cluster, env) group_left (tier) (b{l="q{}"})'),
    ("a > bool on (s) b", "(a) > bool on (s, cluster, env) (b)"),
    ("a / ignoring (le) b", "a / ignoring (le) b"),
])
def test_keep_labels_rewrites_through_the_parser(expr, kept):
    out = keep_labels(expr, AGGREGATION_LABELS)
    assert out == kept
    promql_parser.parse(out)
    assert keep_labels(expr, []) == expr
