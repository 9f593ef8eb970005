"""Subject -> indicator through the reviewed phrases of `rules/indicators.yaml`.

A phrase matches a subject when every one of its words occurs in it (order-free, singular and
plural alike, case-insensitive): "P95 response time" matches "Response times (P95". The phrase
with the most words wins; a tie between indicators is reported as candidates, never decided.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence


def words(text: str) -> frozenset[str]:
    """Lower-case word stems: `Response times` -> {response, time}."""
    out = set()
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return frozenset(out)


class Vocabulary:
    """The phrases of every indicator, looked up by subject."""

    def __init__(self, phrases: Mapping[str, Sequence[str]]):
        self._phrases = [(iid, words(p)) for iid, ps in phrases.items() for p in ps]

    def lookup(self, subject: str) -> tuple[str | None, list[str]]:
        """(indicator, []) for one best match, (None, [tied ids]) for a tie, (None, []) for none.

        "CPU/memory usage" names two things: each alternative is looked up, and two different
        answers are a tie.
        """
        alternative = re.search(r"(\w+)/(\w+)", subject)
        if alternative:
            found = [self._best(subject[:alternative.start()] + word + subject[alternative.end():])
                     for word in alternative.groups()]
            answers = sorted({i for i, _ in found if i} | {c for _, cs in found for c in cs})
            return (answers[0], []) if len(answers) == 1 else (None, answers)
        return self._best(subject)

    def _best(self, subject: str) -> tuple[str | None, list[str]]:
        have = words(subject)
        best: dict[str, int] = {}
        for iid, ws in self._phrases:
            if ws and ws <= have:
                best[iid] = max(best.get(iid, 0), len(ws))
        if not best:
            return None, []
        top = max(best.values())
        winners = sorted(i for i, n in best.items() if n == top)
        return (winners[0], []) if len(winners) == 1 else (None, winners)
