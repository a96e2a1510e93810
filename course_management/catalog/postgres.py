"""The PostgreSQL catalog: written by the catalog sink, searched with full-text search.

Used as the search backend when no Elasticsearch node is configured (`SEARCH_URL`
unset), and always kept, so the index can be rebuilt from it. Words are matched with
the `simple` text configuration (lower-cased, no stemming), like the index's standard
analyzer; every word must match, and courses are scored as on the index
(`catalog.query.WORD_SCORES`, over the title, tags plus instructor name, and
description weights of the `search` column). Misspelt words are found as on the index
(`catalog.query.typo_matches`): each query word is widened with the catalog words it
may have meant, looked up in `catalog_words` (same first letter, a close length, a
bounded Levenshtein distance) and checked in Python.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from course_management.catalog.postgres_relevance import lexemes, score_sql
from course_management.catalog.query import (
    FACETS,
    MAX_TERM_CHARS,
    CatalogPage,
    CatalogQuery,
    Sort,
    allowed_edits,
    rating_score,
    sort_values,
    typo_matches,
)
from course_management.messages.catalog_entry import CatalogEntry

TABLE = "catalog_courses"

_COLUMNS = (
    "id, catalog_version, listed, title, description, tags, tags_text, category, level, "
    "language, instructor_id, instructor_name, rating_average, rating_sort, rating_count, "
    "enrollment_count, created_at, created_at_text, published_at_text, document"
)


def _upsert(table: str) -> str:
    updates = ", ".join(
        f"{c} = EXCLUDED.{c}" for c in (c.strip() for c in _COLUMNS.split(",")) if c != "id"
    )
    return f"""
