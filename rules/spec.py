"""The catalogue as written: pydantic models of the YAML files, loading, and validation.

First step of the generator (spec -> rules/model.py -> rules/emit/, grafana/). Nothing here is
derived or formatted for an output: that is the resolved model's job. Files, all validated with
`file:line: field: message` errors (`stackprobe.configsource`):

    rules/indicators.yaml          the indicator library: PromQL of each indicator, defined once
    rules/catalogue/routing.yaml   priorities, receivers (secrets read from files), business hours
    rules/catalogue/<service>.yaml one per playbook: KPIs with tiers, provenance, maintenance windows

A directory given to `load_catalogue` may hold its own `indicators.yaml` and `routing.yaml`;
whichever it lacks comes from the package (so a test catalogue can replace only the routing).

Conventions the data follows (and the model relies on):
- A threshold is in the indicator's unit; `percentunit` thresholds are ratios (write `99.9%` or 0.999).
- `comparison` names the *bad* direction: `above` fires when the value exceeds the threshold.
- `burn_rate: true` turns the target tier into the SRE workbook's multiwindow multi-burn-rate
  alerts (the target threshold is the objective) instead of an info alert.
"""

from __future__ import annotations

import math
import re
import string
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import promql_parser
from pydantic import BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from stackprobe.configsource import (
    ConfigError,
    Duration,
    Loc,
    StrictModel,
    field_name,
    line_of,
    load_yaml,
    parse_duration,
    validate,
)

from .fixture import evaluate

Priority = Literal["P0", "P1", "P2", "P3"]
PRIORITIES: tuple[str, ...] = ("P0", "P1", "P2", "P3")
Comparison = Literal["above", "below"]
Area = Literal["availability", "latency", "errors", "database", "cache", "backups", "certificates", "resources"]
Provider = Literal["stackprobe", "node_exporter", "application"]
ExternalProvider = Literal["node_exporter", "application"]
Unit = Literal["percentunit", "s", "bytes", "short", "d", "reqps"]
TierName = Literal["target", "warning", "critical"]
TIERS: tuple[str, ...] = ("target", "warning", "critical")

ID = r"^[a-z][a-z0-9_]*$"
SERVICE_ID = r"^[a-z][a-z0-9-]*$"
RECORD = r"^[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+$"
LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
#: Indicator params are metric names, label names or simple regexes (`5..|429`) substituted into
#: PromQL anywhere, inside strings or not: nothing that could end a string or a selector.
PARAM = r"^[A-Za-z0-9_:.|*+?^$-]+$"

LabelName = Annotated[str, Field(pattern=LABEL)]
ParamValue = Annotated[str, Field(pattern=PARAM)]

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_DIRECTORY = PACKAGE_DIR / "catalogue"


def _for_duration(value: Any) -> float:
    """Like Duration, but `0s` is allowed: some alerts must fire at once."""
    return 0.0 if value in (0, "0", "0s") else parse_duration(value)


