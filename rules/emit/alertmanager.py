"""The Alertmanager config from the resolved routing and the services' maintenance windows.

Routing is by the `priority` label (P0-P3), one child route per priority with its receiver and
its timing. A service with maintenance windows gets a sub-route under each priority it mutes,
with `mute_time_intervals`. Inhibitions: critical > warning > info for the same service and KPI,
and a down target (a liveness alert) silences the other alerts of that target.
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


def _maintenance_routes(services: tuple[Service, ...], policy: Policy) -> list[dict[str, Any]]:
    routes = []
    for s in services:
        names = [w.name for w in s.maintenance if policy.priority in w.mute]
        if names:
            route: dict[str, Any] = {"matchers": [str(Matcher("service", s.id))], "mute_time_intervals": names}
            if policy.active_time_intervals:  # time intervals are not inherited by child routes
                route["active_time_intervals"] = list(policy.active_time_intervals)
            routes.append(route)
    return routes


def config(model: Model) -> dict[str, Any]:
    """The alertmanager.yml document."""
    r = model.routing
    routes = []
    for policy in r.policies.values():
        route: dict[str, Any] = {"matchers": [str(Matcher("priority", policy.priority))], "receiver": policy.receiver,
                                 **_timing(policy)}
        if policy.active_time_intervals:
            route["active_time_intervals"] = list(policy.active_time_intervals)
        if sub := _maintenance_routes(model.services, policy):
            route["routes"] = sub
        routes.append(route)
    lowest = r.policies["P3"]
    same_kpi = ("service", "kpi", *r.aggregation_labels)
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
    intervals = [{"name": n, "time_intervals": [_interval(t) for t in tis]} for n, tis in r.time_intervals.items()]
    intervals += [{"name": w.name, "time_intervals": [_interval(t) for t in w.intervals]}
                  for s in model.services for w in s.maintenance]
    doc: dict[str, Any] = {}
    if r.global_:
        doc["global"] = dict(r.global_)
    doc["route"] = {"receiver": lowest.receiver, "group_by": list(r.group_by), **_timing(lowest), "routes": routes}
    doc["inhibit_rules"] = inhibit
    doc["receivers"] = [{"name": name, **body} for name, body in r.receivers.items()]
    doc["time_intervals"] = intervals
    return doc


def emit(model: Model) -> dict[str, str]:
    return {ALERTMANAGER_FILE: HEADER + dump(config(model))}
