"""The latest completed result of every target: what /metrics serves.

The scheduler publishes a new immutable `TargetResult` when a probe finishes, its exposition
lines rendered once then (`pieces`); readers (the /metrics page, the status page) only ever see
whole results, never a probe half done, and never wait for a probe. Accumulating state (the
error counters and the duration histograms) is carried from one result to the next, so counters
stay monotonic across probes.
"""

from __future__ import annotations

import bisect
import ctypes
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

from prometheus_client.parser import text_string_to_metric_families

from . import metrics
from .collector import render_result, render_samples, target_labels
from .probers.base import Labels, ProbeContext, TargetConfig

#: After a failed probe, the last successful probe's families stay exported through this many
#: consecutive failed probes, then are dropped (see the README, "How probing works").
KEEP_SAMPLES_THROUGH_FAILURES = 2


#: A result whose exposition is at least this big (a MySQL target with hundreds of tables) is
#: followed by release_free_memory(): the memory its building freed is given back to the system.
TRIM_AFTER_BYTES = 1 << 20

try:
    _libc = ctypes.CDLL(None)  # the process's own symbols: libc's
    _malloc_trim, _mallopt = _libc.malloc_trim, _libc.mallopt
except (OSError, AttributeError):  # not glibc (musl): nothing to call, fragmentation stays
    _malloc_trim = _mallopt = None

#: mallopt's M_MMAP_THRESHOLD (glibc's malloc.h), and the size fixed for it: under a scrape body
#: of a big target (2.6 MB at 2,000 MySQL tables), above a probe's working buffers.
_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES = -3, 1024 * 1024


