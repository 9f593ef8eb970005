"""`promtool test rules` files: for every alert and tier, inputs that fire it and inputs that do not.

Each indicator's `fixture` (rules/indicators.yaml) says which raw series make it equal a value v.
For a threshold alert the "fire" case feeds v just past the threshold (in the bad direction) and
expects nothing before the `for` has elapsed and the alert, with its exact labels and rendered
annotations, after it; the "inside" case feeds v just inside the threshold and expects silence.
Burn-rate alerts get error ratios 10 % above and below each pair's factor; the absent alert gets
a run without and with the service's series. Inputs are constant, so every window sees v.
"""

from __future__ import annotations

from typing import Any

import promql_parser

from stackprobe.configsource import format_duration

from ..fixture import evaluate
from ..model import KPI, Alert, Indicator, Model, Service
from ..promql import matchers, number, selector
from ..spec import FixtureSeries
from .files import HEADER, INDICATORS_FILE, TEST_STEP, dump, service_file, test_file

STEP = TEST_STEP  # seconds between input samples and between rule evaluations
#: Indicators compared with last week need a week of input: sampled every 4 minutes instead,
#: in a test file of their own (promtool's evaluation interval is per file). It must stay under
#: the 5m lookback: promtool evaluates rule groups in random order, so an alert may read the
#: recorded series of the previous evaluation.
SLOW_STEP = 240
MARGIN = 0.05  # how far past / inside a threshold the test values are (relative)


# --- test values ------------------------------------------------------------------------------

def test_values(kpi: KPI, indicator: Indicator, threshold: float) -> tuple[float, float]:
    """(a value that violates the threshold, a value just inside it)."""
    bad = 1 if kpi.comparison == "above" else -1
    if indicator.unit == "short" and indicator.window is None and threshold == int(threshold):
        return threshold + bad, threshold  # integer gauges (up, failed, lengths): the exact boundary
    delta = MARGIN * abs(threshold) or 0.01
    if indicator.unit == "percentunit" and threshold < 1:
        delta = min(delta, (1 - threshold) / 2)  # stay a valid ratio
    return threshold + bad * delta, threshold - bad * delta


# --- input series -------------------------------------------------------------------------------

def _parse_series(text: str) -> tuple[str, dict[str, str]]:
    """A fixture's `name{label="value",...}`: its name and labels (the spec checked the form)."""
    node = promql_parser.parse(text)
    assert isinstance(node, promql_parser.VectorSelector) and node.name, text
    return node.name, {m.name: m.value for m in node.matchers.matchers if m.name != "__name__"}


def _series(name: str, labels: dict[str, str]) -> str:
    """promtool's series notation: labels sorted, no spaces."""
    return selector(name, matchers(dict(sorted(labels.items()))), sep=",")


def _values(fx: FixtureSeries, v: float, samples: int, shift: int, step: int) -> str:
    """promtool's expanding notation for `samples` values at `step` spacing."""
    def seg(start: float, step: float, count: int) -> str:
        return f"{number(start)}{'+' if step >= 0 else '-'}{number(abs(step))}x{count}"

    if fx.clock is not None:  # a timestamp `clock` seconds from each sample's own time
        return seg(evaluate(fx.clock, v), step, samples - 1)
    expr = fx.gauge if fx.gauge is not None else fx.counter
    assert expr is not None
    now = evaluate(expr, v)
    before = evaluate(fx.before, v) if fx.before is not None else now
    if fx.gauge is not None:
        parts = [seg(before, 0, shift - 1), seg(now, 0, samples - shift - 1)] if shift else [seg(now, 0, samples - 1)]
    else:
        parts = ([seg(0, before * step, shift - 1), seg(before * step * shift, now * step, samples - shift - 1)]
                 if shift else [seg(0, now * step, samples - 1)])
    return " ".join(parts)


def _histogram(name: str, labels: dict[str, str], q: float, v: float, samples: int, step: int) -> list[dict[str, str]]:
    """Buckets at v/2 and 2v (and +Inf) filled so that histogram_quantile(q) interpolates to v exactly."""
    inside = 1.0  # observations per second in (v/2, 2v]
    below = inside * (q - 1 / 3) / (1 - q)  # observations per second in (0, v/2]
    cumulative = {number(v / 2): below, number(2 * v): below + inside, "+Inf": below + inside}
    return [{"series": _series(name + "_bucket", {**labels, "le": le}),
             "values": f"0+{number(rate * step)}x{samples - 1}"} for le, rate in cumulative.items()]


def step_of(indicator: Indicator | None) -> int:
    return SLOW_STEP if indicator is not None and (indicator.fixture_shift or 0) >= 86400 else STEP


