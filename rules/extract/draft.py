"""Drafts from a playbook: a ledger with a first disposition for every statement, and for a
service the catalogue does not know yet, a catalogue file with a KPI per mapped threshold.

Only what the extractor read with certainty is decided: a threshold whose subject the
vocabulary maps to one indicator becomes (or backs) a KPI tier of that indicator with the same
value; a task's duration or schedule is process-only; a priority or response time points at
the routing. Everything else is `todo`, which `gen-rules check` refuses until a person decides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from stackprobe.configsource import format_duration

from .ledger import Entry, Ledger, tier_value
from .statements import Statement

#: The `for` a drafted tier gets when the playbook gives none (recorded under `chosen`).
DEFAULT_FOR = 300.0
#: A drafted KPI's area, by its indicator (the catalogue requires one per alertable KPI).
AREAS = {"target_up": "availability", "probe_staleness": "availability", "availability": "availability",
         "mysql_up": "database", "redis_up": "cache", "latency_avg": "latency", "latency_p95": "latency",
         "latency_change_1w": "latency", "http_json_value": "availability", "redis_cache_hit_ratio": "cache",
         "redis_memory_usage": "cache", "redis_key_length": "cache", "backup_age": "backups",
         "backup_oldest_age": "backups", "backup_verify_failure": "backups", "backup_size_ratio": "backups",
         "cert_days_left": "certificates", "app_error_ratio": "errors", "app_throughput": "latency"}
#: KPI ids a draft gives, where the catalogue's own name differs from the indicator's.
KPI_IDS = {"mysql_connections_usage": "db_connections_usage", "mysql_slow_queries": "db_slow_queries",
           "app_error_ratio": "error_rate", "redis_cache_hit_ratio": "cache_hit_ratio", "cert_days_left": "cert_expiry",
           "cpu_usage": "cpu", "memory_usage": "memory", "disk_usage": "disk", "target_up": "target_down",
           "app_job_success_ratio": "job_success", "app_throughput": "throughput"}
_BAD_DIRECTION = {">": "above", ">=": "above", "<": "below", "<=": "below"}
_GOOD_TO_BAD = {">": "below", ">=": "below", "<": "above", "<=": "above"}


def _area(indicator: str) -> str:
    if indicator.startswith("mysql_"):
        return "database"
    return AREAS.get(indicator, "resources")


def _comparison(st: Statement) -> str | None:
    """The bad direction: an alert condition says it; a check or objective says the good one."""
    if st.comparator is None:
        return None
    return (_BAD_DIRECTION if st.sense == "alert" else _GOOD_TO_BAD).get(st.comparator)


def first_disposition(st: Statement, service: Any | None) -> dict[str, Any]:
    """The draft's disposition of one statement (a key of ledger.Entry and its value)."""
    if st.kind == "threshold" and st.indicator and service is not None:
        refs = backing_tiers(st, service)
        if refs:
            return {"backs": refs}
    if st.kind in ("duration", "schedule"):
        return {"process_only": "when or how long people carry out a task; no system property to measure"}
    if st.kind == "frequency" and not any("monitor" in s.lower() for s in st.section):
        return {"process_only": "how often people carry out the procedure; no system property to measure"}
    if st.kind == "priority":
        return {"routing": f"{st.priority}: the priority level of the routing policy"}
    if st.kind == "response_time" and st.priority:
        return {"routing": f"{st.priority}: response time of the priority's routing policy"}
    if st.kind == "threshold" and st.indicator is None:
        why = f"ambiguous subject ({', '.join(st.candidates)})" if st.candidates else f"no indicator answers to {st.subject!r}"
        return {"todo": why}
    return {"todo": f"decide: a {st.kind} no KPI encodes yet"}


