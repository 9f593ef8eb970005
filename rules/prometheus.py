"""Prometheus rule files from the catalogue: recording rules, threshold, burn-rate and absent alerts.

Outputs (paths relative to the --out root):
    rules/generated/indicators.rules.yml   recording rules of every stackprobe indicator (shared)
    rules/generated/<service>.rules.yml    the service's external recording rules and its alerts
The alert list is also what `promtests` writes unit tests for, so both read `alerts()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from stackprobe.configsource import format_duration

from .catalogue import BURN_RATE_WINDOWS, KPI, SEVERITY, Catalogue, Indicator, Service, camel, resolved_for

OUT_DIR = "rules/generated"
INDICATORS_FILE = f"{OUT_DIR}/indicators.rules.yml"


def service_file(service: Service) -> str:
    return f"{OUT_DIR}/{service.id}.rules.yml"


# --- Go template functions, mirrored so thresholds read like the alert's live value -----------

def _g4(v: float) -> str:
    return f"{v:.4g}"


def humanize(v: float) -> str:
    """Prometheus' `humanize` (SI prefixes, 4 significant digits)."""
    if v == 0 or not math.isfinite(v):
        return _g4(v)
    if abs(v) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return _g4(v) + prefix
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return _g4(v) + prefix


def humanize_1024(v: float) -> str:
    if abs(v) <= 1 or not math.isfinite(v):
        return _g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix, v = p, v / 1024
    return _g4(v) + prefix


def humanize_duration(v: float) -> str:
    """Prometheus' `humanizeDuration`."""
    if not math.isfinite(v):
        return _g4(v)
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        seconds, minutes, hours, days = d % 60, d // 60 % 60, d // 3600 % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_g4(v)}{prefix}s"


#: unit -> (Go template pipeline for $value, the same formatting in Python)
_FORMATS: dict[str, tuple[str, Any]] = {
    "percentunit": ("{{ $value | humanizePercentage }}", lambda v: f"{v * 100:.4g}%"),
    "s": ("{{ $value | humanizeDuration }}", humanize_duration),
    "d": ('{{ $value | printf "%.1f" }} days', lambda v: f"{v:.1f} days"),
    "bytes": ("{{ $value | humanize1024 }}B", lambda v: humanize_1024(v) + "B"),
    "short": ("{{ $value | humanize }}", humanize),
    "reqps": ("{{ $value | humanize }} req/s", lambda v: humanize(v) + " req/s"),
}


def format_value(unit: str, v: float) -> str:
    """A value as the alert's annotation shows it (used for thresholds and in the generated tests)."""
    return _FORMATS[unit][1](v)


def number(v: float) -> str:
    """A PromQL number literal, stable across runs (no float noise like 0.00010000000000000009)."""
    return f"{v:.10g}"


# --- the alert model shared with promtests ---------------------------------------------------

@dataclass
class AlertSpec:
    """One alerting rule plus what its generated test needs to know."""

    name: str
    expr: str
    for_: float
    labels: dict[str, str]
    annotations: dict[str, str]
    kind: str  # "threshold" | "burn_rate" | "absent"
    service: Service
    kpi: KPI | None = None
    indicator: Indicator | None = None
    tier: str | None = None
    threshold: float | None = None
    burn: tuple[str, str, float] | None = None  # long window, short window, factor
    value_template: str = ""

    def rule(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_:
            out["for"] = format_duration(self.for_)
        out["labels"] = self.labels
        out["annotations"] = self.annotations
        return out


def selector(service: Service, kpi: KPI) -> str:
    matchers = {"service": service.id, **kpi.match}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in matchers.items()) + "}"


def subject(indicator: Indicator, service: Service) -> str:
    """What the description names: the target or instance the series is about, else the service."""
    for label in ("target", "instance"):
        if label in indicator.labels:
            return f"{{{{ $labels.{label} }}}} ({service.title})"
    return service.title


def _base_labels(service: Service, kpi_id: str, severity: str, priority: str, area: str) -> dict[str, str]:
    return {"service": service.id, "kpi": kpi_id, "severity": severity, "priority": priority, "area": area}


def threshold_alert(cat: Catalogue, service: Service, kpi: KPI, tier_name: str) -> AlertSpec:
    ind = cat.indicator_of(kpi)
    tier = getattr(kpi, tier_name)
    for_ = resolved_for(kpi, tier)
    series = ind.record + selector(service, kpi)
    window = ""
    if kpi.window and kpi.window > (ind.window or 0):
        series = f"avg_over_time({series}[{format_duration(kpi.window)}])"
        window = f" averaged over {format_duration(kpi.window)}"
    op = ">" if kpi.comparison == "above" else "<"
    template, fmt = _FORMATS[ind.unit]
    limit = fmt(tier.threshold)
    held = f" for {format_duration(for_)}" if for_ else ""
    annotations = {
        "summary": f"{service.title}: {kpi.title} {kpi.comparison} {limit}",
        "description": (f"{kpi.title} of {subject(ind, service)} is {template}{window}; "
                        f"{tier_name} threshold: {kpi.comparison} {limit}{held}."),
        "runbook_url": kpi.runbook_url(tier_name),
    }
    return AlertSpec(
        name=kpi.alert_name(tier_name), expr=f"{series} {op} {number(tier.threshold)}", for_=for_,
        labels=_base_labels(service, kpi.id, SEVERITY[tier_name], kpi.tier_priority(tier_name), kpi.area or ""),
        annotations=annotations, kind="threshold", service=service, kpi=kpi, indicator=ind,
        tier=tier_name, threshold=tier.threshold, value_template=template,
    )


