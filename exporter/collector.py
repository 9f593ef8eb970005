"""Renders /metrics from exposition pieces rendered once per probe result.

A probe's series are rendered to exposition lines once: a prober's many-series families as the
probe sets them (ProbeContext.set_many), the rest when its TargetResult is built
(`render_result`); a scrape only joins the stored pieces per family under one HELP/TYPE, in
metrics.FAMILIES order, so its cost is copying bytes rather than encoding series. The text format
and OpenMetrics share the sample lines (stackprobe exports no timestamps, exemplars, `_created`
or units); only the HELP/TYPE headers and OpenMetrics' `# EOF` differ.

Compression is cached the same way: each family's section is deflated once (with a sync flush,
so sections can be concatenated into one valid deflate stream) and re-deflated only when one of
its pieces changes; a gzip body is the per-scrape part (process and exporter-wide families)
deflated afresh, then the cached sections, in one gzip frame.
"""

from __future__ import annotations

import platform
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.utils import floatToGoString

import stackprobe

from . import metrics

if TYPE_CHECKING:
    from .probers.base import Labels, TargetConfig
    from .snapshot import Snapshot, TargetResult

#: Family name -> its sample lines (UTF-8), as stored with a TargetResult.
Pieces = Mapping[str, bytes]

#: zlib's default trade-off; a section is compressed once per change, not once per scrape.
GZIP_LEVEL = 6


def escape_label(value: str) -> str:
    """A label value as both formats require: backslash, newline and double quote escaped."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    """`a="x",b="y"` (no braces): label values escaped as both formats require."""
    return ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs)


def target_labels(target: TargetConfig) -> str:
    """`service="...",target="..."`: the labels every series of the target starts with."""
    return _labels((("service", target.service), ("target", target.name)))


def _line(name: str, labels: str, value: float) -> str:
    return f"{name}{{{labels}}} {floatToGoString(value)}\n" if labels else f"{name} {floatToGoString(value)}\n"


def render_samples(base: str, samples: Mapping[tuple[str, Labels], float]) -> dict[str, bytes]:
    """Family -> the lines of these samples, each labelled `base` (target_labels) first."""
    lines: dict[str, list[str]] = {}
    # Label pairs repeat across series (schema, component, key names): escape each once.
    pairs: dict[tuple[str, str], str] = {}
    for (name, labels), value in samples.items():
        text = [base]
        for pair in labels:
            rendered = pairs.get(pair)
            if rendered is None:
                rendered = pairs[pair] = f'{pair[0]}="{escape_label(pair[1])}"'
            text.append(rendered)
        lines.setdefault(name, []).append(f"{name}{{{','.join(text)}}} {floatToGoString(value)}\n")
    return {name: "".join(text).encode() for name, text in lines.items()}


@dataclass(frozen=True)
class Format:
    """One exposition format: its content type and how it writes a family's header."""

    content_type: str
    openmetrics: bool

    def header(self, fam: metrics.Family) -> bytes:
        # OpenMetrics names a counter family without `_total` and also escapes `"` in HELP.
        name = fam.base_name if self.openmetrics else fam.name
        help_text = fam.help.replace("\\", r"\\").replace("\n", r"\n")
        if self.openmetrics:
            help_text = help_text.replace('"', r"\"")
        return f"# HELP {name} {help_text}\n# TYPE {name} {fam.kind}\n".encode()

    @property
    def eof(self) -> bytes:
        return b"# EOF\n" if self.openmetrics else b""


TEXT = Format("text/plain; version=0.0.4; charset=utf-8", openmetrics=False)
OPENMETRICS = Format("application/openmetrics-text; version=1.0.0; charset=utf-8", openmetrics=True)


def negotiate(accept: str) -> Format:
    """OpenMetrics when the client accepts OpenMetrics 1.x (or unversioned), else text 0.0.4."""
    for media in accept.split(","):
        kind, *params = (p.strip() for p in media.split(";"))
        if kind == "application/openmetrics-text":
            version = next((p[8:] for p in params if p.startswith("version=")), "1.0.0")
            if version.split(".")[0] == "1":
                return OPENMETRICS
    return TEXT


