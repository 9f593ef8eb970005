"""PromQL text: label matchers, selectors and number literals, written one way for every emitter.

`Matcher` is the only place a label value becomes PromQL (or Alertmanager matcher) text, and it
always quotes and escapes it, so a catalogue value such as `x"} or vector(1)` stays a string
instead of becoming part of the query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]


def quote(value: str) -> str:
    """A double-quoted string literal that PromQL and Alertmanager matchers read back as `value`.

    JSON's escapes (`\\"`, `\\\\`, `\\n`, `\\uXXXX` for control characters) are a subset of the Go
    escapes both parsers accept.
    """
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Matcher:
    """One label matcher, `label="value"`; str() is its PromQL text with the value escaped."""

    label: str
    value: str
    op: MatchOp = "="

    def __str__(self) -> str:
        return f"{self.label}{self.op}{quote(self.value)}"


def matchers(labels: Mapping[str, str]) -> tuple[Matcher, ...]:
    """Equality matchers for a label mapping, in its order."""
    return tuple(Matcher(k, v) for k, v in labels.items())


def join(ms: Iterable[Matcher], sep: str = ", ") -> str:
    return sep.join(str(m) for m in ms)


def selector(name: str, ms: Iterable[Matcher], sep: str = ", ") -> str:
    """`name{a="x", b="y"}`; `sep` is `,` in promtool input series (their own notation)."""
    return name + "{" + join(ms, sep) + "}"


def number(v: float) -> str:
    """A PromQL number literal, stable across runs (no float noise like 0.00010000000000000009)."""
    return f"{v:.10g}"
