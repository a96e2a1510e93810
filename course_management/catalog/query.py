"""The catalog: what a listed course looks like to search, and what a catalog query means. Pure.

Both search backends (Elasticsearch, PostgreSQL full text) are fed the same
`CatalogEntry` documents and answer the same `CatalogQuery`; the rules that make them
behave alike live here:

- a course is listed when it is published and not deleted;
- `q` is plain text: it is cut into words (letters and digits), at most `MAX_TERMS` of
  them, and every word must match somewhere (title, tags, instructor name, description),
  with a title match weighing most (`WORD_SCORES`). No query syntax ever reaches a backend;
- a word may be misspelt: like Elasticsearch's `fuzziness: AUTO` with `prefix_length: 1`,
  a word of 3-5 letters also finds words one edit away, a longer word two edits away
  (a swap of two neighbouring letters is one edit), never changing the first letter, and
  at most `MAX_TYPO_EXPANSIONS` nearest words per query word (`typo_matches`);
- each sort ends with the course id, so the order is total and a cursor (the sort values
  of the last item) neither repeats nor skips an item when courses are added.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from rapidfuzz.distance import OSA

from course_management.domain.course_fields import Level, no_nul
from course_management.domain.outcomes import invalid, invalid_from

MAX_TERMS = 32
MAX_TERM_CHARS = 64
FACETS = ("category", "level", "language")
MAX_TYPO_EXPANSIONS = 20  # the index's `max_expansions`
# Relevance, the same on both backends (decision 14): for every query word, the best of
# these scores over the fields it matches (as typed, or only through a correction); a
# course's score is the sum over the words. It depends on the course alone, so a cursor
# (score, id) stays valid while courses are added.
WORD_SCORES = (
    ("title", 8.0, 6.0),
    ("tags", 4.0, 3.0),
    ("instructor_name", 4.0, 3.0),
    ("description", 2.0, 1.5),
)
_WORD = re.compile(r"\w+", re.UNICODE)


def words_within_bounds(q: str) -> str:
    """A query of at most MAX_TERMS distinct words of at most MAX_TERM_CHARS each (what is
    past them used to be dropped or cut without a word to the client)."""
    words = {w.strip("_") for w in _WORD.findall(q.lower())} - {""}
    if len(words) > MAX_TERMS:
        raise ValueError(f"at most {MAX_TERMS} distinct words ({len(words)} given)")
    long = sorted(w for w in words if len(w) > MAX_TERM_CHARS)
    if long:
        raise ValueError(f"a word is at most {MAX_TERM_CHARS} characters ({long[0][:20]}...)")
    return q


class Sort(StrEnum):
    relevance = "relevance"
    newest = "newest"
    rating = "rating"
    popular = "popular"


Filter = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(no_nul)]


class CatalogParams(BaseModel):
    """The query string of `GET /api/v1/courses`, validated."""

    model_config = ConfigDict(extra="ignore")

    q: (
        Annotated[
            str,
            StringConstraints(max_length=5000),
            AfterValidator(no_nul),
            AfterValidator(words_within_bounds),
        ]
        | None
    ) = Field(
        default=None,
        description=(
            "Plain text over title, tags, instructor name, description; every word must"
            " match; a misspelt word (one edit in 3-5 letters, two from 6) still matches;"
            " at most 32 distinct words of at most 64 characters (422 naming `q` beyond)"
        ),
    )
    category: Filter | None = Field(default=None, description="Exact category")
    level: Level | None = Field(default=None, description="Exact level")
    language: (
        Annotated[
            str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35)
        ]
        | None
    ) = Field(default=None, description="A BCP 47 language tag, e.g. `en` or `pt-BR`")
    instructor_id: Filter | None = Field(default=None, description="The instructor's user id")
    tag: Filter | None = Field(default=None, description="Courses carrying this tag")
    sort: Sort | None = Field(
        default=None,
        description="`relevance` (default with q), `newest` (by `published_at`; default"
        " without q), `rating` (a Bayesian average: the count counts), `popular` (seats taken)",
    )
    limit: Annotated[int, Field(ge=1, le=100, description="Page size, 1..100")] = 20
    cursor: Annotated[str, StringConstraints(max_length=4000), AfterValidator(no_nul)] | None = (
        Field(
            default=None,
            description="Opaque: the `next_cursor` of the previous page (same query)",
        )
    )


@dataclass(frozen=True)
class CatalogQuery:
    terms: tuple[str, ...]
    filters: dict[str, str]  # category, level, language, instructor_id, tag
    sort: Sort
    limit: int
    after: tuple[Any, ...] | None = None  # the sort values of the previous page's last item
    pit: str | None = None  # Elasticsearch point in time (relevance pages only)
    raw_cursor: str | None = field(default=None, compare=False)

    @property
    def signature(self) -> str:
        """What a cursor is bound to: the same words, filters and sort."""
        raw = json.dumps([self.terms, sorted(self.filters.items()), self.sort.value])
        return hashlib.blake2b(raw.encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class CatalogPage:
    items: list[dict[str, Any]]  # Courses, in order (at most `limit`)
    next_after: tuple[Any, ...] | None  # the sort values of the last item, when more follow
    facets: dict[str, dict[str, int]]
    pit: str | None = None


def search_terms(q: str | None) -> tuple[str, ...]:
    """The words of a plain-text query: lower case, deduplicated, at most MAX_TERMS."""
    if not q:
        return ()
    seen: dict[str, None] = {}
    for word in _WORD.findall(q.lower()):
        word = word.strip("_")[:MAX_TERM_CHARS]
        if word and word not in seen:
            seen[word] = None
        if len(seen) == MAX_TERMS:
            break
    return tuple(seen)


def allowed_edits(word: str) -> int:
    """Elasticsearch's `fuzziness: AUTO`: none under 3 letters, one up to 5, two from 6."""
    return 0 if len(word) < 3 else 1 if len(word) < 6 else 2