def render_result(result: TargetResult) -> dict[str, bytes]:
    """Every family of one completed result: the probe bookkeeping and the histograms rendered
    now, the prober's series (`result.series`) as the probe rendered them."""
    if result.finished_at is None:
        return {}
    lines: dict[str, list[str]] = {}
    base = target_labels(result.target)
    probe = f'{base},prober="{escape_label(result.prober)}"'
    p = metrics.PREFIX

    def add(name: str, labels: str, value: float) -> None:
        lines.setdefault(name, []).append(_line(name, labels, value))

    add(p + "probe_success", probe, 1.0 if result.success else 0.0)
    add(p + "probe_duration_seconds", probe, result.duration)
    add(p + "probe_last_run_timestamp_seconds", probe, result.finished_at)
    if result.last_success_at is not None:
        add(p + "probe_last_success_timestamp_seconds", probe, result.last_success_at)
    # Every reason is exported from the first probe on, so rate() sees the first error too.
    for reason in metrics.ERROR_REASONS:
        add(p + "probe_errors_total", f'{probe},reason="{reason}"', float(result.errors.get(reason, 0)))
    for name, hist in result.histograms.items():
        out = lines.setdefault(name, [])
        for bound, count in zip(hist.bounds, hist.counts):
            out.append(_line(name + "_bucket", f'{base},le="{floatToGoString(bound)}"', count))
        out.append(_line(name + "_bucket", f'{base},le="+Inf"', hist.counts[-1]))
        out.append(_line(name + "_count", base, hist.counts[-1]))
        out.append(_line(name + "_sum", base, hist.total))
    return {name: "".join(text).encode() for name, text in lines.items()} | dict(result.series)


def render_exporter_families(state: Mapping) -> dict[str, bytes]:
    """The exporter-wide families (build, config reloads, targets, shard): a few lines per scrape."""
    p = metrics.PREFIX
    version = _labels((("version", stackprobe.__version__), ("python_version", platform.python_version())))
    out = {p + "build_info": _line(p + "build_info", version, 1.0)}
    out[p + "config_last_reload_successful"] = _line(p + "config_last_reload_successful", "", 1.0 if state["reload_ok"] else 0.0)
    if state["reload_success_at"]:
        out[p + "config_last_reload_success_timestamp_seconds"] = _line(
            p + "config_last_reload_success_timestamp_seconds", "", state["reload_success_at"])
    out[p + "targets"] = "".join(_line(p + "targets", _labels((("prober", prober),)), float(count))
                                 for prober, count in sorted(state["targets"].items()))
    shard = state["shard"]
    out[p + "shard_info"] = _line(p + "shard_info", _labels((("index", str(shard.index)), ("count", str(shard.count)))), 1.0)
    return {name: text.encode() for name, text in out.items()}


def _group(piece_maps: Iterable[Pieces]) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = {}
    for pieces in piece_maps:
        for name, piece in pieces.items():
            grouped.setdefault(name, []).append(piece)
    return grouped


def join(piece_maps: Iterable[Pieces], fmt: Format) -> bytes:
    """Families in declared order, each under one header; uncached (for /probe)."""
    grouped = _group(piece_maps)
    parts: list[bytes] = []
    for fam in metrics.FAMILIES:
        if fam.name in grouped:
            parts.append(fmt.header(fam))
            parts.extend(grouped[fam.name])
    return b"".join(parts)


def _deflate(*parts: bytes) -> bytes:
    """Raw deflate ending in a sync flush: byte-aligned and not final, so it can be concatenated."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return b"".join([*(compressor.compress(p) for p in parts), compressor.flush(zlib.Z_SYNC_FLUSH)])


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, OS unknown
_FINAL_BLOCK = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # empty, final


def _gzip(raw: list[bytes], deflated: list[bytes]) -> bytes:
    """One gzip member from concatenated sync-flushed deflate segments and their raw bytes."""
    crc, size = 0, 0
    for part in raw:
        crc, size = zlib.crc32(part, crc), size + len(part)
    return b"".join([_GZIP_HEADER, *deflated, _FINAL_BLOCK, struct.pack("<II", crc, size & 0xFFFFFFFF)])


class _Section:
    """One family's pieces across targets, and its deflated form per format (made lazily)."""

    def __init__(self, fam: metrics.Family, pieces: tuple[bytes, ...]):
        self.family = fam
        self.pieces = pieces
        self.headers = {fmt: fmt.header(fam) for fmt in (TEXT, OPENMETRICS)}
        self._deflated: dict[Format, bytes] = {}

    def deflated(self, fmt: Format) -> bytes:
        data = self._deflated.get(fmt)
        if data is None:
            data = self._deflated[fmt] = _deflate(self.headers[fmt], *self.pieces)
        return data


