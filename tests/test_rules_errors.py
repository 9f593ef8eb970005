"""gen-rules on bad input: file, line and field named, exit 2, nothing written; `check` catches drift."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import promql_parser
import pytest
import yaml
from click.testing import CliRunner

from fixtures.promtools import run
from stackprobe.rules import cli
from stackprobe.rules import model as model_module
from stackprobe.rules.spec import DEFAULT_DIRECTORY, PACKAGE_DIR

GOOD_KPI = """\
  - id: cache_hit_ratio
    title: Cache hit rate
    description: Redis keyspace hit ratio.
    indicator: redis_cache_hit_ratio
    comparison: below
    warning: {threshold: 85%, for: 30m}
    critical: {threshold: 70%, for: 15m}
    priority: P2
    area: cache
    source: Key Metrics
"""


def service_yaml(kpis: str) -> str:
    return f"id: shop\ntitle: Shop\nplaybook: shop.md\ndescription: A test service.\nkpis:\n{kpis}"


def build(catalogue: Path, out: Path):
    return CliRunner().invoke(cli.main, ["build", "--catalogue", str(catalogue), "--out", str(out)])


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    catalogue, out = tmp_path / "catalogue", tmp_path / "out"
    catalogue.mkdir()
    return catalogue, out


@pytest.mark.parametrize("kpis, line, field, message", [
    (GOOD_KPI.replace("indicator: redis_cache_hit_ratio", "indicator: redis_hit_ratio"),
     4, "kpis[0].indicator", "unknown indicator 'redis_hit_ratio'"),
    (GOOD_KPI.replace("id: cache_hit_ratio", "id: Cache-Hit"), 1, "kpis[0].id", "should match pattern"),
    (GOOD_KPI.replace("critical: {threshold: 70%", "critical: {threshold: 90%"),
     6, "kpis[0].warning.threshold", "warning (0.85) is stricter than critical (0.9)"),
    (GOOD_KPI.replace("priority: P2", "priority: P5"), 8, "kpis[0].priority", "'P0', 'P1', 'P2' or 'P3'"),
    (GOOD_KPI.replace("for: 30m", "for: 30 minutes"), 6, "kpis[0].warning.for", "not a duration"),
    (GOOD_KPI + GOOD_KPI, 11, "kpis[1].id", "duplicate KPI id 'cache_hit_ratio' (first at kpis[0])"),
    (GOOD_KPI.replace("85%", "85"), 6, "kpis[0].warning.threshold", "85 is not a ratio"),
    (GOOD_KPI.replace("    indicator: redis_cache_hit_ratio\n", ""), 1, "kpis[0].indicator", "needs an indicator"),
    # A floor of events on what is not a ratio of counted events.
    (GOOD_KPI.replace("indicator: redis_cache_hit_ratio", "indicator: redis_memory_usage")
     .replace("comparison: below", "comparison: above").replace("85%", "70%").replace("threshold: 70%, for: 15m", "threshold: 90%, for: 15m")
     + "    min_events: 10\n", 11, "kpis[0].min_events", "redis_memory_usage is not a ratio of counted events"),
    # An objective one failed 30 s probe would burn (issue 11.3).
    ("""\
  - id: availability
    title: Uptime
    description: Share of successful HTTP probes.
    indicator: availability
    comparison: below
    target: {threshold: 99.99%}
    burn_rate: true
    priority: P0
    area: availability
    source: Key Metrics