def _threshold(value: Any) -> float:
    """A finite number, `99.9%` (a ratio), or a duration such as `500ms` or `24h` (seconds)."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            try:
                number = float(text[:-1]) / 100
            except ValueError:
                raise ValueError(f"{value!r} is not a percentage") from None
        else:
            number = parse_duration(text)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a threshold (a number, `99.9%` or a duration like `500ms`)")
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _written_as(value: Any) -> str:
    """How a threshold was written: `percent` (`85%`), `duration` (`24h`) or `number`."""
    if isinstance(value, str):
        return "percent" if value.strip().endswith("%") else "duration"
    return "number"


ForDuration = Annotated[float, BeforeValidator(_for_duration)]
Threshold = Annotated[float, BeforeValidator(_threshold)]


# --------------------------------------------------------------------------------------------
# The indicator library
# --------------------------------------------------------------------------------------------

class FixtureSeries(StrictModel):
    """One input series of the generated promtool tests, as a function of the indicator value `v`.

    Exactly one of the kinds is set; each is an arithmetic expression in `v` (rules/fixture.py):
    `gauge` (a constant value), `counter` (a counter growing this much per second),
    `clock` (a Unix-time gauge this many seconds from the evaluation time; negative = past),
    `quantile` (a histogram whose `quantile`-th quantile equals v; the series name is the family).
    `before` gives the gauge/counter expression used before the indicator's `fixture_shift`.
    """

    series: str
    gauge: str | None = None
    counter: str | None = None
    clock: str | None = None
    quantile: float | None = Field(None, gt=1 / 3, lt=1)
    before: str | None = None


class Traffic(StrictModel):
    """The events per second a ratio indicator divides by, recorded next to it."""

    record: str = Field(pattern=RECORD)
    expr: str
    #: The fewest events in an alert's window that make the ratio meaningful, unless the KPI
    #: sets its own `min_events`.
    min_events: int = Field(ge=1)


class Indicator(StrictModel):
    """A named measurement, recorded once as a Prometheus recording rule."""

    id: str = ""
    record: str = Field(pattern=RECORD, description="Recording-rule name, `level:metric:operations`.")
    expr: str = Field(description="PromQL; external providers use ${param} placeholders and ${match}.")
    unit: Unit
    provider: Provider
    description: str
    metrics: list[str] = Field(min_length=1, description="Raw metric names the expr reads (may use ${param}).")
    labels: list[LabelName] = Field(description="Labels the recorded series keep (`service` always first).")
    params: dict[str, ParamValue] = Field({}, description="External providers: metric names etc., overridable per service.")
    window: Duration | None = Field(None, description="The range the expr already averages over; None for gauges.")
    liveness: bool = Field(False, description="A down target inhibits the other alerts of that target.")
    resolution: Duration | None = Field(
        None, description="How much time one sample of the SLI stands for (a probe interval); an objective "
                          "whose budget one failed sample would burn is rejected.")
    traffic: Traffic | None = Field(
        None, description="Ratio indicators: the events per second the ratio is taken over "
                          "(the KPI's `min_events` floor reads it).")
    fixture: list[FixtureSeries] = Field(min_length=1)
    fixture_shift: Duration | None = None
    phrases: list[str] = Field([], description="What playbooks call it (`gen-rules extract` maps subjects with these).")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """`${name}` placeholders of an indicator replaced (KeyError/ValueError when one is unknown)."""
    return string.Template(text).substitute(values)


def _series_problem(series: str, params: Mapping[str, str]) -> str | None:
    """Why a fixture series is not `name` or `name{label="value", ...}` (equality only), or None."""
    try:
        node = promql_parser.parse(substitute(series, params))
    except (KeyError, ValueError) as e:
        return f"not a series: {e}"
    if not isinstance(node, promql_parser.VectorSelector) or not node.name or node.offset or node.at:
        return 'not a series: write `name` or `name{label="value", ...}`'
    if any(m.op != promql_parser.MatchOp.Equal for m in node.matchers.matchers):
        return "a fixture series has fixed labels: only `=` matchers"
    return None


def selected_metrics(expr: str) -> set[str]:
    """The metric names an expression selects (ValueError when it is not valid PromQL)."""
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


class IndicatorFile(StrictModel):
    indicators: dict[str, Indicator]


# --------------------------------------------------------------------------------------------
# Routing (Alertmanager) data
# --------------------------------------------------------------------------------------------

class TimeRange(StrictModel):
    """Alertmanager's `HH:MM` range within a day (24:00 allowed as an end), start before end."""

    start_time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end_time: str = Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end_time <= self.start_time:
            raise ValueError(f"end_time {self.end_time} must come after start_time {self.start_time}")
        return self


WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


