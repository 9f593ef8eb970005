"""A prometheus-client custom collector that renders TargetResults as fresh metric families.

Nothing here touches a target: a scrape only reads the snapshot, so its cost is independent of
how slow the probed servers are.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

import stackprobe

from . import metrics
from .snapshot import TargetResult

_FAMILY_TYPES = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "histogram": HistogramMetricFamily}


class _Families:
    """Lazily created metric families, in the order metrics.FAMILIES declares them."""

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def __getitem__(self, name: str) -> Metric:
        fam = self._by_name.get(name)
        if fam is None:
            spec = metrics.BY_NAME[name]
            fam = _FAMILY_TYPES[spec.kind](spec.base_name, spec.help, labels=spec.label_names)
            self._by_name[name] = fam
        return fam

    def in_declared_order(self) -> Iterator[Metric]:
        for spec in metrics.FAMILIES:
            if spec.name in self._by_name:
                yield self._by_name[spec.name]


def render_results(results: Iterable[TargetResult], families: _Families | None = None) -> _Families:
    """Add the probe bookkeeping and the prober samples of each result to the families."""
    fams = families or _Families()
    for r in results:
        if r.finished_at is None:
            continue
        base = (r.target.service, r.target.name)
        probe = base + (r.prober,)
        fams[metrics.PREFIX + "probe_success"].add_metric(probe, 1.0 if r.success else 0.0)
        fams[metrics.PREFIX + "probe_duration_seconds"].add_metric(probe, r.duration)
        fams[metrics.PREFIX + "probe_last_run_timestamp_seconds"].add_metric(probe, r.finished_at)
        if r.last_success_at is not None:
            fams[metrics.PREFIX + "probe_last_success_timestamp_seconds"].add_metric(probe, r.last_success_at)
        # Every reason is exported from the first probe on, so rate() sees the first error too.
        errors = fams[metrics.PREFIX + "probe_errors_total"]
        for reason in metrics.ERROR_REASONS:
            errors.add_metric(probe + (reason,), float(r.errors.get(reason, 0)))
        for (name, labels), value in r.samples.items():
            fams[name].add_metric(base + tuple(v for _, v in labels), value)
        for name, hist in r.histograms.items():
            buckets = [(floatToGoString(b), c) for b, c in zip(hist.bounds, hist.counts)]
            buckets.append(("+Inf", hist.counts[-1]))
            fams[name].add_metric(base, buckets, hist.total)
    return fams


class SnapshotCollector(Collector):
    """Yields stackprobe's families from whatever results `source()` returns at scrape time."""

    def __init__(self, source: Callable[[], Iterable[TargetResult]], exporter_state: Callable[[], dict] | None = None):
        self._source = source
        self._exporter_state = exporter_state

    def collect(self) -> Iterator[Metric]:
        fams = _Families()
        fams[metrics.PREFIX + "build_info"].add_metric((stackprobe.__version__, platform.python_version()), 1.0)
        if self._exporter_state:
            state = self._exporter_state()
            fams[metrics.PREFIX + "config_last_reload_successful"].add_metric((), 1.0 if state["reload_ok"] else 0.0)
            if state["reload_success_at"]:
                fams[metrics.PREFIX + "config_last_reload_success_timestamp_seconds"].add_metric((), state["reload_success_at"])
            for prober, count in sorted(state["targets"].items()):
                fams[metrics.PREFIX + "targets"].add_metric((prober,), float(count))
            shard = state["shard"]
            fams[metrics.PREFIX + "shard_info"].add_metric((str(shard.index), str(shard.count)), 1.0)
        render_results(self._source(), fams)
        yield from fams.in_declared_order()

    def describe(self) -> list[Metric]:
        # Returning no descriptions keeps registration from calling collect() at start-up.
        return []
