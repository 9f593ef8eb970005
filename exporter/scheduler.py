"""Probes every target in the background, each on its own interval and under its own timeout.

One asyncio task per target: a slow, hung or failing target only ever delays itself. A /probe
of a target whose scheduled probe is running shares that probe (and the other way round). Blocking
client libraries run in a worker pool (see probers.base.BlockingProber). Each target has a
phase, a hash of its name: its first probe comes within min(interval, 10 s) of (re)start, later
ones at that phase of every interval, so hundreds of targets spread over the whole interval
instead of firing at once, and keep a fixed cadence rather than drifting by each probe's duration.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import Counter
from dataclasses import dataclass, replace

from .config import Config, keeps_counters
from .probers import PROBERS
from .probers.base import ProbeContext, ProbeError, TargetConfig
from .snapshot import TRIM_AFTER_BYTES, Snapshot, TargetResult

log = logging.getLogger("stackprobe.scheduler")

#: First probes of all targets are spread over at most this many seconds after (re)start.
STARTUP_SPREAD_SECONDS = 10.0
#: A scheduled result of at most this many samples (set()'s; see next_result) is rendered on the
#: event loop (~0.1 ms, up to ~0.35 ms at 200), where starting a worker thread for it cost ~0.9 ms
#: of CPU per probe.
INLINE_RENDER_SAMPLES = 200


@dataclass(frozen=True)
class Outcome:
    """What one probe found, before it is folded into a target's next TargetResult."""

    ctx: ProbeContext
    reason: str | None
    message: str
    duration: float
    finished_at: float


async def run_probe(target: TargetConfig, prober_name: str) -> Outcome:
    """Run one probe under the target's timeout; never raises but for cancellation."""
    prober = PROBERS[prober_name]
    ctx = ProbeContext(target)
    started = time.monotonic()
    reason, message = None, ""
    try:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel() that arrives as
        # the probe finishes, which would keep a removed target's loop alive after a reload.
        async with asyncio.timeout(target.timeout):
            await prober.probe(target, ctx)
    except TimeoutError:
        reason, message = "timeout", f"no result within the {target.timeout:g}s timeout"
    except ProbeError as e:
        reason, message = e.reason, str(e)
    except Exception as e:  # a prober bug must not kill the target's loop
        log.exception("prober bug target=%s prober=%s", target.name, prober_name)
        reason, message = "internal", f"{type(e).__name__} (see the exporter log)"
    duration = time.monotonic() - started
    # Closed before anything reads it: a worker thread abandoned at the timeout may still be
    # recording (a half-written family, a late sample), and must not change this outcome.
    ctx.close(f"probe failed: reason={reason} {message}" if reason else "probe succeeded")
    return Outcome(ctx, reason, message, duration, time.time())


def renders_inline(ctx: ProbeContext) -> bool:
    """Whether a scheduled result is built on the event loop: few set() samples to render, and
    no more rendered text than TRIM_AFTER_BYTES, past which building it ends in malloc_trim, a
    walk of the whole heap that belongs in a worker thread (a 2,000-table MySQL result: 22
    samples, 2.6 MB)."""
    return len(ctx.samples) <= INLINE_RENDER_SAMPLES and sum(map(len, ctx.rendered.values())) < TRIM_AFTER_BYTES


def next_result(outcome: Outcome, target: TargetConfig, prober_name: str, previous: TargetResult | None) -> TargetResult:
    """The TargetResult after `previous` (None: the first, counters from zero) and this outcome.

    A result of many samples is rendered off the event loop (a worker thread; /probe's request
    thread): its exposition must not stall the loop, where other probes are being timed. A small
    one is cheaper to render than a thread is to start (renders_inline decides). Families set
    whole (set_many: a MySQL target's tables and indexes) were rendered by the probe, so the
    result of 2,000 tables (22 samples) costs ~0.5 ms here, plus malloc_trim.
    """
    if previous is not None and previous.target != target and keeps_counters(previous.target, target):
        previous = replace(previous, target=target)
    base = previous if previous is not None and previous.target == target else TargetResult(target, prober_name)
    return base.completed(outcome.ctx, success=outcome.reason is None, reason=outcome.reason, message=outcome.message,
                          duration=outcome.duration, finished_at=outcome.finished_at)


def _phase(target: TargetConfig) -> float:
    """Deterministic per-target fraction of the interval, so restarts keep the same spread."""
    return (zlib.crc32(target.name.encode()) % 10_000) / 10_000