def backing_tiers(st: Statement, service: Any) -> list[str]:
    """`kpi.tier` of the service's resolved KPIs whose indicator is the statement's and whose value equals it."""
    refs = []
    for kpi in service.kpis:
        if kpi.indicator is None or kpi.indicator.id != st.indicator or st.value is None:
            continue
        for tier in kpi.tiers:
            if abs(tier_value(st.value, kpi.indicator.unit) - tier.value) < 1e-9 and st.tier in (None, tier.name):
                refs.append(f"{kpi.id}.{tier.name}")
    return refs[:1] if len(refs) > 1 and st.tier else refs


def draft_ledger(service_id: str, playbook: str, statements: Sequence[Statement], service: Any | None) -> Ledger:
    """A ledger with each statement's first disposition (`service`: the resolved one, if known)."""
    entries = [Entry(line=st.line, quote=st.quote, kind=st.kind, value=st.value, **first_disposition(st, service))
               for st in statements]
    return Ledger(service=service_id, playbook=playbook, statements=entries)


def draft_service(service_id: str, title: str, playbook: str, statements: Sequence[Statement],
                  indicators: Mapping[str, Any]) -> str:
    """A catalogue file for a new service: one KPI per mapped indicator, its tiers from the statements.

    A statement with a comparator sets the KPI's direction; a bare table cell ("99.5%" under
    Objective) joins a KPI whose direction another cell gave. A `for` the playbook does not
    give is DEFAULT_FOR, said so in the KPI's notes.
    """
    kpis: dict[str, dict[str, Any]] = {}
    providers: set[str] = set()
    mapped = [st for st in statements if st.kind == "threshold" and st.indicator and st.value is not None]
    for st in sorted(mapped, key=lambda st: st.comparator is None):  # directions first, bare cells after
        indicator = indicators[st.indicator]
        kpi_id = KPI_IDS.get(st.indicator, st.indicator)
        comparison = _comparison(st)
        if comparison is None and kpi_id not in kpis:
            continue  # a number without a direction stays `todo` in the ledger
        subject = re.sub(r"^the\s+", "", st.subject, flags=re.I)
        kpi = kpis.setdefault(kpi_id, {
            "id": kpi_id, "title": subject[:1].upper() + subject[1:], "description": f"From: {st.quote}",
            "indicator": st.indicator, "comparison": comparison, "priority": "P2",
            "area": _area(st.indicator), "source": st.section[-1] if st.section else title, "notes": ""})
        tier = st.tier or "warning"
        if comparison not in (None, kpi["comparison"]) or tier in kpi:
            continue  # a second, contradicting number stays `todo` in the ledger
        kpi[tier] = {"threshold": tier_value(st.value, indicator.unit), "for": format_duration(st.for_ or DEFAULT_FOR)}
        if st.for_ is None:
            kpi["notes"] += f"{tier}: the playbook gives no duration, {format_duration(DEFAULT_FOR)} chosen. "
        if indicator.provider != "stackprobe":
            providers.add(indicator.provider)
    doc: dict[str, Any] = {"id": service_id, "title": title, "playbook": playbook,
                           "description": f"Drafted by `gen-rules extract --draft` from {playbook}; review every KPI."}
    if providers:  # review: label matchers selecting the service's series of each exporter
        doc["exporters"] = {p: {"match": {"service": service_id}} for p in sorted(providers)}
    doc["kpis"] = [_tiers_in_order(dict(k, notes=k["notes"].strip() or "Durations from the playbook."))
                   for k in kpis.values()]
    head = (f"# Draft from {playbook} by `gen-rules extract --draft`: review the KPIs, their `for`,\n"
            "# priorities and exporter label matchers, then the `todo` entries of the ledger.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def _tiers_in_order(kpi: dict[str, Any]) -> dict[str, Any]:
    """Milder tiers must fire first; drop a tier that contradicts that order (it stays `todo`)."""
    sign = 1 if kpi["comparison"] == "above" else -1
    kept: list[str] = []
    for name in ("target", "warning", "critical"):
        if name in kpi:
            if kept and sign * kpi[kept[-1]]["threshold"] > sign * kpi[name]["threshold"]:
                del kpi[name]
                continue
            kept.append(name)
    return kpi