def inputs(kpi: KPI, indicator: Indicator, v: float, samples: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Input series making the indicator equal v for this KPI, and the recorded series' labels."""
    base = {"service": kpi.service, "target": f"{kpi.service}-1"} if indicator.provider == "stackprobe" \
        else dict(indicator.match)
    base.update({label: f"{label}-1" for label in indicator.aggregation_labels})
    step = step_of(indicator)
    shift = int((indicator.fixture_shift or 0) // step)
    out: list[dict[str, str]] = []
    recorded: dict[str, str] = {}
    for fx in indicator.fixture:
        name, own = _parse_series(fx.series)
        labels = {**base, **own, **kpi.match}
        recorded.update({k: val for k, val in labels.items() if k in indicator.labels})
        if fx.quantile is not None:
            out += _histogram(name, labels, fx.quantile, v, samples, step)
        else:
            out.append({"series": _series(name, labels), "values": _values(fx, v, samples, shift, step)})
    recorded["service"] = kpi.service
    return out, recorded


# --- expected alerts ------------------------------------------------------------------------------

def _expected(alert: Alert, series_labels: dict[str, str], value: float | None = None) -> dict[str, Any]:
    labels = {**series_labels, **alert.labels}
    return {"exp_labels": labels,
            "exp_annotations": {k: t.render(labels, value) for k, t in alert.annotations.items()}}


def _steps(seconds: float, step: int) -> int:
    return int(-(-seconds // step))


def _at(steps: int, step: int) -> str:
    return format_duration(steps * step) if steps else "0s"


# --- test cases -----------------------------------------------------------------------------------

def _threshold_cases(alert: Alert) -> list[dict[str, Any]]:
    kpi, ind, tier = alert.kpi, alert.indicator, alert.tier
    assert kpi and ind and tier
    bad, ok = test_values(kpi, ind, tier.threshold)
    step = step_of(ind)
    interval = format_duration(step)
    shift = _steps(ind.fixture_shift or 0, step)
    held = _steps(alert.for_, step)
    # The recorded value is v once the indicator's own window is past the shift; then `for` runs.
    fire_at = shift + _steps(ind.window or 0, step) + held + 2
    samples = fire_at + 1
    cases = []
    series, recorded = inputs(kpi, ind, bad, samples)
    checks: list[dict[str, Any]] = []
    if held >= 2:  # still pending: not yet `for` since the value could first have crossed
        checks.append({"eval_time": _at(shift + held - 1, step), "alertname": alert.name, "exp_alerts": []})
    checks.append({"eval_time": _at(fire_at, step), "alertname": alert.name,
                   "exp_alerts": [_expected(alert, recorded, bad)]})
    cases.append({"name": f"{alert.name}: {ind.format(bad)} fires after {format_duration(alert.for_) if alert.for_ else '0s'}",
                  "interval": interval, "input_series": series, "alert_rule_test": checks})
    series, _ = inputs(kpi, ind, ok, samples)
    cases.append({"name": f"{alert.name}: {ind.format(ok)} stays inside the threshold",
                  "interval": interval, "input_series": series,
                  "alert_rule_test": [{"eval_time": _at(fire_at, step), "alertname": alert.name, "exp_alerts": []}]})
    return cases


def _burn_rate_cases(alert: Alert) -> list[dict[str, Any]]:
    kpi, ind, tier, burn_window = alert.kpi, alert.indicator, alert.tier, alert.burn
    assert kpi and ind and tier and burn_window
    budget = 1 - tier.threshold
    at = 10  # minutes; the inputs are constant, so every window's average is the same
    cases = []
    for label, burn in (("fires", burn_window.factor * (1 + 2 * MARGIN)), ("stays quiet", burn_window.factor * (1 - 2 * MARGIN))):
        series, recorded = inputs(kpi, ind, 1 - burn * budget, at + 1)
        expected = [_expected(alert, recorded, burn)] if label == "fires" else []
        cases.append({"name": f"{alert.name}: burning {burn:.2f}x the budget {label}", "interval": format_duration(STEP),
                      "input_series": series,
                      "alert_rule_test": [{"eval_time": _at(at, STEP), "alertname": alert.name, "exp_alerts": expected}]})
    return cases


def _absent_cases(alert: Alert) -> list[dict[str, Any]]:
    fire_at = _steps(alert.for_, STEP) + 2
    values = f"1+0x{fire_at}"
    other = {"series": _series("stackprobe_probe_success", {"service": "some-other-service", "target": "t",
                                                               "prober": "http"}), "values": values}
    own = {"series": _series("stackprobe_probe_success", {"service": alert.service, "target": f"{alert.service}-1",
                                                          "prober": "http"}), "values": values}
    expected = _expected(alert, {})
    return [
        {"name": f"{alert.name}: no series of the service fires", "interval": format_duration(STEP), "input_series": [other],
         "alert_rule_test": [{"eval_time": _at(fire_at, STEP), "alertname": alert.name, "exp_alerts": [expected]}]},
        {"name": f"{alert.name}: reporting targets keep it quiet", "interval": format_duration(STEP), "input_series": [own, other],
         "alert_rule_test": [{"eval_time": _at(fire_at, STEP), "alertname": alert.name, "exp_alerts": []}]},
    ]


def cases(service: Service) -> dict[int, list[dict[str, Any]]]:
    """The service's test cases by evaluation step (seconds)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for alert in service.alerts:
        if alert.kind == "threshold":
            new = _threshold_cases(alert)
        elif alert.kind == "burn_rate":
            new = _burn_rate_cases(alert)
        else:
            new = _absent_cases(alert)
        out.setdefault(step_of(alert.indicator) if alert.kind == "threshold" else STEP, []).extend(new)
    return out


def emit(model: Model) -> dict[str, str]:
    out = {}
    for service in model.services:
        # Paths are relative to the test file.
        rule_files = [f"../{INDICATORS_FILE.rsplit('/', 1)[1]}", f"../{service_file(service.id).rsplit('/', 1)[1]}"]
        for step, tests in sorted(cases(service).items()):
            doc = {"rule_files": rule_files, "evaluation_interval": format_duration(step), "tests": tests}
            out[test_file(service.id, step)] = HEADER + dump(doc)
    return out
