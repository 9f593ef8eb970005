"""Generated Grafana dashboards and provisioning (grafana/).

No Grafana server can run here, so the checks stop short of rendering: every file loads back
through grafana-foundation-sdk's models unchanged, every query parses as PromQL and names only
series that exist, the overviews colour values exactly as the alerts judge them, and the
committed files are what the generator writes. The end-to-end suite runs
`queries.generated_queries()` against a live Prometheus.
"""

from __future__ import annotations

import re

import promql_parser
import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m
from grafana_foundation_sdk.models import stat, table, text, timeseries

from stackprobe.exporter import metrics
from stackprobe.exporter.probers import PROBERS
from stackprobe.grafana import panels, provisioning, queries, services, thresholds
from stackprobe.rules import model
from stackprobe.rules.emit import prometheus
from stackprobe.rules.model import Model

OPTIONS = {"stat": stat.Options, "timeseries": timeseries.Options, "table": table.Options, "text": text.Options}


@pytest.fixture(scope="module")
def catalogue() -> Model:
    """The resolved model of the built-in catalogue (what the dashboards are built from)."""
    return model.load()


@pytest.fixture(scope="module")
def outputs(catalogue: Model) -> dict[str, str]:
    return provisioning.emit(catalogue)


@pytest.fixture(scope="module")
def dashboards(outputs: dict[str, str]) -> dict[str, dash_m.Dashboard]:
    """Every generated dashboard by file name, loaded back through the SDK."""
    return {path.rsplit("/", 1)[1]: queries.load(content) for path, content in outputs.items() if path.endswith(".json")}


def _panels(model: dash_m.Dashboard) -> list[dash_m.Panel]:
    return [p for p in model.panels or [] if not isinstance(p, dash_m.RowPanel)]


def _steps(panel_or_override: object) -> list[tuple[float | None, str]]:
    steps = panel_or_override.field_config.defaults.thresholds.steps  # type: ignore[attr-defined]
    return [(s.value, s.color) for s in steps]


# --- files -----------------------------------------------------------------------------------


def test_committed_files_are_what_the_generator_writes(outputs: dict[str, str]) -> None:
    stale = [path for path, content in outputs.items()
             if not (queries.REPO_ROOT / path).exists() or (queries.REPO_ROOT / path).read_text(encoding="utf-8") != content]
    assert stale == [], "run `gen-rules build` and commit grafana/generated/"
    committed = {p.name for p in (queries.REPO_ROOT / provisioning.DASHBOARDS_DIR).glob("*.json")}
    assert committed == {path.rsplit("/", 1)[1] for path in outputs if path.endswith(".json")}


def test_output_is_deterministic(catalogue: Model, outputs: dict[str, str]) -> None:
    assert provisioning.emit(catalogue) == outputs
    assert provisioning.emit_configmaps(catalogue) == provisioning.emit_configmaps(catalogue)


def test_a_dashboard_per_service_and_per_prober(dashboards: dict[str, dash_m.Dashboard], catalogue: Model) -> None:
    expected = {f"{s.id}-overview.json" for s in catalogue.services} | {f"{p}-prober.json" for p in PROBERS}
    assert set(dashboards) == expected
    assert len(catalogue.services) == 5 and len(PROBERS) == 5


# --- the SDK's models ------------------------------------------------------------------------


def test_every_dashboard_loads_back_through_the_sdk_unchanged(outputs: dict[str, str]) -> None:
    for path, content in outputs.items():
        if not path.endswith(".json"):
            continue
        model = queries.load(content)
        assert panels.to_json(model) == content, path
        for panel in _panels(model):
            # Typed by the panel plugin's model, not kept as an unknown dict.
            assert isinstance(panel.options, OPTIONS[panel.type_val]), (path, panel.title)
            assert all(isinstance(t, prom_m.Dataquery) for t in panel.targets or []), (path, panel.title)


