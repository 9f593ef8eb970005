"""The resolved model: every value an output needs, computed once from the validated spec.

Second step of the generator (rules/spec.py -> here -> rules/emit/*, grafana/*). `resolve()`
turns the catalogue as written into one `KPI` per catalogue KPI (its PromQL series, tiers with
their `for`, priority, severity, formatted limit and runbook URL, its alert names), one `Alert`
per alerting rule (expr, labels, annotation templates) and one `Recording` per recording rule,
plus the routing with every default applied. Emitters read only this model: a query, a name or
a threshold is written here once and every output that shows it takes it from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stackprobe.configsource import format_duration, parse_duration
from stackprobe.exporter.metrics import PREFIX
from stackprobe.exporter.probers import PROBERS

from . import schedule, spec
from .gotemplate import FACTOR, UNIT_FORMATS, LabelRef, Part, Template, ValueFormat, format_value
from .promql import Matcher, join, keep_labels, matchers, number, selector
from .spec import BURN_RATE_WINDOWS, PRIORITIES, FixtureSeries, Source, TimeInterval, Where, substitute

#: Alert `severity` label of each tier.
SEVERITY: dict[str, str] = {"critical": "critical", "warning": "warning", "target": "info"}



def camel(text: str) -> str:
    """`universal-gallery` -> `UniversalGallery`, `latency_p95` -> `LatencyP95`."""
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[-_\s]+", text) if p)


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lowercase, punctuation dropped, spaces to dashes."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Indicator:
    """An indicator as one service reads it: its PromQL and metric names with the service's params."""

    id: str
    record: str
    unit: str
    provider: str
    description: str
    labels: tuple[str, ...]  # the labels the recorded series keep, aggregation labels included
    #: The catalogue's aggregation labels (cluster, env, ...), kept by every aggregation of `expr`.
    aggregation_labels: tuple[str, ...]
    window: float | None
    liveness: bool
    expr: str  # the PromQL recorded (whitespace collapsed), ${params} and ${match} substituted
    metrics: tuple[str, ...]
    #: The label matchers selecting the service's raw series (stackprobe: `service`).
    match: Mapping[str, str]
    #: Fixture series with ${params} substituted (for the generated promtool tests).
    fixture: tuple[FixtureSeries, ...]
    fixture_shift: float | None
    value_format: ValueFormat
    #: The time one sample of the SLI stands for (a probe interval), else None (counted requests).
    resolution: float | None = None
    #: Ratio indicators: the recorded events per second they divide by (record, PromQL).
    traffic: tuple[str, str] | None = None
    #: Ratio indicators: the default floor of events in an alert's window.
    min_events: int | None = None

    def format(self, v: float) -> str:
        """A value of this indicator as alerts and dashboards show it."""
        return self.value_format.python(v)


@dataclass(frozen=True)
class Tier:
    """One resolved threshold of a KPI."""

    name: str  # target | warning | critical
    threshold: float
    literal: str  # the PromQL number literal of the threshold
    limit: str  # the threshold formatted in the indicator's unit ("85%", "2s", "30.0 days")
    for_: float
    priority: str
    severity: str
    source: Source
    runbook_url: str

    @property
    def value(self) -> float:
        """The threshold as the alert's literal spells it (no float noise like 0.9990000000000001)."""
        return float(self.literal)


@dataclass(frozen=True)
class KPI:
    """A KPI of one service, resolved."""

    id: str
    service: str
    title: str
    description: str
    area: str | None
    priority: str
    comparison: str | None
    alertable: bool
    not_alertable_reason: str | None
    burn_rate: bool
    notes: str
    indicator: Indicator | None
    match: Mapping[str, str]  # the KPI's own matchers
    matchers: tuple[Matcher, ...]  # service + the KPI's own
    #: The averaging window the KPI adds (longer than the indicator's own), else None.
    window: float | None
    tiers: tuple[Tier, ...]  # mildest first
    source: Source
    runbook_url: str
    alert_names: tuple[str, ...] = ()
    #: Ratio KPIs: the fewest events in an alert's window that make the ratio meaningful.
    min_events: int | None = None
    #: The indicator burn-rate alerts measure the objective on (a request-level one when the
    #: probe-based `indicator` is too coarse), else None (no burn-rate alerts).
    objective: Indicator | None = None

    @property
    def op(self) -> str:
        """The PromQL comparison that is bad (`>` for `above`)."""
        return ">" if self.comparison == "above" else "<"

    def tier(self, name: str) -> Tier | None:
        return next((t for t in self.tiers if t.name == name), None)

    def series(self, *extra: Matcher) -> str:
        """The PromQL of the KPI's value: its recorded series (plus `extra` matchers, e.g. a
        dashboard variable), averaged over the KPI's window when it has one."""
        assert self.indicator is not None, f"{self.service}/{self.id} has no indicator"
        series = selector(self.indicator.record, self.matchers + extra)
        if self.window:
            series = f"avg_over_time({series}[{format_duration(self.window)}])"
        return series


@dataclass(frozen=True)
class BurnWindow:
    long: str
    short: str
    factor: float


