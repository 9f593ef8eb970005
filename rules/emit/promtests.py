"""`promtool test rules` files: for every alert and tier, inputs that fire it and inputs that do not.

Each indicator's `fixture` (rules/indicators.yaml) says which raw series make it equal a value v.
For a threshold alert the "fire" case feeds v just past the threshold (in the bad direction) and
expects nothing before the `for` has elapsed and the alert, with its exact labels and rendered
annotations, after it; the "inside" case feeds v just inside the threshold and expects silence.
Burn-rate alerts get error ratios 10 % above and below each pair's factor; the absent alert gets
a run without and with the service's series. Inputs are constant, so every window sees v.

Then the semantic matrix (`matrix_cases`): for every alert, each condition that pages people
wrongly and applies to it (a single bad sample, the data source gone, one failed probe while
firing, no traffic, recovery after an outage, an exporter restart), with what must happen
stated in the case's name and checked. Planned maintenance (`maintenance_cases`) goes in the
service's 4-minute file: its windows are days into promtool's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import promql_parser

from stackprobe.configsource import format_duration, parse_duration
from stackprobe.exporter.probers import PROBERS
from stackprobe.exporter.snapshot import KEEP_SAMPLES_THROUGH_FAILURES

from ..fixture import evaluate
from ..model import KPI, Alert, Indicator, Model, Service, prober_of
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
    if fx.clock is not None:  # a timestamp `clock` seconds from each sample's own time
        return _segment(evaluate(fx.clock, v), step, samples - 1)
    expr = fx.gauge if fx.gauge is not None else fx.counter
    assert expr is not None
    now = evaluate(expr, v)
    before = evaluate(fx.before, v) if fx.before is not None else now
    if fx.gauge is not None:
        parts = [_segment(before, 0, shift - 1), _segment(now, 0, samples - shift - 1)] if shift else [_segment(now, 0, samples - 1)]
    else:
        parts = ([_segment(0, before * step, shift - 1), _segment(before * step * shift, now * step, samples - shift - 1)]
                 if shift else [_segment(0, now * step, samples - 1)])
    return " ".join(parts)


def _histogram(name: str, labels: dict[str, str], q: float, v: float, samples: int, step: int) -> list[dict[str, str]]:
    """Buckets at v/2 and 2v (and +Inf) filled so that histogram_quantile(q) interpolates to v exactly."""
    return [{"series": _series(name + "_bucket", {**labels, "le": le}),
             "values": f"0+{number(rate * step)}x{samples - 1}"} for le, rate in _bucket_rates(q, v).items()]


def _bucket_rates(q: float, v: float) -> dict[str, float]:
    """Cumulative observations per second by `le`: one per second in (v/2, 2v], and in (0, v/2]
    what makes histogram_quantile(q) interpolate to v."""
    inside = 1.0
    below = inside * (q - 1 / 3) / (1 - q)
    return {number(v / 2): below, number(2 * v): below + inside, "+Inf": below + inside}


def step_of(indicator: Indicator | None) -> int:
    return SLOW_STEP if indicator is not None and (indicator.fixture_shift or 0) >= 86400 else STEP


def inputs(kpi: KPI, indicator: Indicator, v: float, samples: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Input series making the indicator equal v for this KPI, and the recorded series' labels."""
    step = step_of(indicator)
    shift = int((indicator.fixture_shift or 0) // step)
    fixture, recorded = _fixture_series(kpi, indicator)
    out: list[dict[str, str]] = []
    for fx, name, labels in fixture:
        if fx.quantile is not None:
            out += _histogram(name, labels, fx.quantile, v, samples, step)
        else:
            out.append({"series": _series(name, labels), "values": _values(fx, v, samples, shift, step)})
    return out, recorded


def _fixture_series(kpi: KPI, indicator: Indicator, target: str | None = None
                    ) -> tuple[list[tuple[FixtureSeries, str, dict[str, str]]], dict[str, str]]:
    """Each fixture series of the indicator with its name and labels for this KPI (on `target`),
    and the labels of the series the indicator records from them."""
    base = {"service": kpi.service, "target": target or f"{kpi.service}-1"} if indicator.provider == "stackprobe" \
        else dict(indicator.match)
    base.update({label: f"{label}-1" for label in indicator.aggregation_labels})
    out, recorded = [], {}
    for fx in indicator.fixture:
        name, own = _parse_series(fx.series)
        labels = {**base, **own, **kpi.match}
        recorded.update({k: val for k, val in labels.items() if k in indicator.labels})
        out.append((fx, name, labels))
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


# --- inputs that change over time (the semantic matrix) -----------------------------------------

@dataclass(frozen=True)
class Phase:
    """`samples` input samples at the indicator value `v`; v None = no sample at all (the source
    is gone); `reset` = counters start again from 0 (the exporter restarted); `scale` multiplies
    counter rates (0 = no traffic at all)."""

    samples: int
    v: float | None
    reset: bool = False
    scale: float = 1.0


def _segment(start: float, step: float, count: int) -> str:
    """promtool's `start+stepxcount` (count + 1 values)."""
    return f"{number(start)}{'+' if step >= 0 else '-'}{number(abs(step))}x{count}"


def _timeline(fx: FixtureSeries, phases: list[Phase], step: int) -> str:
    parts, value, t, started = [], 0.0, 0, False
    for ph in phases:
        n = ph.samples
        if ph.v is None:
            parts.append(f"_x{n}")
        elif fx.gauge is not None:
            parts.append(_segment(evaluate(fx.gauge, ph.v), 0, n - 1))
        elif fx.clock is not None:
            parts.append(_segment(evaluate(fx.clock, ph.v) + t * step, step, n - 1))
        else:
            assert fx.counter is not None
            increment = evaluate(fx.counter, ph.v) * step * ph.scale
            first = 0.0 if ph.reset or not started else value + increment
            parts.append(_segment(first, increment, n - 1))
            value, started = first + increment * (n - 1), True
        t += n
    return " ".join(parts)


def mixable(indicator: Indicator) -> bool:
    """Can the inputs change value mid-test? (histogram buckets are placed around one value)"""
    return all(fx.quantile is None for fx in indicator.fixture)


def timeline_inputs(kpi: KPI, indicator: Indicator, phases: list[Phase], step: int = STEP,
                    target: str | None = None) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Like `inputs`, with values changing phase by phase (histograms: one value; gaps, resets)."""
    fixture, recorded = _fixture_series(kpi, indicator, target)
    out: list[dict[str, str]] = []
    for fx, name, labels in fixture:
        if fx.quantile is not None:
            [v] = {ph.v for ph in phases if ph.v is not None}
            for le, rate in _bucket_rates(fx.quantile, v).items():
                bucket = FixtureSeries(series=name, counter=number(rate))
                out.append({"series": _series(name + "_bucket", {**labels, "le": le}),
                            "values": _timeline(bucket, phases, step)})
        else:
            out.append({"series": _series(name, labels), "values": _timeline(fx, phases, step)})
    return out, recorded


def _case(name: str, series: list[dict[str, str]], checks: list[dict[str, Any]], interval: int = STEP) -> dict[str, Any]:
    return {"name": name, "interval": format_duration(interval), "input_series": series, "alert_rule_test": checks}


def _check(alert: Alert, at: int, expected: list[dict[str, Any]], step: int = STEP) -> dict[str, Any]:
    return {"eval_time": _at(at, step), "alertname": alert.name, "exp_alerts": expected}


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


def _target_absent_cases(service: Service, alert: Alert) -> list[dict[str, Any]]:
    """The lost-shard alert: the target's series vanish (stale) while its exporter instance is
    down fires; vanishing with the instance up (target removed) stays quiet; so does a target
    whose exporter comes back within the lookback."""
    target, prober, instance = f"{alert.service}-1", "http", "stackprobe-0:9000"
    extra = {label: f"{label}-1" for label in service.aggregation_labels}
    labels = {**_probe_labels(service, target, prober), "instance": instance}
    up = {"job": "stackprobe", "instance": instance, **extra}
    before, held = 5, _steps(alert.for_, STEP)
    fire_at = before + held + 2
    back = fire_at + 2

    def probe(values: str) -> dict[str, str]:
        return {"series": _series("stackprobe_probe_success", labels), "values": values}

    def exporter(values: str) -> dict[str, str]:
        return {"series": _series("up", up), "values": values}

    vanished = f"1+0x{before - 1} stale"
    return [
        _case(f"{alert.name}: the target's series vanish with its exporter down fires", [
            probe(vanished), exporter(f"1+0x{before - 1} 0+0x{fire_at}")],
            [_check(alert, before + 1, []), _check(alert, fire_at, [_expected(alert, labels)])]),
        _case(f"{alert.name}: a target removed while its exporter stays up stays quiet", [
            probe(vanished), exporter(f"1+0x{fire_at}")], [_check(alert, fire_at, [])]),
        _case(f"{alert.name}: the exporter back with the target's series stops it", [
            probe(f"1+0x{before - 1} stale _x{back - before - 1} 1+0x{held}"),
            exporter(f"1+0x{before - 1} 0+0x{back - before - 1} 1+0x{held}")],
            [_check(alert, fire_at, [_expected(alert, labels)]), _check(alert, back, []),
             _check(alert, back + held, [])]),
    ]


def _probe_labels(service: Service, target: str, prober: str) -> dict[str, str]:
    return {"service": service.id, "target": target, "prober": prober,
            **{label: f"{label}-1" for label in service.aggregation_labels}}


def _gauge_values(phases: list[Phase]) -> str:
    """promtool's values of a gauge that holds each phase's value (None: no sample)."""
    return " ".join(f"_x{ph.samples}" if ph.v is None else f"{number(ph.v)}+0x{ph.samples - 1}" for ph in phases)


def _probe_series(service: Service, target: str, prober: str, phases: list[Phase]) -> dict[str, str]:
    """stackprobe_probe_success of one target: the phases' values (1 ok, 0 failed)."""
    labels = _probe_labels(service, target, prober)
    return {"series": _series("stackprobe_probe_success", labels), "values": _gauge_values(phases)}


def _liveness_cases(service: Service, alert: Alert) -> list[dict[str, Any]]:
    """A probe failing for `for` fires; a single failed probe among good ones does not."""
    prober = alert.labels["kpi"].removesuffix("_probe")
    target = f"{alert.service}-1"
    held = _steps(alert.for_, STEP)
    fire_at = held + 2
    labels = _probe_labels(service, target, prober)
    failing = _probe_series(service, target, prober, [Phase(fire_at + 1, 0)])
    blip = _probe_series(service, target, prober, [Phase(3, 1), Phase(1, 0), Phase(fire_at, 1)])
    return [
        _case(f"{alert.name}: the {prober} probe failing for {format_duration(alert.for_)} fires", [failing],
              [_check(alert, fire_at, [_expected(alert, labels)])]),
        _case(f"{alert.name} [blip]: one failed {prober} probe raises nothing", [blip],
              [_check(alert, 3 + k, []) for k in (0, 1, held, held + 1)]),
    ]


# --- collectors: one section of a probe failing while the probe succeeds ------------------------

def _collector_prober(alert: Alert) -> str:
    return alert.labels["kpi"].removesuffix("_collector")


def _collector_labels(service: Service, collector: str, target: str | None = None) -> dict[str, str]:
    """The labels of one section's collector_success (raw and recorded, so the alert's) on
    `target`, by default the service's first."""
    return {"service": service.id, "target": target or f"{service.id}-1", "collector": collector,
            **{label: f"{label}-1" for label in service.aggregation_labels}}


def _collector_series(service: Service, alert: Alert, collector: str, values: str,
                      target: str | None = None) -> dict[str, str]:
    """stackprobe_<prober>_collector_success of one section on `target`."""
    return {"series": _series(f"stackprobe_{_collector_prober(alert)}_collector_success",
                              _collector_labels(service, collector, target)), "values": values}


def _others(service: Service, alert: Alert, failing: str, values: str) -> list[dict[str, str]]:
    """The watched sections other than `failing`, all with these values."""
    return [_collector_series(service, alert, c, values) for c in alert.blinds if c != failing]


def _kept_samples(alert: Alert) -> int:
    """How many samples a failed probe's target keeps its last success's series (the exporter's
    KEEP_SAMPLES_THROUGH_FAILURES failed probes at the prober's default interval)."""
    interval = PROBERS[_collector_prober(alert)].target_model.default_interval
    return _steps(KEEP_SAMPLES_THROUGH_FAILURES * interval, STEP)


def _collector_alerts(service: Service) -> list[Alert]:
    return [a for a in service.alerts if a.kind == "collector"]


def _collector_cases(service: Service, alert: Alert) -> list[dict[str, Any]]:
    """Each watched section failing for `for` fires (one failure among successes does not); a
    section no KPI reads failing does not; a failing probe, whose kept series vanish after 2
    failed probes, leaves it quiet and its liveness alert fires, and a section that was failing
    hands over to that liveness alert once its kept series vanish."""
    prober = _collector_prober(alert)
    held = _steps(alert.for_, STEP)
    fire_at = held + 2
    out = []
    for collector in alert.blinds:
        failing = _collector_series(service, alert, collector, f"0+0x{fire_at}")
        blip = _collector_series(service, alert, collector, f"1+0x2 0 1+0x{fire_at}")
        out += [
            _case(f"{alert.name}: the {collector} section failing for {format_duration(alert.for_)} fires",
                  [failing, *_others(service, alert, collector, f"1+0x{fire_at}")],
                  [_check(alert, held - 1, []),
                   _check(alert, fire_at, [_expected(alert, _collector_labels(service, collector))])]),
            _case(f"{alert.name} [blip]: the {collector} section failing once raises nothing",
                  [blip, *_others(service, alert, collector, f"1+0x{fire_at + 3}")],
                  [_check(alert, 3 + k, []) for k in (0, 1, held, held + 1)]),
        ]
    unneeded = [c for c in PROBERS[prober].collectors if c not in alert.blinds]
    if unneeded:
        out.append(_case(f"{alert.name}: sections no KPI of {service.id} reads failing ({', '.join(unneeded)}) "
                         f"raise nothing",
                         [_collector_series(service, alert, c, f"0+0x{fire_at}") for c in unneeded]
                         + _others(service, alert, "", f"1+0x{fire_at}"), [_check(alert, fire_at, [])]))
    blinded = next(a for a in service.alerts if a.name == next(iter(alert.blinds.values()))[0])
    live = blinding_alert(service, blinded)
    assert live is not None, f"{alert.name}: no liveness alert for the {prober} probe"
    kept = _kept_samples(alert)

    def vanish(last: int) -> str:
        """The last success's value while the exporter keeps it, then dropped."""
        return f"{last}+0x{kept - 1} stale"

    samples = max(_fire_time(live), kept) + 3
    series, live_expected = _source_gone(service, live, samples)
    out.append(_case(f"{alert.name} [probe failed]: the {prober} probe fails and the sections' kept series "
                     f"vanish after {KEEP_SAMPLES_THROUGH_FAILURES} probes: quiet; {live.name} fires",
                     series + _others(service, alert, "", vanish(1)),
                     [_check(alert, k, []) for k in (1, held + 2, kept + 1, samples - 1)]
                     + [_check(live, samples - 1, [live_expected])]))
    collector = next(iter(alert.blinds))
    before = fire_at + 1  # firing when the probe starts failing
    samples = before + max(_fire_time(live), kept) + 3
    series, live_expected = _source_gone(service, live, samples, healthy=before)
    failing = _collector_series(service, alert, collector, f"0+0x{before - 1} {vanish(0)}")
    out.append(_case(f"{alert.name} [probe failed]: the {collector} section failing, then the whole probe: firing "
                     f"while its series are kept, quiet once they vanish; {live.name} fires (and inhibits it)",
                     series + [failing, *_others(service, alert, collector, f"1+0x{before - 1} {vanish(1)}")],
                     [_check(alert, before + kept - 1, [_expected(alert, _collector_labels(service, collector))]),
                      _check(alert, before + kept + 2, []), _check(live, samples - 1, [live_expected])]))
    return out


def _exporter_match(service: Service, provider: str) -> dict[str, str]:
    return dict(next(i.match for i in service.indicators if i.provider == provider))


def _external_absent_cases(service: Service, alert: Alert) -> list[dict[str, Any]]:
    """No series of the exporter fires after the window; its series present keep it quiet."""
    match = _exporter_match(service, alert.labels["kpi"].removesuffix("_absent"))
    window = _steps(service.absent_for, STEP)
    metrics = [part.split("{", 1)[0] for part in alert.expr.split("absent_over_time(")[1:]]
    present = [{"series": _series(m, match), "values": f"1+0x{window + 2}"} for m in metrics]
    other = {"series": _series(metrics[0], {"service": "some-other-service"}), "values": f"1+0x{window + 2}"}
    return [
        _case(f"{alert.name}: no series of the exporter for {format_duration(service.absent_for)} fires", [other],
              [_check(alert, window + 2, [_expected(alert, match)])]),
        _case(f"{alert.name}: the exporter's series keep it quiet", present, [_check(alert, window + 2, [])]),
    ]


# --- the semantic matrix: what must happen under the conditions that page people wrongly -------

OUTAGE = 30  # samples (minutes) a data source is gone or idle in the recovery cases


def blinding_alert(service: Service, alert: Alert) -> Alert | None:
    """The liveness alert that speaks when this alert's data source is gone (None: the alert is
    itself a liveness alert, or reads the probe results directly)."""
    kpi, ind = alert.kpi, alert.indicator
    assert kpi is not None and ind is not None
    if ind.provider != "stackprobe":
        return next(a for a in service.alerts if a.kind == "external_absent" and a.labels["kpi"] == f"{ind.provider}_absent")
    prober = prober_of(kpi)
    if prober is None or ind.liveness:
        return None
    return next((a for a in service.alerts if a.kind == "liveness" and a.labels["kpi"] == f"{prober}_probe"), None) or next(
        a for a in service.alerts if a.kind == "threshold" and a.indicator is not None and a.indicator.liveness
        and a.kpi is not None and prober_of(a.kpi) == prober)


def _source_gone(service: Service, live: Alert, samples: int, healthy: int = 0
                 ) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Inputs of a data source that dies after `healthy` samples as the liveness alert sees them,
    and that alert's expected firing."""
    if live.kind == "external_absent":
        assert not healthy
        match = _exporter_match(service, live.labels["kpi"].removesuffix("_absent"))
        other = {"series": _series("up", {"service": "some-other-service"}), "values": f"1+0x{samples - 1}"}
        return [other], _expected(live, match)
    target = f"{service.id}-1"
    phases = [ph for ph in (Phase(healthy, 1), Phase(samples - healthy, 0)) if ph.samples]
    if live.kind == "liveness":
        prober = live.labels["kpi"].removesuffix("_probe")
        labels = _probe_labels(service, target, prober)
        return [_probe_series(service, target, prober, phases)], _expected(live, labels)
    assert live.kpi is not None and live.indicator is not None
    series, recorded = timeline_inputs(live.kpi, live.indicator, phases)
    probe = _probe_series(service, target, prober_of(live.kpi) or "", phases)
    if probe["series"] not in {s["series"] for s in series}:
        series.append(probe)
    return series, _expected(live, recorded, 0)


def _fire_time(alert: Alert, step: int = STEP) -> int:
    """Samples from the first bad input until the alert fires (constant inputs)."""
    window = _steps(alert.indicator.window or 0, step) if alert.indicator else 0
    if alert.kind == "burn_rate":
        return window + 2
    return window + _steps(alert.for_, step) + 2


def _bad_and_ok(alert: Alert) -> tuple[float, float]:
    """(an input value that fires the alert, one that does not)."""
    kpi, ind, tier = alert.kpi, alert.indicator, alert.tier
    assert kpi is not None and ind is not None and tier is not None
    if alert.kind == "burn_rate":
        assert alert.burn is not None
        budget = 1 - tier.threshold
        return 1 - alert.burn.factor * (1 + 2 * MARGIN) * budget, 1 - alert.burn.factor * (1 - 2 * MARGIN) * budget
    return test_values(kpi, ind, tier.threshold)


def _shown(alert: Alert, v: float) -> float:
    """The alert's $value for an input value (a burn-rate alert shows the burn factor)."""
    if alert.kind == "burn_rate":
        assert alert.tier is not None
        return (1 - v) / (1 - alert.tier.threshold)
    return v


def _events_per_second(indicator: Indicator, v: float) -> float:
    return sum(evaluate(fx.counter, v) for fx in indicator.fixture if fx.counter is not None)


def _mildest_ok(alerts: list[Alert]) -> float:
    """An input value inside every one of these alerts' thresholds (one KPI, one indicator)."""
    values = [_bad_and_ok(a)[1] for a in alerts]
    assert alerts[0].kpi is not None
    return min(values) if alerts[0].kpi.comparison == "above" else max(values)


def matrix_groups(service: Service) -> dict[tuple[str, str], list[Alert]]:
    """The service's threshold and burn-rate alerts by (KPI, indicator): one input feeds them all."""
    groups: dict[tuple[str, str], list[Alert]] = {}
    for a in service.alerts:
        if a.kind in ("threshold", "burn_rate") and a.kpi and a.indicator:
            groups.setdefault((a.kpi.id, a.indicator.id), []).append(a)
    return groups


def matrix_cases(service: Service, alerts: list[Alert]) -> list[dict[str, Any]]:
    """The semantic matrix of a KPI's alerts on one indicator: per condition one input, checked
    against each alert; each case's name states what must happen."""
    first = alerts[0]
    kpi, ind = first.kpi, first.indicator
    if kpi is None or ind is None or step_of(ind) != STEP:
        return []
    bad, ok = _worst(alerts), _mildest_ok(alerts)
    names = ", ".join(a.name for a in alerts)
    fire = {a.name: _fire_time(a) for a in alerts}
    held = {a.name: _steps(a.for_, STEP) for a in alerts}
    window = _steps(ind.window or 0, STEP)
    longest = max(fire.values())
    thresholds = [a for a in alerts if a.kind == "threshold"]
    out = []

    def firing(a: Alert, recorded: dict[str, str]) -> list[dict[str, Any]]:
        return [_expected(a, recorded, _shown(a, bad))]

    # A single bad sample: quiet whenever it cannot last `for` (gauges; windowed indicators whose
    # `for` outlasts their window). Burn-rate alerts on a probe-based SLI see one failed probe at
    # the SLI's resolution after two hours of good ones: fewer samples than the long windows
    # hold, so the failure weighs more than in steady state (the paging 1 h and 6 h pairs; the
    # loader's resolution check proves the same arithmetic for every pair).
    probed = kpi.indicator
    paging = [a for a in alerts if a.kind == "burn_rate" and a.burn and parse_duration(a.burn.long) <= 6 * 3600]
    if paging and probed is not None and probed.resolution:
        per = int(probed.resolution)
        good = int(2 * 3600 / per)  # two hours of probes either side of the failed one
        [fx] = probed.fixture
        assert fx.gauge is not None
        name, own = _parse_series(fx.series)
        labels = {"service": service.id, "target": f"{service.id}-1", **own,
                  **{label: f"{label}-1" for label in probed.aggregation_labels}}
        up, down = number(evaluate(fx.gauge, 1)), number(evaluate(fx.gauge, 0))
        blip_at = (good + 1) * per // STEP
        out.append(_case(f"{', '.join(a.name for a in paging)} [blip]: one failed {format_duration(per)} probe "
                         f"raises no burn-rate alert",
                         [{"series": _series(name, labels), "values": f"{up}+0x{good} {down} {up}+0x{good}"}],
                         [_check(a, blip_at + k, []) for a in paging for k in (1, 5, 30, 60)], interval=per))
    blippable = [a for a in thresholds if held[a.name] >= 2 and a.for_ > (ind.window or 0) + STEP]
    if blippable and mixable(ind):
        tail = window + max(held[a.name] for a in blippable) + 5
        series, _ = timeline_inputs(kpi, ind, [Phase(10, ok), Phase(1, bad), Phase(tail, ok)])
        out.append(_case(f"{', '.join(a.name for a in blippable)} [blip]: one bad sample ({ind.format(bad)}) "
                         f"among good ones raises nothing", series,
                         [_check(a, 10 + k, []) for a in blippable
                          for k in (0, 1, held[a.name], window + held[a.name], window + held[a.name] + 2)]))

    live = blinding_alert(service, first) if thresholds else None
    if live is not None:
        # The data source gone: the alerts cannot see (quiet); the liveness alert says so.
        live_fire = _steps(service.absent_for, STEP) + 2 if live.kind == "external_absent" else _fire_time(live)
        samples = max(longest, live_fire) + 1
        series, live_expected = _source_gone(service, live, samples)
        out.append(_case(f"{names} [source gone]: no samples, so quiet; {live.name} fires", series,
                         [_check(a, samples - 1, []) for a in thresholds] + [_check(live, samples - 1, [live_expected])]))
        if live.kind != "external_absent":
            # One failed probe while firing: the exporter keeps the last samples (success 0 once);
            # the alerts stay firing and the liveness alert stays quiet.
            at = max(fire[a.name] for a in thresholds)
            series, recorded = inputs(kpi, ind, bad, at + 3)
            prober = live.labels["kpi"].removesuffix("_probe") if live.kind == "liveness" \
                else (prober_of(live.kpi) if live.kpi else None) or ""
            probe = _probe_series(service, f"{service.id}-1", prober, [Phase(at - 1, 1), Phase(1, 0), Phase(3, 1)])
            series = [x for x in series if x["series"] != probe["series"]] + [probe]
            out.append(_case(f"{names} [failed probe]: one failed probe while firing keeps them firing, "
                             f"{live.name} quiet", series,
                             [_check(a, k, firing(a, recorded)) for a in thresholds for k in (at, at + 1)]
                             + [_check(live, at + 1, [])]))

    if ind.traffic is not None and kpi.min_events is not None and mixable(ind):
        # No traffic, and traffic under the floor at a bad ratio: quiet.
        floor_window = max(parse_duration(a.burn.short) if a.burn else max(kpi.window or 0, ind.window or 0)
                           for a in alerts)
        scale = 0.5 * kpi.min_events / (floor_window * _events_per_second(ind, bad))
        for label, factor in (("no traffic at all", 0.0), (f"under {kpi.min_events} events", scale)):
            series, _ = timeline_inputs(kpi, ind, [Phase(longest + 2, bad, scale=factor)])
            out.append(_case(f"{names} [no traffic]: {label} at a bad ratio raises nothing", series,
                             [_check(a, fire[a.name] + k, []) for a in alerts for k in (0, 1)]))

    if (first.kind == "burn_rate" or kpi.window) and mixable(ind):
        # Recovery after an outage (source gone, or idle for ratios): long windows average the
        # samples there are, so the alerts are evaluable again within their short window.
        gone = Phase(OUTAGE, bad, scale=0.0) if ind.traffic is not None else Phase(OUTAGE, None)
        series, recorded = timeline_inputs(kpi, ind, [gone, Phase(longest + 2, bad)])
        out.append(_case(f"{names} [recovery]: {OUTAGE}m without data, then bad: each fires as if the outage had "
                         f"not been (long windows are not poisoned)", series,
                         [_check(a, OUTAGE + fire[a.name], firing(a, recorded)) for a in alerts]))

    if thresholds and any(fx.counter is not None or fx.quantile is not None for fx in ind.fixture):
        # An exporter restart: a missed scrape, then counters start from 0 again.
        tail = window + max(held[a.name] for a in thresholds) + 6
        restart = [Phase(10, bad), Phase(1, None), Phase(tail, bad, reset=True)]
        series, recorded = timeline_inputs(kpi, ind, restart)
        out.append(_case(f"{', '.join(a.name for a in thresholds)} [restart]: counters reset, still bad: each fires "
                         f"once its window is past the reset", series,
                         [_check(a, 13 + window + held[a.name], firing(a, recorded)) for a in thresholds]))
        series, _ = timeline_inputs(kpi, ind, [replace(ph, v=ok if ph.v is not None else None) for ph in restart])
        out.append(_case(f"{', '.join(a.name for a in thresholds)} [restart]: counters reset, values good: "
                         f"no false alarm", series,
                         [_check(a, 10 + k, []) for a in thresholds for k in (1, 2, window + 1, 3 + window + held[a.name])]))
    return out


# --- planned maintenance: inside a window vs the same downtime outside it ----------------------

#: promtool's clock starts on Thursday 1970-01-01 00:00 UTC; the first Sunday 02:00 is 74 h in,
#: and Thursday 02:00 is outside every window.
SUNDAY_0200 = 74 * 3600
THURSDAY_0200 = 2 * 3600
DOWNTIME = 2 * 3600


def _worst(alerts: list[Alert]) -> float:
    """An input value that fires every one of these alerts (one KPI, one indicator)."""
    values = [_bad_and_ok(a)[0] for a in alerts]
    assert alerts[0].kpi is not None
    return max(values) if alerts[0].kpi.comparison == "above" else min(values)


def _maintenance_groups(service: Service) -> dict[tuple[str, str], list[Alert]]:
    """The matrix groups a downtime run feeds: no week-over-week ones (a week of input), and not
    the maintenance switch's own KPI."""
    return {key: group for key, group in matrix_groups(service).items()
            if not (group[0].indicator and group[0].indicator.fixture_shift) and key[0] != service.maintenance_mode_kpi}


@dataclass
class _Run:
    """One promtool run of several KPIs' inputs side by side."""

    series: list[dict[str, str]]
    checks: list[dict[str, Any]]
    #: metric name -> whether a service-level indicator (aggregating every target) reads it
    metrics: dict[str, bool]
    #: indicators fed here: an alert sees every target of its indicator, not only its KPI's own
    indicators: set[str]

    def fits(self, own: list[dict[str, str]], indicator: str, service_level: bool) -> bool:
        """Inputs fit unless their indicator is fed already, a series is already here, or a
        service-level average would mix them."""
        names = {_parse_series(x["series"])[0] for x in own}
        taken = {x["series"] for x in self.series}
        return indicator not in self.indicators and not ({x["series"] for x in own} & taken) and not any(
            n in self.metrics and (service_level or self.metrics[n]) for n in names)


def _downtime_runs(service: Service, begin: int, length: int, step: int, quiet: bool) -> list[_Run]:
    """Every KPI bad for `length` samples from `begin` (nothing before, good after), each KPI on
    its own target, packed into as few runs as keep their inputs apart, and the first section
    each collector alert watches failing as long (in the first run: no KPI reads collector_success).
    The checks: the muted priorities quiet during and after (when `quiet`), everything else fires."""
    runs: list[_Run] = []

    def expect(run: _Run, a: Alert, recorded: dict[str, str], v: float) -> None:
        fire_at = begin + _fire_time(a, step)
        muted = quiet and a.labels["priority"] in service.muted
        run.checks.append(_check(a, fire_at, [] if muted else [_expected(a, recorded, _shown(a, v))], step))
        if muted:  # and after the window: nothing either
            run.checks += [_check(a, begin + length + k, [], step) for k in (3, 15)]

    for (kpi_id, _), group in _maintenance_groups(service).items():
        kpi, ind = group[0].kpi, group[0].indicator
        assert kpi is not None and ind is not None
        v = _worst(group)
        after = _bad_and_ok(group[0])[1] if mixable(ind) else None  # good again (histograms: gone)
        phases = [Phase(begin, None), Phase(length, v), Phase(3 * 3600 // step, after)]
        own, recorded = timeline_inputs(kpi, ind, [ph for ph in phases if ph.samples], step,
                                        target=f"{service.id}-{kpi_id}")
        service_level = "target" not in ind.labels
        run = next((r for r in runs if r.fits(own, ind.id, service_level)), None)
        if run is None:
            run = _Run([], [], {}, set())
            runs.append(run)
        run.indicators.add(ind.id)
        run.series += own
        for x in own:
            name = _parse_series(x["series"])[0]
            run.metrics[name] = run.metrics.get(name, False) or service_level
        for a in group:
            expect(run, a, recorded, v)
    for a in _collector_alerts(service):
        if not runs:
            runs.append(_Run([], [], {}, set()))
        collector, target = next(iter(a.blinds)), f"{service.id}-{a.labels['kpi']}"
        phases = [Phase(begin, None), Phase(length, 0), Phase(3 * 3600 // step, 1)]
        runs[0].series.append(_collector_series(service, a, collector, _gauge_values([ph for ph in phases if ph.samples]),
                                                target))
        expect(runs[0], a, _collector_labels(service, collector, target), 0)
    return runs


def maintenance_cases(service: Service) -> dict[int, list[dict[str, Any]]]:
    """Planned maintenance, by evaluation step: two hours of bad values inside the service's first
    Sunday window (the muted priorities quiet during and after it, the others fire) and on a
    Thursday outside it (everything fires); with a maintenance switch, the same while it is on
    (and its own alert fires)."""
    out: dict[int, list[dict[str, Any]]] = {}
    if service.maintenance:
        step = SLOW_STEP
        for label, start in (("inside", SUNDAY_0200), ("outside", THURSDAY_0200)):
            when = "on Sunday 02:00, inside its maintenance" if label == "inside" else "on Thursday 02:00, outside maintenance"
            verdict = "muted priorities stay quiet during and after it" if label == "inside" else "fires"
            for run in _downtime_runs(service, start // step, DOWNTIME // step, step, label == "inside"):
                kpis = sorted({c["alertname"] for c in run.checks})
                out.setdefault(step, []).append(_case(
                    f"{service.id} [maintenance]: 2h of bad values {when}: {verdict} ({', '.join(kpis)})",
                    run.series, run.checks, interval=step))
    if service.maintenance_mode_kpi is not None:
        switch = next(a for a in service.alerts if a.kpi is not None and a.kpi.id == service.maintenance_mode_kpi)
        assert switch.kpi is not None and switch.indicator is not None
        downtime = [a for g in _maintenance_groups(service).values() for a in g] + _collector_alerts(service)
        length = max(_fire_time(a) for a in downtime) + 2
        on, recorded = inputs(switch.kpi, switch.indicator, 1, length + 3 * 60)
        for run in _downtime_runs(service, 0, length, STEP, True):
            checks = run.checks + [_check(switch, _fire_time(switch), [_expected(switch, recorded, 1)])]
            out.setdefault(STEP, []).append(_case(
                f"{service.id} [maintenance]: bad values while {switch.kpi.id} is on: muted priorities stay quiet, "
                f"{switch.name} fires", run.series + on, checks))
    return out


def cases(service: Service) -> dict[int, list[dict[str, Any]]]:
    """The service's test cases by evaluation step (seconds): fire/quiet per tier and kind, then
    the semantic matrix of every KPI's alerts (the maintenance cases have files of their own)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for alert in service.alerts:
        if alert.kind == "threshold":
            new = _threshold_cases(alert)
        elif alert.kind == "burn_rate":
            new = _burn_rate_cases(alert)
        elif alert.kind == "liveness":
            new = _liveness_cases(service, alert)
        elif alert.kind == "collector":
            new = _collector_cases(service, alert)
        elif alert.kind == "external_absent":
            new = _external_absent_cases(service, alert)
        elif alert.kind == "target_absent":
            new = _target_absent_cases(service, alert)
        else:
            new = _absent_cases(alert)
        out.setdefault(step_of(alert.indicator) if alert.kind == "threshold" else STEP, []).extend(new)
    for group in matrix_groups(service).values():
        out.setdefault(STEP, []).extend(matrix_cases(service, group))
    return out


def emit(model: Model) -> dict[str, str]:
    out = {}
    for service in model.services:
        # Paths are relative to the test file.
        rule_files = [f"../{INDICATORS_FILE.rsplit('/', 1)[1]}", f"../{service_file(service.id).rsplit('/', 1)[1]}"]
        # The maintenance cases in files of their own, and every slow-step case too: each is a
        # long run (days of promtool time), and separate files run in parallel.
        for part, by_step in (("", cases(service)), ("maintenance", maintenance_cases(service))):
            for step, tests in sorted(by_step.items()):
                chunks = [tests] if step == STEP else [[t] for t in tests]
                for i, chunk in enumerate(chunks):
                    doc = {"rule_files": rule_files, "evaluation_interval": format_duration(step), "tests": chunk}
                    name = ".".join(x for x in (part, str(i + 1) if i else "") if x)
                    out[test_file(service.id, step, name)] = HEADER + dump(doc)
    return out