def test_uids_are_stable_and_unique(dashboards: dict[str, dash_m.Dashboard]) -> None:
    for name, model in dashboards.items():
        stem, kind = name.removesuffix(".json").rsplit("-", 1)
        assert model.uid == panels.uid("service" if kind == "overview" else "prober", stem)
        assert len(model.uid) <= 40
        assert [p.id_val for p in model.panels] == list(range(1, len(model.panels) + 1))
    assert len({m.uid for m in dashboards.values()}) == len(dashboards)


def test_long_names_get_short_distinct_uids() -> None:
    a, b = panels.uid("service", "a" * 60), panels.uid("service", "a" * 59 + "b")
    assert len(a) == len(b) == 40 and a != b and a == panels.uid("service", "a" * 60)


def test_panels_fit_the_grid_without_overlapping(dashboards: dict[str, dash_m.Dashboard]) -> None:
    for name, model in dashboards.items():
        cells: dict[tuple[int, int], str] = {}
        for panel in model.panels:
            g = panel.grid_pos
            assert 0 <= g.x and g.x + g.w <= 24, (name, panel.title)
            for cell in ((x, y) for x in range(g.x, g.x + g.w) for y in range(g.y, g.y + g.h)):
                assert cell not in cells, f"{name}: {panel.title!r} overlaps {cells[cell]!r}"
                cells[cell] = str(panel.title)


def test_template_variables_and_datasource(dashboards: dict[str, dash_m.Dashboard]) -> None:
    for name, model in dashboards.items():
        variables = {v.name: v for v in model.templating.list_val}
        assert list(variables) == ["datasource", "service", "target"], name
        assert variables["datasource"].query == "prometheus"
        assert variables["datasource"].current.value == panels.DATASOURCE_UID
        for panel in _panels(model):
            if panel.targets:
                assert panel.datasource.uid == "${datasource}", (name, panel.title)
        assert model.time.from_val in ("now-6h", "now-24h", "now-7d", "now-30d") and model.refresh


# --- queries ---------------------------------------------------------------------------------


def _known_metrics(catalogue: Model) -> dict[str, str]:
    """Metric name -> who provides it: stackprobe, a generated recording rule, or the external
    exporter the indicator library attributes it to."""
    known = {name: "stackprobe" for name in metrics.exported_series_names()}
    for content in prometheus.emit(catalogue).values():
        for group in yaml.safe_load(content)["groups"]:
            known.update({r["record"]: "recording rule" for r in group["rules"] if "record" in r})
    for service in catalogue.services:
        for ind in service.indicators:
            if ind.provider != "stackprobe":
                known.update({m: ind.provider for m in ind.metrics})
    return known


def _unknown(all_queries: list[queries.PanelQuery], known: dict[str, str]) -> list[str]:
    return [f"{q.dashboard} / {q.panel}: {name}" for q in all_queries for name in sorted(queries.metric_names(q.concrete()))
            if name not in known]


def test_every_query_parses_and_uses_only_known_metrics(dashboards: dict[str, dash_m.Dashboard], catalogue: Model) -> None:
    all_queries = [q for model in dashboards.values() for q in queries.dashboard_queries(model)]
    for q in all_queries:
        promql_parser.parse(q.concrete())
    assert _unknown(all_queries, _known_metrics(catalogue)) == []
    # Every dashboard has panel queries, and the variables' selectors are among them.
    assert {q.dashboard for q in all_queries if not q.panel.startswith("$")} == {m.uid for m in dashboards.values()}
    assert len(all_queries) > 250