class TimeInterval(StrictModel):
    """One Alertmanager time interval; the fields are Alertmanager's own."""

    weekdays: list[str] = []
    times: list[TimeRange] = []
    days_of_month: list[str] = []
    months: list[str] = []
    location: str = "UTC"

    @field_validator("location")
    @classmethod
    def _known_zone(cls, location: str) -> str:
        """Alertmanager loads the zone at start-up and refuses the config when it does not exist."""
        if location != "Local":
            try:
                zoneinfo.ZoneInfo(location)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{location!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
        return location

    @field_validator("weekdays")
    @classmethod
    def _weekday_ranges(cls, weekdays: list[str]) -> list[str]:
        """Alertmanager counts from Sunday and rejects a range whose end comes before its start
        (`monday:sunday`); catch that here rather than in amtool after the files are written."""
        for item in weekdays:
            start, _, end = item.lower().partition(":")
            for day in (start, end or start):
                if day not in WEEKDAYS:
                    raise ValueError(f"{day!r} is not a weekday (sunday ... saturday)")
            if WEEKDAYS.index(end or start) < WEEKDAYS.index(start):
                raise ValueError(f"{item!r}: the week starts on sunday, so write e.g. 'monday:saturday' and 'sunday'")
        return weekdays


class Source(StrictModel):
    """Provenance: the playbook file (default: the service's) and the section heading a value came from."""

    playbook: str = ""
    section: str

    @classmethod
    def _coerce(cls, value: Any) -> Any:
        return {"section": value} if isinstance(value, str) else value


SourceField = Annotated[Source, BeforeValidator(Source._coerce)]


class PriorityPolicy(StrictModel):
    """How alerts of one priority are delivered; repeat_interval defaults to the response time."""

    receiver: str
    response_time: Duration
    group_wait: ForDuration
    group_interval: Duration
    repeat_interval: Duration | None = None
    #: Labels one notification groups by; default: routing.yaml's `group_by`.
    group_by: list[str] | None = None
    active_time_intervals: list[str] = []
    description: str
    source: list[SourceField] = []


class PriorityOverride(StrictModel):
    """A service's own delivery of one priority, from its playbook; unset fields keep routing.yaml's."""

    receiver: str | None = None
    response_time: Duration | None = None
    group_wait: ForDuration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    group_by: list[str] | None = None
    active_time_intervals: list[str] | None = None
    description: str | None = None
    source: list[SourceField] = []


class ServiceRouting(StrictModel):
    """How a service's alerts reach people: per-priority overrides and its own time intervals.

    `time_intervals` shadow routing.yaml's of the same name for this service only (for example
    its business hours in its own timezone); Alertmanager sees them as `<service>-<name>`.
    """

    priorities: dict[Priority, PriorityOverride] = {}
    time_intervals: dict[str, list[TimeInterval]] = {}


class Routing(StrictModel):
    """Receivers (Alertmanager receiver bodies, secrets read from files) and one policy per priority."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runbook_base_url: str
    #: Labels every series carries where several clusters share one store (e.g. Prometheus
    #: `external_labels` such as cluster, env): every recording rule keeps them in its
    #: aggregations, so alerts carry them, and Alertmanager groups and inhibits by them.
    aggregation_labels: list[LabelName] = []
    global_: dict[str, Any] = Field({}, alias="global")
    group_by: list[Annotated[str, Field(pattern=r"^([a-zA-Z_][a-zA-Z0-9_]*|\.\.\.)$")]]
    receivers: dict[str, dict[Annotated[str, Field(pattern=r"^[a-z]+_configs$")], list[dict[str, Any]]]]
    priorities: dict[Priority, PriorityPolicy]
    time_intervals: dict[str, list[TimeInterval]] = {}


# --------------------------------------------------------------------------------------------
# Services and KPIs
# --------------------------------------------------------------------------------------------

class Tier(StrictModel):
    """One threshold of a KPI, in the indicator's unit, held for `for` seconds before firing."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    threshold: Threshold
    for_: ForDuration | None = Field(None, alias="for")
    priority: Priority | None = None
    #: Where this tier's number came from, when it is not the KPI's own section.
    source: SourceField | None = None
    _written_as: str = PrivateAttr("number")

    @model_validator(mode="wrap")
    @classmethod
    def _remember_notation(cls, data: Any, handler: Callable[[Any], Tier]) -> Tier:
        """Keep how the threshold was written, so the loader can check it against the unit."""
        tier = handler(data)
        if isinstance(data, Mapping):
            tier._written_as = _written_as(data.get("threshold"))
        return tier

    @property
    def written_as(self) -> str:
        return self._written_as


class KPI(StrictModel):
    """A playbook's KPI: an indicator, the bad direction, tiers, priority and where it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(pattern=ID)
    title: str
    description: str
    indicator: str | None = None
    match: dict[LabelName, str] = Field({}, description="Equality label matchers narrowing the indicator's series.")
    comparison: Comparison | None = None
    target: Tier | None = None
    warning: Tier | None = None
    critical: Tier | None = None
    window: Duration | None = None
    for_: ForDuration | None = Field(None, alias="for")
    priority: Priority
    area: Area | None = None
    source: SourceField
    alertable: bool = True
    not_alertable_reason: str | None = None
    burn_rate: bool = False
    #: Priority of the slow (1 d and 3 d) burn-rate alerts, the workbook's "ticket" pairs;
    #: the fast pairs (1 h, 6 h) page with the KPI's priority.
    burn_rate_ticket_priority: Priority = "P2"
    #: A request-level indicator for the burn-rate objective, for when `indicator` is probe-based
    #: and too coarse for the objective (the loader says when).
    objective_indicator: str | None = None
    #: Ratio KPIs: fewer events than this in the alert's window and the ratio says nothing
    #: (quiet); default: the indicator's `traffic.min_events`.
    min_events: int | None = Field(None, ge=1)
    notes: str = ""

    def tiers(self) -> list[tuple[str, Tier]]:
        """The tiers that are set, mildest first."""
        return [(name, t) for name in TIERS if (t := getattr(self, name)) is not None]


class ExporterBinding(StrictModel):
    """Where a service's series of an external exporter are: label matchers and metric names."""

    match: dict[LabelName, str] = Field(min_length=1, description="Equality label matchers selecting the service's series.")
    params: dict[str, ParamValue] = {}


class MaintenanceWindow(StrictModel):
    """A recurring window in which the service's notifications are muted."""

    name: str = Field(pattern=SERVICE_ID)
    description: str
    intervals: list[TimeInterval] = Field(min_length=1)
    mute: list[Priority] = list(PRIORITIES)
    source: SourceField


class MaintenanceMode(StrictModel):
    """The service's own maintenance switch (a status API): while the KPI's indicator is above 0
    the service is in planned maintenance, as inside a window. That KPI's own alerts still fire."""

    kpi: str
    mute: list[Priority] = list(PRIORITIES)


class Liveness(StrictModel):
    """When the service's inputs count as gone: probes failing (per prober), external series absent."""

    #: Per prober: how long its targets' probes must keep failing (default: its default interval + 1m).
    for_: dict[str, ForDuration] = Field({}, alias="for")
    #: How long an external exporter's series must be absent.
    absent_for: Duration = 600.0

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AbsentAlert(StrictModel):
    """The alert when none of the service's targets reports any more (exporter gone, target removed)."""

    for_: ForDuration = Field(600.0, alias="for")
    priority: Priority = "P1"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Service(StrictModel):
    """One playbook: its KPIs, external exporter bindings and maintenance windows."""

    id: str = Field(pattern=SERVICE_ID)
    title: str
    playbook: str
    description: str
    exporters: dict[ExternalProvider, ExporterBinding] = {}
    maintenance: list[MaintenanceWindow] = []
    maintenance_mode: MaintenanceMode | None = None
    absent: AbsentAlert = AbsentAlert()
    liveness: Liveness = Liveness()
    routing: ServiceRouting = ServiceRouting()
    kpis: list[KPI]

    def muted_in_maintenance(self) -> tuple[str, ...]:
        """Priorities whose alerts neither fire nor count downtime during planned maintenance
        (every window and the maintenance mode mute the same ones; the loader checks)."""
        mutes = [w.mute for w in self.maintenance] + ([self.maintenance_mode.mute] if self.maintenance_mode else [])
        return tuple(p for p in PRIORITIES if mutes and p in mutes[0])


@dataclass(frozen=True)
class Where:
    """A place in a catalogue file, for errors found after loading (in a generated output)."""

    path: Path
    line: int | None
    field: str

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.path, [(self.line, self.field, message)])