INSERT INTO {table} AS c ({_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20::jsonb)
ON CONFLICT (id) DO UPDATE SET {updates}, changed_at = now()
WHERE c.catalog_version < EXCLUDED.catalog_version
"""


MAX_WORD_CHARS = MAX_TERM_CHARS + 2  # a query word, plus two edits

# The words of the rows just written, for typo lookups (sorted: concurrent writers take
# the same locks in the same order).
_REMEMBER_WORDS = """
INSERT INTO catalog_words (word)
SELECT DISTINCT w FROM {table}, unnest(tsvector_to_array(search)) AS w
WHERE id = ANY($1::text[]) AND listed AND length(w) BETWEEN 2 AND {longest}
ORDER BY w
ON CONFLICT DO NOTHING
"""

# Catalog words near each query word. Levenshtein counts a swap of neighbours as two
# edits, so the bound is twice the allowed edits; `typo_matches` then keeps the words
# within the allowed edits counting a swap as one.
_NEAR_WORDS = """
SELECT t.term, w.word
FROM unnest($1::text[], $2::int[]) AS t(term, edits)
CROSS JOIN LATERAL (
    SELECT word FROM catalog_words
    WHERE left(word, 1) = left(t.term, 1)
      AND length(word) BETWEEN length(t.term) - t.edits AND length(t.term) + t.edits
      AND levenshtein_less_equal(word, t.term, 2 * t.edits) <= 2 * t.edits
) w
"""


def _row(entry: CatalogEntry) -> tuple[Any, ...]:
    doc = entry.get("document")
    if not entry["listed"] or doc is None:
        key: tuple[Any, ...] = (entry["course_id"], entry["catalog_version"], False)
        return (
            *key, "", "", [], "", None, None, None, None, "", None, 0.0, 0, 0, None, None, None,
            None,
        )  # fmt: skip
    return (
        doc["id"],
        entry["catalog_version"],
        True,
        doc["title"],
        doc["description"],
        doc["tags"],
        " ".join(doc["tags"]),
        doc["category"],
        doc["level"],
        doc["language"],
        doc["instructor_id"],
        doc["instructor_name"],
        doc["rating_average"],
        rating_score(doc["rating_average"], int(doc["rating_count"])),  # decision 52
        doc["rating_count"],
        doc["enrollment_count"],
        datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00")),
        doc["created_at"],
        doc.get("published_at") or doc["created_at"],
        json.dumps(doc["course"]),
    )


def newest_entries(entries: Iterable[CatalogEntry]) -> list[CatalogEntry]:
    """One entry per course: the newest of a batch (the others change nothing)."""
    newest: dict[str, CatalogEntry] = {}
    for entry in entries:
        seen = newest.get(entry["course_id"])
        if seen is None or seen["catalog_version"] < entry["catalog_version"]:
            newest[entry["course_id"]] = entry
    return list(newest.values())


async def write_catalog_entries(
    pool: asyncpg.Pool, entries: Sequence[CatalogEntry], table: str = TABLE
) -> int:
    """Upsert a batch; an entry older than the row is ignored. Returns the rows written."""
    # In id order: concurrent writers (two sinks, a rebuild catching up) lock rows alike.
    rows = sorted((_row(e) for e in newest_entries(entries)), key=lambda row: str(row[0]))
    if not rows:
        return 0
    listed = [row[0] for row in rows if row[2]]
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(_upsert(table), rows)
        if listed:
            await conn.execute(_REMEMBER_WORDS.format(table=table, longest=MAX_WORD_CHARS), listed)
    return len(rows)


async def prune_catalog_words(pool: asyncpg.Pool) -> int:
    """Forget the catalog words no listed course has any more; returns how many. Writers
    of words wait meanwhile (a word of a course being written is never lost: its writer
    inserts it after)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE catalog_words IN SHARE ROW EXCLUSIVE MODE")
        status = await conn.execute(
            f"""DELETE FROM catalog_words WHERE word NOT IN (
                SELECT DISTINCT w FROM {TABLE}, unnest(tsvector_to_array(search)) AS w
                WHERE listed)"""
        )
    return int(status.split()[-1])


class PgCatalog:
    """`search(CatalogQuery) -> CatalogPage` over the catalog table."""

    backend = "postgres"

    def __init__(self, pool: asyncpg.Pool, table: str = TABLE) -> None:
        self.pool = pool
        self.table = table

    async def applied_version(self, course_id: str) -> int | None:
        """The catalog version of the course in the table (None: not there yet)."""
        value = await self.pool.fetchval(
            f"SELECT catalog_version FROM {self.table} WHERE id = $1",
            course_id,
        )
        return None if value is None else int(value)

    async def search(self, query: CatalogQuery) -> CatalogPage:
        where, args = self._filters(query)
        score = "0::real"
        typos: dict[str, list[str]] = {}
        if query.terms:
            typos = await self._typos(query.terms)
            matches = []
            for term in query.terms:
                args.append(term)
                typed = f"to_tsquery('simple', ${len(args)})"
                if term in typos:
                    args.append(lexemes(typos[term]))
                    typed = f"({typed} || ${len(args)}::tsquery)"
                matches.append(typed)
            where.append("search @@ (" + " && ".join(matches) + ")")
        filter_args = list(args)  # the facets need no more
        if query.terms and query.sort is Sort.relevance:
            score = score_sql(query.terms, typos, args)
        order, keyset = self._order(query, args)
        args.append(query.limit + 1)
        page_sql = (self._top_matches if query.terms else self._walk)(
            where, score, order, keyset, f"${len(args)}"
        )
        facet_sql = f"""
            SELECT category, level, language, count(*) AS n FROM {self.table}
            WHERE {" AND ".join(where)}
            GROUP BY GROUPING SETS ((category), (level), (language))"""
        # Two connections at once: the page and the facets are independent queries.
        rows, facet_rows = await asyncio.gather(
            self.pool.fetch(page_sql, *args), self.pool.fetch(facet_sql, *filter_args)
        )
        items = [_course(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        last = rows[query.limit - 1] if more else None
        next_after = None
        if last is not None:
            next_after = sort_values(
                {
                    "id": last["id"],
                    "created_at": last["created_at_text"],
                    "published_at": last["published_at_text"],
                    "rating_sort": last["rating_sort"],
                    "rating_count": last["rating_count"],
                    "enrollment_count": last["enrollment_count"],
                },
                query.sort,
                last["score"],
            )
        return CatalogPage(items, next_after, _facets(facet_rows))

    def _top_matches(
        self, where: list[str], score: str, order: str, keyset: list[str], limit: str
    ) -> str:
        """The page of a query with words: the top of the matches the full-text index finds
        (a `MATERIALIZED` set of narrow rows; only the page's rows fetch their documents).
        Left to itself, given a sort with an index, the planner walks that index and tests
        every course against the words when it expects many matches: a rare pair of words
        read the whole table, 92 ms over 100,000 courses instead of 2 ms (decision 30)."""
        return f"""
            WITH hits AS MATERIALIZED (
                SELECT id, rating_sort, rating_count, enrollment_count,
                       created_at_text, published_at_text, ({score})::real AS score
                FROM {self.table} WHERE {" AND ".join(where)}
            ), top AS (
                SELECT first.*, row_number() OVER (ORDER BY {order}) AS place FROM (
                    SELECT * FROM hits WHERE {" AND ".join(["true", *keyset])}
                    ORDER BY {order} LIMIT {limit}
                ) first
            )
            SELECT top.*, c.document FROM top JOIN {self.table} c USING (id)
            ORDER BY top.place"""

    def _walk(self, where: list[str], score: str, order: str, keyset: list[str], limit: str) -> str:
        """The page of a query without words: walks the sort's index."""
        return f"""
            SELECT id, document, rating_sort, rating_count, enrollment_count,
                   created_at_text, published_at_text, ({score})::real AS score
            FROM {self.table}
            WHERE {" AND ".join([*where, *keyset])}
            ORDER BY {order} LIMIT {limit}"""

    async def _typos(self, terms: tuple[str, ...]) -> dict[str, list[str]]:
        """For each query word that may be misspelt, the catalog words it may have meant."""
        fuzzy = [t for t in terms if allowed_edits(t)]
        if not fuzzy:
            return {}
        near: dict[str, list[str]] = defaultdict(list)
        for row in await self.pool.fetch(_NEAR_WORDS, fuzzy, [allowed_edits(t) for t in fuzzy]):
            near[row["term"]].append(row["word"])
        return {t: matches for t in fuzzy if (matches := typo_matches(t, near[t]))}

    @staticmethod
    def _filters(query: CatalogQuery) -> tuple[list[str], list[Any]]:
        where = ["listed"]
        args: list[Any] = []
        for name, value in query.filters.items():
            args.append(value)
            if name == "tag":
                where.append(f"tags @> ARRAY[${len(args)}]::text[]")
            else:
                where.append(f"{name} = ${len(args)}")
        return where, args

    @staticmethod
    def _order(query: CatalogQuery, args: list[Any]) -> tuple[str, list[str]]:
        """ORDER BY over the `hits` columns, and the keyset condition after the cursor."""
        columns = {
            Sort.relevance: (("score", "real", "DESC"), ("id", "text", "ASC")),
            Sort.newest: (("published_at_text", "text", "DESC"), ("id", "text", "ASC")),
            Sort.rating: (
                ("rating_sort", "float8", "DESC"),
                ("rating_count", "int", "DESC"),
                ("id", "text", "ASC"),
            ),
            Sort.popular: (("enrollment_count", "int", "DESC"), ("id", "text", "ASC")),
        }[query.sort]
        order = ", ".join(f"{c} {d}" for c, _, d in columns)
        if query.after is None:
            return order, []
        # (a, b, c) after (x, y, z) in a mixed-direction order, spelled out term by term.
        params = []
        for (_column, cast, _), value in zip(columns, query.after, strict=True):
            args.append(value)
            params.append(f"${len(args)}::{cast}")
        ors = []
        for i, (column, _, direction) in enumerate(columns):
            equal = [f"{columns[j][0]} = {params[j]}" for j in range(i)]
            op = "<" if direction == "DESC" else ">"
            ors.append("(" + " AND ".join([*equal, f"{column} {op} {params[i]}"]) + ")")
        return order, ["(" + " OR ".join(ors) + ")"]

    async def all_entries(self, batch: int = 1000) -> AsyncIterator[list[dict[str, Any]]]:
        """Every row as a catalog entry, in batches (for rebuilding the index)."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            cursor = conn.cursor(f"SELECT {_COLUMNS} FROM {self.table} ORDER BY id")
            rows: list[dict[str, Any]] = []
            async for row in cursor:
                rows.append(entry_of_row(row))
                if len(rows) == batch:
                    yield rows
                    rows = []
            if rows:
                yield rows

    async def count(self) -> int:
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {self.table}"))


def entry_of_row(row: asyncpg.Record) -> dict[str, Any]:
    """A catalog entry (as on the catalog topic) rebuilt from a catalog row."""
    if not row["listed"] or row["document"] is None:
        return {
            "course_id": row["id"],
            "catalog_version": row["catalog_version"],
            "listed": False,
            "document": None,
        }
    course = json.loads(row["document"])
    rating = course.get("rating") or {}
    document = {
        "id": row["id"],
        "listed": True,
        "title": row["title"],
        "description": row["description"],
        "tags": list(row["tags"]),
        "category": row["category"],
        "level": row["level"],
        "language": row["language"],
        "status": course["status"],
        "instructor_id": row["instructor_id"],
        "instructor_name": row["instructor_name"],
        "rating_average": rating.get("average"),
        "rating_sort": rating_score(rating.get("average"), int(row["rating_count"])),
        "rating_count": row["rating_count"],
        "enrollment_count": row["enrollment_count"],
        "created_at": row["created_at_text"],
        "published_at": row["published_at_text"],
        "updated_at": course["updated_at"],
        "version": course["version"],
        "course": course,
    }
    return {
        "course_id": row["id"],
        "catalog_version": row["catalog_version"],
        "listed": True,
        "document": document,
    }


def _course(row: asyncpg.Record) -> dict[str, Any]:
    course: dict[str, Any] = json.loads(row["document"])
    return course


def _facets(rows: list[asyncpg.Record]) -> dict[str, dict[str, int]]:
    facets: dict[str, dict[str, int]] = {name: {} for name in FACETS}
    for row in rows:
        for name in FACETS:
            if row[name] is not None:
                facets[name][row[name]] = int(row["n"])
    return {
        name: dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))
        for name, values in facets.items()
    }
