"""One morning-checklist overview per catalogue service, with the alerts' own thresholds.

Reads only the resolved model (rules/model.py). Each KPI gets a stat panel reading the KPI's
series (`KPI.series()`, the query its alerts compare), coloured by its tiers; each area gets a
graph of its KPIs with every tier drawn as a labelled dashed line. Regenerated with the alerts
by `gen-rules build`, so the dashboard cannot show a threshold the alerts do not use.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import dashboard as dash_m

from stackprobe.rules.model import KPI, Indicator, Service
from stackprobe.rules.promql import Matcher, number, selector

from .panels import (
    NEWLINE,
    Item,
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
from .thresholds import TIER_COLOURS, limits, steps

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

#: Catalogue units Grafana renders differently from the alerts: Grafana's `d` shows 30 days as
#: "4.29 week", while the alert annotations (and the playbooks) count days.
GRAFANA_UNITS = {"d": "suffix: days"}

#: Units Grafana rescales itself (ms/s/min/h/day, B/KiB/MiB): decimals apply to the rescaled value.
SCALED_DECIMALS = {"s": 2, "bytes": 1}


#: The dashboard's `$target` variable as a matcher.
TARGET_FILTER = Matcher("target", "$target", "=~")


def kpi_series(kpi: KPI) -> str:
    """The KPI's value as its alerts read it, narrowed to the dashboard's `$target` selection."""
    assert kpi.indicator is not None
    return kpi.series(TARGET_FILTER) if "target" in kpi.indicator.labels else kpi.series()


def grafana_unit(ind: Indicator) -> str:
    return GRAFANA_UNITS.get(ind.unit, ind.unit)


def kpi_decimals(kpi: KPI) -> int:
    """Enough decimals that a value next to a threshold never displays as the threshold itself.

    One more than the thresholds need (in percent for ratios); none for whole-number states
    (up, verified, running: `short` gauges with whole thresholds and no averaging window).
    """
    ind = kpi.indicator
    assert ind is not None
    if ind.unit in SCALED_DECIMALS:
        return SCALED_DECIMALS[ind.unit]
    scale = 100 if ind.unit == "percentunit" else 1
    places = max((_places(t.value * scale) for t in kpi.tiers), default=0)
    whole_state = ind.unit == "short" and ind.window is None and places == 0
    return places if whole_state else places + 1


def _places(value: float) -> int:
    exponent = Decimal(number(value)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def kpi_links(kpi: KPI) -> list[dash_b.DashboardLink]:
    """The playbook section(s) the KPI and its tiers came from, and every alert on it, in
    Grafana's alert list."""
    urls = dict.fromkeys([kpi.runbook_url, *(t.runbook_url for t in kpi.tiers)])
    links = [link(f"Playbook: {kpi.source.section}" if i == 0 else "Playbook (threshold source)", url) for i, url in enumerate(urls)]
    links += [link(f"Alert {name}", f"/alerting/list?search={name}") for name in kpi.alert_names]
    return links


def _tiers_text(kpi: KPI) -> str:
    if kpi.comparison is None or not kpi.tiers:
        return "No thresholds: shown for information."
    return "Alert tiers: " + ", ".join(f"{t.name} {kpi.op} {t.limit}" for t in kpi.tiers) + "."


def _description(kpi: KPI) -> str:
    alerting = "" if kpi.alertable else f" Not alerted: {kpi.not_alertable_reason}"
    return f"{kpi.description} {_tiers_text(kpi)} Priority {kpi.priority}; source: {kpi.source.section}.{alerting}"


def _legend(kpi: KPI, ind: Indicator, *, with_title: bool) -> str:
    """Name a series by its labels beyond `service` and the KPI's fixed matchers."""
    labels = " ".join(f"{{{{{label}}}}}" for label in ind.labels[1:] if label not in kpi.match)
    return " ".join(filter(None, [kpi.title if with_title else "", labels])) or kpi.title


def kpi_stat(kpi: KPI, width: int) -> Item:
    """The KPI's current value, coloured by its tiers; links to its playbook section and alerts."""
    ind = kpi.indicator
    assert ind is not None
    return stat_panel(
        kpi.title,
        _description(kpi),
        [query(kpi_series(kpi), _legend(kpi, ind, with_title=False), kpi.id, instant=True)],
        unit=grafana_unit(ind),
        decimals=kpi_decimals(kpi),
        steps=steps(limits(kpi)),
        links=kpi_links(kpi),
        width=width,
        height=5,
    )


def area_graph(service: Service, area: str | None, kpis: Sequence[KPI], width: int) -> Item:
    """The area's KPIs over time, each tier a dashed line in its tier colour.

    Tier lines are constant series rather than Grafana thresholds because Grafana draws one set
    of threshold lines per y-axis (per unit): two KPIs sharing a unit would both get the first
    one's lines.
    """
    targets = []
    overrides: list[tuple[str, list[dash_m.DynamicConfigValue]]] = []
    for kpi in kpis:
        ind = kpi.indicator
        assert ind is not None
        unit = [dash_m.DynamicConfigValue(id_val="unit", value=grafana_unit(ind)),
                dash_m.DynamicConfigValue(id_val="decimals", value=kpi_decimals(kpi))]
        targets.append(query(kpi_series(kpi), _legend(kpi, ind, with_title=True), kpi.id))
        overrides.append((kpi.id, unit))
        if kpi.comparison is None:
            continue
        for tier in kpi.tiers:
            ref = f"{kpi.id}:{tier.name}"
            targets.append(query(f"vector({tier.literal})", f"{kpi.title} {tier.name} ({kpi.op} {tier.limit})", ref))
            overrides.append((ref, unit + [
                dash_m.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": TIER_COLOURS[tier.name]}),
                dash_m.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
            ]))
    title = (area or "other").capitalize()
    return timeseries_panel(
        title,
        f"{title} KPIs of {service.title} over time; dashed lines are their alert tiers "
        "(yellow target, amber warning, red critical).",
        targets,
        unit=grafana_unit(kpis[0].indicator),  # type: ignore[arg-type]
        overrides=overrides,
        width=width,
    )


def _unmeasured(service: Service, kpis: Sequence[KPI]) -> Item:
    """The playbook's KPIs no Prometheus series measures, so the checklist still lists them."""
    lines = ["| KPI | Why it is not on this dashboard | Playbook |", "|---|---|---|"]
    for kpi in kpis:
        reason = (kpi.not_alertable_reason or "").replace("\n", " ").replace("|", "/")
        lines.append(f"| {kpi.title} | {reason} | [{kpi.source.section}]({kpi.runbook_url}) |")
    return text_panel(
        "Checked outside Prometheus",
        f"KPIs of the {service.title} playbook without an indicator: review them by hand.",
        "\n".join(lines) + "\n",
    )


def overview(service: Service) -> dash_m.Dashboard:
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
        .link(link("Playbook", service.playbook_url))
        .variables([
            datasource_variable(),
            dash_b.ConstantVariable("service").label("Service").value(service.id),
            label_variable("target", "Target", selector("stackprobe_probe_success", [Matcher("service", "$service")])),
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
        items += [kpi_stat(k, max(4, 24 // len(row_kpis))) for k in row_kpis]
        items.append(NEWLINE)
        items += [area_graph(service, a, ks, 24 // len(by_area)) for a, ks in by_area.items()]
    unmeasured = [k for k in service.kpis if k.indicator is None]
    if unmeasured:
        items += [dash_b.Row("Checked outside Prometheus"), _unmeasured(service, unmeasured)]
    return assemble(builder, items)