""", 6, "kpis[0].target.threshold",
     "objective 99.99% is finer than availability can resolve: one failed sample (30s) burns the 1h budget 83.3x (the alert fires at 14.4x)"),
])
def test_bad_catalogue_names_file_line_field_and_writes_nothing(dirs, kpis, line, field, message):
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(kpis))
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    where = f"{catalogue / 'shop.yaml'}:{line + 5}: {field}: "  # `line` counts within GOOD_KPI; 5 header lines
    assert where in result.output and message in result.output, result.output
    assert not out.exists()


def test_duplicate_service_id_across_files(dirs):
    catalogue, out = dirs
    (catalogue / "a.yaml").write_text(service_yaml(GOOD_KPI))
    (catalogue / "b.yaml").write_text(service_yaml(GOOD_KPI))
    result = build(catalogue, out)
    assert result.exit_code == 2
    assert f"{catalogue / 'b.yaml'}:1: id: duplicate service id 'shop'" in result.output


def test_failed_build_leaves_existing_outputs_alone(dirs):
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI))
    assert build(catalogue, out).exit_code == 0
    before = cli.on_disk(out, {"rules/generated"})
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI.replace("P2", "PX")))
    assert build(catalogue, out).exit_code == 2
    assert cli.on_disk(out, {"rules/generated"}) == before
    assert not list(out.rglob("*.tmp"))


def test_check_reports_drift_with_a_diff_and_build_repairs_it(dirs):
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI))
    assert build(catalogue, out).exit_code == 0
    rules = out / "rules" / "generated" / "shop.rules.yml"
    rules.write_text(rules.read_text().replace("< 0.85", "< 0.8"))
    stale = out / "rules" / "generated" / "old-service.rules.yml"
    stale.write_text("groups: []\n")
    result = CliRunner().invoke(cli.main, ["check", "--catalogue", str(catalogue), "--out", str(out)])
    assert result.exit_code == 1
    assert "--- a/rules/generated/shop.rules.yml" in result.output and "+  - alert: ShopCacheHitRatioWarning" not in result.output
    assert "-      service_target:stackprobe_redis_keyspace_hits:ratio_rate5m{service=\"shop\"} < 0.8\n" in result.output
    assert "+++ /dev/null" in result.output  # the stale file would be removed
    assert build(catalogue, out).exit_code == 0
    assert not stale.exists()
    assert CliRunner().invoke(cli.main, ["check", "--catalogue", str(catalogue), "--out", str(out)]).exit_code == 0


def test_a_catalogue_may_bring_its_own_routing(dirs):
    """The end-to-end test swaps receivers for webhooks; indicators still come from the package."""
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI))
    routing = (DEFAULT_DIRECTORY / "routing.yaml").read_text()
    (catalogue / "routing.yaml").write_text(routing.replace("channel: '#incidents'", "channel: '#shop-incidents'"))
    assert build(catalogue, out).exit_code == 0
    assert "#shop-incidents" in (out / "rules" / "generated" / "alertmanager.yml").read_text()
    shutil.rmtree(out)
    (catalogue / "routing.yaml").write_text(routing.replace("receiver: weekly-summary", "receiver: nobody"))
    result = build(catalogue, out)
    assert result.exit_code == 2 and "priorities.P3.receiver: unknown receiver 'nobody'" in result.output


def test_a_maintenance_window_alertmanager_would_reject_is_caught_at_load(dirs):
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(
        service_yaml(GOOD_KPI) + "maintenance:\n  - name: weekly\n    source: Key Metrics\n"
        "    intervals:\n      - weekdays: ['monday:sunday']\n")
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    assert "maintenance[0].intervals[0].weekdays: " in result.output and "the week starts on sunday" in result.output
    assert not out.exists()


# --- gen-rules refuses what would generate wrong rules (issue 14, item 6) ------------------------

INJECTION = 'x"} or vector(1) or up{a="'


def _rules(out: Path, service: str = "shop") -> dict:
    return yaml.safe_load((out / "rules" / "generated" / f"{service}.rules.yml").read_text())


def _alert(out: Path, name: str) -> dict:
    return next(r for g in _rules(out)["groups"] for r in g["rules"] if r.get("alert") == name)


def test_a_match_value_stays_a_label_value(dirs, promtool):
    """`… or vector(1)` in a KPI match used to become part of the query: an alert that always fires."""
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI.replace("    comparison: below\n",
                                                                       f"    match: {{target: '{INJECTION}'}}\n    comparison: below\n")))
    assert build(catalogue, out).exit_code == 0
    floored = promql_parser.parse(_alert(out, "ShopCacheHitRatioWarning")["expr"])  # `ratio < 0.85 and on(...) traffic`
    assert isinstance(floored, promql_parser.BinaryExpr)
    expr = floored.lhs
    assert isinstance(expr, promql_parser.BinaryExpr) and isinstance(expr.lhs, promql_parser.VectorSelector)
    assert {(m.name, m.value) for m in expr.lhs.matchers.matchers} == {("service", "shop"), ("target", INJECTION)}
    assert isinstance(expr.rhs, promql_parser.NumberLiteral)
    # The generated unit tests feed series with that very label value: the alert fires on them only.
    tests = out / "rules" / "generated" / "tests"
    result = run(promtool, "test", "rules", "shop.test.yml", cwd=tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_catalogue_text_is_never_run_as_a_template(dirs, promtool):
    """A title with `{{ query "up" }}` used to be executed by Prometheus; now it is shown as text."""
    catalogue, out = dirs
    title = 'Cache {{ query "up" }} rate {'
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI.replace("title: Cache hit rate", f"title: '{title}'")))
    assert build(catalogue, out).exit_code == 0
    summary = _alert(out, "ShopCacheHitRatioWarning")["annotations"]["summary"]
    assert "{{ query" not in summary and '{{ "{" }}' in summary
    tests = yaml.safe_load((out / "rules" / "generated" / "tests" / "shop.test.yml").read_text())
    expected = [a["exp_annotations"] for t in tests["tests"] for c in t["alert_rule_test"] for a in c["exp_alerts"]
                if c["alertname"] == "ShopCacheHitRatioWarning"]
    assert expected and all(e["summary"] == f"Shop: {title} below 85%" for e in expected)
    # promtool renders the annotations as Prometheus does and compares them with that text.
    result = run(promtool, "test", "rules", "shop.test.yml", cwd=out / "rules" / "generated" / "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def _indicators_with(old: str, new: str) -> str:
    text = (PACKAGE_DIR / "indicators.yaml").read_text()
    assert old in text
    return text.replace(old, new)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("old, new, field, message", [
    ("expr: min by (service, target) (stackprobe_redis_up)", "expr: min by (service, target (stackprobe_redis_up)",
     "indicators.redis_up.expr", "not valid PromQL"),
    ("expr: max by (service, target, key) (stackprobe_redis_key_length)", "expr: max by (service, target, key) (",
     "indicators.redis_key_length.expr", "not valid PromQL"),
    ("expr: max by (service, target, key) (stackprobe_redis_key_length)",
     "expr: max by (service, target, key) (stackprobe_redis_key_length) + on() group_left stackprobe_redis_up",
     "indicators.redis_key_length.metrics", "the expr reads ['stackprobe_redis_key_length', 'stackprobe_redis_up']"),
    ("- {series: stackprobe_redis_up, gauge: v}", """- {series: 'stackprobe_redis_up{db=~"0"}', gauge: v}""",
     "indicators.redis_up.fixture[0].series", "only `=` matchers"),
])
def test_invalid_promql_in_the_indicator_library_is_caught_at_load(dirs, old, new, field, message):
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI))
    text = _indicators_with(old, new)
    (catalogue / "indicators.yaml").write_text(text)
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    line = _line_of(text, new)
    if field.endswith(".metrics"):  # the entry's `metrics:` line, below its expr
        line += _line_of("\n".join(text.splitlines()[line:]), "metrics:")
    assert f"{catalogue / 'indicators.yaml'}:{line}: {field}: " in result.output and message in result.output, result.output
    assert not out.exists()


def test_a_params_value_cannot_break_out_of_its_string(dirs):
    catalogue, out = dirs
    kpi = GOOD_KPI.replace("indicator: redis_cache_hit_ratio", "indicator: app_error_ratio").replace(
        "comparison: below", "comparison: above").replace("85%", "1%").replace("70%", "5%")
    (catalogue / "shop.yaml").write_text(
        service_yaml(kpi) + f"exporters:\n  application:\n    match: {{service: shop}}\n"
        f"    params: {{error_status: '{INJECTION}'}}\n")
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    assert "shop.yaml:19: exporters.application.params.error_status: " in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize("old, new, field, message", [
    ("      location: UTC", "      location: Mars/Olympus", "time_intervals.business-hours[0].location",
     "'Mars/Olympus' is not an IANA time zone"),
    ("times: [{start_time: '09:00', end_time: '18:00'}]", "times: [{start_time: '18:00', end_time: '09:00'}]",
     "time_intervals.business-hours[0].times[0]", "end_time 09:00 must come after start_time 18:00"),
    ("group_by: [alertname, service, kpi]", "group_by: [alertname, service-name]", "group_by[1]", "should match pattern"),
    ("  weekly-summary:\n    email_configs:", "  weekly-summary:\n    email:", "receivers.weekly-summary.email", "should match pattern"),
])
def test_routing_alertmanager_would_reject_is_caught_at_load(dirs, old, new, field, message):
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI))
    text = (DEFAULT_DIRECTORY / "routing.yaml").read_text()
    assert old in text
    (catalogue / "routing.yaml").write_text(text.replace(old, new))
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    assert "routing.yaml:" in result.output and f": {field}: " in result.output and message in result.output, result.output
    assert not out.exists()


def test_routing_amtool_rejects_is_refused_before_writing(dirs, amtool):
    """What only Alertmanager knows (here: a Slack receiver with both api_url and api_url_file)."""
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI))
    text = (DEFAULT_DIRECTORY / "routing.yaml").read_text()
    old = "channel: '#incidents'"
    (catalogue / "routing.yaml").write_text(text.replace(old, old + "\n        api_url: https://hooks.example.com/x"))
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    line = _line_of(text, "receivers:")
    assert f"{catalogue / 'routing.yaml'}:{line}: receivers: amtool check-config rejects" in result.output, result.output
    assert "at most one of api_url & api_url_file" in result.output
    assert not out.exists()


CERT_KPI = """\
  - id: cert_expiry
    title: Certificate expiry
    description: Days left.
    indicator: cert_days_left
    comparison: below
    warning: {threshold: 30, for: 1h}
    priority: P2
    area: certificates
    source: Key Metrics