def typo_matches(term: str, words: Iterable[str]) -> list[str]:
    """The `words` a misspelt `term` may have meant: same first letter, at most
    `allowed_edits(term)` edits away (a swap of neighbours is one edit), the term itself
    excluded; nearest first, at most `MAX_TYPO_EXPANSIONS`."""
    edits = allowed_edits(term)
    if not edits:
        return []
    near: list[tuple[int, str]] = []
    for word in set(words):
        if word == term or word[:1] != term[:1]:
            continue
        distance = OSA.distance(term, word, score_cutoff=edits)
        if distance <= edits:
            near.append((distance, word))
    return [word for _, word in sorted(near)[:MAX_TYPO_EXPANSIONS]]


def parse_query(query: dict[str, str]) -> CatalogQuery:
    """A validated catalog query; a refusal naming the parameter otherwise."""
    try:
        params = CatalogParams.model_validate(query)
    except ValidationError as exc:
        raise invalid_from(exc) from None
    terms = search_terms(params.q)
    sort = params.sort or (Sort.relevance if terms else Sort.newest)
    if sort is Sort.relevance and not terms:
        sort = Sort.newest  # nothing to be relevant to
    filters = {
        name: str(value.value if isinstance(value, Level) else value)
        for name in ("category", "level", "language", "instructor_id", "tag")
        if (value := getattr(params, name)) is not None
    }
    base = CatalogQuery(terms, filters, sort, params.limit)
    if params.cursor is None:
        return base
    after, pit = decode_cursor(params.cursor, base.signature, sort)
    return CatalogQuery(terms, filters, sort, params.limit, after, pit, params.cursor)


def encode_cursor(query: CatalogQuery, after: tuple[Any, ...], pit: str | None) -> str:
    body: dict[str, Any] = {"s": query.signature, "a": list(after)}
    if pit:
        body["p"] = pit
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CURSOR_SHAPES: dict[Sort, tuple[type | tuple[type, ...], ...]] = {
    Sort.relevance: ((int, float), str),
    Sort.newest: (str, str),
    Sort.rating: ((int, float), int, str),
    Sort.popular: (int, str),
}


