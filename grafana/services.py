"""One morning-checklist overview per catalogue service, with the alerts' own thresholds.

Each KPI gets a stat panel reading the KPI's recorded series (`Indicator.record`) exactly as
its alert does, coloured by its catalogue tiers; each area gets a graph of its KPIs with every
tier drawn as a labelled dashed line. Regenerated with the alerts by `gen-rules build`, so the
dashboard cannot show a threshold the alerts do not use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import dashboard as dash_m

from stackprobe.configsource import format_duration
from stackprobe.rules import prometheus
from stackprobe.rules.catalogue import KPI, Catalogue, Indicator, Service

from .panels import (
    AMBER,
    GREEN,
    NEUTRAL,
    RED,
    YELLOW,
    NEWLINE,
    Item,
    Step,
    assemble,
    datasource_variable,
    label_variable,
    link,
    new_dashboard,
    query,
    stat_panel,
    text_panel,
    timeseries_panel,
    uid,
)

#: The overview's rows, top to bottom, and the catalogue areas each one shows.
ROWS: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    ("Availability and latency", ("availability", "latency")),
    ("Errors", ("errors",)),
    ("Database", ("database",)),
    ("Cache", ("cache",)),
    ("Backups and certificates", ("backups", "certificates")),
    ("Resources", ("resources",)),
    ("Other", (None,)),
)

#: The colour of a value that breaches a tier (meeting every tier is GREEN).
TIER_COLOURS = {"target": YELLOW, "warning": AMBER, "critical": RED}

#: Catalogue units Grafana renders differently from the alerts: Grafana's `d` shows 30 days as
#: "4.29 week", while the alert annotations (and the playbooks) count days.
GRAFANA_UNITS = {"d": "suffix: days"}

#: Units Grafana rescales itself (ms/s/min/h/day, B/KiB/MiB): decimals apply to the rescaled value.
SCALED_DECIMALS = {"s": 2, "bytes": 1}


def kpi_series(cat: Catalogue, service: Service, kpi: KPI, *, target_filter: bool) -> str:
    """The PromQL of the KPI's value: its recorded series, averaged over the KPI's window when
    that is longer than the indicator's own, exactly as rules/prometheus.py builds the alert
    (the test suite compares the two). `target_filter` adds the dashboard's `$target` matcher."""
    ind = cat.indicator_of(kpi)
    matchers = [f'{k}="{v}"' for k, v in {"service": service.id, **kpi.match}.items()]
    if target_filter and "target" in ind.labels:
        matchers.append('target=~"$target"')
    series = ind.record + "{" + ", ".join(matchers) + "}"
    if kpi.window and kpi.window > (ind.window or 0):
        series = f"avg_over_time({series}[{format_duration(kpi.window)}])"
    return series


def threshold_value(value: float) -> float:
    """A tier threshold as the alert's PromQL literal spells it (no float noise like 0.9990000000000001)."""
    return float(prometheus.number(value))


def kpi_steps(kpi: KPI) -> tuple[Step, ...]:
    """Threshold steps that colour a value like the alerts judge it.

    Grafana colours a value with the last step whose value it reaches (>=). The alerts fire on
    `>` for `above` and on `<` for `below`, so an `above` step starts just past the threshold
    (the next float): a value exactly at the threshold keeps the milder colour, as the alert
    stays quiet.
    """
    tiers = kpi.tiers()  # mildest first
    if kpi.comparison is None or not tiers:
        return NEUTRAL
    colours = [TIER_COLOURS[name] for name, _ in tiers]
    if kpi.comparison == "above":  # thresholds ascend with severity
        return (Step(None, GREEN), *(Step(math.nextafter(threshold_value(t.threshold), math.inf), c) for (_, t), c in zip(tiers, colours)))
    # below: thresholds descend with severity; from the lowest up, each one restores the milder colour
    steps = [Step(None, colours[-1])]
    for i in range(len(tiers) - 1, -1, -1):
        steps.append(Step(threshold_value(tiers[i][1].threshold), colours[i - 1] if i else GREEN))
    return tuple(steps)