@dataclass(frozen=True)
class Catalogue:
    """Every service, the indicator library and the routing, validated together, as written.

    `where` locates each indicator (`("indicator", id)`), KPI (`("kpi", service, id)`), service
    (`("service", id)`) and the routing (`("routing",)`) in its file.
    """

    services: list[Service]
    indicators: dict[str, Indicator]
    routing: Routing
    where: Mapping[tuple[str, ...], Where]


# --------------------------------------------------------------------------------------------
# Loading and cross-file validation
# --------------------------------------------------------------------------------------------

INDICATORS_FILE = "indicators.yaml"
ROUTING_FILE = "routing.yaml"


class _Problems:
    """Collects (loc, message) of one file and raises one ConfigError naming every line."""

    def __init__(self, path: Path, marks: dict[Loc, int]):
        self.path, self.marks, self.items = path, marks, []

    def add(self, loc: Loc, message: str) -> None:
        self.items.append((line_of(loc, self.marks), field_name(loc), message))

    def where(self, loc: Loc) -> Where:
        return Where(self.path, line_of(loc, self.marks), field_name(loc))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.path, self.items)


def _pick(directory: Path, name: str) -> Path:
    own = directory / name
    return own if own.exists() else (PACKAGE_DIR / name if name == INDICATORS_FILE else DEFAULT_DIRECTORY / name)


