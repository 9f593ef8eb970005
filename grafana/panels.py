"""The few panel shapes stackprobe's dashboards use, built on grafana-foundation-sdk.

Every dashboard goes through these helpers so the conventions live in one place: the
`$datasource` variable on every panel and query, explicit panel options (the SDK writes
`"options": null` otherwise, which its own models cannot load back), threshold steps in one
colour scheme, and stable UIDs and panel ids so regenerating gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat, table, text, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m
from grafana_foundation_sdk.models import text as text_m

#: Every panel and template variable queries the data source picked in `$datasource`.
DATASOURCE = dash_m.DataSourceRef(type_val="prometheus", uid="${datasource}")

#: Tag on every generated dashboard; the dashboards' link dropdown lists them by it.
TAG = "stackprobe"

#: Grafana's colour names for the catalogue's tiers: target met, target missed (no alert),
#: warning (amber) and critical.
GREEN, YELLOW, AMBER, RED = "green", "yellow", "orange", "red"

#: The Prometheus data source the provisioning files create; `$datasource` preselects it.
DATASOURCE_NAME = "Prometheus (stackprobe)"
DATASOURCE_UID = "stackprobe-prometheus"

#: Grafana limits dashboard UIDs to 40 characters.
_UID_MAX = 40


def uid(*parts: str) -> str:
    """A UID derived only from names, so links and bookmarks survive regeneration."""
    slug = "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in ("stackprobe", *parts))
    if len(slug) <= _UID_MAX:
        return slug
    digest = hashlib.sha256(slug.encode()).hexdigest()[:8]
    return f"{slug[: _UID_MAX - 9].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class Step:
    """A threshold step: from `value` upwards (None = from minus infinity) the colour is `color`."""

    value: float | None
    color: str


def thresholds(steps: Sequence[Step]) -> dash_b.ThresholdsConfig:
    """Absolute threshold steps; the first one must be the base step (value None)."""
    if not steps or steps[0].value is not None:
        raise ValueError("threshold steps start with the base step (value None)")
    return (
        dash_b.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps([dash_m.Threshold(value=s.value, color=s.color) for s in steps])
    )


#: One neutral colour for panels that have no good or bad values.
NEUTRAL = (Step(None, "text"),)
#: For 0/1 gauges where 1 is healthy.
BOOLEAN_OK = (Step(None, RED), Step(1, GREEN))


def up_down(ok: str = "OK", bad: str = "FAILED", bad_colour: str = RED) -> list[dash_m.ValueMapping]:
    """Show 1/0 gauges as words, coloured like BOOLEAN_OK (0 in `bad_colour` when 0 is a choice, not a fault)."""
    return [
        dash_m.ValueMap(
            options={
                "1": dash_m.ValueMappingResult(text=ok, color=GREEN, index=0),
                "0": dash_m.ValueMappingResult(text=bad, color=bad_colour, index=1),
            }
        )
    ]


def query(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False, table_format: bool = False) -> prom_b.Dataquery:
    """One PromQL target; instant queries feed stat and table panels, range queries graphs."""
    q = prom_b.Dataquery().expr(expr).ref_id(ref).legend_format(legend).datasource(DATASOURCE)
    q = q.instant() if instant else q.range()
    if table_format:
        q = q.format(prom_m.PromQueryFormat.TABLE)
    return q


def link(title: str, url: str) -> dash_b.DashboardLink:
    """A panel link that opens in a new tab (playbook sections, alert lists)."""
    return dash_b.DashboardLink(title).type(dash_m.DashboardLinkType.LINK).url(url).target_blank(True)


def stat_panel(
    title: str,
    description: str,
    targets: Iterable[prom_b.Dataquery],
    *,
    unit: str,
    steps: Sequence[Step] = NEUTRAL,
    decimals: int | None = None,
    mappings: list[dash_m.ValueMapping] | None = None,
    links: Sequence[dash_b.DashboardLink] = (),
    name_overrides: Sequence[tuple[str, list[dash_m.DynamicConfigValue]]] = (),
    width: int = 4,
    height: int = 4,
) -> stat.Panel:
    """The latest value per series, its background coloured by the threshold steps
    (`name_overrides`: field config for the series whose name matches a regexp)."""
    p = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .thresholds(thresholds(steps))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.AUTO)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(width)
        .height(height)
    )
    if decimals is not None:
        p = p.decimals(decimals)
    if mappings:
        p = p.mappings(mappings)
    if links:
        p = p.links(list(links))
    for regexp, props in name_overrides:
        p = p.override_by_regexp(regexp, props)
    return p


def timeseries_panel(
    title: str,
    description: str,
    targets: Iterable[prom_b.Dataquery],
    *,
    unit: str,
    steps: Sequence[Step] | None = None,
    decimals: int | None = None,
    stacked: bool = False,
    links: Sequence[dash_b.DashboardLink] = (),
    overrides: Sequence[tuple[str, list[dash_m.DynamicConfigValue]]] = (),
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    """A graph; given threshold steps, they are drawn as dashed lines across it."""
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
        .line_width(1)
        .fill_opacity(10 if stacked else 0)
        .span(width)
        .height(height)
    )
    if steps is not None:
        p = p.thresholds(thresholds(steps)).thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
    else:
        p = p.thresholds(thresholds(NEUTRAL)).thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.OFF)
        )
    if stacked:
        p = p.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    if decimals is not None:
        p = p.decimals(decimals)
    if links:
        p = p.links(list(links))
    for ref, props in overrides:
        p = p.override_by_query(ref, props)
    return p


def table_panel(
    title: str,
    description: str,
    target: prom_b.Dataquery,
    *,
    value_title: str,
    unit: str,
    steps: Sequence[Step] = NEUTRAL,
    decimals: int | None = None,
    sort_desc: bool = True,
    hide: Sequence[str] = ("Time",),
    width: int = 12,
    height: int = 8,
) -> table.Panel:
    """An instant query as rows (one per series, labels as columns), sorted by its value.

    The value column is renamed to `value_title` and, when `steps` colour it, shown with a
    coloured background, so the worst rows stand out once sorted.
    """
    coloured = tuple(steps) != NEUTRAL
    p = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(target)
        .unit(unit)
        .thresholds(thresholds(steps))
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        .sort_by([common_b.TableSortByFieldState().display_name(value_title).desc(sort_desc)])
        .with_transformation(
            dash_m.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {name: True for name in hide},
                    "renameByName": {"Value": value_title},
                },
            )
        )
        .span(width)
        .height(height)
    )
    if coloured:
        p = p.override_by_name(
            value_title,
            [dash_m.DynamicConfigValue(id_val="custom.cellOptions", value=common.TableColoredBackgroundCellOptions())],
        )
    if decimals is not None:
        p = p.decimals(decimals)
    return p


def datasource_variable() -> dash_b.DatasourceVariable:
    """`$datasource`, preselecting the provisioned Prometheus (any Prometheus can be picked)."""
    return (
        dash_b.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(dash_m.VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )


def label_variable(name: str, label: str, selector: str) -> dash_b.QueryVariable:
    """A multi-select of the values of label `name` on the series `selector` picks, "All" by default.

    "All" stands for `.*` so queries can always match it with `=~"$name"`.
    """
    return (
        dash_b.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({selector}, {name})")
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dash_m.VariableOption(selected=True, text="All", value="$__all"))
    )


def new_dashboard(title: str, uid_: str, description: str, *, time_from: str, refresh: str, tags: Sequence[str]) -> dash_b.Dashboard:
    """A dashboard with the shared settings: tags, time range, refresh, links to its siblings."""
    return (
        dash_b.Dashboard(title)
        .uid(uid_)
        .description(description)
        .tags([TAG, *tags])
        .time(time_from, "now")
        .refresh(refresh)
        .timezone("browser")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .link(
            dash_b.DashboardLink("stackprobe dashboards")
            .type(dash_m.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


class _NewLine:
    """Marker between items: the next panel starts at the left edge, below everything so far."""


NEWLINE = _NewLine()

#: What a dashboard is assembled from, top to bottom: row headers, panels and line breaks.
Item = dash_b.Row | cogbuilder.Builder[dash_m.Panel] | _NewLine

_GRID_WIDTH = 24


def assemble(builder: dash_b.Dashboard, items: Iterable[Item]) -> dash_m.Dashboard:
    """Place the items left to right, wrapping at the grid's width, and number the panels 1..n.

    Positions are computed here rather than by the SDK's builder, which places a panel at the
    current column even when it no longer fits; fixed ids keep regenerated files identical.
    """
    x = y = line_height = 0
    for item in items:
        if isinstance(item, (_NewLine, dash_b.Row)) or (x + item.build().grid_pos.w > _GRID_WIDTH):
            x, y, line_height = 0, y + line_height, 0
        if isinstance(item, _NewLine):
            continue
        if isinstance(item, dash_b.Row):
            builder = builder.with_row(item.grid_pos(dash_m.GridPos(h=1, w=_GRID_WIDTH, x=0, y=y)))
            y += 1
            continue
        pos = item.build().grid_pos
        pos.x, pos.y = x, y
        builder = builder.with_panel(item)
        x, line_height = x + pos.w, max(line_height, pos.h)
    model = builder.build()
    for i, panel in enumerate(model.panels or [], start=1):
        panel.id_val = i
    return model


def text_panel(title: str, description: str, markdown: str, *, width: int = 24, height: int = 8) -> text.Panel:
    """Static Markdown (no query)."""
    return (
        text.Panel()
        .title(title)
        .description(description)
        .mode(text_m.TextMode.MARKDOWN)
        .content(markdown)
        .span(width)
        .height(height)
    )


def to_json(model: dash_m.Dashboard) -> str:
    """Deterministic JSON (sorted keys, fixed indentation) so regenerated files do not drift."""
    return json.dumps(model, cls=JSONEncoder, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