def grafana_unit(ind: Indicator) -> str:
    return GRAFANA_UNITS.get(ind.unit, ind.unit)


def kpi_decimals(kpi: KPI, ind: Indicator) -> int:
    """Enough decimals that a value next to a threshold never displays as the threshold itself.

    One more than the thresholds need (in percent for ratios); none for whole-number states
    (up, verified, running: `short` gauges with whole thresholds and no averaging window).
    """
    if ind.unit in SCALED_DECIMALS:
        return SCALED_DECIMALS[ind.unit]
    scale = 100 if ind.unit == "percentunit" else 1
    places = max((_places(threshold_value(t.threshold) * scale) for _, t in kpi.tiers()), default=0)
    whole_state = ind.unit == "short" and ind.window is None and places == 0
    return places if whole_state else places + 1


def _places(value: float) -> int:
    exponent = Decimal(prometheus.number(value)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def kpi_links(cat: Catalogue, service: Service, kpi: KPI) -> list[dash_b.DashboardLink]:
    """The playbook section(s) the KPI and its tiers came from, and every alert on it (by the
    names rules/prometheus.py gives them), in Grafana's alert list."""
    urls = dict.fromkeys([kpi.runbook_url(), *(kpi.runbook_url(name) for name, _ in kpi.tiers())])
    links = [link(f"Playbook: {kpi.source.section}" if i == 0 else "Playbook (threshold source)", url) for i, url in enumerate(urls)]
    alert_names = [a.name for a in prometheus.alerts(cat, service) if a.kpi is not None and a.kpi.id == kpi.id]
    links += [link(f"Alert {name}", f"/alerting/list?search={name}") for name in alert_names]
    return links


def _tiers_text(kpi: KPI, ind: Indicator) -> str:
    if kpi.comparison is None or not kpi.tiers():
        return "No thresholds: shown for information."
    sign = ">" if kpi.comparison == "above" else "<"
    parts = [f"{name} {sign} {prometheus.format_value(ind.unit, t.threshold)}" for name, t in kpi.tiers()]
    return "Alert tiers: " + ", ".join(parts) + "."


def _description(kpi: KPI, ind: Indicator) -> str:
    alerting = "" if kpi.alertable else f" Not alerted: {kpi.not_alertable_reason}"
    return f"{kpi.description} {_tiers_text(kpi, ind)} Priority {kpi.priority}; source: {kpi.source.section}.{alerting}"


def _legend(kpi: KPI, ind: Indicator, *, with_title: bool) -> str:
    """Name a series by its labels beyond `service` and the KPI's fixed matchers."""
    labels = " ".join(f"{{{{{label}}}}}" for label in ind.labels[1:] if label not in kpi.match)
    return " ".join(filter(None, [kpi.title if with_title else "", labels])) or kpi.title


def kpi_stat(cat: Catalogue, service: Service, kpi: KPI, width: int) -> Item:
    """The KPI's current value, coloured by its tiers; links to its playbook section and alerts."""
    ind = cat.indicator_of(kpi)
    return stat_panel(
        kpi.title,
        _description(kpi, ind),
        [query(kpi_series(cat, service, kpi, target_filter=True), _legend(kpi, ind, with_title=False), kpi.id, instant=True)],
        unit=grafana_unit(ind),
        decimals=kpi_decimals(kpi, ind),
        steps=kpi_steps(kpi),
        links=kpi_links(cat, service, kpi),
        width=width,
        height=5,
    )


def area_graph(cat: Catalogue, service: Service, area: str | None, kpis: Sequence[KPI], width: int) -> Item:
    """The area's KPIs over time, each tier a dashed line in its tier colour.

    Tier lines are constant series rather than Grafana thresholds because Grafana draws one set
    of threshold lines per y-axis (per unit): two KPIs sharing a unit would both get the first
    one's lines.
    """
    targets = []
    overrides: list[tuple[str, list[dash_m.DynamicConfigValue]]] = []
    for kpi in kpis:
        ind = cat.indicator_of(kpi)
        unit = [dash_m.DynamicConfigValue(id_val="unit", value=grafana_unit(ind)),
                dash_m.DynamicConfigValue(id_val="decimals", value=kpi_decimals(kpi, ind))]
        targets.append(query(kpi_series(cat, service, kpi, target_filter=True), _legend(kpi, ind, with_title=True), kpi.id))
        overrides.append((kpi.id, unit))
        if kpi.comparison is None:
            continue
        sign = ">" if kpi.comparison == "above" else "<"
        for name, tier in kpi.tiers():
            ref = f"{kpi.id}:{name}"
            limit = prometheus.format_value(ind.unit, tier.threshold)
            targets.append(query(f"vector({prometheus.number(tier.threshold)})", f"{kpi.title} {name} ({sign} {limit})", ref))
            overrides.append((ref, unit + [
                dash_m.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": TIER_COLOURS[name]}),
                dash_m.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
            ]))
    title = (area or "other").capitalize()
    return timeseries_panel(
        title,
        f"{title} KPIs of {service.title} over time; dashed lines are their alert tiers "
        "(yellow target, amber warning, red critical).",
        targets,
        unit=grafana_unit(cat.indicator_of(kpis[0])),
        overrides=overrides,
        width=width,
    )


def _unmeasured(cat: Catalogue, service: Service, kpis: Sequence[KPI]) -> Item:
    """The playbook's KPIs no Prometheus series measures, so the checklist still lists them."""
    lines = ["| KPI | Why it is not on this dashboard | Playbook |", "|---|---|---|"]
    for kpi in kpis:
        reason = (kpi.not_alertable_reason or "").replace("\n", " ").replace("|", "/")
        lines.append(f"| {kpi.title} | {reason} | [{kpi.source.section}]({kpi.runbook_url()}) |")
    return text_panel(
        "Checked outside Prometheus",
        f"KPIs of the {service.title} playbook without an indicator: review them by hand.",
        "\n".join(lines) + "\n",
    )


def overview(cat: Catalogue, service: Service) -> dash_m.Dashboard:
    """The service's morning checklist: a row per area group, stats first, then one graph per area."""
    measured = [k for k in service.kpis if k.indicator is not None]
    builder = (
        new_dashboard(
            f"{service.title} overview",
            uid("service", service.id),
            f"{service.description} Morning checklist generated from the KPI catalogue "
            f"(playbook {service.playbook}); thresholds are the alerts' own.",
            time_from="now-24h",
            refresh="5m",
            tags=["service", service.id],
        )
        .link(link("Playbook", f"{cat.routing.runbook_base_url}{service.playbook}"))
        .variables([
            datasource_variable(),
            dash_b.ConstantVariable("service").label("Service").value(service.id),
            label_variable("target", "Target", 'stackprobe_probe_success{service="$service"}'),
        ])
    )
    items: list[Item] = []
    for row_title, areas in ROWS:
        by_area = {a: [k for k in measured if k.area == a] for a in areas}
        by_area = {a: ks for a, ks in by_area.items() if ks}
        if not by_area:
            continue
        items.append(dash_b.Row(row_title))
        row_kpis = [k for ks in by_area.values() for k in ks]
        # Stats share the row's width, at least 4 columns each (6 a line, then they wrap).
        items += [kpi_stat(cat, service, k, max(4, 24 // len(row_kpis))) for k in row_kpis]
        items.append(NEWLINE)
        items += [area_graph(cat, service, a, ks, 24 // len(by_area)) for a, ks in by_area.items()]
    unmeasured = [k for k in service.kpis if k.indicator is None]
    if unmeasured:
        items += [dash_b.Row("Checked outside Prometheus"), _unmeasured(cat, service, unmeasured)]
    return assemble(builder, items)