def test_metric_check_catches_what_it_should(catalogue: Model) -> None:
    fake = queries.PanelQuery("d", "p", "A", 'rate(stackprobe_nonexistent_total{target=~"$target"}[$__rate_interval])',
                              False, {"target": ".*"})
    assert fake.concrete() == 'rate(stackprobe_nonexistent_total{target=~".*"}[1m])'
    assert _unknown([fake], _known_metrics(catalogue)) == ["d / p: stackprobe_nonexistent_total"]
    with pytest.raises(KeyError, match=r"\$unset"):
        queries.PanelQuery("d", "p", "A", "up{x=~\"$unset\"}", False, {}).concrete()
    with pytest.raises(ValueError, match="without a metric name"):
        queries.metric_names('{job="x"}')
    with pytest.raises(ValueError):
        queries.metric_names("sum(rate(x[5m])")


def test_generated_queries_reads_the_committed_dashboards(dashboards: dict[str, dash_m.Dashboard]) -> None:
    from_files = queries.generated_queries()
    assert sorted(q.concrete() for q in from_files) == sorted(
        q.concrete() for model in dashboards.values() for q in queries.dashboard_queries(model))


# --- service overviews: the alerts' own expressions and thresholds ---------------------------


def _overview(dashboards: dict[str, dash_m.Dashboard], service_id: str) -> dash_m.Dashboard:
    return dashboards[f"{service_id}-overview.json"]


def test_overview_stat_per_kpi_reads_the_alerts_series(dashboards: dict[str, dash_m.Dashboard], catalogue: Model) -> None:
    for service in catalogue.services:
        stats = {p.targets[0].ref_id: p for p in _panels(_overview(dashboards, service.id)) if p.type_val == "stat"}
        measured = [k for k in service.kpis if k.indicator is not None]
        assert list(stats) == [k.id for k in sorted(measured, key=_row_position)]
        for kpi in measured:
            ind = kpi.indicator
            panel = stats[kpi.id]
            # The alerts' series, narrowed by the $target variable where the series has a target.
            expected = kpi.series(services.TARGET_FILTER) if "target" in ind.labels else kpi.series()
            assert panel.targets[0].expr == expected
            assert panel.targets[0].instant
            assert panel.field_config.defaults.unit == services.GRAFANA_UNITS.get(ind.unit, ind.unit)
            assert isinstance(panel.field_config.defaults.decimals, int)
            assert panel.title == kpi.title


def _row_position(kpi) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Rows top to bottom, then the row's areas in order (catalogue order within an area)."""
    return next((i, areas.index(kpi.area)) for i, (_, areas) in enumerate(services.ROWS) if kpi.area in areas)


def _grafana_colour(steps: list[tuple[float | None, str]], value: float) -> str:
    """Grafana's rule: the colour of the last step whose value the field value reaches."""
    colour = steps[0][1]
    for threshold, c in steps[1:]:
        if value >= threshold:
            colour = c
    return colour


def _alert_colour(kpis, value: float) -> str:  # type: ignore[no-untyped-def]
    """The colour the catalogue gives a value: that of the most severe tier whose alert fires."""
    fired = [tier.name for kpi in kpis for tier in kpi.tiers
             if ((value > tier.value) if kpi.comparison == "above" else (value < tier.value))]
    severity = ("target", "warning", "critical")
    return thresholds.TIER_COLOURS[max(fired, key=severity.index)] if fired else panels.GREEN


def test_stat_colours_match_the_alert_tiers_at_every_boundary(dashboards: dict[str, dash_m.Dashboard], catalogue: Model) -> None:
    checked = 0
    for service in catalogue.services:
        stats = {p.targets[0].ref_id: p for p in _panels(_overview(dashboards, service.id)) if p.type_val == "stat"}
        for kpi in service.kpis:
            if kpi.id not in stats or kpi.comparison is None:
                continue
            steps = _steps(stats[kpi.id])
            for tier in kpi.tiers:
                t = float(tier.literal)
                delta = max(abs(t) * 1e-9, 1e-12)
                for value in (t - delta, t, t + delta):
                    assert _grafana_colour(steps, value) == _alert_colour([kpi], value), (service.id, kpi.id, value, steps)
                    checked += 1
            # Far from every threshold: green on the good side, the worst colour on the bad side.
            lo, hi = min(t.threshold for t in kpi.tiers), max(t.threshold for t in kpi.tiers)
            good, bad = (lo - 1, hi + 1) if kpi.comparison == "above" else (hi + 1, lo - 1)
            assert _grafana_colour(steps, good) == panels.GREEN
            assert _grafana_colour(steps, bad) == thresholds.TIER_COLOURS[kpi.tiers[-1].name]
    assert checked > 100