def load_catalogue(directory: Path | None = None) -> Catalogue:
    """Load and cross-check a catalogue directory; any mistake raises ConfigError (file:line: field)."""
    directory = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    where: dict[tuple[str, ...], Where] = {}
    indicators = _load_indicators(_pick(directory, INDICATORS_FILE), where)
    routing = _load_routing(_pick(directory, ROUTING_FILE), where)
    files = sorted(p for p in directory.glob("*.yaml") if p.name not in (INDICATORS_FILE, ROUTING_FILE))
    if not files:
        raise ConfigError(directory, [(None, "", "no service files (*.yaml) in the catalogue directory")])
    services: list[Service] = []
    first_file: dict[str, Path] = {}
    for path in files:
        data, marks = load_yaml(path)
        service = validate(Service, data, path, marks)
        problems = _Problems(path, marks)
        if service.id in first_file:
            problems.add(("id",), f"duplicate service id {service.id!r} (also in {first_file[service.id]})")
        first_file.setdefault(service.id, path)
        _check_service(service, indicators, routing, problems)
        problems.raise_if_any()
        where[("service", service.id)] = problems.where(("id",))
        for i, kpi in enumerate(service.kpis):
            where[("kpi", service.id, kpi.id)] = problems.where(("kpis", i))
        services.append(service)
    return Catalogue(services=services, indicators=indicators, routing=routing, where=where)


def load_indicators(directory: Path | None = None) -> dict[str, Indicator]:
    """Only the indicator library a catalogue directory uses (its own, else the package's):
    `gen-rules extract` maps subjects with its phrases before any service file exists."""
    return _load_indicators(_pick(Path(directory) if directory is not None else DEFAULT_DIRECTORY, INDICATORS_FILE), {})


