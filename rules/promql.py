"""PromQL text: label matchers, selectors and number literals, written one way for every emitter.

`Matcher` is the only place a label value becomes PromQL (or Alertmanager matcher) text, and it
always quotes and escapes it, so a catalogue value such as `x"} or vector(1)` stays a string
instead of becoming part of the query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import promql_parser

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


def keep_labels(expr: str, labels: Sequence[str]) -> str:
    """`expr` rewritten so every aggregation and every `on (...)` vector match also keeps
    `labels`: `sum by (service) (x)` -> `sum by (service, cluster) (x)`, `sum(x)` ->
    `sum by (cluster) (x)`, `without (cluster)` loses `cluster`. Unchanged when `labels` is empty.

    The rewrite goes through promql-parser's AST (each changed node re-parsed from its parts),
    so it applies to any valid expression, not to the spellings a regex would know.
    """
    if not labels:
        return expr
    extra = list(labels)

    def plus(names: Sequence[str]) -> str:
        return ", ".join([*names, *(n for n in extra if n not in names)])

    def rewrite(node: promql_parser.Expr) -> promql_parser.Expr | None:
        if isinstance(node, promql_parser.AggregateExpr):
            param = f"{node.param}, " if node.param is not None else ""
            m = node.modifier
            if m is not None and m.type == promql_parser.AggModifierType.Without:
                grouping = "without (" + ", ".join(n for n in m.labels if n not in extra) + ")"
            else:
                grouping = f"by ({plus(m.labels if m is not None else [])})"
            return promql_parser.parse(f"{node.op} {grouping} ({param}{node.expr})")
        if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            bm = node.modifier
            if bm.matching is None or bm.matching.type != promql_parser.LabelModifierType.Include:
                return None  # one-to-one on all labels, or ignoring (...): the labels already match
            card = promql_parser.VectorMatchCardinality
            side = "group_left" if bm.card == card.ManyToOne else "group_right" if bm.card == card.OneToMany else ""
            group = f" {side} ({', '.join(bm.group_labels or [])})" if side else ""
            flag = " bool" if bm.return_bool else ""
            return promql_parser.parse(f"({node.lhs}) {node.op}{flag} on ({plus(bm.matching.labels)}){group} ({node.rhs})")
        return None

    return _without_empty_braces(str(promql_parser.transform(promql_parser.parse(expr), post_visit=rewrite)))


_STRING = re.compile(r'("(?:[^"\\]|\\.)*")')
_EMPTY_BRACES = re.compile(r"(?<=[A-Za-z0-9_:])\{\}")


def _without_empty_braces(text: str) -> str:
    """promql-parser prints a bare metric name as `name{}`; drop the braces outside string literals."""
    parts = _STRING.split(text)
    return "".join(p if i % 2 else _EMPTY_BRACES.sub("", p) for i, p in enumerate(parts))
