"""The ledger: every statement of a service's playbook, accounted for.

`rules/catalogue/ledger/<service>.yaml` lists each statement the extractor finds, pinned to its
quote (not its line: moving text is fine), with exactly one disposition:

    backs           the catalogue KPI tiers it is the number of (`kpi.tier`; `kpi.tier.for` when
                    it is how long the tier holds; `kpi.tier.condition` when it states the healthy
                    condition the tier alerts on, "return 200 status"; `kpi` for a KPI without
                    tiers); values must be equal
    maintenance     the service's maintenance window it is (by name)
    routing         the routing policy it is (priority, response time, channel); reviewed by hand
    config          where the exporter's configuration encodes it (probe intervals)
    process_only / not_measurable / out_of_scope   why no rule encodes it
    todo            listed for review (drafts); `gen-rules check` fails until it is decided

`chosen` maps a catalogue tier to the reason its number is not in the playbook (a condition
such as "target down", a threshold for "monitoring issues"). `audit` records, per row of the
playbook review, what was fixed or decided (rows without a number have no statement).

`verify` compares one playbook with its ledger and the catalogue and returns every drift.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, model_validator

from stackprobe.configsource import StrictModel, line_of, load_yaml, validate

from .statements import Statement

DISPOSITIONS = ("backs", "maintenance", "routing", "config", "process_only", "not_measurable", "out_of_scope", "todo")
#: Dispositions that say why nothing encodes the statement, and the README's column names.
SUMMARY_COLUMNS = {"backs": "encoded", "maintenance": "windows", "routing": "routing", "config": "config",
                   "process_only": "process-only", "not_measurable": "not measurable",
                   "out_of_scope": "out of scope", "todo": "to review"}
LEDGER_DIR = "ledger"


class Entry(StrictModel):
    """One statement, pinned by its quote, kind and value, and what became of it."""

    line: int = Field(description="Where the statement was when the ledger was written (informative).")
    quote: str
    kind: str
    value: float | None = None
    backs: list[str] = []
    maintenance: str | None = None
    routing: str | None = None
    config: str | None = None
    process_only: str | None = None
    not_measurable: str | None = None
    out_of_scope: str | None = None
    todo: str | None = None

    @model_validator(mode="after")
    def _one_disposition(self) -> Entry:
        set_ = [d for d in DISPOSITIONS if getattr(self, d)]
        if len(set_) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISPOSITIONS)} (found: {', '.join(set_) or 'none'})")
        return self

    @property
    def disposition(self) -> str:
        return next(d for d in DISPOSITIONS if getattr(self, d))


class Ledger(StrictModel):
    service: str
    playbook: str
    statements: list[Entry]
    chosen: dict[str, str] = Field({}, description="`kpi.tier` -> why its number is not a playbook statement.")
    audit: dict[str, str] = Field({}, description="Review row id (../shared/review/playbook-audit.tsv) -> what was decided.")
    #: Line of every key path in the ledger file (empty for a ledger built in memory).
    _marks: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    def line(self, *loc: str | int) -> int:
        """The ledger file's line of a key path (`"chosen", "kpi.tier"`), its parent's when absent."""
        return line_of(loc, self._marks) or 1


def ledger_path(catalogue_dir: Path, service_id: str) -> Path:
    return catalogue_dir / LEDGER_DIR / f"{service_id}.yaml"


def load_ledger(path: Path) -> Ledger:
    data, marks = load_yaml(path)
    ledger = validate(Ledger, data, path, marks)
    ledger._marks = marks
    return ledger


def template(quote: str) -> str:
    """The quote with its numbers masked: an edited number keeps the template."""
    return re.sub(r"\d+(?:[.,]\d+)*", "#", quote)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@dataclass(frozen=True)
class Problem:
    """One drift, printed as `file:line: quote: message`."""

    file: str
    line: int
    quote: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: \"{self.quote}\": {self.message}"


def match(statements: list[Statement], entries: list[Entry]) -> tuple[list[tuple[Statement, Entry]], list[Statement], list[Entry]]:
    """Pair statements with entries on (quote, kind, value); returns (pairs, unmatched statements, unmatched entries)."""
    free = list(entries)
    pairs: list[tuple[Statement, Entry]] = []
    unmatched: list[Statement] = []
    for st in statements:
        found = [e for e in free if e.quote == st.quote and e.kind == st.kind and _same(e.value, st.value)]
        if not found:
            unmatched.append(st)
            continue
        entry = min(found, key=lambda e: abs(e.line - st.line))  # the nearest of identical quotes
        free.remove(entry)
        pairs.append((st, entry))
    return pairs, unmatched, free


def tier_value(statement_value: float, indicator_unit: str | None) -> float:
    """A statement's normalised value in the catalogue's unit (certificate thresholds are days)."""
    return statement_value / 86400 if indicator_unit == "d" else statement_value


def verify(service: Any, ledger: Ledger, statements: list[Statement], ledger_file: str) -> list[Problem]:
    """Every difference between the playbook, its ledger and the service's resolved KPIs (rules/model.py)."""
    problems: list[Problem] = []
    pairs, unmatched, gone = match(statements, ledger.statements)
    kpis = {k.id: k for k in service.kpis}
    for st in unmatched:
        was = next((e for e in gone if e.kind == st.kind and template(e.quote) == template(st.quote)), None)
        if was is None:
            problems.append(Problem(st.file, st.line, st.quote, f"{st.kind} not accounted for in {ledger_file}"))
            continue
        gone.remove(was)  # the same sentence with other numbers: changed, and checked against what it backs
        cited = ", ".join(was.backs) or was.disposition
        value = (f"value {_show(was.value)} -> {_show(st.value)}" if not _same(was.value, st.value)
                 else f"same value {_show(st.value)}")
        problems.append(Problem(st.file, st.line, st.quote,
                                f"changed: {ledger_file} quotes \"{was.quote}\" ({value}; {cited})"))
        pairs.append((st, was))
    for entry in gone:
        problems.append(Problem(ledger.playbook, entry.line, entry.quote, f"cited in {ledger_file} but no longer in the playbook"))
    backed: set[str] = set()
    for st, entry in pairs:
        for ref in entry.backs:
            backed.add(_bare(ref))
            problems += _check_backing(st, ref, kpis)
        if entry.maintenance:
            problems += _check_window(st, entry.maintenance, service)
        if entry.routing:
            problems += _check_routing(st, entry.routing, service)
        if entry.todo:
            problems.append(Problem(st.file, st.line, st.quote, f"to review in {ledger_file}: {entry.todo}"))
    for ref, reason in ledger.chosen.items():
        if not reason.strip():
            problems.append(Problem(ledger_file, ledger.line("chosen", ref), ref, "a chosen threshold needs its reason"))
        found = _tier(ref, kpis)
        if found is None or found[1] is None:
            problems.append(Problem(ledger_file, ledger.line("chosen", ref), ref, f"chosen: no such KPI tier in {service.id}"))
    for kpi in service.kpis:
        for tier in kpi.tiers:
            ref = f"{kpi.id}.{tier.name}"
            if ref not in backed and ref not in ledger.chosen:
                problems.append(Problem(ledger_file, ledger.line("chosen"), ref,  # where it would be listed
                                        "catalogue threshold cites no playbook statement and is "
                                        "not listed under `chosen` with a reason"))
    return problems