def _load_indicators(path: Path, where: dict[tuple[str, ...], Where]) -> dict[str, Indicator]:
    data, marks = load_yaml(path)
    model = validate(IndicatorFile, data, path, marks)
    problems = _Problems(path, marks)
    out: dict[str, Indicator] = {}
    records: dict[str, str] = {}
    for iid, ind in model.indicators.items():
        loc: Loc = ("indicators", iid)
        if not re.match(ID, iid):
            problems.add(loc, f"indicator id {iid!r} must match {ID}")
        if ind.labels[:1] != ["service"]:
            problems.add(loc + ("labels",), "the first label must be `service`")
        if ind.provider == "stackprobe" and (ind.params or "$" in ind.expr):
            problems.add(loc + ("params",), "stackprobe indicators read stackprobe's own names; no ${params}")
        if ind.provider != "stackprobe" and "${match}" not in ind.expr:
            problems.add(loc + ("expr",), "external indicators must select the service's series with ${match}")
        try:
            expr = substitute(ind.expr, dict(ind.params, match='service="example"'))
            metrics = {substitute(m, ind.params) for m in ind.metrics}
        except (KeyError, ValueError) as e:
            problems.add(loc + ("expr",), f"unknown or malformed placeholder {e}")
        else:
            try:
                selected = selected_metrics(expr)
            except ValueError as e:
                problems.add(loc + ("expr",), f"not valid PromQL: {e}")
            else:
                if selected != metrics:
                    problems.add(loc + ("metrics",), f"the expr reads {sorted(selected)}, not {sorted(metrics)}")
            if ind.traffic is not None:
                try:
                    traffic = selected_metrics(substitute(ind.traffic.expr, dict(ind.params, match='service="example"')))
                except (KeyError, ValueError) as e:
                    problems.add(loc + ("traffic", "expr"), f"not valid PromQL: {e}")
                else:
                    if not traffic <= metrics:
                        problems.add(loc + ("traffic", "expr"), f"reads {sorted(traffic - metrics)}, not in metrics")
        if ind.record in records:
            problems.add(loc + ("record",), f"record {ind.record!r} is also used by indicator {records[ind.record]!r}")
        records[ind.record] = iid
        for j, fx in enumerate(ind.fixture):
            if problem := _series_problem(fx.series, ind.params):
                problems.add(loc + ("fixture", j, "series"), problem)
            kinds = [k for k in ("gauge", "counter", "clock", "quantile") if getattr(fx, k) is not None]
            if len(kinds) != 1:
                problems.add(loc + ("fixture", j), "set exactly one of gauge, counter, clock, quantile")
            for k in ("gauge", "counter", "clock", "before"):
                if (e := getattr(fx, k)) is not None:
                    try:
                        evaluate(e, 0.5)
                    except (ValueError, SyntaxError) as err:
                        problems.add(loc + ("fixture", j, k), str(err))
        out[iid] = ind.model_copy(update={"id": iid})
        where[("indicator", iid)] = problems.where(loc + ("expr",))
    problems.raise_if_any()
    return out


def _load_routing(path: Path, where: dict[tuple[str, ...], Where]) -> Routing:
    data, marks = load_yaml(path)
    routing = validate(Routing, data, path, marks)
    problems = _Problems(path, marks)
    for p in PRIORITIES:
        if p not in routing.priorities:
            problems.add(("priorities",), f"priority {p} has no policy")
    for p, policy in routing.priorities.items():
        if policy.receiver not in routing.receivers:
            problems.add(("priorities", p, "receiver"), f"unknown receiver {policy.receiver!r}")
        for j, name in enumerate(policy.active_time_intervals):
            if name not in routing.time_intervals:
                problems.add(("priorities", p, "active_time_intervals", j), f"unknown time interval {name!r}")
    problems.raise_if_any()
    where[("routing",)] = problems.where(("receivers",))
    return routing


def _check_service(service: Service, indicators: dict[str, Indicator], routing: Routing, problems: _Problems) -> None:
    """Cross-checks pydantic cannot do alone."""
    _check_service_routing(service, routing, problems)
    _check_maintenance(service, problems)
    for provider, binding in service.exporters.items():
        known = {p for i in indicators.values() if i.provider == provider for p in i.params}
        for name in binding.params:
            if name not in known:
                problems.add(("exporters", provider, "params", name), f"no {provider} indicator has a parameter {name!r}")
    seen: dict[str, int] = {}
    for i, kpi in enumerate(service.kpis):
        loc: Loc = ("kpis", i)
        if kpi.id in seen:
            problems.add(loc + ("id",), f"duplicate KPI id {kpi.id!r} (first at kpis[{seen[kpi.id]}])")
        seen.setdefault(kpi.id, i)
        _check_kpi(kpi, indicators, loc, problems)


#: Units whose values are never negative.
NON_NEGATIVE_UNITS = ("s", "d", "bytes", "reqps")


