"""The Alertmanager config from the catalogue's routing data and the services' maintenance windows.

Routing is by the `priority` label (P0-P3), one child route per priority with its receiver and
its timing (repeat_interval = the priority's response time unless set). A service with
maintenance windows gets a sub-route under each priority it mutes, with `mute_time_intervals`.
Inhibitions: critical > warning > info for the same service and KPI, and a down target
(a liveness alert) silences the other alerts of that target.
"""

from __future__ import annotations

from typing import Any

from stackprobe.configsource import format_duration

from .catalogue import PRIORITIES, Catalogue, PriorityPolicy, Service, TimeInterval
from .prometheus import HEADER, OUT_DIR, dump, liveness_alert_names

CONFIG_FILE = f"{OUT_DIR}/alertmanager.yml"


def _interval(ti: TimeInterval) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("weekdays", "days_of_month", "months"):
        if getattr(ti, key):
            out[key] = list(getattr(ti, key))
    if ti.times:
        out["times"] = [t.model_dump() for t in ti.times]
    out["location"] = ti.location
    return out


def _timing(policy: PriorityPolicy) -> dict[str, Any]:
    return {
        "group_wait": format_duration(policy.group_wait) if policy.group_wait else "0s",
        "group_interval": format_duration(policy.group_interval),
        "repeat_interval": format_duration(policy.repeat),
    }


def _maintenance_routes(services: list[Service], priority: str, policy: PriorityPolicy) -> list[dict[str, Any]]:
    routes = []
    for s in services:
        names = [s.mute_interval_name(w) for w in s.maintenance if priority in w.mute]
        if names:
            route: dict[str, Any] = {"matchers": [f'service="{s.id}"'], "mute_time_intervals": names}
            if policy.active_time_intervals:  # time intervals are not inherited by child routes
                route["active_time_intervals"] = list(policy.active_time_intervals)
            routes.append(route)
    return routes


def config(cat: Catalogue) -> dict[str, Any]:
    """The alertmanager.yml document."""
    r = cat.routing
    routes = []
    for p in PRIORITIES:
        policy = r.priorities[p]  # type: ignore[index]
        route: dict[str, Any] = {"matchers": [f'priority="{p}"'], "receiver": policy.receiver, **_timing(policy)}
        if policy.active_time_intervals:
            route["active_time_intervals"] = list(policy.active_time_intervals)
        if sub := _maintenance_routes(cat.services, p, policy):
            route["routes"] = sub
        routes.append(route)
    lowest = r.priorities["P3"]
    inhibit = [
        {"source_matchers": ['severity="critical"'], "target_matchers": ['severity=~"warning|info"'],
         "equal": ["service", "kpi"]},
        {"source_matchers": ['severity="warning"'], "target_matchers": ['severity="info"'],
         "equal": ["service", "kpi"]},
    ]
    if liveness := liveness_alert_names(cat):
        inhibit.append({"source_matchers": [f'alertname=~"{"|".join(liveness)}"'],
                        "target_matchers": ['target=~".+"'], "equal": ["service", "target"]})
    intervals = [{"name": n, "time_intervals": [_interval(t) for t in tis]} for n, tis in r.time_intervals.items()]
    intervals += [{"name": s.mute_interval_name(w), "time_intervals": [_interval(t) for t in w.intervals]}
                  for s in cat.services for w in s.maintenance]
    doc: dict[str, Any] = {}
    if r.global_:
        doc["global"] = r.global_
    doc["route"] = {"receiver": lowest.receiver, "group_by": list(r.group_by), **_timing(lowest), "routes": routes}
    doc["inhibit_rules"] = inhibit
    doc["receivers"] = [{"name": name, **body} for name, body in r.receivers.items()]
    doc["time_intervals"] = intervals
    return doc


def emit(cat: Catalogue) -> dict[str, str]:
    return {CONFIG_FILE: HEADER + dump(config(cat))}
