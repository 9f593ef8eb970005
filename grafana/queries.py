"""Read generated dashboards back: through the SDK's models, down to every PromQL query.

The test suite uses this to prove each file is a dashboard Grafana's schema accepts and that
every query parses and names only metrics that exist; the end-to-end test uses
`dashboard_queries()` to run every panel query against a live Prometheus (no Grafana server
can run here, so that is as close to "the panel shows data" as the suite gets).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import promql_parser
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

from .provisioning import DASHBOARDS_DIR

#: The checkout this package is installed from (editable); generated files are not package data.
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Values for Grafana's built-in interval variables when a query runs outside Grafana.
#: `$__rate_interval` is at least four scrape intervals in Grafana; 1m suits the 15 s default.
BUILTIN_VALUES: dict[str, str] = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")


@cache
def _plugins() -> None:
    """Register the SDK's panel and query variants once, so `from_json` builds typed models."""
    register_default_plugins()


def load(text: str) -> dash_m.Dashboard:
    """Parse dashboard JSON into the SDK's model (panel options and queries typed by plugin)."""
    _plugins()
    return dash_m.Dashboard.from_json(json.loads(text))


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel (or template variable), as written in the dashboard."""

    dashboard: str  # dashboard UID
    panel: str  # panel title, or "$name" for a template variable
    ref: str
    expr: str  # with Grafana variables ($service, $__rate_interval, ...)
    instant: bool
    values: Mapping[str, str]  # what each variable stands for outside Grafana

    def concrete(self, builtins: Mapping[str, str] = BUILTIN_VALUES) -> str:
        """The query with every variable replaced, as Prometheus itself would accept it.

        `$service`/`$target` become their "All" value (`.*`), a constant its value, and
        Grafana's interval variables the values in `builtins`.
        """
        values = {**builtins, **self.values}

        def substitute(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(2)
            if name not in values:
                raise KeyError(f"{self.dashboard} / {self.panel}: unknown variable ${name} in {self.expr!r}")
            return values[name]

        return _VARIABLE.sub(substitute, self.expr)


def _variable_values(model: dash_m.Dashboard) -> dict[str, str]:
    """What each template variable stands for when the dashboard opens with its defaults."""
    values: dict[str, str] = {}
    for var in model.templating.list_val or []:
        if var.type_val == dash_m.VariableType.CONSTANT:
            values[var.name] = str(var.query)
        elif var.type_val == dash_m.VariableType.QUERY:
            if not var.include_all or var.all_value is None:
                raise ValueError(f"{model.uid}: query variable ${var.name} needs an 'All' value to be run outside Grafana")
            values[var.name] = var.all_value
    return values


def dashboard_queries(model: dash_m.Dashboard) -> Iterator[PanelQuery]:
    """Every PromQL query of the dashboard: panel targets and template-variable selectors.

    A `label_values(selector, label)` variable contributes its selector, which is the part
    Prometheus evaluates.
    """
    values = _variable_values(model)
    for var in model.templating.list_val or []:
        if var.type_val == dash_m.VariableType.QUERY:
            m = _LABEL_VALUES.match(str(var.query))
            if m is None:
                raise ValueError(f"{model.uid}: variable ${var.name} is not a label_values() query: {var.query!r}")
            yield PanelQuery(str(model.uid), f"${var.name}", "", m["selector"], True, values)
    for panel in _panels(model):
        for target in panel.targets or []:
            if not isinstance(target, prom_m.Dataquery):
                raise TypeError(f"{model.uid} / {panel.title}: target is {type(target).__name__}, not a Prometheus query")
            yield PanelQuery(str(model.uid), str(panel.title), target.ref_id or "", target.expr, bool(target.instant), values)


def _panels(model: dash_m.Dashboard) -> Iterator[dash_m.Panel]:
    for item in model.panels or []:
        if isinstance(item, dash_m.RowPanel):
            yield from item.panels
        else:
            yield item


def metric_names(expr: str) -> set[str]:
    """The metric names a (variable-free) PromQL expression selects; parse errors propagate."""
    names: set[str] = set()
    unnamed: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                unnamed.append(str(node))

    promql_parser.walk(promql_parser.parse(expr), visit)
    if unnamed:
        raise ValueError(f"selectors without a metric name in {expr!r}: {unnamed}")
    return names


def load_generated(root: Path = REPO_ROOT) -> dict[str, dash_m.Dashboard]:
    """Every committed dashboard of a checkout, by file name, loaded through the SDK."""
    return {p.name: load(p.read_text(encoding="utf-8")) for p in sorted((root / DASHBOARDS_DIR).glob("*.json"))}


def generated_queries(root: Path = REPO_ROOT) -> list[PanelQuery]:
    """Every query of every committed dashboard: what the end-to-end test runs against a live
    Prometheus (each `PanelQuery.concrete()` is plain PromQL)."""
    return [q for model in load_generated(root).values() for q in dashboard_queries(model)]