def _unit_problem(tier: Tier, ind: Indicator) -> str | None:
    """Why a threshold cannot be in the indicator's unit, or None."""
    if tier.written_as == "percent" and ind.unit != "percentunit":
        return f"a percentage, but indicator {ind.id!r} is in {ind.unit!r}, not a ratio"
    if tier.written_as == "duration" and ind.unit != "s":
        hint = " (write days as a number, e.g. 30)" if ind.unit == "d" else ""
        return f"a duration, but indicator {ind.id!r} is in {ind.unit!r}, not seconds{hint}"
    if ind.unit == "percentunit" and not 0 <= tier.threshold <= 1:
        return f"{tier.threshold:g} is not a ratio; write e.g. `80%` or 0.8"
    if ind.unit in NON_NEGATIVE_UNITS and tier.threshold < 0:
        return f"{tier.threshold:g} is negative; indicator {ind.id!r} ({ind.unit}) never is"
    return None


def _check_kpi(kpi: KPI, indicators: dict[str, Indicator], loc: Loc, problems: _Problems) -> None:
    if not kpi.alertable:
        if not kpi.not_alertable_reason:
            problems.add(loc + ("not_alertable_reason",), "a KPI that is not alertable must say why")
        if kpi.indicator is not None and kpi.indicator not in indicators:
            problems.add(loc + ("indicator",), f"unknown indicator {kpi.indicator!r}")
        return
    if kpi.not_alertable_reason:
        problems.add(loc + ("not_alertable_reason",), "only for KPIs with alertable: false")
    if kpi.area is None:
        problems.add(loc + ("area",), "an alertable KPI needs an area")
    if kpi.indicator is None:
        problems.add(loc + ("indicator",), "an alertable KPI needs an indicator")
        return
    if kpi.indicator not in indicators:
        problems.add(loc + ("indicator",), f"unknown indicator {kpi.indicator!r} (see rules/indicators.yaml)")
        return
    ind = indicators[kpi.indicator]
    for label in kpi.match:
        if label not in ind.labels:
            problems.add(loc + ("match", label), f"indicator {ind.id!r} keeps only the labels {ind.labels}")
    if kpi.comparison is None:
        problems.add(loc + ("comparison",), "an alertable KPI needs a comparison (above or below)")
        return
    tiers = kpi.tiers()
    if not tiers and not kpi.burn_rate:
        problems.add(loc, "an alertable KPI needs at least one tier (target, warning or critical)")
    for name, tier in tiers:
        if problem := _unit_problem(tier, ind):
            problems.add(loc + (name, "threshold"), problem)
        if tier.for_ is None and kpi.for_ is None and not (name == "target" and kpi.burn_rate):
            problems.add(loc + (name, "for"), "set `for` on the tier or on the KPI (and say why in notes)")
    # Milder tiers must fire first: for `above`, target <= warning <= critical.
    sign = 1 if kpi.comparison == "above" else -1
    for (n1, t1), (n2, t2) in zip(tiers, tiers[1:]):
        if sign * t1.threshold > sign * t2.threshold:
            stricter = "lower" if kpi.comparison == "above" else "higher"
            problems.add(loc + (n1, "threshold"),
                         f"{n1} ({t1.threshold:g}) is stricter than {n2} ({t2.threshold:g}); "
                         f"with comparison {kpi.comparison!r} the {n2} threshold must not be {stricter}")
    objective = indicators.get(kpi.objective_indicator or "")
    is_ratio = ind.traffic is not None or (objective is not None and objective.traffic is not None)
    if not is_ratio and kpi.min_events is not None:
        problems.add(loc + ("min_events",), f"{ind.id} is not a ratio of counted events")
    if kpi.burn_rate:
        if kpi.target is None:
            problems.add(loc + ("burn_rate",), "burn-rate alerts need a target tier (the objective)")
        elif ind.unit != "percentunit" or kpi.comparison != "below" or not 0 < kpi.target.threshold < 1:
            problems.add(loc + ("burn_rate",), "burn-rate alerts need a ratio objective below 100% (comparison: below)")
        else:
            _check_resolution(kpi, ind, indicators, loc, problems)
    elif kpi.objective_indicator is not None:
        problems.add(loc + ("objective_indicator",), "only for burn-rate KPIs")