def test_every_kpi_panel_links_to_its_playbook_section_and_alerts(dashboards: dict[str, dash_m.Dashboard], catalogue: Model) -> None:
    for service in catalogue.services:
        stats = {p.targets[0].ref_id: p for p in _panels(_overview(dashboards, service.id)) if p.type_val == "stat"}
        for kpi in service.kpis:
            if kpi.id not in stats:
                continue
            urls = [link["url"] for link in stats[kpi.id].links]
            assert kpi.runbook_url in urls
            alert_names = [a.name for a in service.alerts if a.kpi is not None and a.kpi.id == kpi.id]
            assert [u.removeprefix("/alerting/list?search=") for u in urls if u.startswith("/alerting/")] == alert_names
            assert bool(alert_names) == kpi.alertable


def test_area_graphs_draw_every_tier_as_a_labelled_line(dashboards: dict[str, dash_m.Dashboard], catalogue: Model) -> None:
    for service in catalogue.services:
        graphs = {p.title: p for p in _panels(_overview(dashboards, service.id)) if p.type_val == "timeseries"}
        areas = {k.area for k in service.kpis if k.indicator is not None}
        assert set(graphs) == {(a or "other").capitalize() for a in areas}
        for kpi in service.kpis:
            if kpi.indicator is None:
                continue
            graph = graphs[(kpi.area or "other").capitalize()]
            by_ref = {t.ref_id: t.expr for t in graph.targets}
            assert by_ref[kpi.id] == services.kpi_series(kpi)
            colours = {o.matcher.options: p.value for o in graph.field_config.overrides for p in o.properties if p.id_val == "color"}
            for tier in kpi.tiers if kpi.comparison else []:
                ref = f"{kpi.id}:{tier.name}"
                assert by_ref[ref] == f"vector({tier.literal})"
                assert colours[ref] == {"mode": "fixed", "fixedColor": thresholds.TIER_COLOURS[tier.name]}


def test_overview_rows_follow_the_area_order(dashboards: dict[str, dash_m.Dashboard], catalogue: Model) -> None:
    order = [title for title, _ in services.ROWS] + ["Checked outside Prometheus"]
    for service in catalogue.services:
        rows = [p.title for p in _overview(dashboards, service.id).panels if isinstance(p, dash_m.RowPanel)]
        assert rows == sorted(rows, key=order.index) and rows[0] == "Availability and latency"


def test_kpis_without_an_indicator_are_listed_for_a_manual_check(dashboards: dict[str, dash_m.Dashboard], catalogue: Model) -> None:
    for service in catalogue.services:
        unmeasured = [k for k in service.kpis if k.indicator is None]
        texts = [p for p in _panels(_overview(dashboards, service.id)) if p.type_val == "text"]
        assert len(texts) == (1 if unmeasured else 0)
        for kpi in unmeasured:
            assert f"| {kpi.title} |" in texts[0].options.content and kpi.runbook_url in texts[0].options.content


def test_decimals_separate_values_from_thresholds(catalogue: Model) -> None:
    portfolio = catalogue.service("portfolio")
    kpis = {k.id: k for k in portfolio.kpis}
    decimals = {k: services.kpi_decimals(kpis[k]) for k in
                ("availability", "error_rate", "target_down", "latency_p95")}
    # 99.9 % -> 99.87 % is not shown as 99.9 %; 0.1 % -> 1 decimal more; up/down gauges whole.
    assert decimals == {"availability": 2, "error_rate": 2, "target_down": 0, "latency_p95": 2}


