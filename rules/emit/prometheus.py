"""Prometheus rule files from the resolved model: recording rules, then the services' alerts.

Outputs (paths relative to the --out root):
    rules/generated/indicators.rules.yml   recording rules of every stackprobe indicator (shared)
    rules/generated/<service>.rules.yml    the service's external recording rules and its alerts
No group holds more than MAX_GROUP_RULES rules, so the files load unchanged into Mimir's and
Cortex's rulers as well as Prometheus and vmalert.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from ..model import Model, Service
from .files import HEADER, INDICATORS_FILE, PROMETHEUSRULE_FILE, dump, service_file

#: The most rules a group may hold: the default limit of Mimir's and Cortex's rulers.
MAX_GROUP_RULES = 20

Rule = dict[str, Any]


def packed(name: str, units: list[list[Rule]]) -> list[dict[str, Any]]:
    """Rules in order, in groups of at most MAX_GROUP_RULES; a unit (one KPI's alerts) is never
    split. The first group keeps `name` (its rules keep their state when a service grows), the
    next ones are `name-2`, `name-3`, ..."""
    groups: list[list[Rule]] = [[]]
    for unit in units:
        if groups[-1] and len(groups[-1]) + len(unit) > MAX_GROUP_RULES:
            groups.append([])
        groups[-1].extend(unit)
    return [{"name": name if i == 0 else f"{name}-{i + 1}", "rules": rules} for i, rules in enumerate(groups) if rules]


def indicator_groups(model: Model) -> list[dict[str, Any]]:
    """The shared groups recording every stackprobe indicator (they carry the `service` label already)."""
    return packed("stackprobe-indicators", [[r.rule()] for r in model.recordings])


def service_groups(service: Service) -> list[dict[str, Any]]:
    """External indicators recorded for this service (its own metric names), then its alerts."""
    groups = packed(f"{service.id}-indicators", [[r.rule()] for r in service.recordings])
    by_kpi = groupby(service.alerts, key=lambda a: a.kpi.id if a.kpi else a.name)
    return groups + packed(f"{service.id}-alerts", [[a.rule() for a in alerts] for _, alerts in by_kpi])


def emit(model: Model) -> dict[str, str]:
    """The Prometheus rule files."""
    out = {INDICATORS_FILE: HEADER + dump({"groups": indicator_groups(model)})}
    for service in model.services:
        out[service_file(service.id)] = HEADER + dump({"groups": service_groups(service)})
    return out


def emit_prometheusrule(model: Model) -> dict[str, str]:
    """The same rules as one prometheus-operator PrometheusRule manifest (`--format prometheusrule`)."""
    groups = indicator_groups(model) + [g for s in model.services for g in service_groups(s)]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "stackprobe", "labels": {"app.kubernetes.io/name": "stackprobe",
                                                     "app.kubernetes.io/component": "rules"}},
        "spec": {"groups": groups},
    }
    return {PROMETHEUSRULE_FILE: HEADER + dump(manifest)}