class Scheduler:
    """Owns one task per configured target and publishes each result to the snapshot."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self.config: Config | None = None
        self._tasks: dict[str, tuple[TargetConfig, asyncio.Task]] = {}
        #: Target name -> the probe of it running now, shared by the schedule and /probe.
        self._running: dict[str, tuple[TargetConfig, asyncio.Task[Outcome]]] = {}
        self._ready = False

    def apply(self, config: Config) -> None:
        """Start, keep or restart target tasks to match config. Must run on the event loop."""
        wanted = config.by_name()
        for name, (target, task) in list(self._tasks.items()):
            if wanted.get(name) != target:
                task.cancel()
                del self._tasks[name]
        self.snapshot.retain({n for n, t in wanted.items() if n in self._tasks
                              or ((r := self.snapshot.get(n)) is not None and keeps_counters(r.target, t))})
        for name, target in wanted.items():
            if name not in self._tasks:
                task = asyncio.create_task(self._loop(target, config.prober_of(target)), name=f"probe:{name}")
                self._tasks[name] = (target, task)
        self.config = config

    def targets_per_prober(self) -> dict[str, int]:
        counts = Counter(self.config.prober_of(t) for t in self.config.targets) if self.config else Counter()
        return {name: counts.get(name, 0) for name in PROBERS}

    def ready(self) -> bool:
        """True once every configured target has completed its first probe, and from then on:
        a reload that adds targets must not take the exporter out of a load balancer."""
        if not self._ready:
            self._ready = self.config is not None and all(
                (r := self.snapshot.get(t.name)) is not None and r.finished_at is not None for t in self.config.targets
            )
        return self._ready

    async def stop(self) -> None:
        tasks = [t for _, t in self._tasks.values()] + [t for _, t in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._running.clear()

    async def _probe(self, target: TargetConfig, prober_name: str) -> Outcome:
        """The outcome of the probe of `target` running now, or of a new one.

        The schedule and /probe share a running probe instead of starting a second one: two
        probes of one target at once would only double its load, and a blocking prober refuses
        the second one (reason timeout) while the first holds its worker thread.
        """
        running = self._running.get(target.name)
        if running is None or running[0] != target:
            task = asyncio.create_task(run_probe(target, prober_name), name=f"probe-run:{target.name}")
            running = self._running[target.name] = (target, task)

            def forget(done: asyncio.Task, name: str = target.name) -> None:
                if self._running.get(name, (None, None))[1] is done:
                    del self._running[name]
            task.add_done_callback(forget)
        # Shielded: a reload cancelling the schedule's loop, or a /probe client giving up, must
        # not cancel a probe the other is waiting for.
        return await asyncio.shield(running[1])

    async def probe_now(self, target: TargetConfig) -> tuple[Outcome, str]:
        """/probe: the outcome of a probe that finishes now (it shares the scheduled probe if one
        is running) and the prober's name. The caller renders it (next_result with no previous
        result: counters from zero) in /probe's request thread, which is off the loop already:
        no thread started per call for it."""
        prober_name = self.config.prober_of(target)
        return await self._probe(target, prober_name), prober_name

    async def _loop(self, target: TargetConfig, prober_name: str) -> None:
        loop = asyncio.get_running_loop()
        # The first probe comes soon after (re)start; later ones sit at the target's own phase of
        # the interval, so targets sharing an interval spread over all of it, not just its start.
        started, phase = loop.time(), _phase(target)
        next_run = started + phase * min(target.interval, STARTUP_SPREAD_SECONDS)
        first = True
        while True:
            await asyncio.sleep(max(0.0, next_run - loop.time()))
            outcome = await self._probe(target, prober_name)
            previous = self.snapshot.get(target.name)
            if renders_inline(outcome.ctx):
                result = next_result(outcome, target, prober_name, previous)
            else:
                result = await asyncio.to_thread(next_result, outcome, target, prober_name, previous)
            current = self._tasks.get(target.name)
            if current is None or current[1] is not asyncio.current_task():
                return  # replaced or removed by a reload while probing: publish nothing
            self.snapshot.publish(result)
            self._log_transition(previous, result)
            # Not held through the sleep: a replaced result of thousands of tables is ~20 MB.
            del previous, result, outcome
            # Keep the cadence; if a probe overran whole intervals, skip the missed runs.
            now = loop.time()
            if first:  # move onto the phase grid, at least half an interval later
                next_run, first = started + phase * target.interval, False
                while next_run < now + target.interval / 2:
                    next_run += target.interval
            else:
                next_run += target.interval
            if next_run < now:
                next_run += ((now - next_run) // target.interval + 1) * target.interval

    @staticmethod
    def _log_transition(previous: TargetResult | None, result: TargetResult) -> None:
        t = result.target
        was_ok = previous.success if previous is not None and previous.finished_at else None
        if result.success and was_ok is not True:
            log.info("probe ok target=%s prober=%s service=%s duration=%.3fs", t.name, result.prober, t.service, result.duration)
        elif not result.success and (was_ok is not False or previous.reason != result.reason):
            log.warning("probe failed target=%s prober=%s service=%s reason=%s error=%r",
                        t.name, result.prober, t.service, result.reason, result.message)
        else:
            log.debug("probe done target=%s success=%s duration=%.3fs", t.name, result.success, result.duration)