# --- prober dashboards -----------------------------------------------------------------------


def test_prober_dashboards_cover_the_issue_checklist(dashboards: dict[str, dash_m.Dashboard]) -> None:
    def exprs(name: str) -> str:
        return "\n".join(q.expr for q in queries.dashboard_queries(dashboards[f"{name}-prober.json"]))

    for name, needles in {
        "mysql": ["topk(20, sum by", "delta(", 'component="index"', "index_selectivity", 'component="free"',
                  "max_connections", "slow_queries_total", "replication_lag_seconds"],
        "redis": ["keyspace_hits_total", "memory_max_bytes", "connected_clients", "pattern_keys", "key_length",
                  "rdb_last_save_timestamp_seconds", "aof_last_write_success"],
        "http": ["histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,",
                 "phase_duration_seconds", "http_status_code", "probe_success"],
        "backup": ["time() - stackprobe_backup_newest_timestamp_seconds", "newest_size_bytes", "size_ratio", "verify_success"],
        "cert": ["cert_not_after_timestamp_seconds", "cert_earliest_not_after_timestamp_seconds"],
    }.items():
        missing = [n for n in needles if n not in exprs(name)]
        assert missing == [], name


#: Prober-dashboard stats showing an indicator's quantity per target: (file, panel) -> indicator.
PROBER_STATS = {
    ("mysql-prober.json", "Connections used"): "mysql_connections_usage",
    ("redis-prober.json", "Memory used of maxmemory"): "redis_memory_usage",
    ("http-prober.json", "Certificate days left"): "cert_days_left",
    ("backup-prober.json", "Newest backup age"): "backup_age",
    ("backup-prober.json", "Size ratio"): "backup_size_ratio",
}
#: Prober-dashboard graphs and tables mixing services: (file, panel) -> indicator.
PROBER_SHARED = {
    ("backup-prober.json", "Newest backup age", "timeseries"): "backup_age",
    ("backup-prober.json", "Size ratio", "timeseries"): "backup_size_ratio",
    ("cert-prober.json", "Days left (soonest first)", "table"): "cert_days_left",
    ("cert-prober.json", "Earliest expiry per target", "timeseries"): "cert_days_left",
}


def _around(values: list[float]) -> list[float]:
    """Each threshold, just below and just above it, and values far outside them all."""
    return [v + d for v in values for d in (-max(abs(v) * 1e-9, 1e-12), 0, max(abs(v) * 1e-9, 1e-12))] + [
        min(values) - 1, max(values) + 1]


def test_prober_stats_colour_each_target_by_its_services_alerts(dashboards: dict[str, dash_m.Dashboard], catalogue: Model) -> None:
    """The same source as the alerts: each service's series (named `service / target`) get its own
    KPIs' tiers; services without such a KPI are not judged at all."""
    for (file, title), indicator in PROBER_STATS.items():
        [panel] = [p for p in _panels(dashboards[file]) if p.title == title and p.type_val == "stat"]
        assert panel.targets[0].legend_format == thresholds.SERVICE_LEGEND
        assert _steps(panel) == [(None, "text")], (file, title)
        overrides = {o.matcher.options: [(s["value"], s["color"]) for p in o.properties for s in p.value["steps"]]
                     for o in panel.field_config.overrides if o.matcher.id_val == "byRegexp"}
        kpis = catalogue.kpis_on(indicator)
        assert kpis and set(overrides) == {f"^{k.service} / " for k in kpis}, (file, title)
        for service in {k.service for k in kpis}:
            own = [k for k in kpis if k.service == service]
            for value in _around([t.value for k in own for t in k.tiers]):
                assert _grafana_colour(overrides[f"^{service} / "], value) == _alert_colour(own, value), (title, service, value)


