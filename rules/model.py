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

from stackprobe.configsource import format_duration

from . import spec
from .gotemplate import FACTOR, UNIT_FORMATS, LabelRef, Part, Template, ValueFormat, format_value
from .promql import Matcher, join, keep_labels, matchers, number, selector
from .spec import FixtureSeries, Source, TimeInterval, Where, substitute

#: Alert `severity` label of each tier.
SEVERITY: dict[str, str] = {"critical": "critical", "warning": "warning", "target": "info"}

#: The SRE workbook's multiwindow pairs: (long window, short window, burn-rate factor, severity).
BURN_RATE_WINDOWS: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)


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
    kind: str  # "threshold" | "burn_rate" | "absent"
    service: str
    where: Where
    kpi: KPI | None = None
    tier: Tier | None = None
    burn: BurnWindow | None = None

    @property
    def indicator(self) -> Indicator | None:
        return self.kpi.indicator if self.kpi else None

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

    def kpi(self, kpi_id: str) -> KPI:
        return next(k for k in self.kpis if k.id == kpi_id)


@dataclass(frozen=True)
class Policy:
    """How alerts of one priority are delivered, defaults applied."""

    priority: str
    receiver: str
    group_wait: float
    group_interval: float
    repeat_interval: float
    active_time_intervals: tuple[str, ...]


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
    return Indicator(
        id=ind.id, record=ind.record, unit=ind.unit, provider=ind.provider, description=ind.description,
        labels=_with(ind.labels, extra), aggregation_labels=extra, window=ind.window, liveness=ind.liveness,
        expr=_recorded_expr(substitute(ind.expr, dict(params, match=match)), extra),
        metrics=tuple(substitute(m, params) for m in ind.metrics),
        match=dict(binding.match),
        fixture=tuple(fx.model_copy(update={"series": substitute(fx.series, params)}) for fx in ind.fixture),
        fixture_shift=ind.fixture_shift, value_format=UNIT_FORMATS[ind.unit],
    )


def _source(source: Source, service: spec.Service) -> Source:
    return source if source.playbook else source.model_copy(update={"playbook": service.playbook})


def _runbook(base: str, source: Source) -> str:
    return f"{base}{source.playbook}#{anchor(source.section)}"


def _kpi(kpi: spec.KPI, service: spec.Service, indicator: Indicator | None, base_url: str) -> KPI:
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
    )


def _labels(service_id: str, kpi_id: str, severity: str, priority: str, area: str) -> dict[str, str]:
    return {"service": service_id, "kpi": kpi_id, "severity": severity, "priority": priority, "area": area}


def _subject(ind: Indicator, service: spec.Service) -> tuple[Part, ...]:
    """What the description names: the target or instance the series is about, else the service."""
    for label in ("target", "instance"):
        if label in ind.labels:
            return LabelRef(label), f" ({service.title})"
    return (service.title,)


def _threshold_alert(service: spec.Service, kpi: KPI, tier: Tier, where: Where) -> Alert:
    ind = kpi.indicator
    assert ind is not None and kpi.comparison is not None
    window = f" averaged over {format_duration(kpi.window)}" if kpi.window else ""
    held = f" for {format_duration(tier.for_)}" if tier.for_ else ""
    return Alert(
        name=camel(service.id) + camel(kpi.id) + camel(tier.name),
        expr=f"{kpi.series()} {kpi.op} {tier.literal}", for_=tier.for_,
        labels=_labels(service.id, kpi.id, tier.severity, tier.priority, kpi.area or ""),
        annotations={
            "summary": Template.of(f"{service.title}: {kpi.title} {kpi.comparison} {tier.limit}"),
            "description": Template.of(f"{kpi.title} of ", *_subject(ind, service), " is ", ind.value_format,
                                       f"{window}; {tier.name} threshold: {kpi.comparison} {tier.limit}{held}."),
            "runbook_url": Template.of(tier.runbook_url),
        },
        kind="threshold", service=service.id, where=where, kpi=kpi, tier=tier,
    )


