"""Every metric family stackprobe exports: the public interface of the exporter.

The exporter-wide and probe-bookkeeping families are declared here; each prober module declares
its own families next to the code that sets them (`families` of its Prober), and this module
collects them all into FAMILIES, in one order: exporter, probe bookkeeping, then the probers by
name. The collector, the README's metrics table and the generator's contract tests read
FAMILIES; a prober cannot emit a name (or a label set) that is not declared.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .probers.base import Prober

PREFIX = "stackprobe_"

#: Labels every per-target family carries, in this order.
TARGET_LABELS: tuple[str, ...] = ("service", "target")

#: The closed set of reasons a probe can fail with (label `reason` of the errors counter).
ERROR_REASONS: tuple[str, ...] = (
    "timeout",  # the target's timeout expired
    "dns",  # the host name did not resolve
    "connect",  # TCP connection refused, reset or unreachable
    "tls",  # TLS handshake or certificate verification failed
    "auth",  # the server rejected the credentials
    "query",  # connected, but a query or command failed
    "status",  # HTTP status not among the expected codes
    "body",  # HTTP body did not match, or a JSON value was missing
    "io",  # a file or directory could not be read
    "empty",  # nothing matched (no backup file, no certificate)
    "verify",  # a backup file failed its integrity check
    "internal",  # a bug in stackprobe; logged with a traceback
)

Kind = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True)
class Family:
    """One metric family: its full name, type, help text and the labels after TARGET_LABELS."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    #: The prober that emits it (filled in when FAMILIES is collected), None for exporter-wide families.
    prober: str | None = None
    #: Histogram bucket upper bounds (without +Inf).
    buckets: tuple[float, ...] = ()
    #: False for exporter-wide families that do not carry service/target.
    per_target: bool = True

    @property
    def label_names(self) -> tuple[str, ...]:
        return (TARGET_LABELS if self.per_target else ()) + self.labels

    @property
    def base_name(self) -> str:
        """The name without the `_total` suffix, as prometheus-client's families expect it."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


def _declare(kind: Kind, name: str, help: str, labels: tuple[str, ...], **kw) -> Family:
    return Family(PREFIX + name, kind, help, labels, **kw)


def gauge(name: str, help: str, *labels: str, per_target: bool = True) -> Family:
    """A gauge family; `name` without the `stackprobe_` prefix, `labels` after service/target."""
    return _declare("gauge", name, help, labels, per_target=per_target)


def counter(name: str, help: str, *labels: str) -> Family:
    """A counter family; `name` ends in `_total`."""
    return _declare("counter", name, help, labels)


def histogram(name: str, help: str, *labels: str, buckets: tuple[float, ...]) -> Family:
    """A histogram family with these bucket upper bounds (+Inf is implied)."""
    return _declare("histogram", name, help, labels, buckets=buckets)


EXPORTER_FAMILIES: tuple[Family, ...] = (
    gauge("build_info", "Build information of the running stackprobe; always 1.", "version", "python_version", per_target=False),
    gauge("config_last_reload_successful", "1 if the last configuration (re)load succeeded, 0 if it failed and the previous configuration is still in use.", per_target=False),
    gauge("config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration load.", per_target=False),
    gauge("targets", "Number of configured targets per prober (with --shard: the ones this replica owns).", "prober", per_target=False),
    gauge("shard_info", "The shard this replica is (--shard=INDEX/COUNT; 0/1 unsharded): it probes the targets whose name hashes to index; always 1.", "index", "count", per_target=False),
)

PROBE_FAMILIES: tuple[Family, ...] = (
    gauge("probe_success", "1 if the last completed probe of the target succeeded, else 0.", "prober"),
    gauge("probe_duration_seconds", "How long the last completed probe of the target took.", "prober"),
    gauge("probe_last_run_timestamp_seconds", "Unix time the last completed probe of the target finished.", "prober"),
    gauge("probe_last_success_timestamp_seconds", "Unix time the last successful probe of the target finished (absent until one succeeds).", "prober"),
    counter("probe_errors_total", "Failed probes of the target since the exporter started, by reason.", "prober", "reason"),
)


def collect(probers: Iterable[Prober]) -> tuple[Family, ...]:
    """The exporter's families, then each prober's (its name filled in), checked for clashes."""
    families = list(EXPORTER_FAMILIES + PROBE_FAMILIES)
    for prober in probers:
        for fam in prober.families:
            if not fam.name.startswith(f"{PREFIX}{prober.name}_"):
                raise ValueError(f"family {fam.name} of prober {prober.name!r} must start with {PREFIX}{prober.name}_")
            families.append(replace(fam, prober=prober.name))
    seen: set[str] = set()
    for fam in families:
        if fam.name in seen:
            raise ValueError(f"metric family {fam.name} is declared twice")
        seen.add(fam.name)
    return tuple(families)


@functools.cache
def _collected() -> tuple[tuple[Family, ...], dict[str, Family]]:
    # Imported here, not at the top: probers.base imports this module.
    from .probers import PROBERS

    families = collect(PROBERS.values())
    return families, {fam.name: fam for fam in families}


def __getattr__(name: str):
    # FAMILIES and BY_NAME are collected on first use, once every prober module is importable.
    if name == "FAMILIES":
        return _collected()[0]
    if name == "BY_NAME":
        return _collected()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def family(name: str) -> Family:
    """Look a family up by its full name or by its name without the `stackprobe_` prefix."""
    try:
        return _collected()[1][name if name.startswith(PREFIX) else PREFIX + name]
    except KeyError:
        raise KeyError(f"metric family {name!r} is declared neither in exporter/metrics.py nor by a prober") from None


def up_family(prober: str) -> str | None:
    """`stackprobe_<prober>_up` (did the server answer at all), if the prober declares one.

    It is a fact about the latest probe alone, so after a failed probe it is never carried over
    from an earlier, successful one (see snapshot.TargetResult.completed)."""
    name = f"{PREFIX}{prober}_up"
    return name if name in _collected()[1] else None


def exported_series_names() -> set[str]:
    """Every series name a scrape can contain (histogram and counter suffixes included)."""
    names: set[str] = set()
    for f in _collected()[0]:
        if f.kind == "histogram":
            names |= {f.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(f.name)
    return names