def test_prober_views_across_services_draw_only_the_tiers_all_services_share(dashboards: dict[str, dash_m.Dashboard],
                                                                             catalogue: Model) -> None:
    for (file, title, kind), indicator in PROBER_SHARED.items():
        [panel] = [p for p in _panels(dashboards[file]) if p.title == title and p.type_val == kind]
        steps = _steps(panel)
        per_service: dict[str, set[tuple[str, str, float]]] = {}
        for k in catalogue.kpis_on(indicator):
            per_service.setdefault(k.service, set()).update((k.comparison, t.name, t.value) for t in k.tiers)
        shared = set.intersection(*per_service.values())
        if not shared:
            assert steps == [(None, "text")], (file, title)
            continue
        for value in _around([limit for _, _, limit in shared]):
            fired = [name for comparison, name, limit in shared
                     if ((value > limit) if comparison == "above" else (value < limit))]
            expected = thresholds.TIER_COLOURS[max(fired, key=("target", "warning", "critical").index)] if fired else panels.GREEN
            assert _grafana_colour(steps, value) == expected, (file, title, value)
    # The committed catalogue: every service warns at 30 days, universal-gallery has no 7-day critical
    # tier, so the certificate table shows the warning only; backup-age limits differ per service.
    cert = {p.title: p for p in _panels(dashboards["cert-prober.json"])}
    assert _steps(cert["Days left (soonest first)"]) == [(None, "orange"), (30, "green")]
    backup = {(p.title, p.type_val): p for p in _panels(dashboards["backup-prober.json"])}
    assert _steps(backup[("Newest backup age", "timeseries")]) == [(None, "text")]
    days = cert["Days left (soonest first)"]
    assert [(s.display_name, s.desc) for s in days.options.sort_by] == [("Days left", False)]


# --- provisioning ----------------------------------------------------------------------------


def test_provisioning_files(outputs: dict[str, str], dashboards: dict[str, dash_m.Dashboard]) -> None:
    datasources = yaml.safe_load(outputs["grafana/generated/provisioning/datasources/stackprobe.yaml"])
    [ds] = datasources["datasources"]
    assert (datasources["apiVersion"], ds["type"], ds["uid"]) == (1, "prometheus", panels.DATASOURCE_UID)
    providers = yaml.safe_load(outputs["grafana/generated/provisioning/dashboards/stackprobe.yaml"])
    [provider] = providers["providers"]
    assert (provider["type"], provider["options"]["path"]) == ("file", provisioning.DASHBOARDS_PATH)


def test_configmaps_for_the_grafana_sidecar(catalogue: Model, outputs: dict[str, str]) -> None:
    files = provisioning.emit_configmaps(catalogue)
    maps = list(yaml.safe_load_all(files[f"{provisioning.CONFIGMAPS_DIR}/dashboards.yaml"]))
    json_files = {path.rsplit("/", 1)[1]: content for path, content in outputs.items() if path.endswith(".json")}
    assert len(maps) == len(json_files)
    for cm in maps:
        assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", cm["metadata"]["name"]) and len(cm["metadata"]["name"]) <= 253
        [(name, content)] = cm["data"].items()
        assert content == json_files[name]  # byte-identical to the provisioned file
        assert len(yaml.safe_dump(cm).encode()) < 256 * 1024  # fits kubectl apply's annotation
    datasource = yaml.safe_load(files[f"{provisioning.CONFIGMAPS_DIR}/datasource.yaml"])
    assert datasource["metadata"]["labels"]["grafana_datasource"] == "1"
    assert yaml.safe_load(datasource["data"]["stackprobe.yaml"]) == provisioning.datasource_provisioning()


def test_gen_rules_builds_and_checks_the_dashboards(catalogue: Model, outputs: dict[str, str]) -> None:
    from stackprobe.rules import cli

    rendered = cli.render(catalogue)
    assert {path: rendered.get(path) for path in outputs} == outputs