@dataclass(frozen=True)
class Alert:
    """One alerting rule plus what its generated test needs to know."""

    name: str
    expr: str
    for_: float
    labels: Mapping[str, str]
    annotations: Mapping[str, Template]
    #: "threshold" | "burn_rate" | "absent" | "target_absent" | "liveness" (a prober) |
    #: "collector" (a section of a prober's probe) | "external_absent" (an exporter)
    kind: str
    service: str
    where: Where
    kpi: KPI | None = None
    tier: Tier | None = None
    burn: BurnWindow | None = None
    #: Collector alerts: each section it watches -> the alerts of the KPIs its failure blinds.
    blinds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def indicator(self) -> Indicator | None:
        """The indicator the alert reads (a burn-rate alert: the KPI's objective indicator)."""
        if self.kpi is None:
            return None
        return self.kpi.objective if self.kind == "burn_rate" else self.kpi.indicator

    def rule(self) -> dict[str, Any]:
        """The rule as Prometheus reads it."""
        out: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_:
            out["for"] = format_duration(self.for_)
        out["labels"] = dict(self.labels)
        out["annotations"] = {k: t.go() for k, t in self.annotations.items()}
        return out


@dataclass(frozen=True)
class Recording:
    """One recording rule."""

    record: str
    expr: str
    labels: Mapping[str, str]
    where: Where

    def rule(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class MuteWindow:
    """A maintenance window: the Alertmanager time interval muting some priorities of a service."""

    name: str  # the time interval's name, `<service>-<window>`
    service: str
    description: str
    intervals: tuple[TimeInterval, ...]
    mute: tuple[str, ...]
    source: Source


@dataclass(frozen=True)
class Service:
    id: str
    title: str
    description: str
    playbook: str
    playbook_url: str
    kpis: tuple[KPI, ...]
    #: The indicators the service's KPIs read, in library order, bound to the service.
    indicators: tuple[Indicator, ...]
    #: Recording rules of the service's external indicators (its own metric names).
    recordings: tuple[Recording, ...]
    alerts: tuple[Alert, ...]
    maintenance: tuple[MuteWindow, ...]
    where: Where
    #: How each priority of this service is delivered (routing.yaml's policy, the service's overrides).
    policies: Mapping[str, Policy] = field(default_factory=dict)
    #: The service's own time intervals, by the name Alertmanager knows them (`<service>-<name>`).
    time_intervals: Mapping[str, tuple[TimeInterval, ...]] = field(default_factory=dict)
    #: Priorities kept quiet (and out of the SLIs) during planned maintenance.
    muted: tuple[str, ...] = ()
    #: How long an external exporter's series must be absent for its liveness alert.
    absent_for: float = 600.0
    #: The KPI that is the service's own maintenance switch (its status API), if any.
    maintenance_mode_kpi: str | None = None
    #: The catalogue's aggregation labels (cluster, env, ...), for the outputs that build series.
    aggregation_labels: tuple[str, ...] = ()

    def kpi(self, kpi_id: str) -> KPI:
        return next(k for k in self.kpis if k.id == kpi_id)


@dataclass(frozen=True)
class Policy:
    """How alerts of one priority are delivered, defaults applied."""

    priority: str
    receiver: str
    #: The playbook's promised response time (repeat_interval defaults to it).
    response_time: float
    group_wait: float
    group_interval: float
    repeat_interval: float
    active_time_intervals: tuple[str, ...]
    group_by: tuple[str, ...] | None = None
    description: str = ""


@dataclass(frozen=True)
class Blinding:
    """While `alert` fires for a section (`collector` label), the alerts of the KPIs reading that
    section's series, on the same target, are inhibited."""

    alert: str
    collector: str
    blinded: tuple[str, ...]


@dataclass(frozen=True)
class Routing:
    runbook_base_url: str
    global_: Mapping[str, Any]
    group_by: tuple[str, ...]  # aggregation labels included
    #: Labels alerts of different clusters differ by: inhibitions hold only within equal values.
    aggregation_labels: tuple[str, ...]
    receivers: Mapping[str, Mapping[str, Any]]
    policies: Mapping[str, Policy]  # by priority, P0 first
    time_intervals: Mapping[str, tuple[TimeInterval, ...]]
    #: Alerts saying a target is down; they inhibit that target's other alerts.
    liveness_alerts: tuple[str, ...]
    where: Where
    #: Collector alerts: each inhibits only the KPI alerts its section blinds.
    blindings: tuple[Blinding, ...] = ()


@dataclass(frozen=True)
class Model:
    """Everything the emitters write, resolved."""

    services: tuple[Service, ...]
    #: Recording rules of stackprobe's indicators, shared by every service.
    recordings: tuple[Recording, ...]
    routing: Routing
    #: Every KPI of every service, for outputs that span services (per-prober dashboards).
    kpis: tuple[KPI, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kpis", tuple(k for s in self.services for k in s.kpis))

    def service(self, service_id: str) -> Service:
        return next(s for s in self.services if s.id == service_id)

    def kpis_on(self, indicator_id: str) -> list[KPI]:
        """The KPIs alerting on an indicator, across services (alertable, with at least one tier)."""
        return [k for k in self.kpis
                if k.alertable and k.tiers and k.indicator is not None and k.indicator.id == indicator_id]


# --------------------------------------------------------------------------------------------
# Resolving
# --------------------------------------------------------------------------------------------

def _one_line(expr: str) -> str:
    return " ".join(expr.split())


def _binding(service: spec.Service, provider: str) -> spec.ExporterBinding:
    """The service's binding for an exporter; stackprobe's series carry the `service` label."""
    if provider == "stackprobe" or provider not in service.exporters:
        return spec.ExporterBinding(match={"service": service.id})
    return service.exporters[provider]  # type: ignore[index]


def _recorded_expr(expr: str, extra: tuple[str, ...]) -> str:
    """The PromQL a recording rule records: one line, keeping the aggregation labels."""
    return keep_labels(_one_line(expr), extra)


def _with(labels: list[str], extra: tuple[str, ...]) -> tuple[str, ...]:
    return (*labels, *(label for label in extra if label not in labels))


def _indicator(ind: spec.Indicator, service: spec.Service, extra: tuple[str, ...]) -> Indicator:
    binding = _binding(service, ind.provider)
    params = dict(ind.params, **binding.params)
    match = join(matchers(dict(sorted(binding.match.items()))))
    values = dict(params, match=match)
    return Indicator(
        id=ind.id, record=ind.record, unit=ind.unit, provider=ind.provider, description=ind.description,
        labels=_with(ind.labels, extra), aggregation_labels=extra, window=ind.window, liveness=ind.liveness,
        expr=_recorded_expr(substitute(ind.expr, values), extra),
        metrics=tuple(substitute(m, params) for m in ind.metrics),
        match=dict(binding.match),
        fixture=tuple(fx.model_copy(update={"series": substitute(fx.series, params)}) for fx in ind.fixture),
        fixture_shift=ind.fixture_shift, value_format=UNIT_FORMATS[ind.unit], resolution=ind.resolution,
        traffic=(ind.traffic.record, _recorded_expr(substitute(ind.traffic.expr, values), extra)) if ind.traffic else None,
        min_events=ind.traffic.min_events if ind.traffic else None,
    )


def _source(source: Source, service: spec.Service) -> Source:
    return source if source.playbook else source.model_copy(update={"playbook": service.playbook})


def _runbook(base: str, source: Source) -> str:
    return f"{base}{source.playbook}#{anchor(source.section)}"


def _kpi(kpi: spec.KPI, service: spec.Service, indicator: Indicator | None, objective: Indicator | None,
         base_url: str) -> KPI:
    source = _source(kpi.source, service)
    tiers = []
    for name, t in kpi.tiers():
        tier_source = _source(t.source, service) if t.source is not None else source
        for_ = t.for_ if t.for_ is not None else kpi.for_
        tiers.append(Tier(
            name=name, threshold=t.threshold, literal=number(t.threshold),
            limit=format_value(indicator.unit, t.threshold) if indicator else number(t.threshold),
            for_=0.0 if for_ is None else for_,
            priority=t.priority or ("P3" if name == "target" else kpi.priority),
            severity=SEVERITY[name], source=tier_source, runbook_url=_runbook(base_url, tier_source),
        ))
    window = kpi.window if indicator and kpi.window and kpi.window > (indicator.window or 0) else None
    return KPI(
        id=kpi.id, service=service.id, title=kpi.title, description=kpi.description, area=kpi.area,
        priority=kpi.priority, comparison=kpi.comparison, alertable=kpi.alertable,
        not_alertable_reason=kpi.not_alertable_reason, burn_rate=kpi.burn_rate, notes=kpi.notes,
        indicator=indicator, match=dict(kpi.match), matchers=matchers({"service": service.id, **kpi.match}),
        window=window, tiers=tuple(tiers), source=source, runbook_url=_runbook(base_url, source),
        min_events=kpi.min_events or (objective or indicator).min_events if (objective or indicator) else None,
        objective=(objective or indicator) if kpi.burn_rate else None,
    )


def _labels(service_id: str, kpi_id: str, severity: str, priority: str, area: str) -> dict[str, str]:
    return {"service": service_id, "kpi": kpi_id, "severity": severity, "priority": priority, "area": area}


def _subject(ind: Indicator, service: spec.Service) -> tuple[Part, ...]:
    """What the description names: the target or instance the series is about, else the service."""
    for label in ("target", "instance"):
        if label in ind.labels:
            return LabelRef(label), f" ({service.title})"
    return (service.title,)


# --- planned maintenance -----------------------------------------------------------------------

#: 1 while the service is in planned maintenance (one series per window, `window` label), else 0.
MAINTENANCE_RECORD = "service:maintenance:active"
MAINTENANCE_MODE_WINDOW = "maintenance-mode"
#: How long after maintenance a gauge-based alert stays guarded: enough for the samples a target
#: kept from its last probe inside the window to be replaced by a new probe.
GAUGE_GUARD = 300.0


@dataclass(frozen=True)
class _Planned:
    """What a service's alerts need to know about its planned maintenance."""

    service: str
    muted: tuple[str, ...]  # priorities kept quiet and out of the SLIs
    mode_kpi: str | None  # the KPI that is the maintenance switch (not guarded by it)

    def guards(self, priority: str) -> bool:
        return priority in self.muted

    def guard(self, priority: str, indicator: Indicator | None, kpi_id: str | None = None) -> str:
        """`unless` planned maintenance was on within the indicator's own window (a 5-minute
        average still holds maintenance samples for 5 minutes after the window closes)."""
        if not self.guards(priority):
            return ""
        ms = [Matcher("service", self.service)]
        if kpi_id is not None and kpi_id == self.mode_kpi:
            ms.append(Matcher("window", MAINTENANCE_MODE_WINDOW, "!="))
        lookback = format_duration(max(indicator.window or 0, GAUGE_GUARD) if indicator else GAUGE_GUARD)
        return f"\nunless on(service) (max_over_time({selector(MAINTENANCE_RECORD, ms)}[{lookback}]) > 0)"

    def sli(self, indicator: Indicator, kpi: KPI, priority: str) -> str:
        """The series a long window of this alert averages: without planned maintenance when guarded."""
        record = unplanned_record(indicator) if self.guards(priority) else indicator.record
        return selector(record, kpi.matchers)


def unplanned_record(indicator: Indicator) -> str:
    """The indicator with planned maintenance left out: what long windows average over."""
    return f"{indicator.record}_unplanned"


def _maintenance_recordings(service: spec.Service, kpis: list[KPI], planned: _Planned, extra: tuple[str, ...],
                            where: Where) -> list[Recording]:
    """The service's maintenance series (time functions; its maintenance switch), then every
    indicator a guarded alert averages over long windows, with the maintenance samples removed
    (avg_over_time then averages the samples outside)."""
    out = [Recording(MAINTENANCE_RECORD, schedule.active(w.intervals), {"service": service.id, "window": w.name}, where)
           for w in service.maintenance]
    if service.maintenance_mode is not None:
        kpi = next(k for k in kpis if k.id == service.maintenance_mode.kpi)
        out.append(Recording(MAINTENANCE_RECORD, keep_labels(f"max by (service) ({kpi.series()}) > bool 0", extra),
                             {"window": MAINTENANCE_MODE_WINDOW}, where))
    if not out:
        return []
    long: list[Indicator] = []
    for kpi in kpis:
        if not kpi.alertable or kpi.indicator is None:
            continue
        candidates = ([kpi.indicator] if kpi.window else []) + ([kpi.objective] if kpi.objective else [])
        if any(planned.guards(p) for p in _priorities(kpi, service)):
            long += [i for i in candidates if i not in long]
    for ind in long:
        guard = planned.guard(planned.muted[0], ind).strip()
        out.append(Recording(unplanned_record(ind), f"{selector(ind.record, [Matcher('service', service.id)])} {guard}",
                             {}, where))
    return out


def _priorities(kpi: KPI, service: spec.Service) -> list[str]:
    """Every priority the KPI's alerts carry."""
    out = [t.priority for t in kpi.tiers if not (t.name == "target" and kpi.burn_rate)]
    if kpi.burn_rate:
        raw = next(k for k in service.kpis if k.id == kpi.id)
        out += [kpi.priority, raw.burn_rate_ticket_priority]
    return out


# --- alerts -------------------------------------------------------------------------------------

def traffic_floor(kpi: KPI, indicator: Indicator, window: float) -> str:
    """`and` at least `min_events` events in the alert's window: below it a ratio says nothing
    (an idle cache's only lookups may be misses). Empty for indicators that are not ratios."""
    if indicator.traffic is None or kpi.min_events is None:
        return ""
    series = selector(indicator.traffic[0], kpi.matchers)
    if window > (indicator.window or 0):
        series = f"avg_over_time({series}[{format_duration(window)}])"
    keep = [label for label in indicator.labels if label not in kpi.match]
    return f"\nand on({', '.join(keep)}) ({series} * {number(window)} >= {kpi.min_events})"


def _threshold_alert(service: spec.Service, kpi: KPI, tier: Tier, planned: _Planned, where: Where) -> Alert:
    ind = kpi.indicator
    assert ind is not None and kpi.comparison is not None
    window = f" averaged over {format_duration(kpi.window)}" if kpi.window else ""
    held = f" for {format_duration(tier.for_)}" if tier.for_ else ""
    series = kpi.series()
    if kpi.window:
        series = f"avg_over_time({planned.sli(ind, kpi, tier.priority)}[{format_duration(kpi.window)}])"
    expr = (f"{series} {kpi.op} {tier.literal}{traffic_floor(kpi, ind, max(kpi.window or 0, ind.window or 0))}"
            f"{planned.guard(tier.priority, ind, kpi.id)}")
    return Alert(
        name=camel(service.id) + camel(kpi.id) + camel(tier.name),
        expr=expr, for_=tier.for_,
        labels=_labels(service.id, kpi.id, tier.severity, tier.priority, kpi.area or ""),
        annotations={
            "summary": Template.of(f"{service.title}: {kpi.title} {kpi.comparison} {tier.limit}"),
            "description": Template.of(f"{kpi.title} of ", *_subject(ind, service), " is ", ind.value_format,
                                       f"{window}; {tier.name} threshold: {kpi.comparison} {tier.limit}{held}."),
            "runbook_url": Template.of(tier.runbook_url),
        },
        kind="threshold", service=service.id, where=where, kpi=kpi, tier=tier,
    )


def _burn_rate_alerts(service: spec.Service, kpi: KPI, ticket_priority: str, planned: _Planned,
                      where: Where) -> list[Alert]:
    """The SRE workbook's multiwindow, multi-burn-rate alerts for the KPI's objective, measured
    on its objective indicator, over the samples outside planned maintenance."""
    target = kpi.tier("target")
    ind = kpi.objective
    assert ind is not None and target is not None
    budget = number(1 - target.threshold)
    out = []
    for long, short, factor, severity in BURN_RATE_WINDOWS:
        priority = kpi.priority if severity == "critical" else ticket_priority
        series = planned.sli(ind, kpi, priority)
        burn = [f"(1 - avg_over_time({series}[{w}])) / {budget} > {number(factor)}"
                f"{traffic_floor(kpi, ind, parse_duration(w))}" for w in (long, short)]
        out.append(Alert(
            name=camel(service.id) + camel(kpi.id) + camel(f"burn_rate_{long}"),
            expr=f"{burn[0]}\nand\n{burn[1]}{planned.guard(priority, ind, kpi.id)}", for_=0.0,
            labels=_labels(service.id, kpi.id, severity, priority, kpi.area or ""),
            annotations={
                "summary": Template.of(f"{service.title}: {kpi.title} is burning its error budget "
                                       f"{number(factor)}x too fast"),
                "description": Template.of(f"{kpi.title} of {service.title} has been failing ", FACTOR,
                                           f" times faster than the {format_value('percentunit', target.threshold)} "
                                           f"objective allows, over both {long} and {short}."),
                "runbook_url": Template.of(target.runbook_url),
            },
            kind="burn_rate", service=service.id, where=where, kpi=kpi, tier=target,
            burn=BurnWindow(long, short, factor),
        ))
    return out


def _absent_alert(service: spec.Service, playbook_url: str, planned: _Planned, where: Where) -> Alert:
    """Fires when no target of the service reports at all (exporter down, targets removed)."""
    return Alert(
        name=camel(service.id) + "ProbesAbsent",
        expr=(f"absent({selector('stackprobe_probe_success', [Matcher('service', service.id)])})"
              f"{planned.guard(service.absent.priority, None)}"),
        for_=service.absent.for_,
        labels=_labels(service.id, "probes_absent", "warning", service.absent.priority, "availability"),
        annotations={
            "summary": Template.of(f"{service.title}: no probe results"),
            "description": Template.of(f"stackprobe reports no target of {service.title} for "
                                       f"{format_duration(service.absent.for_)}: the exporter is down, not scraped, "
                                       f"or the service's targets were removed from its config."),
            "runbook_url": Template.of(playbook_url),
        },
        kind="absent", service=service.id, where=where,
    )


#: How far back a target's vanished series are remembered (`last_over_time`): after this the
#: per-target absence alert stops, and only the whole-service absence alert still speaks.
TARGET_ABSENT_LOOKBACK = 3600.0
#: The scrape jobs of stackprobe exporters (deploy/prometheus.yml: `stackprobe`, `stackprobe-probe`).
EXPORTER_UP = 'up{job=~"stackprobe.*"} == 1'


def _target_absent_alert(service: spec.Service, playbook_url: str, planned: _Planned, extra: tuple[str, ...],
                         where: Where) -> Alert:
    """Fires per target whose series vanished while the exporter instance that reported it is not
    up (a lost shard): the whole-service absence alert stays quiet while another shard still
    reports some of the service's targets. A target removed from the config of a running
    exporter, or one whose exporter is back up, stays quiet; after the lookback it stops."""
    probe = selector("stackprobe_probe_success", [Matcher("service", service.id)])
    by = ", ".join(_with(["service", "target", "prober", "instance"], extra))
    instance = ", ".join(_with(["instance"], extra))
    target = ", ".join(_with(["service", "target"], extra))
    lookback = format_duration(TARGET_ABSENT_LOOKBACK)
    expr = (f"group by ({by}) (last_over_time({probe}[{lookback}]))\n"
            f"unless on ({instance}) ({EXPORTER_UP})\n"
            f"unless on ({target}) {probe}{planned.guard(service.absent.priority, None)}")
    return Alert(
        name=camel(service.id) + "TargetAbsent",
        expr=expr, for_=service.absent.for_,
        labels=_labels(service.id, "target_absent", "warning", service.absent.priority, "availability"),
        annotations={
            "summary": Template.of(f"{service.title}: no probe results of ", LabelRef("target")),
            "description": Template.of("The series of ", LabelRef("target"), f" ({service.title}) vanished with "
                                       "its exporter ", LabelRef("instance"), f", not up for "
                                       f"{format_duration(service.absent.for_)}: its alerts cannot see it. "
                                       f"Quiet after {lookback} without a sample."),
            "runbook_url": Template.of(playbook_url),
        },
        kind="target_absent", service=service.id, where=where,
    )


# --- liveness: every input the service's KPIs read has an alert of its own --------------------

#: The recorded probe result per target (the `target_up` indicator).
PROBE_SUCCESS_RECORD = "service_target:stackprobe_probe_success:min"


def _most_urgent(priorities: list[str]) -> str:
    return min(priorities, key=PRIORITIES.index)


def prober_of(kpi: KPI) -> str | None:
    """The stackprobe prober whose targets a KPI reads (`prober=` matcher, `stackprobe_<prober>_...`)."""
    ind = kpi.indicator
    if ind is None or ind.provider != "stackprobe":
        return None
    if "prober" in kpi.match:
        return kpi.match["prober"]
    return next((p for p in PROBERS if any(m.startswith(f"stackprobe_{p}_") for m in ind.metrics)), None)


def _liveness_for(service: spec.Service, prober: str) -> float:
    """How long a prober's probes (or a section of them) must keep failing: `liveness.for`,
    by default the prober's default interval + 1 min (two failed probes in a row)."""
    return service.liveness.for_.get(prober, PROBERS[prober].target_model.default_interval + 60)


def _probe_failure_alerts(service: spec.Service, kpis: list[KPI], planned: _Planned, playbook_url: str,
                          where: Where) -> list[Alert]:
    """Per prober the service's KPIs read: its targets' probes keep failing. With the exporter's
    failed-probe policy a failed target keeps its last samples for a bounded time and then loses
    them, which silences every KPI of the target; this alert says so instead, at the priority of
    the most urgent KPI it blinds. None where a KPI already is that prober's liveness alert
    (target down, MySQL/Redis down), so two alerts never inhibit each other."""
    blinded: dict[str, list[str]] = {}
    covered = set()
    for kpi in kpis:
        prober = prober_of(kpi)
        if not kpi.alertable or prober is None:
            continue
        if kpi.indicator is not None and kpi.indicator.liveness:
            covered.add(prober)
        blinded.setdefault(prober, []).extend(_priorities(kpi, service))
    out = []
    for prober, priorities in blinded.items():
        if prober in covered or not priorities:
            continue
        priority = _most_urgent(priorities)
        for_ = _liveness_for(service, prober)
        ms = [Matcher("service", service.id), Matcher("prober", prober)]
        out.append(Alert(
            name=camel(service.id) + camel(prober) + "ProbeFailing",
            expr=f"{selector(PROBE_SUCCESS_RECORD, ms)} < 1{planned.guard(priority, None)}", for_=for_,
            labels=_labels(service.id, f"{prober}_probe", "critical", priority, "availability"),
            annotations={
                "summary": Template.of(f"{service.title}: the {prober} probe of ", LabelRef("target"), " fails"),
                "description": Template.of(f"The {prober} probe of ", LabelRef("target"), f" ({service.title}) has "
                                           f"failed for {format_duration(for_)}: the alerts of its KPIs cannot see "
                                           f"it (stackprobe_probe_errors_total says why)."),
                "runbook_url": Template.of(playbook_url),
            },
            kind="liveness", service=service.id, where=where,
        ))
    return out


# --- collectors: one section of a probe fails while the probe succeeds --------------------------

def collector_success_record(prober: str) -> str:
    """The recorded `stackprobe_<prober>_collector_success`, per target and section."""
    return f"service_target_collector:{PREFIX}{prober}_collector_success:min"


def collectors_of(kpi: KPI) -> tuple[str, ...]:
    """The sections of its prober whose families the KPI reads (Prober.collectors): a failing
    one takes the KPI's series away while the probe itself succeeds."""
    prober = prober_of(kpi)
    if prober is None:
        return ()
    read = {m for ind in (kpi.indicator, kpi.objective) if ind is not None for m in ind.metrics}
    return tuple(c for c, families in PROBERS[prober].collectors.items() if read & {PREFIX + f for f in families})


def _collector_recordings(service: spec.Service, kpis: list[KPI], extra: tuple[str, ...],
                          where: Where) -> list[Recording]:
    """Per prober with sections the service's KPIs read: its collector_success of the service's
    targets, one series per target and section."""
    probers = sorted({p for k in kpis if k.alertable and collectors_of(k) and (p := prober_of(k))})
    raw = {p: selector(f"{PREFIX}{p}_collector_success", [Matcher("service", service.id)]) for p in probers}
    return [Recording(collector_success_record(p), keep_labels(f"min by (service, target, collector) ({raw[p]})", extra),
                      {}, where) for p in probers]


def _collector_alerts(service: spec.Service, kpis: list[KPI], planned: _Planned, playbook_url: str,
                      where: Where) -> list[Alert]:
    """Per prober with sections the service's alertable KPIs read (MySQL's global_status,
    replica_status, tables, index_stats): `<Service><Prober>CollectorFailing` when one of those
    sections keeps failing on a target while its probe succeeds (the server refuses one of its
    statements: a revoked grant), which takes exactly the KPIs' series away, silently otherwise.
    Its `for` and maintenance guard are those of `<Service><Prober>ProbeFailing`; its priority
    is that of the most urgent KPI it blinds. Sections no KPI reads are not watched.

    When the whole probe fails, the exporter keeps the last success's samples (collector_success
    included) through 2 failed probes, then drops them: a section that was fine stays 1 and then
    vanishes, so this alert stays quiet and the prober's liveness alert (ProbeFailing, or the
    MySQL-down KPI) is the one that pages; one that was failing keeps this alert firing until its
    series vanish (one failed probe neither fires nor resolves it), and meanwhile the liveness
    alert, firing after its own `for`, inhibits it like every alert of its target (both carry
    `target`). It is not a liveness alert itself: it inhibits only the alerts of the KPIs it
    blinds on its target and section (`blinds`), never the target's others (its down alert,
    the KPIs of sections that still work)."""
    blinded: dict[str, dict[str, list[KPI]]] = {}
    for kpi in kpis:
        prober = prober_of(kpi)
        if not kpi.alertable or prober is None or not kpi.alert_names:
            continue
        for collector in collectors_of(kpi):
            blinded.setdefault(prober, {}).setdefault(collector, []).append(kpi)
    out = []
    for prober, by_collector in blinded.items():
        # In the prober's own order, so the rule reads as the probe runs.
        needed = [c for c in PROBERS[prober].collectors if c in by_collector]
        priority = _most_urgent([p for c in needed for k in by_collector[c] for p in _priorities(k, service)])
        for_ = _liveness_for(service, prober)
        collector = Matcher("collector", "|".join(needed), "=~") if len(needed) > 1 else Matcher("collector", needed[0])
        ms = [Matcher("service", service.id), collector]
        kpi_list = "; ".join(f"{', '.join(k.title for k in by_collector[c])} ({c})" for c in needed)
        out.append(Alert(
            name=camel(service.id) + camel(prober) + "CollectorFailing",
            expr=f"{selector(collector_success_record(prober), ms)} < 1{planned.guard(priority, None)}", for_=for_,
            labels=_labels(service.id, f"{prober}_collector", "critical", priority, "availability"),
            annotations={
                "summary": Template.of(f"{service.title}: the ", LabelRef("collector"), f" section of the {prober} "
                                       "probe of ", LabelRef("target"), " fails"),
                "description": Template.of(
                    "The ", LabelRef("collector"), f" section of the {prober} probe of ", LabelRef("target"),
                    f" ({service.title}) has failed for {format_duration(for_)}: the server refuses one of its "
                    f"statements (a missing grant, say) and the rest of the probe goes on without its series, so "
                    f"the alerts of these KPIs cannot see it: {kpi_list}. /probe?target=", LabelRef("target"),
                    "&debug=true shows the refused statement."),
                "runbook_url": Template.of(playbook_url),
            },
            kind="collector", service=service.id, where=where,
            blinds={c: tuple(name for k in by_collector[c] for name in k.alert_names) for c in needed},
        ))
    return out


def _external_absent_alerts(service: spec.Service, kpis: list[KPI], planned: _Planned, playbook_url: str,
                            where: Where) -> list[Alert]:
    """Per external exporter (node_exporter, the application) the service's KPIs read: none of
    the series they need has a sample, so those KPIs are blind."""
    needed: dict[str, tuple[list[str], list[str], Mapping[str, str]]] = {}
    for kpi in kpis:
        read = [kpi.indicator] + ([kpi.objective] if kpi.objective is not kpi.indicator else [])
        for ind in read:
            if not kpi.alertable or ind is None or ind.provider == "stackprobe":
                continue
            metrics, priorities, _ = needed.setdefault(ind.provider, ([], [], ind.match))
            metrics += [m for m in ind.metrics if m not in metrics]
            priorities += _priorities(kpi, service)
    out = []
    for provider, (metrics, priorities, match) in needed.items():
        window = format_duration(service.liveness.absent_for)
        priority = _most_urgent(priorities)
        ms = matchers(dict(sorted(match.items())))
        expr = " or ".join(f"absent_over_time({selector(m, ms)}[{window}])" for m in metrics)
        out.append(Alert(
            name=camel(service.id) + camel(provider) + "Absent",
            expr=f"{expr}{planned.guard(priority, None)}", for_=0.0,
            labels=_labels(service.id, f"{provider}_absent", "critical", priority, "availability"),
            annotations={
                "summary": Template.of(f"{service.title}: no {provider} series"),
                "description": Template.of(f"No sample of {', '.join(metrics)} ({join(ms)}) for {window}: {provider} "
                                           f"is down, not scraped or labelled differently, and the KPIs reading it "
                                           f"cannot alert."),
                "runbook_url": Template.of(playbook_url),
            },
            kind="external_absent", service=service.id, where=where,
        ))
    return out


def _policy(p: str, policy: spec.PriorityPolicy) -> Policy:
    return Policy(p, policy.receiver, policy.response_time, policy.group_wait, policy.group_interval,
                  policy.repeat_interval or policy.response_time, tuple(policy.active_time_intervals),
                  tuple(policy.group_by) if policy.group_by is not None else None, policy.description)


def _service_policies(r: spec.Routing, service: spec.Service) -> dict[str, Policy]:
    """routing.yaml's policy per priority with the service's overrides; interval names resolved."""
    out = {}
    for p in PRIORITIES:
        base = r.priorities[p]  # type: ignore[index]
        override = service.routing.priorities.get(p)  # type: ignore[call-overload]
        if override is not None:
            base = base.model_copy(update={k: getattr(override, k) for k in override.model_fields_set
                                           if getattr(override, k) is not None})
        names = tuple(f"{service.id}-{n}" if n in service.routing.time_intervals else n
                      for n in base.active_time_intervals)
        out[p] = replace(_policy(p, base), active_time_intervals=names)
    return out


def _service(cat: spec.Catalogue, service: spec.Service) -> Service:
    base_url = cat.routing.runbook_base_url
    playbook_url = f"{base_url}{service.playbook}"
    where = cat.where[("service", service.id)]
    used = {k.indicator for k in service.kpis if k.indicator} | {
        k.objective_indicator for k in service.kpis if k.objective_indicator}
    extra = tuple(cat.routing.aggregation_labels)
    bound = {i.id: _indicator(i, service, extra) for i in cat.indicators.values() if i.id in used}
    planned = _Planned(service.id, service.muted_in_maintenance(),
                       service.maintenance_mode.kpi if service.maintenance_mode else None)
    kpis, alerts = [], []
    for raw in service.kpis:
        kpi = _kpi(raw, service, bound.get(raw.indicator or ""), bound.get(raw.objective_indicator or ""), base_url)
        kpi_where = cat.where[("kpi", service.id, raw.id)]
        own: list[Alert] = []
        if kpi.alertable:
            own += [_threshold_alert(service, kpi, t, planned, kpi_where) for t in kpi.tiers
                    if not (t.name == "target" and kpi.burn_rate)]
            if kpi.burn_rate:
                own += _burn_rate_alerts(service, kpi, raw.burn_rate_ticket_priority, planned, kpi_where)
        kpi = replace(kpi, alert_names=tuple(a.name for a in own))
        own = [replace(a, kpi=kpi) for a in own]
        kpis.append(kpi)
        alerts += own
    alerts += _probe_failure_alerts(service, kpis, planned, playbook_url, where)
    alerts += _collector_alerts(service, kpis, planned, playbook_url, where)
    alerts += _external_absent_alerts(service, kpis, planned, playbook_url, where)
    alerts.append(_absent_alert(service, playbook_url, planned, where))
    alerts.append(_target_absent_alert(service, playbook_url, planned, extra, where))
    recordings = _maintenance_recordings(service, kpis, planned, extra, where)
    recordings += _collector_recordings(service, kpis, extra, where)
    seen = set()
    for i in bound.values():
        if i.provider == "stackprobe":
            continue
        for record, expr in [(i.record, i.expr)] + ([i.traffic] if i.traffic else []):
            if record not in seen:  # two ratios of the same requests share their traffic
                seen.add(record)
                recordings.append(Recording(record, expr, {"service": service.id}, cat.where[("indicator", i.id)]))
    windows = tuple(MuteWindow(f"{service.id}-{w.name}", service.id, w.description, tuple(w.intervals),
                               tuple(w.mute), _source(w.source, service)) for w in service.maintenance)
    return Service(id=service.id, title=service.title, description=service.description, playbook=service.playbook,
                   playbook_url=playbook_url, kpis=tuple(kpis), indicators=tuple(bound.values()),
                   recordings=tuple(recordings), alerts=tuple(alerts), maintenance=windows, where=where,
                   policies=_service_policies(cat.routing, service),
                   time_intervals={f"{service.id}-{n}": tuple(tis) for n, tis in service.routing.time_intervals.items()},
                   muted=planned.muted, absent_for=service.liveness.absent_for, maintenance_mode_kpi=planned.mode_kpi,
                   aggregation_labels=extra)


def _routing(r: spec.Routing, services: tuple[Service, ...], where: Where) -> Routing:
    policies = {p: _policy(p, r.priorities[p]) for p in PRIORITIES}  # type: ignore[index]
    liveness = tuple(a.name for s in services for a in s.alerts
                     if a.kind == "liveness" or (a.kind == "threshold" and a.indicator is not None and a.indicator.liveness))
    blindings = tuple(Blinding(a.name, collector, names) for s in services for a in s.alerts
                      for collector, names in a.blinds.items())
    extra = tuple(r.aggregation_labels)
    return Routing(runbook_base_url=r.runbook_base_url, global_=dict(r.global_), group_by=_with(r.group_by, extra),
                   aggregation_labels=extra,
                   receivers=dict(r.receivers), policies=policies,
                   time_intervals={n: tuple(tis) for n, tis in r.time_intervals.items()},
                   liveness_alerts=liveness, where=where, blindings=blindings)


def resolve(cat: spec.Catalogue) -> Model:
    """The model of a validated catalogue."""
    services = tuple(_service(cat, s) for s in cat.services)
    extra = tuple(cat.routing.aggregation_labels)
    shared = []
    for i in cat.indicators.values():
        if i.provider == "stackprobe":
            where = cat.where[("indicator", i.id)]
            shared.append(Recording(i.record, _recorded_expr(i.expr, extra), {}, where))
            if i.traffic is not None:
                shared.append(Recording(i.traffic.record, _recorded_expr(i.traffic.expr, extra), {}, where))
    return Model(services=services, recordings=tuple(shared),
                 routing=_routing(cat.routing, services, cat.where[("routing",)]))


def load(directory: Any = None) -> Model:
    """Load, validate and resolve a catalogue directory (spec.load_catalogue + resolve)."""
    return resolve(spec.load_catalogue(directory))