def _burn_rate_alerts(service: spec.Service, kpi: KPI, ticket_priority: str, where: Where) -> list[Alert]:
    """The SRE workbook's multiwindow, multi-burn-rate alerts for the KPI's objective."""
    target = kpi.tier("target")
    assert kpi.indicator is not None and target is not None
    budget = number(1 - target.threshold)
    series = selector(kpi.indicator.record, kpi.matchers)
    out = []
    for long, short, factor, severity in BURN_RATE_WINDOWS:
        burn = [f"(1 - avg_over_time({series}[{w}])) / {budget} > {number(factor)}" for w in (long, short)]
        out.append(Alert(
            name=camel(service.id) + camel(kpi.id) + camel(f"burn_rate_{long}"),
            expr=f"{burn[0]}\nand\n{burn[1]}", for_=0.0,
            labels=_labels(service.id, kpi.id, severity, kpi.priority if severity == "critical" else ticket_priority,
                           kpi.area or ""),
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


def _absent_alert(service: spec.Service, playbook_url: str, where: Where) -> Alert:
    """Fires when no target of the service reports at all (exporter down, targets removed)."""
    return Alert(
        name=camel(service.id) + "ProbesAbsent",
        expr=f"absent({selector('stackprobe_probe_success', [Matcher('service', service.id)])})",
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


def _service(cat: spec.Catalogue, service: spec.Service) -> Service:
    base_url = cat.routing.runbook_base_url
    playbook_url = f"{base_url}{service.playbook}"
    used = {k.indicator for k in service.kpis if k.indicator}
    extra = tuple(cat.routing.aggregation_labels)
    bound = {i.id: _indicator(i, service, extra) for i in cat.indicators.values() if i.id in used}
    kpis, alerts = [], []
    for raw in service.kpis:
        kpi = _kpi(raw, service, bound.get(raw.indicator or ""), base_url)
        where = cat.where[("kpi", service.id, raw.id)]
        own: list[Alert] = []
        if kpi.alertable:
            own += [_threshold_alert(service, kpi, t, where) for t in kpi.tiers
                    if not (t.name == "target" and kpi.burn_rate)]
            if kpi.burn_rate:
                own += _burn_rate_alerts(service, kpi, raw.burn_rate_ticket_priority, where)
        kpi = replace(kpi, alert_names=tuple(a.name for a in own))
        own = [replace(a, kpi=kpi) for a in own]
        kpis.append(kpi)
        alerts += own
    alerts.append(_absent_alert(service, playbook_url, cat.where[("service", service.id)]))
    recordings = tuple(Recording(i.record, i.expr, {"service": service.id}, cat.where[("indicator", i.id)])
                       for i in bound.values() if i.provider != "stackprobe")
    windows = tuple(MuteWindow(f"{service.id}-{w.name}", service.id, w.description, tuple(w.intervals),
                               tuple(w.mute), _source(w.source, service)) for w in service.maintenance)
    return Service(id=service.id, title=service.title, description=service.description, playbook=service.playbook,
                   playbook_url=playbook_url, kpis=tuple(kpis), indicators=tuple(bound.values()),
                   recordings=recordings, alerts=tuple(alerts), maintenance=windows,
                   where=cat.where[("service", service.id)])


def _routing(r: spec.Routing, services: tuple[Service, ...], where: Where) -> Routing:
    policies = {}
    for p in spec.PRIORITIES:  # the spec guarantees a policy for each
        policy = r.priorities[p]  # type: ignore[index]
        policies[p] = Policy(p, policy.receiver, policy.group_wait, policy.group_interval,
                             policy.repeat_interval or policy.response_time, tuple(policy.active_time_intervals))
    liveness = tuple(a.name for s in services for a in s.alerts
                     if a.kind == "threshold" and a.indicator is not None and a.indicator.liveness)
    extra = tuple(r.aggregation_labels)
    return Routing(runbook_base_url=r.runbook_base_url, global_=dict(r.global_), group_by=_with(r.group_by, extra),
                   aggregation_labels=extra,
                   receivers=dict(r.receivers), policies=policies,
                   time_intervals={n: tuple(tis) for n, tis in r.time_intervals.items()},
                   liveness_alerts=liveness, where=where)


def resolve(cat: spec.Catalogue) -> Model:
    """The model of a validated catalogue."""
    services = tuple(_service(cat, s) for s in cat.services)
    extra = tuple(cat.routing.aggregation_labels)
    shared = tuple(Recording(i.record, _recorded_expr(i.expr, extra), {}, cat.where[("indicator", i.id)])
                   for i in cat.indicators.values() if i.provider == "stackprobe")
    return Model(services=services, recordings=shared, routing=_routing(cat.routing, services, cat.where[("routing",)]))


def load(directory: Any = None) -> Model:
    """Load, validate and resolve a catalogue directory (spec.load_catalogue + resolve)."""
    return resolve(spec.load_catalogue(directory))
