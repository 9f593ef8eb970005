"""Alertmanager time intervals as PromQL: 1 while the evaluation time is inside, else 0.

Planned maintenance has to be known to the rules, not only to Alertmanager's mute intervals:
an SLI that counts the downtime of a window keeps burn-rate and daily-average alerts firing
after the window closes. PromQL's time functions (`day_of_week()`, `hour()`, ...) read the
evaluation time in UTC, which is why the loader accepts only UTC maintenance windows.
"""

from __future__ import annotations

from .spec import MONTHS, WEEKDAYS, TimeInterval


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _range(function: str, start: int, end: int) -> str:
    return f"({function} == {start})" if start == end else f"({function} >= {start} <= {end})"


def _ranges(function: str, items: list[str], number) -> str:
    """`day_of_week()` in any of the items (`monday`, `monday:friday`): an `or` of filters."""
    parts = []
    for item in items:
        first, _, last = item.partition(":")
        parts.append(_range(function, number(first), number(last or first)))
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def interval(ti: TimeInterval) -> str:
    """`vector(1) and on() <condition> ...`: one series while every condition of `ti` holds, else none."""
    conditions = []
    if ti.weekdays:
        conditions.append(_ranges("day_of_week()", ti.weekdays, lambda d: WEEKDAYS.index(d.lower())))
    if ti.days_of_month:
        conditions.append(_ranges("day_of_month()", ti.days_of_month, int))
    if ti.months:
        conditions.append(_ranges("month()", ti.months,
                                  lambda m: int(m) if m.isdigit() else MONTHS.index(m.lower()) + 1))
    if ti.times:
        minute_of_day = "(hour() * 60 + minute())"
        parts = [f"({minute_of_day} >= {_minutes(t.start_time)} < {_minutes(t.end_time)})" for t in ti.times]
        conditions.append(parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")")
    return " and on() ".join(["vector(1)", *conditions])


def active(intervals: list[TimeInterval]) -> str:
    """1 inside any of the intervals, 0 outside (never absent, so dashboards and `unless` see it)."""
    return " or ".join(f"({interval(ti)})" for ti in intervals) + " or vector(0)"