def _bare(ref: str) -> str:
    """`kpi.tier` of `kpi.tier.for` / `kpi.tier.condition`."""
    return ref.removesuffix(".for").removesuffix(".condition")


def _tier(ref: str, kpis: dict[str, Any]) -> tuple[Any, Any] | None:
    """(KPI, tier or None) of `kpi`, `kpi.tier` or `kpi.tier.for`; None when the catalogue lacks it."""
    kpi_id, _, name = _bare(ref).partition(".")
    kpi = kpis.get(kpi_id)
    if kpi is None:
        return None
    if not name:
        return kpi, None
    tier = kpi.tier(name)
    return (kpi, tier) if tier is not None else None


def _check_backing(st: Statement, ref: str, kpis: dict[str, Any]) -> list[Problem]:
    found = _tier(ref, kpis)
    if found is None:
        return [Problem(st.file, st.line, st.quote, f"backs {ref}, which the catalogue does not have")]
    kpi, tier = found
    if tier is None or st.value is None or ref.endswith(".condition"):
        return []
    if ref.endswith(".for"):  # "Fix not found within 1 hour": the number is how long the tier holds
        if _same(st.value, tier.for_):
            return []
        return [Problem(st.file, st.line, st.quote, f"value differs: the playbook says {_show(st.value)} s, "
                                                    f"{kpi.service}/{ref} is {_show(tier.for_)} s")]
    value = tier_value(st.value, kpi.indicator.unit if kpi.indicator else None)
    out = []
    if not _same(round(value, 9), round(tier.value, 9)):
        out.append(Problem(st.file, st.line, st.quote,
                           f"value differs: the playbook says {_show(value)}, {kpi.service}/{ref} has {_show(tier.value)}"))
    if st.for_ is not None and not _same(st.for_, tier.for_):
        out.append(Problem(st.file, st.line, st.quote,
                           f"`for` differs: the playbook says {_show(st.for_)} s, {kpi.service}/{ref} has {_show(tier.for_)} s"))
    window = kpi.window or (kpi.indicator.window if kpi.indicator else None)
    if st.window is not None and not _same(st.window, window):
        out.append(Problem(st.file, st.line, st.quote,
                           f"window differs: the playbook says {_show(st.window)} s, {kpi.service}/{kpi.id} averages "
                           f"over {_show(window)} s"))
    return out


