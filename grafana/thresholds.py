"""Colour steps from the alerts' own tiers (rules.model), for overview and prober dashboards alike.

A value's colour is that of the most severe tier whose alert fires at it (green when none
does). Grafana colours a value with the last step it reaches (>=), while the alerts fire on `>`
for `above` and on `<` for `below`: an `above` step starts just past its threshold (the next
float), a `below` step at the threshold itself, so a value exactly at a threshold keeps the
milder colour, as the alert stays quiet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from grafana_foundation_sdk.models import dashboard as dash_m

from stackprobe.rules.model import KPI, Model

from .panels import AMBER, GREEN, NEUTRAL, RED, YELLOW, Step

#: The colour of a value that breaches a tier (meeting every tier is GREEN).
TIER_COLOURS = {"target": YELLOW, "warning": AMBER, "critical": RED}
_SEVERITY = ("target", "warning", "critical")


@dataclass(frozen=True)
class Limit:
    """One tier of one KPI, as a colour boundary."""

    comparison: str  # above | below
    tier: str
    value: float  # the alert's literal

    def fires(self, v: float) -> bool:
        return v > self.value if self.comparison == "above" else v < self.value

    @property
    def boundary(self) -> float:
        """Where Grafana's step must start for the colour to change as the alert does."""
        return math.nextafter(self.value, math.inf) if self.comparison == "above" else self.value


def limits(kpi: KPI) -> frozenset[Limit]:
    if kpi.comparison is None:
        return frozenset()
    return frozenset(Limit(kpi.comparison, t.name, t.value) for t in kpi.tiers)


def steps(all_limits: Iterable[Limit]) -> tuple[Step, ...]:
    """Threshold steps colouring every value like the alerts of these limits judge it."""
    chosen = list(all_limits)
    if not chosen:
        return NEUTRAL

    def colour(v: float) -> str:
        fired = [lim.tier for lim in chosen if lim.fires(v)]
        return TIER_COLOURS[max(fired, key=_SEVERITY.index)] if fired else GREEN

    out = [Step(None, colour(-math.inf))]
    for boundary in sorted({lim.boundary for lim in chosen}):
        if colour(boundary) != out[-1].color:
            out.append(Step(boundary, colour(boundary)))
    return tuple(out)


def _by_service(model: Model, indicator_id: str) -> dict[str, frozenset[Limit]]:
    """The limits of each service's KPIs on the indicator."""
    out: dict[str, frozenset[Limit]] = {}
    for kpi in model.kpis_on(indicator_id):
        out[kpi.service] = out.get(kpi.service, frozenset()) | limits(kpi)
    return out


def shared_limits(model: Model, indicator_id: str) -> frozenset[Limit]:
    """The limits every service with KPIs on the indicator alerts on: what a view across
    services (a graph's lines, a table's colours) can show without misleading any of them."""
    sets = list(_by_service(model, indicator_id).values())
    return frozenset.intersection(*sets) if sets else frozenset()


def service_overrides(model: Model, indicator_id: str) -> list[tuple[str, list[dash_m.DynamicConfigValue]]]:
    """Per service, field overrides colouring its series by its own alerts' tiers; the series
    must be named `<service> / ...` (legend SERVICE_LEGEND)."""
    # Service ids are `[a-z][a-z0-9-]*` (spec.SERVICE_ID): nothing in them is special in a regexp.
    return [(f"^{service} / ", [dash_m.DynamicConfigValue(id_val="thresholds", value={
        "mode": "absolute", "steps": [{"value": s.value, "color": s.color} for s in steps(lims)]})])
        for service, lims in _by_service(model, indicator_id).items()]


#: The legend that lets `service_overrides` find a series' service.
SERVICE_LEGEND = "{{service}} / {{target}}"
