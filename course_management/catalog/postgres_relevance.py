"""The PostgreSQL catalog's relevance: `WORD_SCORES` as SQL over the `search` tsvector.

Per query word, the best field it matches as typed, or only through a correction; the
same constant scores as the search index (catalog.query), never `ts_rank`.
"""

from __future__ import annotations

from typing import Any

from course_management.catalog.query import WORD_SCORES

# Which `search` weight holds each of `WORD_SCORES`' fields (see the 0004 migration), and
# per weight, best first, the scores of a word found there as typed and only corrected.
_WEIGHT_OF = {"title": "A", "tags": "B", "instructor_name": "B", "description": "C"}


def _scores_by_weight() -> list[tuple[str, float, float]]:
    best: dict[str, tuple[float, float]] = {}
    for field, exact, corrected in WORD_SCORES:
        was = best.get(_WEIGHT_OF[field], (0.0, 0.0))
        best[_WEIGHT_OF[field]] = (max(was[0], exact), max(was[1], corrected))
    return sorted(((w, e, c) for w, (e, c) in best.items()), key=lambda scores: -scores[1])


_SCORES_BY_WEIGHT = _scores_by_weight()


def score_sql(terms: tuple[str, ...], typos: dict[str, list[str]], args: list[Any]) -> str:
    """The relevance of a course (`WORD_SCORES`), appending its parameters to `args`: per
    query word, the best field it matches as typed, or only through a correction (a
    tsquery with a weight label matches only lexemes of that weight). Constant per field,
    as on the index; `ts_rank` would change with the number of corrections, and so with
    the rest of the catalog."""
    words = []
    for term in terms:
        args.append(term)
        typed = len(args)
        cases: list[tuple[float, str]] = []
        for weight, exact, corrected in _SCORES_BY_WEIGHT:
            cases.append((exact, f"to_tsquery('simple', ${typed}::text || ':{weight}')"))
            if term in typos:
                args.append(lexemes(typos[term], weight))
                cases.append((corrected, f"${len(args)}::tsquery"))
        cases.sort(key=lambda case: -case[0])
        whens = " ".join(f"WHEN search @@ {tsq} THEN {value}" for value, tsq in cases)
        words.append(f"(CASE {whens} ELSE 0 END)")
    return " + ".join(words)


def lexemes(words: list[str], weight: str = "") -> str:
    """Catalog words as a tsquery of quoted lexemes (taken as they are, not parsed again),
    any of them, with a weight label when given."""
    label = f":{weight}" if weight else ""
    return " | ".join("'" + w.replace("\\", "\\\\").replace("'", "''") + "'" + label for w in words)