_WEEKDAY_WORD = re.compile(r"\b(sunday|monday|tuesday|wednesday|thursday|friday|saturday)s?\b", re.I)


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 3600:02d}:{int(seconds) % 3600 // 60:02d}"


def _seconds(hhmm: str) -> float:
    hours, minutes = hhmm.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def _covers(weekdays: list[str], day: str) -> bool:
    """Whether Alertmanager's weekday list (`sunday`, `monday:friday`) includes the day."""
    order = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    for item in weekdays:
        start, _, end = item.lower().partition(":")
        if order.index(start) <= order.index(day) <= order.index(end or start):
            return True
    return False


def _check_window(st: Statement, name: str, service: Any) -> list[Problem]:
    """A maintenance statement against the window's intervals: the start (`>=`) or end (`<`) of
    its time range, the weekday its quote names, or its length ("Duration: 2 hours maximum")."""
    window = next((w for w in service.maintenance if w.name == f"{service.id}-{name}"), None)
    if window is None:
        return [Problem(st.file, st.line, st.quote, f"no maintenance window {name!r} in {service.id}")]
    where = f"{service.id}/{name}"
    ranges = [r for i in window.intervals for r in i.times]
    out = []
    if st.kind == "maintenance_window" and st.value is not None:
        edge, word = ("start_time", "starts") if st.comparator == ">=" else ("end_time", "ends")
        have = [_seconds(getattr(r, edge)) for r in ranges]
        if not any(_same(st.value, h) for h in have):
            out.append(Problem(st.file, st.line, st.quote,
                               f"window {word} at {_clock(st.value)} in the playbook, {where} {word} at "
                               f"{', '.join(_clock(h) for h in have) or 'no time of day'}"))
        if st.comparator == ">=":  # once per quote, on its start
            for day in {d.lower() for d in _WEEKDAY_WORD.findall(st.quote)}:
                if not all(_covers(i.weekdays, day) for i in window.intervals):
                    days = ", ".join(d for i in window.intervals for d in i.weekdays) or "every day"
                    out.append(Problem(st.file, st.line, st.quote, f"the playbook says {day}, {where} is on {days}"))
    elif st.value is not None:  # the window's length: the maximum exactly, at least a range's low end
        longest = max((_seconds(r.end_time) - _seconds(r.start_time) for r in ranges), default=None)
        at_least = st.comparator == ">=" and longest is not None and longest >= st.value
        if not at_least and not _same(st.value, longest):
            out.append(Problem(st.file, st.line, st.quote, f"window length differs: the playbook says "
                                                           f"{_show(st.value)} s, {where} lasts {_show(longest)} s"))
    return out


_PRIORITY_REF = re.compile(r"^(P[0-3])\b")


def _check_routing(st: Statement, ref: str, service: Any) -> list[Problem]:
    """A routing statement names its priority first (`P1: response time ...`); a number it carries
    is that priority's response time in the service's resolved routing."""
    m = _PRIORITY_REF.match(ref)
    if m is None:
        return [Problem(st.file, st.line, st.quote, f"routing {ref!r} must start with the priority it is (P0 ... P3)")]
    policy = service.policies.get(m.group(1))
    if policy is None:
        return [Problem(st.file, st.line, st.quote, f"no routing for {m.group(1)} in {service.id}")]
    if st.value is None or st.kind not in ("response_time", "threshold") or _same(st.value, policy.response_time):
        return []
    return [Problem(st.file, st.line, st.quote, f"response time differs: the playbook says {_show(st.value)} s, "
                                                f"{service.id} routing {m.group(1)} has {_show(policy.response_time)} s")]


def _show(value: float | None) -> str:
    return "nothing" if value is None else f"{value:g}"


def summary(ledger: Ledger, service: Any) -> dict[str, int]:
    """Statements per disposition; backing only KPIs listed as not alertable counts as not measurable."""
    alertable = {k.id: k.alertable for k in service.kpis}
    counts = {"found": len(ledger.statements), **{d: 0 for d in DISPOSITIONS}}
    for e in ledger.statements:
        d = e.disposition
        if d == "backs" and not any(alertable.get(_bare(r).partition(".")[0], True) for r in e.backs):
            d = "not_measurable"
        counts[d] += 1
    return counts


def dump(ledger: Ledger, header: str) -> str:
    """The ledger as YAML: one flow-style line per statement, so a review diff is one line each."""
    lines = [f"# {header}", f"service: {ledger.service}", f"playbook: {ledger.playbook}", "statements:"]
    for e in ledger.statements:
        data = {k: v for k, v in e.model_dump().items() if v not in (None, [], "")}
        lines.append("  - " + _flow(data))
    for section in ("chosen", "audit"):
        items = getattr(ledger, section)
        if items:
            lines.append(f"{section}:")
            lines += [f"  {key}: {_scalar(text)}" for key, text in items.items()]
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6, allow_unicode=True)
    return text.strip().removesuffix("\n...").strip()


def _flow(data: dict[str, Any]) -> str:
    fields: dict[str, Any] = {}
    for key in ("line", "quote", "kind", "value", *DISPOSITIONS):
        value = data.get(key)
        if value is not None:
            fields[key] = int(value) if isinstance(value, float) and value.is_integer() else value
    return _scalar(fields)