class MetricsPage:
    """The /metrics body: per-scrape process and exporter families, then the snapshot's sections.

    Sections are rebuilt only when the snapshot's version changed, and a section whose pieces are
    the same as before keeps its deflated bytes.
    """

    def __init__(self, snapshot: Snapshot, exporter_state: Callable[[], Mapping]):
        self._snapshot = snapshot
        self._exporter_state = exporter_state
        self._process = CollectorRegistry(auto_describe=False)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self._process)
        self._lock = threading.Lock()
        self._version: int | None = None
        self._sections: list[_Section] = []

    def _current_sections(self) -> list[_Section]:
        # Under the lock: concurrent scrapes (an HA pair) share one rebuild and one compression.
        version = self._snapshot.version  # read before the results: a later publish bumps it again
        if version != self._version:
            grouped = _group(r.pieces for r in self._snapshot.results())
            previous = {s.family.name: s for s in self._sections}
            sections = []
            for fam in metrics.FAMILIES:
                pieces = tuple(grouped.get(fam.name, ()))
                if pieces:
                    old = previous.get(fam.name)
                    sections.append(old if old is not None and old.pieces == pieces else _Section(fam, pieces))
            self._sections, self._version = sections, version
        return self._sections

    def _per_scrape(self, fmt: Format) -> bytes:
        if fmt.openmetrics:
            process = openmetrics_latest(self._process).removesuffix(b"# EOF\n")
        else:
            process = text_latest(self._process)
        return process + join([render_exporter_families(self._exporter_state())], fmt)

    def body(self, fmt: Format, gzip: bool = False) -> bytes:
        return b"".join(self.writes(fmt, gzip))

    def writes(self, fmt: Format, gzip: bool = False) -> list[bytes]:
        """The body as the writes that send it. A plain body: its large pieces as they are stored,
        the small ones joined into runs (under WRITE_RUN_BYTES each): a multi-megabyte body is
        not copied per scrape, where its fresh pages cost ~2 ms per 2.6 MB to fault in (allocations
        of 1 MiB or more are mapped afresh, see snapshot.keep_large_allocations_mapped). A gzip body:
        one write."""
        dynamic = self._per_scrape(fmt)
        with self._lock:
            sections = self._current_sections()
            raw = [dynamic]
            for s in sections:
                raw.append(s.headers[fmt])
                raw.extend(s.pieces)
            raw.append(fmt.eof)
            if not gzip:
                return _runs(raw)
            deflated = [_deflate(dynamic), *(s.deflated(fmt) for s in sections)]
            if fmt.eof:
                deflated.append(_deflate(fmt.eof))
        return [_gzip(raw, deflated)]


#: Small pieces are sent joined in runs of up to twice this, below glibc's mmap threshold.
WRITE_RUN_BYTES = 48 * 1024


def _runs(parts: list[bytes]) -> list[bytes]:
    """parts in order, each piece of WRITE_RUN_BYTES or more as it is, the others joined in runs."""
    out: list[bytes] = []
    run: list[bytes] = []
    length = 0
    for part in parts:
        if len(part) >= WRITE_RUN_BYTES:
            if run:
                out.append(b"".join(run))
                run, length = [], 0
            out.append(part)
            continue
        run.append(part)
        length += len(part)
        if length >= WRITE_RUN_BYTES:
            out.append(b"".join(run))
            run, length = [], 0
    if run:
        out.append(b"".join(run))
    return out
