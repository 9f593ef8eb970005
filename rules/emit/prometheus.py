"""Prometheus rule files from the resolved model: recording rules, then the services' alerts.

Outputs (paths relative to the --out root):
    rules/generated/indicators.rules.yml   recording rules of every stackprobe indicator (shared)
    rules/generated/<service>.rules.yml    the service's external recording rules and its alerts
"""

from __future__ import annotations

from typing import Any

from ..model import Model, Service
from .files import HEADER, INDICATORS_FILE, PROMETHEUSRULE_FILE, dump, service_file


def indicator_groups(model: Model) -> list[dict[str, Any]]:
    """One shared group recording every stackprobe indicator (they carry the `service` label already)."""
    return [{"name": "stackprobe-indicators", "rules": [r.rule() for r in model.recordings]}]


def service_groups(service: Service) -> list[dict[str, Any]]:
    """External indicators recorded for this service (its own metric names), then its alerts."""
    groups = []
    if service.recordings:
        groups.append({"name": f"{service.id}-indicators", "rules": [r.rule() for r in service.recordings]})
    groups.append({"name": f"{service.id}-alerts", "rules": [a.rule() for a in service.alerts]})
    return groups


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
