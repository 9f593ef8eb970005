"""gen-rules on bad input: file, line and field named, exit 2, nothing written; `check` catches drift."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from stackprobe.rules import cli
from stackprobe.rules.spec import DEFAULT_DIRECTORY

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
    assert "-    expr: service_target:stackprobe_redis_keyspace_hits:ratio_rate5m{service=\"shop\"} < 0.8" in result.output
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