def burn_rate_alerts(cat: Catalogue, service: Service, kpi: KPI) -> list[AlertSpec]:
    """The SRE workbook's multiwindow, multi-burn-rate alerts for the KPI's objective."""
    ind = cat.indicator_of(kpi)
    assert kpi.target is not None
    objective = kpi.target.threshold
    budget = number(1 - objective)
    series = ind.record + selector(service, kpi)
    out = []
    for long, short, factor, severity in BURN_RATE_WINDOWS:
        burn = [f"(1 - avg_over_time({series}[{w}])) / {budget} > {number(factor)}" for w in (long, short)]
        priority = kpi.priority if severity == "critical" else kpi.burn_rate_ticket_priority
        template = '{{ $value | printf "%.1f" }}'
        out.append(AlertSpec(
            name=kpi.alert_name(f"burn_rate_{long}"), expr=f"{burn[0]}\nand\n{burn[1]}", for_=0.0,
            labels=_base_labels(service, kpi.id, severity, priority, kpi.area or ""),
            annotations={
                "summary": f"{service.title}: {kpi.title} is burning its error budget {number(factor)}x too fast",
                "description": (f"{kpi.title} of {service.title} has been failing {template} times faster than "
                                f"the {format_value('percentunit', objective)} objective allows, over both "
                                f"{long} and {short}."),
                "runbook_url": kpi.runbook_url("target"),
            },
            kind="burn_rate", service=service, kpi=kpi, indicator=ind, tier="target", threshold=objective,
            burn=(long, short, factor), value_template=template,
        ))
    return out


def absent_alert(cat: Catalogue, service: Service) -> AlertSpec:
    """Fires when no target of the service reports at all (exporter down, targets removed)."""
    return AlertSpec(
        name=camel(service.id) + "ProbesAbsent",
        expr=f'absent(stackprobe_probe_success{{service="{service.id}"}})',
        for_=service.absent.for_,
        labels=_base_labels(service, "probes_absent", "warning", service.absent.priority, "availability"),
        annotations={
            "summary": f"{service.title}: no probe results",
            "description": (f"stackprobe reports no target of {service.title} for "
                            f"{format_duration(service.absent.for_)}: the exporter is down, not scraped, "
                            f"or the service's targets were removed from its config."),
            "runbook_url": f"{cat.routing.runbook_base_url}{service.playbook}",
        },
        kind="absent", service=service,
    )


def alerts(cat: Catalogue, service: Service) -> list[AlertSpec]:
    """Every alerting rule of one service, in catalogue order."""
    out: list[AlertSpec] = []
    for kpi in service.alertable_kpis():
        out += [threshold_alert(cat, service, kpi, name) for name, _ in kpi.alert_tiers()]
        if kpi.burn_rate:
            out += burn_rate_alerts(cat, service, kpi)
    out.append(absent_alert(cat, service))
    return out


def liveness_alert_names(cat: Catalogue) -> list[str]:
    """Alerts saying a target is down; Alertmanager lets them inhibit that target's other alerts."""
    return [a.name for s in cat.services for a in alerts(cat, s)
            if a.kind == "threshold" and a.indicator is not None and a.indicator.liveness]


# --- rule groups ----------------------------------------------------------------------------

def _recording(record: str, expr: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"record": record, "expr": " ".join(expr.split())}
    if labels:
        out["labels"] = labels
    return out


def indicator_groups(cat: Catalogue) -> list[dict[str, Any]]:
    """One shared group recording every stackprobe indicator (they carry the `service` label already)."""
    rules = [_recording(i.record, i.expr) for i in cat.indicators.values() if i.provider == "stackprobe"]
    return [{"name": "stackprobe-indicators", "rules": rules}]


def service_groups(cat: Catalogue, service: Service) -> list[dict[str, Any]]:
    """External indicators recorded for this service (its own metric names), then its alerts."""
    groups = []
    external = [i for i in cat.used_indicators(service) if i.provider != "stackprobe"]
    if external:
        groups.append({"name": f"{service.id}-indicators", "rules": [
            _recording(i.record, cat.expr(i, service), {"service": service.id}) for i in external
        ]})
    groups.append({"name": f"{service.id}-alerts", "rules": [a.rule() for a in alerts(cat, service)]})
    return groups


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL with `and`) as literal blocks, everything else as usual."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump(data: Any) -> str:
    """YAML with a fixed style so the same catalogue always gives byte-identical files."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120, default_flow_style=False)


HEADER = "# Generated by `gen-rules build` from rules/catalogue/ and rules/indicators.yaml. Do not edit.\n"


def emit(cat: Catalogue) -> dict[str, str]:
    """The Prometheus rule files (the emitter the CLI lists)."""
    out = {INDICATORS_FILE: HEADER + dump({"groups": indicator_groups(cat)})}
    for service in cat.services:
        out[service_file(service)] = HEADER + dump({"groups": service_groups(cat, service)})
    return out


def emit_prometheusrule(cat: Catalogue) -> dict[str, str]:
    """The same rules as one prometheus-operator PrometheusRule manifest (`--format prometheusrule`)."""
    groups = indicator_groups(cat) + [g for s in cat.services for g in service_groups(cat, s)]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "stackprobe", "labels": {"app.kubernetes.io/name": "stackprobe",
                                                     "app.kubernetes.io/component": "rules"}},
        "spec": {"groups": groups},
    }
    return {f"{OUT_DIR}/kubernetes/prometheusrule.yaml": HEADER + dump(manifest)}