"""


@pytest.mark.parametrize("kpi, threshold, message", [
    # NaN used to crash the dashboards (traceback, exit 1); infinities compiled into rules.
    (CERT_KPI, ".nan", "nan is not a finite number"),
    (CERT_KPI, "-.inf", "-inf is not a finite number"),
    (CERT_KPI, "infinity%", "'infinity%' is not a finite number"),
    # `30d` for a KPI counted in days used to become 2,592,000 days.
    (CERT_KPI, "30d", "a duration, but indicator 'cert_days_left' is in 'd', not seconds (write days as a number, e.g. 30)"),
    (CERT_KPI, "30%", "a percentage, but indicator 'cert_days_left' is in 'd'"),
    (CERT_KPI, "-1", "-1 is negative"),
    (GOOD_KPI, "30m", "a duration, but indicator 'redis_cache_hit_ratio' is in 'percentunit'"),
])
def test_thresholds_must_be_finite_and_in_the_unit(dirs, kpi, threshold, message):
    catalogue, out = dirs
    old = "threshold: 30," if kpi is CERT_KPI else "threshold: 85%,"
    (catalogue / "shop.yaml").write_text(service_yaml(kpi.replace(old, f"threshold: {threshold},")))
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    assert "shop.yaml:11: kpis[0].warning.threshold: " in result.output and message in result.output, result.output
    assert not out.exists()


def test_every_generated_rule_is_parsed_before_anything_is_written(dirs, monkeypatch):
    """Defence in depth: a rule the model got wrong is refused at its KPI's line, nothing written."""
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI))
    monkeypatch.setattr(model_module.KPI, "op", property(lambda self: "<<"))
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    assert f"{catalogue / 'shop.yaml'}:6: kpis[0]: the generated rule ShopCacheHitRatioWarning is not valid PromQL" \
        in result.output, result.output
    assert not out.exists()


