"""Alert annotations as Prometheus' Go templates, and the same text rendered in Python.

An annotation is a sequence of parts: literal catalogue text, `{{ $labels.x }}` references and
one formatted `$value`. `go()` writes the template Prometheus evaluates (literal text escaped, so
catalogue text such as `{{ query "up" }}` is shown, never executed); `render()` writes the text
Prometheus will produce, which the generated promtool tests expect.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


def _g4(v: float) -> str:
    return f"{v:.4g}"


def _prefixed(v: float, prefixes: tuple[str, ...], scale: float, done) -> str:
    """Scale v by `scale` per prefix until `done(v)`, as Prometheus' humanize functions do."""
    prefix = ""
    for p in prefixes:
        if done(v):
            break
        prefix, v = p, v * scale
    return _g4(v) + prefix


def humanize(v: float) -> str:
    """Prometheus' `humanize` (SI prefixes, 4 significant digits)."""
    if v == 0 or not math.isfinite(v):
        return _g4(v)
    if abs(v) >= 1:
        return _prefixed(v, ("k", "M", "G", "T", "P", "E", "Z", "Y"), 1 / 1000, lambda x: abs(x) < 1000)
    return _prefixed(v, ("m", "u", "n", "p", "f", "a", "z", "y"), 1000, lambda x: abs(x) >= 1)


def humanize_1024(v: float) -> str:
    """Prometheus' `humanize1024`."""
    if abs(v) <= 1 or not math.isfinite(v):
        return _g4(v)
    return _prefixed(v, ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"), 1 / 1024, lambda x: abs(x) < 1024)


def humanize_duration(v: float) -> str:
    """Prometheus' `humanizeDuration`."""
    if not math.isfinite(v):
        return _g4(v)
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        seconds, minutes, hours, days = d % 60, d // 60 % 60, d // 3600 % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_g4(v)}{prefix}s"


@dataclass(frozen=True)
class ValueFormat:
    """How `$value` is shown: the Go template pipeline and the same formatting in Python."""

    go: str
    python: Callable[[float], str] = field(compare=False)


#: unit -> how an alert shows a value of that unit (thresholds are formatted the same way).
UNIT_FORMATS: dict[str, ValueFormat] = {
    "percentunit": ValueFormat("{{ $value | humanizePercentage }}", lambda v: f"{v * 100:.4g}%"),
    "s": ValueFormat("{{ $value | humanizeDuration }}", humanize_duration),
    "d": ValueFormat('{{ $value | printf "%.1f" }} days', lambda v: f"{v:.1f} days"),
    "bytes": ValueFormat("{{ $value | humanize1024 }}B", lambda v: humanize_1024(v) + "B"),
    "short": ValueFormat("{{ $value | humanize }}", humanize),
    "reqps": ValueFormat("{{ $value | humanize }} req/s", lambda v: humanize(v) + " req/s"),
}
#: A burn rate (a factor) with one decimal.
FACTOR = ValueFormat('{{ $value | printf "%.1f" }}', lambda v: f"{v:.1f}")


def format_value(unit: str, v: float) -> str:
    """A value as the alert's annotation shows it."""
    return UNIT_FORMATS[unit].python(v)


_OPENING_BRACE = re.compile(r"\{(?=\{|$)")


def escape(text: str) -> str:
    """Literal text inside a Go template: a `{` that could start an action (followed by `{`,
    or last, before a `{{ $labels... }}` part) becomes an action printing `{`."""
    return _OPENING_BRACE.sub('{{ "{" }}', text)


@dataclass(frozen=True)
class LabelRef:
    """`{{ $labels.<label> }}`: the alert's label value."""

    label: str


Part = str | LabelRef | ValueFormat


@dataclass(frozen=True)
class Template:
    """An annotation: literal text, label references and the formatted `$value`."""

    parts: tuple[Part, ...]

    @classmethod
    def of(cls, *parts: Part) -> Template:
        return cls(tuple(p for p in parts if p != ""))

    def go(self) -> str:
        """The Go template Prometheus evaluates."""
        return "".join(escape(p) if isinstance(p, str) else
                       f"{{{{ $labels.{p.label} }}}}" if isinstance(p, LabelRef) else p.go for p in self.parts)

    def render(self, labels: Mapping[str, str], value: float | None = None) -> str:
        """What Prometheus makes of it for an alert with these labels and this value."""
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, LabelRef):
                out.append(labels.get(p.label, "<no value>"))
            else:
                assert value is not None, "a template with $value needs a value"
                out.append(p.python(value))
        return "".join(out)
