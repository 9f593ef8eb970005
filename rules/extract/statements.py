"""Operational statements of a playbook: every number that states a threshold, objective, window,
frequency, response time, priority, maintenance window or retention, with where it stands.

One `Statement` per number: "above 120 s is a warning; above 600 s critical" gives two.
Values are normalised (85 % -> 0.85, durations in seconds, sizes in bytes, times of day in
seconds after midnight) so they compare directly with the catalogue's thresholds.

The text comes from `markdown.blocks` (parsed Markdown, code skipped); the patterns below only
ever run over one block's prose, never over raw lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .markdown import Block, blocks
from .vocabulary import Vocabulary

#: The kinds of statement, as `kind` says: threshold, frequency, response_time, retention,
#: maintenance_window, schedule (a time of day a task runs), priority, duration (of a task or
#: phase), status (an HTTP status code), value (a number with a unit and no comparison).

# --- units -----------------------------------------------------------------------------------

_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2592000, "y": 31536000}
_BYTES = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_UNIT_WORDS: list[tuple[str, str]] = [  # (regex, canonical) longest first
    (r"%|percent\b", "%"),
    (r"milliseconds?\b|ms\b", "ms"),
    (r"seconds?\b|secs?\b|s\b", "s"),
    (r"minutes?\b|mins?\b|m\b", "m"),
    (r"hours?\b|hrs?\b|h\b", "h"),
    (r"days?\b|d\b", "d"),
    (r"weeks?\b|w\b", "w"),
    (r"months?\b", "mo"),
    (r"years?\b", "y"),
    (r"[KMGT]B\b|[kmgt]b\b", "bytes"),
]
_UNIT = "|".join(f"(?:{rx})" for rx, _ in _UNIT_WORDS)
_PER = r"(?:\s*(?:requests?|req|queries|operations|ops)?\s*(?:per|/)\s*(?P<per>second|sec|minute|min|hour|day|week|month)\b)"
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"

_TOKEN = re.compile(
    rf"""
    (?P<date>\b\d{{4}}-\d{{2}}-\d{{2}}\b)
  | (?P<time>\b(?P<h1>\d{{1,2}})(?::(?P<m1>\d{{2}}))?\s*(?P<ap1>AM|PM|am|pm)?
        \s*(?:-|–|to)\s*(?P<h2>\d{{1,2}})(?::(?P<m2>\d{{2}}))?\s*(?P<ap2>AM|PM|am|pm)\b
     | \b(?P<h3>\d{{1,2}})(?::(?P<m3>\d{{2}})\s*(?P<ap3>AM|PM|am|pm)?|\s*(?P<ap4>AM|PM|am|pm)\b)(?![\d:]))
  | (?P<priority>\bP(?P<plevel>[0-4])\b)
  | (?P<status>\b(?P<code>[1-5]\d\d)\s+(?:status|OK)\b)
  | (?P<split>\b(?P<sa>\d{{1,2}})/(?P<sb>\d{{1,2}})\b(?!\s*(?:second|sec|minute|min|hour|day)))
  | (?P<value>(?<![\w.-])(?P<num>{_NUM})(?:\s*(?:-|–|to)\s*(?P<num2>{_NUM}))?
        (?P<plus1>\+)?(?:\s*-?\s*(?P<unit>{_UNIT}))?(?P<plus>\+)?{_PER}?)
    """,
    re.VERBOSE,
)

# --- comparators -------------------------------------------------------------------------------

_COMPARATORS: list[tuple[str, str]] = [
    (r">=|≥|\bat least\b|\bat or above\b|\bno (?:less|fewer) than\b|\bminimum(?: of)?\b", ">="),
    (r"<=|≤|\bat most\b|\bat or below\b|\bno more than\b|\bno older than\b|\bwithin(?: the)?(?: last)?\b|\bup to\b|\bmaximum(?: of)?\b", "<="),
    (r">|\bover\b|\bexceeds?\b|\bexceeding\b|\bmore than\b|\babove\b|\bgreater than\b|\bhigher than\b|\bbeyond\b|\bolder than\b", ">"),
    (r"<|\bbelow\b|\bunder\b|\bless than\b|\bfewer than\b|\blower than\b|\bstays? under\b", "<"),
    (r"=|\bequals?\b", "="),
]
_COMPARATOR = re.compile("|".join(f"(?P<c{i}>{rx})" for i, (rx, _) in enumerate(_COMPARATORS)), re.I)
_AFTER_COMPARATOR = [(re.compile(r"^\s*(?:maximum|max|or less|or fewer|at most)\b", re.I), "<="),
                     (re.compile(r"^\s*(?:minimum|min\b|or more|at least)", re.I), ">=")]
_FOR = re.compile(r"\b(for|in|over|within)(?: the)?(?: last)?\s*$", re.I)
_EVERY = re.compile(r"\b(?:every|each)\s*$", re.I)
_INTERVAL_AFTER = re.compile(r"^\s*intervals?\b", re.I)
_RETENTION = re.compile(r"\b(?:keep|kept|retain|retained|retention|prune|delete)\b", re.I)
_NEGATED = re.compile(r"\b(?:not|never)\b", re.I)
_RESPONSE = re.compile(r"\b(?:respon[sd]\w*|acknowledg\w*|ack)\b", re.I)
_FREQUENCY = re.compile(r"\b(?:frequency|cadence|interval)\b", re.I)
_MAINTENANCE = re.compile(r"\bmaintenance\b|\bwindow\b", re.I)
_WEEKDAY = re.compile(r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)days?\b", re.I)
_TIMEZONE = re.compile(r"\b(UTC|GMT|local time|[A-Z]{2,4}T)\b")
_ALERT_SENSE = re.compile(r"\balert(?:s|ing)? (?:if|when)\b|→|->|\bescalate\b|\btrigger|\bneeds? (?:a look|attention)\b"
                          r"|\binvestigat\w*|\bpage\b", re.I)

_TIER_WORDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(?:target|objective|goal|slo|sla|expected|baseline)\b", re.I), "target"),
    (re.compile(r"\b(?:warn(?:ing)?|ticket|minor)\b", re.I), "warning"),
    (re.compile(r"\b(?:crit(?:ical)?|page|alert|major|severe)\b", re.I), "critical"),
]
_KPI_SECTION = re.compile(r"\bkpis?\b|key performance indicators|\bobjectives?\b|\bslos?\b|\btargets?\b", re.I)
_GENERIC_SUBJECT = re.compile(r"^(?:frequency|duration|time|timing|response time|when|schedule)$", re.I)
_SUBJECT_NOISE = re.compile(
    r"\b(?:should be|must be|must stay|should stay|stays?|is|are|be|if|when|target|objective|every|each|"
    r"continuous with|with|typically|provide|the|last|of|must not|must|should not|need|needs|keep|takes)\b\s*$", re.I)
_SUBJECT_VERBS = re.compile(r"\b(?:alert(?:s|ing)? (?:if|when)|should be|must be)\b", re.I)


@dataclass
class Statement:
    """One number of a playbook with its provenance; the JSON output contract of `gen-rules extract`."""

    file: str
    line: int
    section: list[str]
    quote: str
    kind: str
    subject: str
    comparator: str | None
    value: float | None
    unit: str | None
    for_: float | None = None
    window: float | None = None
    tier: str | None = None
    indicator: str | None = None
    candidates: list[str] = field(default_factory=list)
    priority: str | None = None
    sense: str = "ok"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["for"] = d.pop("for_")
        return {k: d[k] for k in ("file", "line", "section", "quote", "kind", "subject", "comparator",
                                  "value", "unit", "for", "window", "tier", "indicator", "candidates", "priority", "sense")}


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _normalise(num: str, unit: str | None) -> tuple[float, str]:
    value = float(num.replace(",", ""))
    if unit is None:
        return value, "count"
    u = unit.lower()
    for rx, canonical in _UNIT_WORDS:
        if re.fullmatch(rx, unit) or re.fullmatch(rx, u):
            if canonical == "%":
                return round(value / 100, 12), "ratio"
            if canonical == "bytes":
                return value * _BYTES[u], "bytes"
            return round(value * _SECONDS[canonical], 9), "s"
    raise AssertionError(unit)


def _time_of_day(h: str, m: str | None, ampm: str | None) -> float:
    hour = int(h) % 12 + (12 if ampm and ampm.lower() == "pm" else 0) if ampm else int(h)
    return float(hour * 3600 + int(m or 0) * 60)


def _comparator_before(text: str) -> str | None:
    """The last comparator in the text leading up to a number (symbols and words)."""
    found = None
    for m in _COMPARATOR.finditer(text):
        idx = next(int(k[1:]) for k, v in m.groupdict().items() if v)
        found = _COMPARATORS[idx][1]
    return found


def _tier_of_column(header: str) -> str | None:
    for rx, tier in _TIER_WORDS:
        if rx.search(header):
            return tier
    return None


def _subject(prefix: str) -> str:
    """The words naming what a number is about: the clause text before it, minus the verb."""
    text = _SUBJECT_VERBS.sub(" ", _COMPARATOR.sub(" ", prefix))
    text = re.sub(r"[*`_#]|^\s*[-+]\s+", " ", text)
    text = re.sub(r"\(([^)]*)$", r" \1", text)  # "Response times (P95 <" -> "Response times P95"
    text = re.sub(r"[(),:]", " ", text)
    text = re.sub(r"^(?:and|or|but|then)\s+", "", _clean(text), flags=re.I)
    while True:
        trimmed = _SUBJECT_NOISE.sub("", text).strip(" -–:")
        if trimmed == text:
            return text
        text = trimmed


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])|;\s*|\r\n")


def _sentences(text: str) -> Iterable[tuple[int, str]]:
    """(offset, sentence) pieces of a block; a sentence may span source lines."""
    start = 0
    for m in _SENTENCE.finditer(text):
        yield start, text[start:m.start()]
        start = m.end()
    yield start, text[start:]


def _statements_of_block(block: Block, file: str, vocabulary: Vocabulary | None) -> list[Statement]:
    out: list[Statement] = []
    in_kpi_section = any(_KPI_SECTION.search(s) for s in block.section)
    section_priority = next((m.group(0) for s in reversed(block.section) if (m := re.search(r"\bP[0-4]\b", s))), None)
    if block.kind == "table_row":
        pieces = [(header, cell, i) for i, (header, cell) in enumerate(block.cells)]
        row_subject = _clean(block.cells[0][1]) if block.cells else ""
        quote = _clean(block.text)
        for header, cell, col in pieces:
            out += _scan(cell, block, file, quote, block.line, vocabulary, in_kpi_section, section_priority,
                         subject_default=row_subject if col else "", column=header)
        return out
    subject = ""
    for offset, sentence in _sentences(block.text):
        quote = _clean(sentence)
        if not quote:
            continue
        line = block.line_at(offset + (len(sentence) - len(sentence.lstrip())))
        found = _scan(sentence, block, file, quote, line, vocabulary, in_kpi_section, section_priority,
                      subject_default=subject)
        subject = next((s.subject for s in reversed(found) if s.kind == "threshold"), subject)
        out += found
    return out


def _scan(text: str, block: Block, file: str, quote: str, line: int, vocabulary: Vocabulary | None,
          in_kpi_section: bool, section_priority: str | None, subject_default: str = "", column: str = "") -> list[Statement]:
    """Every number of one sentence (or table cell) as a Statement."""
    out: list[Statement] = []
    subject = ""
    last_end = 0
    clause_start = 0
    sense = "alert" if (_ALERT_SENSE.search(text) or any("symptom" in s.lower() for s in block.section)) else "ok"
    column_tier = _tier_of_column(column) if column else None
    if column_tier in ("warning", "critical"):
        sense = "alert"
    priority_here = next((m.group(0) for m in re.finditer(r"\bP[0-4]\b", text)), None) or section_priority
    prev: Statement | None = None
    for m in _TOKEN.finditer(text):
        if m.group("date"):
            continue
        before = text[last_end:m.start()]
        if out and (re.search(r"[;,]|\band\b", before)) and not m.group("priority"):
            clause_start = last_end  # "every 6 hours and the newest backup is ...": a new subject
        prefix = text[clause_start:m.start()]
        own_subject = _subject(text[:m.start()] if not out else prefix) or subject or subject_default
        if _GENERIC_SUBJECT.match(own_subject) and block.section:
            own_subject = f"{block.section[-1]}: {own_subject}" if block.kind != "heading" else own_subject
        if not own_subject and block.lead:
            own_subject = _subject(block.lead)
        pre = text[last_end:m.start()]
        common = dict(file=file, line=line, section=list(block.section), quote=quote, subject=own_subject,
                      sense=sense, priority=priority_here)
        last_end = m.end()
        if m.group("priority"):
            level = "P" + m.group("plevel")
            out.append(Statement(**dict(common, priority=level, subject=level), kind="priority", comparator=None,
                                 value=None, unit=None))
            continue
        if m.group("time"):
            # a time range in a maintenance section ("Sundays 2:00 AM - 4:00 AM UTC"); a single
            # time ("Every Monday at 9:00 AM") is when a task runs
            kind = "maintenance_window" if (m.group("h2") and _MAINTENANCE.search(" ".join(block.section) + " " + text)
                                             and (_WEEKDAY.search(text) or _TIMEZONE.search(text))) else "schedule"
            for value, comparator in _times(m):
                out.append(Statement(**common, kind=kind, comparator=comparator, value=value, unit="time_of_day"))
            continue
        if m.group("status"):
            out.append(Statement(**common, kind="status", comparator="=", value=float(m.group("code")), unit="http_status"))
            continue
        if m.group("split"):
            a, b = int(m.group("sa")), int(m.group("sb"))
            if a + b != 100:
                continue
            out.append(Statement(**common, kind="value", comparator=None, value=a / 100, unit="ratio"))
            continue
        unit = m.group("unit")
        per = m.group("per")
        comparator = _comparator_before(pre)
        after = text[m.end():]
        for rx, comp in _AFTER_COMPARATOR:
            if comparator is None and rx.match(after):
                comparator = comp
        if m.group("plus") or m.group("plus1"):
            comparator = comparator or ">="
        # "must not exceed 90%": the comparator names the bad side, like an alert condition
        negated = comparator is not None and bool(_NEGATED.search(pre))
        if unit is None and per is None and comparator is None and column_tier is None:
            continue  # a bare number (an enumeration, a version, a port): not a statement
        value, norm_unit = _normalise(m.group("num"), unit)
        if per:
            norm_unit = f"per_{ {'sec': 'second', 'min': 'minute'}.get(per, per) }".replace(" ", "")
        # "for 5 minutes" after a threshold is how long it must hold; "in 5 minutes" / "over 1 hour"
        # the window it is measured over: part of that statement, not one of their own
        if prev is not None and norm_unit == "s" and prev.kind == "threshold" and not m.group("num2"):
            held = _FOR.search(pre)
            if held and held.group(1).lower() == "for" and prev.for_ is None:
                prev.for_ = value
                continue
            if held and held.group(1).lower() != "for" and prev.window is None:
                prev.window = value
                continue
        qualifier = re.match(r"\s*(of \w+|average|avg)\b", after)  # "> 80% of max", "> 2 s average"
        if qualifier and comparator is not None:
            own_subject = f"{own_subject} {qualifier.group(1)}"
        values = [(value, comparator)]
        if m.group("num2"):
            value2, _ = _normalise(m.group("num2"), unit)
            values = [(value, ">="), (value2, "<=")]
        tier = column_tier or _tier_in_words(pre, after)
        if tier is None and in_kpi_section and comparator is not None and block.kind != "heading":
            tier = "target"  # "Average Response Time: < 300ms" under "Key Performance Indicators"
        kind = _kind(text, pre, after, text[clause_start:m.start()], own_subject, norm_unit, comparator, tier,
                     in_kpi_section)
        stated_sense = "alert" if (negated or tier in ("warning", "critical")) else sense
        for v, comp in values:
            indicator, candidates = vocabulary.lookup(own_subject) if (vocabulary and kind == "threshold") else (None, [])
            st = Statement(**dict(common, sense=stated_sense), kind=kind, comparator=comp, value=v, unit=norm_unit,
                           tier=tier if kind == "threshold" else None, indicator=indicator, candidates=candidates)
            out.append(st)
            prev = st
        if comparator is not None:
            subject = own_subject
    return out


def _times(m: re.Match[str]) -> list[tuple[float, str | None]]:
    """(seconds after midnight, comparator) of a time ("9:00 AM") or a range ("2:00 AM - 4:00 AM")."""
    if m.group("h3"):
        return [(_time_of_day(m.group("h3"), m.group("m3"), m.group("ap3") or m.group("ap4")), None)]
    return [(_time_of_day(m.group("h1"), m.group("m1"), m.group("ap1") or m.group("ap2")), ">="),
            (_time_of_day(m.group("h2"), m.group("m2"), m.group("ap2")), "<")]


def _tier_in_words(pre: str, after: str) -> str | None:
    """"Target 99.99%" names the tier before the number, "above 600 s is critical" after it."""
    tail = re.split(r"\d|[;,]", after, maxsplit=1)[0][:30]
    return next((t for rx, t in _TIER_WORDS[:1] if rx.search(pre)), None) or \
        next((t for rx, t in _TIER_WORDS[1:] if rx.search(tail)), None)


def _kind(text: str, pre: str, after: str, clause: str, subject: str, unit: str, comparator: str | None,
          tier: str | None, in_kpi_section: bool) -> str:
    """What a number with a unit states, from the words around it (see the kinds above)."""
    if _EVERY.search(pre) or _INTERVAL_AFTER.match(after) or (_FREQUENCY.search(subject) and unit == "s"):
        return "frequency"
    if unit == "s" and _RETENTION.search(f"{clause} {subject}"):
        return "retention"
    if unit == "s" and comparator in (None, "<=") and not in_kpi_section and (
            _RESPONSE.search(f"{subject} {pre}") or re.search(r"\bP[0-4]\b", text)):
        return "response_time"  # "Response within 1 hour", "P1: status page update within 2 hours"
    if comparator is not None or tier is not None:
        return "threshold"
    return "duration" if unit == "s" else "value"


def extract_text(source: str, file: str, vocabulary: Vocabulary | None = None) -> list[Statement]:
    """Every statement of one Markdown document, in document order (deterministic)."""
    out: list[Statement] = []
    for block in blocks(source):
        out += _statements_of_block(block, file, vocabulary)
    return out


def extract_file(path: Path, vocabulary: Vocabulary | None = None) -> list[Statement]:
    return extract_text(path.read_text(encoding="utf-8"), path.name, vocabulary)
