"""The Alertmanager config from the resolved routing and the services' maintenance windows.

Routing is by `service`, then by the `priority` label (P0-P3): every service has its own subtree
whose priority routes take routing.yaml's policy with the service's overrides from its playbook
(receiver, response time = repeat_interval, grouping, business hours in its own timezone); the
priorities its maintenance windows mute carry `mute_time_intervals`. routing.yaml's policies
also route alerts of no known service. Inhibitions: critical > warning > info for the same
service, KPI and target, a down input (a liveness alert) silences the alerts of its target, and
a failing section of a probe (a collector alert) only the alerts of the KPIs reading it there.
"""

from __future__ import annotations

from typing import Any

from stackprobe.configsource import format_duration

from ..model import Model, Policy, Service
from ..promql import Matcher
from ..spec import TimeInterval
from .files import ALERTMANAGER_FILE, HEADER, dump


def _interval(ti: TimeInterval) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("weekdays", "days_of_month", "months"):
        if getattr(ti, key):
            out[key] = list(getattr(ti, key))
    if ti.times:
        out["times"] = [t.model_dump() for t in ti.times]
    out["location"] = ti.location
    return out


def _timing(policy: Policy) -> dict[str, Any]:
    return {
        "group_wait": format_duration(policy.group_wait) if policy.group_wait else "0s",
        "group_interval": format_duration(policy.group_interval),
        "repeat_interval": format_duration(policy.repeat_interval),
    }


def _priority_route(policy: Policy, service: Service | None) -> dict[str, Any]:
    """One priority's route: receiver, grouping, timing, when it may send and when it is muted."""
    route: dict[str, Any] = {"matchers": [str(Matcher("priority", policy.priority))], "receiver": policy.receiver}
    if policy.group_by is not None:
        route["group_by"] = list(policy.group_by)
    route.update(_timing(policy))
    if policy.active_time_intervals:
        route["active_time_intervals"] = list(policy.active_time_intervals)
    if service is not None:
        if muted := [w.name for w in service.maintenance if policy.priority in w.mute]:
            route["mute_time_intervals"] = muted
    return route


def inhibit_rules(model: Model) -> list[dict[str, Any]]:
    """Critical > warning > info of the same KPI *on the same target* (an alert without a target
    label only inhibits others without one: Alertmanager compares missing labels as empty), a
    down input silences the other alerts of its target, and a failing probe section the alerts
    of the KPIs it blinds on its target (not the target's other alerts: its down alert, the KPIs
    of sections that still work); all only within equal aggregation labels (one cluster's alert
    never silences another's)."""
    r = model.routing
    same_kpi = ("service", "kpi", "target", *r.aggregation_labels)
    inhibit = [  # lists of their own: a shared one would be written as a YAML alias
        {"source_matchers": [str(Matcher("severity", "critical"))],
         "target_matchers": [str(Matcher("severity", "warning|info", "=~"))], "equal": list(same_kpi)},
        {"source_matchers": [str(Matcher("severity", "warning"))],
         "target_matchers": [str(Matcher("severity", "info"))], "equal": list(same_kpi)},
    ]
    if r.liveness_alerts:
        inhibit.append({"source_matchers": [str(Matcher("alertname", "|".join(r.liveness_alerts), "=~"))],
                        "target_matchers": [str(Matcher("target", ".+", "=~"))],
                        "equal": ["service", "target", *r.aggregation_labels]})
    for b in r.blindings:
        inhibit.append({"source_matchers": [str(Matcher("alertname", b.alert)), str(Matcher("collector", b.collector))],
                        "target_matchers": [str(Matcher("alertname", "|".join(b.blinded), "=~"))],
                        "equal": ["service", "target", *r.aggregation_labels]})
    return inhibit


def config(model: Model) -> dict[str, Any]:
    """The alertmanager.yml document: a subtree per service, then routing.yaml's policies for
    alerts of no known service."""
    r = model.routing
    routes: list[dict[str, Any]] = [
        {"matchers": [str(Matcher("service", s.id))],
         "routes": [_priority_route(policy, s) for policy in s.policies.values()]} for s in model.services]
    routes += [_priority_route(policy, None) for policy in r.policies.values()]
    lowest = r.policies["P3"]
    intervals = [{"name": n, "time_intervals": [_interval(t) for t in tis]} for n, tis in r.time_intervals.items()]
    intervals += [{"name": n, "time_intervals": [_interval(t) for t in tis]}
                  for s in model.services for n, tis in s.time_intervals.items()]
    intervals += [{"name": w.name, "time_intervals": [_interval(t) for t in w.intervals]}
                  for s in model.services for w in s.maintenance]
    doc: dict[str, Any] = {}
    if r.global_:
        doc["global"] = dict(r.global_)
    doc["route"] = {"receiver": lowest.receiver, "group_by": list(r.group_by), **_timing(lowest), "routes": routes}
    doc["inhibit_rules"] = inhibit_rules(model)
    doc["receivers"] = [{"name": name, **body} for name, body in r.receivers.items()]
    doc["time_intervals"] = intervals
    return doc


def emit(model: Model) -> dict[str, str]:
    return {ALERTMANAGER_FILE: HEADER + dump(config(model))}