def keep_large_allocations_mapped() -> None:
    """mallopt(M_MMAP_THRESHOLD, 1 MiB): each allocation of 1 MiB or more gets a mapping of its
    own, unmapped when freed; called once at start-up.

    glibc raises that threshold whenever such a mapping is freed (up to 32 MiB), after which a
    scrape's body (2.6 MB at 2,000 MySQL tables, 13 MB at 10,000) is allocated in the heap of
    the request's thread and stays there when freed: measured, RSS after 40 scrapes at 2,000
    tables +2.5 MiB, +13 MiB after 10 scrapes at 10,000; +0.3 MiB with the threshold fixed.
    Not glibc's initial 128 KiB: a Redis SCAN loop's and a MySQL probe's buffers then got and
    faulted in a fresh mapping each time (exporter CPU per count of 1,000,000 keys 288 -> 180 ms,
    per 2,000-table probe 1.65x -> 1.02x its floor; RSS at 2,000 tables 50.0 MiB either way).
    """
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_free_memory() -> None:
    """glibc's malloc_trim(0): return the heap's free pages to the system.

    Building a large result allocates and frees tens of megabytes of strings and dicts (the
    previous result is alive meanwhile); glibc keeps freed heap pages mapped, so without this
    the exporter's RSS grows to its peak and stays there (measured: 177 MB against 134 MB after
    three probes of 10,000 tables). A few milliseconds, in the scheduler's worker thread.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (one per bound, then +Inf), sum and count."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> "Histogram":
        return cls(bounds, (0,) * (len(bounds) + 1))

    def observe(self, value: float) -> "Histogram":
        first = bisect.bisect_left(self.bounds, value)
        counts = tuple(c + 1 if i >= first else c for i, c in enumerate(self.counts))
        return Histogram(self.bounds, counts, self.total + value)


@dataclass(frozen=True)
class TargetResult:
    """One target's latest completed probe plus the state accumulated since start-up."""

    target: TargetConfig
    prober: str
    success: bool = False
    reason: str | None = None
    message: str = ""
    duration: float = 0.0
    finished_at: float | None = None  # Unix time; None until the first probe completes
    last_success_at: float | None = None
    #: The prober's families /metrics exports, family -> exposition lines: this probe's own,
    #: over the last success's while they are kept (see completed()).
    series: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    #: The families of the last successful probe, while a failed probe may still export them.
    kept_series: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    #: Its set() samples as values (a few dozen: up, status, collector_success...), merged series
    #: by series into the families a failed probe set only partly.
    kept_samples: Mapping[tuple[str, Labels], float] = field(default_factory=dict, repr=False)
    failures_in_a_row: int = 0
    log: tuple[str, ...] = ()
    errors: Mapping[str, int] = field(default_factory=dict)
    histograms: Mapping[str, Histogram] = field(default_factory=dict)
    #: Family name -> this result's exposition lines (series, bookkeeping, histograms): /metrics.
    pieces: Mapping[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def samples(self) -> dict[tuple[str, Labels], float]:
        """`series` parsed back: {(family, label pairs after service/target): value}. For tests
        and debugging; /metrics serves the lines as they are."""
        text = b"".join(self.series.values()).decode()
        return {(sample.name, tuple((k, v) for k, v in sample.labels.items() if k not in metrics.TARGET_LABELS)): sample.value
                for fam in text_string_to_metric_families(text) for sample in fam.samples}

    def completed(self, ctx: ProbeContext, *, success: bool, reason: str | None, message: str,
                  duration: float, finished_at: float) -> "TargetResult":
        """The next result after a probe finished; carries the counters and histograms forward.

        A failed probe exports its own series over those of the last successful probe, for at
        most KEEP_SAMPLES_THROUGH_FAILURES failed probes in a row: one failed probe must neither
        make a firing alert's series vanish (and the alert resolve) nor, if the failure lasts,
        leave old values standing in for a target that no longer answers. Families set whole
        (set_many: a MySQL target's tables and indexes) are replaced whole; set()'s families
        series by series (a failed MySQL probe that ran one section keeps the other sections'
        collector_success). The prober's `_up` family is never kept: it says what this probe
        found, 0 if it found nothing.
        """
        own = ctx.pieces()  # the scheduler closed ctx to writes
        failures = 0 if success else self.failures_in_a_row + 1
        if success:
            series = kept = MappingProxyType(own)
            kept_samples = MappingProxyType(ctx.samples)
        else:
            within = failures <= KEEP_SAMPLES_THROUGH_FAILURES
            kept = self.kept_series if within else MappingProxyType({})
            kept_samples = self.kept_samples if within else MappingProxyType({})
            up = metrics.up_family(self.prober)
            exported = {name: piece for name, piece in kept.items() if name != up} | own
            partly = {name for name, _ in ctx.samples} - {up}
            merged = {key: value for key, value in kept_samples.items() if key[0] in partly}
            if merged:
                exported |= render_samples(target_labels(self.target), merged | ctx.samples)
            if up is not None and up not in exported:
                exported |= render_samples(target_labels(self.target), {(up, ()): 0.0})
            series = MappingProxyType(exported)
        errors = dict(self.errors)
        if reason:
            errors[reason] = errors.get(reason, 0) + 1
        histograms = dict(self.histograms)
        for name, value in ctx.observations:
            hist = histograms.get(name) or Histogram.empty(metrics.family(name).buckets)
            histograms[name] = hist.observe(value)
        result = replace(
            self, success=success, reason=reason, message=message, duration=duration,
            finished_at=finished_at, last_success_at=finished_at if success else self.last_success_at,
            series=series, kept_series=kept, kept_samples=kept_samples, failures_in_a_row=failures, log=tuple(ctx.log_lines),
            errors=MappingProxyType(errors), histograms=MappingProxyType(histograms),
        )
        pieces = render_result(result)
        if sum(map(len, pieces.values())) >= TRIM_AFTER_BYTES:
            release_free_memory()
        return replace(result, pieces=MappingProxyType(pieces))


class Snapshot:
    """Target name -> latest TargetResult. Writers replace whole entries; readers copy the view."""

    def __init__(self) -> None:
        self._results: dict[str, TargetResult] = {}
        #: Bumped by every change, so /metrics knows when its cached sections are stale.
        self.version = 0

    def get(self, name: str) -> TargetResult | None:
        return self._results.get(name)

    def publish(self, result: TargetResult) -> None:
        self._results[result.target.name] = result
        self.version += 1

    def retain(self, names: set[str]) -> None:
        """Forget targets removed from the config, so their series disappear from /metrics."""
        self._results = {n: r for n, r in self._results.items() if n in names}
        self.version += 1

    def results(self) -> list[TargetResult]:
        return list(self._results.values())