#: The SRE workbook's multiwindow pairs: (long window, short window, burn-rate factor, severity).
BURN_RATE_WINDOWS: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)


def single_sample_burn(indicator: Indicator, objective: float, window: float) -> float:
    """How fast one failed sample burns the budget over `window` (0 when the SLI counts requests)."""
    return (indicator.resolution or 0) / window / (1 - objective)


def _check_resolution(kpi: KPI, ind: Indicator, indicators: dict[str, Indicator], loc: Loc, problems: _Problems) -> None:
    """An objective finer than its SLI: one failed probe must not fire a burn-rate pair. Such a
    KPI needs a request-level `objective_indicator`."""
    assert kpi.target is not None
    if kpi.objective_indicator is not None:
        other = indicators.get(kpi.objective_indicator)
        if other is None:
            problems.add(loc + ("objective_indicator",), f"unknown indicator {kpi.objective_indicator!r}")
        elif other.unit != "percentunit" or other.resolution is not None:
            problems.add(loc + ("objective_indicator",), "the objective indicator must be a request-level ratio")
        return
    objective = kpi.target.threshold
    burn, long, factor = max(((single_sample_burn(ind, objective, parse_duration(long)), long, factor)
                              for long, _, factor, _ in BURN_RATE_WINDOWS), key=lambda t: t[0] / t[2])
    if burn >= factor:
        problems.add(loc + ("target", "threshold"),
                     f"objective {objective * 100:g}% is finer than {ind.id} can resolve: one failed sample "
                     f"({ind.resolution:g}s) burns the {long} budget {burn:.3g}x (the alert fires at {factor:g}x); "
                     f"lower the objective or set objective_indicator to a request-level indicator")


def _check_service_routing(service: Service, routing: Routing, problems: _Problems) -> None:
    for p, override in service.routing.priorities.items():
        if override.receiver is not None and override.receiver not in routing.receivers:
            problems.add(("routing", "priorities", p, "receiver"), f"unknown receiver {override.receiver!r}")
        for j, name in enumerate(override.active_time_intervals or []):
            if name not in routing.time_intervals and name not in service.routing.time_intervals:
                problems.add(("routing", "priorities", p, "active_time_intervals", j), f"unknown time interval {name!r}")


MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")


def _check_maintenance(service: Service, problems: _Problems) -> None:
    """Maintenance windows become PromQL (hour(), day_of_week(), ...), which knows only UTC and
    days counted from the start of the month; one mute list per service keeps the SLIs simple."""
    mutes: list[tuple[Loc, list[str]]] = [(("maintenance", i, "mute"), sorted(w.mute))
                                          for i, w in enumerate(service.maintenance)]
    if service.maintenance_mode is not None:
        mutes.append((("maintenance_mode", "mute"), sorted(service.maintenance_mode.mute)))
        kpi = next((k for k in service.kpis if k.id == service.maintenance_mode.kpi), None)
        if kpi is None or not kpi.alertable:
            problems.add(("maintenance_mode", "kpi"), f"no alertable KPI {service.maintenance_mode.kpi!r} in this service")
    for loc, mute in mutes[1:]:
        if mute != mutes[0][1]:
            problems.add(loc, f"mutes {mute}, but {field_name(mutes[0][0])} mutes {mutes[0][1]}: "
                              "a service mutes the same priorities in all its maintenance")
    for i, window in enumerate(service.maintenance):
        for j, ti in enumerate(window.intervals):
            loc: Loc = ("maintenance", i, "intervals", j)
            if ti.location != "UTC":
                problems.add(loc + ("location",), "maintenance windows are evaluated by PromQL time functions, "
                                                  "which only know UTC: give the window in UTC")
            for k, days in enumerate(ti.days_of_month):
                if not re.fullmatch(r"\d+(:\d+)?", days):
                    problems.add(loc + ("days_of_month", k), f"{days!r}: use days 1-31 or a range like '1:7'")
            for k, month in enumerate(ti.months):
                if not all(part.isdigit() or part.lower() in MONTHS for part in month.split(":")):
                    problems.add(loc + ("months", k), f"{month!r}: use month numbers or names, or a range of them")