def decode_cursor(cursor: str, signature: str, sort: Sort) -> tuple[tuple[Any, ...], str | None]:
    bad = invalid([("cursor", "not a cursor from this list (same q, filters, sort)")])
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(body, dict) or body.get("s") != signature:
        raise bad
    after = body.get("a")
    shape = _CURSOR_SHAPES[sort]
    if (
        not isinstance(after, list)
        or len(after) != len(shape)
        or any(
            isinstance(v, bool) or not isinstance(v, t) for v, t in zip(after, shape, strict=True)
        )
    ):
        raise bad
    pit = body.get("p")
    if pit is not None and not isinstance(pit, str):
        raise bad
    return tuple(after), pit


# -- documents ------------------------------------------------------------------------------


def catalog_version(course_version: int, seats_seq: int) -> int:
    """A number that grows with every change a catalog document shows.

    The course version grows with every course change (ratings included); the seats
    sequence grows with every seat taken or freed. Both only grow, so this does too, and
    the search index and the PostgreSQL catalog apply an entry only when it is newer.
    """
    return (course_version << 32) | (seats_seq & 0xFFFFFFFF)


# `sort=rating` ranks by a Bayesian average (decision 52): each course's ratings pulled
# toward PRIOR_STARS as if it had PRIOR_RATINGS more of them, so one 5-star rating
# (3.33) no longer beats a thousand 4.9s (4.89), and a few ratings move a course little.
PRIOR_STARS = 3.0
PRIOR_RATINGS = 5


def rating_score(average: float | None, count: int) -> float:
    """The rating sort's key: the Bayesian average, 0 for a course nobody rated (last)."""
    if not count or average is None:
        return 0.0
    return round((PRIOR_STARS * PRIOR_RATINGS + average * count) / (PRIOR_RATINGS + count), 4)


def catalog_summary(course: dict[str, Any]) -> dict[str, Any]:
    """What the catalog lists of a course (decision 53): every field but its modules, and
    the counts and total duration of what they hold. No content keys: a catalog page is
    anyone's, and the course's full structure is one read away (`GET .../modules`). A
    summary is returned as it is (documents indexed before held whole courses)."""
    if "modules" not in course:
        return course
    items = [item for module in course["modules"] for item in module["items"]]
    summary = {key: value for key, value in course.items() if key != "modules"}
    summary["module_count"] = len(course["modules"])
    summary["item_count"] = len(items)
    summary["duration_seconds"] = sum(int(i.get("duration_seconds") or 0) for i in items)
    summary.setdefault("published_at", course["created_at"])  # listed before decision 53
    return summary


def catalog_document(course: dict[str, Any]) -> dict[str, Any]:
    """The flat document both backends index, of a course as readers see it (its seats
    taken and rating included: domain.ratings.as_read); the listed summary rides along
    in `course`."""
    rating = course.get("rating") or {}
    enrollment_count = int(course.get("enrollment_count") or 0)
    return {
        "id": course["id"],
        "listed": course["status"] == "published",
        "title": course["title"],
        "description": course["description"],
        "tags": list(course["tags"]),
        "category": course["category"],
        "level": course["level"],
        "language": course["language"],
        "status": course["status"],
        "instructor_id": course["instructor"]["id"],
        "instructor_name": course["instructor"]["name"],
        "rating_average": rating.get("average"),
        "rating_sort": rating_score(rating.get("average"), int(rating.get("count") or 0)),
        "rating_count": int(rating.get("count") or 0),
        "enrollment_count": enrollment_count,
        "created_at": course["created_at"],
        "published_at": course.get("published_at") or course["created_at"],
        "updated_at": course["updated_at"],
        "version": course["version"],
        "course": catalog_summary(course),
    }


def unlisted_document(course_id: str) -> dict[str, Any]:
    """What a deleted course leaves in the catalog: a placeholder that keeps its version."""
    return {"id": course_id, "listed": False}


def sort_values(doc: dict[str, Any], sort: Sort, score: float | None = None) -> tuple[Any, ...]:
    """The cursor position of a document under a sort (see `_CURSOR_SHAPES`)."""
    if sort is Sort.relevance:
        return (float(score or 0.0), doc["id"])
    if sort is Sort.newest:  # newly published first (decision 53)
        return (doc.get("published_at") or doc["created_at"], doc["id"])
    if sort is Sort.rating:
        return (float(doc["rating_sort"]), int(doc["rating_count"]), doc["id"])
    return (int(doc["enrollment_count"]), doc["id"])