def test_written_files_are_readable_by_others_and_keep_their_mode(dirs):
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI))
    assert build(catalogue, out).exit_code == 0
    rules = out / "rules" / "generated" / "shop.rules.yml"
    assert stat.S_IMODE(rules.stat().st_mode) == 0o644  # mkstemp's 0600 would hide it from Prometheus
    rules.chmod(0o640)
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI.replace("85%", "86%")))
    assert build(catalogue, out).exit_code == 0
    assert "0.86" in rules.read_text() and stat.S_IMODE(rules.stat().st_mode) == 0o640


def test_a_failed_write_replaces_nothing(dirs):
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI))
    assert build(catalogue, out).exit_code == 0
    before = cli.on_disk(out, {"rules/generated"})
    tests = out / "rules" / "generated" / "tests"
    shutil.rmtree(tests)
    tests.write_text("a file where a folder must be\n")
    (catalogue / "shop.yaml").write_text(service_yaml(GOOD_KPI.replace("85%", "86%")))
    result = build(catalogue, out)
    assert result.exit_code == 1 and "gen-rules: cannot write" in result.output, result.output
    after = cli.on_disk(out, {"rules/generated"})
    assert {k: v for k, v in after.items() if "tests" not in k} == {k: v for k, v in before.items() if "tests/" not in k}
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.tmp"))


MAINTENANCE = """\
maintenance:
  - name: weekly
    description: Sundays.
    source: Key Metrics
    intervals:
      - weekdays: [sunday]
        times: [{start_time: '02:00', end_time: '04:00'}]
        location: LOCATION
    mute: [P1, P2, P3]
  - name: monthly
    description: First Sunday.
    source: Key Metrics
    intervals:
      - weekdays: [sunday]
        days_of_month: ['1:7']
    mute: MUTE
"""


@pytest.mark.parametrize("location, mute, line, field, message", [
    ("Europe/Berlin", "[P1, P2, P3]", 23, "maintenance[0].intervals[0].location",
     "PromQL time functions, which only know UTC"),
    ("UTC", "[P0, P1, P2, P3]", 31, "maintenance[1].mute", "a service mutes the same priorities in all its maintenance"),
])
def test_maintenance_windows_the_rules_cannot_evaluate_are_refused(dirs, location, mute, line, field, message):
    """The rules compute maintenance with PromQL time functions (UTC) and one mute list per service."""
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(
        service_yaml(GOOD_KPI) + MAINTENANCE.replace("LOCATION", location).replace("MUTE", mute))
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    assert f"shop.yaml:{line}: {field}: " in result.output and message in result.output, result.output
    assert not out.exists()


def test_a_service_routing_override_names_a_known_receiver(dirs):
    catalogue, out = dirs
    (catalogue / "shop.yaml").write_text(
        service_yaml(GOOD_KPI) + "routing:\n  priorities:\n    P1: {receiver: nobody}\n")
    result = build(catalogue, out)
    assert result.exit_code == 2, result.output
    assert "shop.yaml:18: routing.priorities.P1.receiver: unknown receiver 'nobody'" in result.output, result.output
