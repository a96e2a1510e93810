"""The Elasticsearch catalog: an index behind the alias `courses`, written with external versions.

Every write carries the entry's `catalog_version` as an external version, so a replayed
or reordered entry never takes a document back. A deleted or unpublished course stays as
a small unlisted document (a real delete would forget its version after a minute and let
an old entry bring it back).

Scoring is deliberately simple and depends on the document only (never on the rest of
the index, unlike BM25): for every word, the best of a title match (exact 8, one typo 6),
a tag or instructor-name match (4 / 3) and a description match (2 / 1.5). So a title
match ranks above a description match, and a cursor (score, id) stays valid while
courses are added. Typos: `fuzziness: AUTO` (one edit from 3 letters, two from 6).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError
from elasticsearch import ConnectionError as EsConnectionError
from elasticsearch import ConnectionTimeout as EsConnectionTimeout
from elasticsearch.helpers import async_bulk

from course_management.catalog.query import (
    FACETS,
    WORD_SCORES,
    CatalogPage,
    CatalogQuery,
    Sort,
)
from course_management.messages.catalog_entry import CatalogEntry

log = logging.getLogger(__name__)

ALIAS = "courses"
MAPPING_REVISION = 3  # 3: published_at (decision 53)
UNAVAILABLE = (EsConnectionError, EsConnectionTimeout)

INDEX_BODY: dict[str, Any] = {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
    "mappings": {
        "dynamic": "strict",
        "_meta": {"revision": MAPPING_REVISION},
        "properties": {
            "id": {"type": "keyword"},
            "listed": {"type": "boolean"},
            "title": {"type": "text"},
            "description": {"type": "text"},
            "tags": {"type": "keyword", "fields": {"text": {"type": "text"}}},
            "category": {"type": "keyword"},
            "level": {"type": "keyword"},
            "language": {"type": "keyword"},
            "status": {"type": "keyword"},
            "instructor_id": {"type": "keyword"},
            "instructor_name": {"type": "text"},
            "rating_average": {"type": "double"},
            "rating_sort": {"type": "double"},
            "rating_count": {"type": "integer"},
            "enrollment_count": {"type": "integer"},
            "created_at": {"type": "date"},
            "created_key": {"type": "keyword"},
            "published_at": {"type": "date"},
            "published_key": {"type": "keyword"},
            "updated_at": {"type": "date"},
            "version": {"type": "long"},
            "course": {"type": "object", "enabled": False},
        },
    },
}

_SORTS: dict[Sort, list[dict[str, str]]] = {
    Sort.relevance: [{"_score": "desc"}, {"id": "asc"}],
    Sort.newest: [{"published_key": "desc"}, {"id": "asc"}],
    Sort.rating: [{"rating_sort": "desc"}, {"rating_count": "desc"}, {"id": "asc"}],
    Sort.popular: [{"enrollment_count": "desc"}, {"id": "asc"}],
}

# The index's field for each of `WORD_SCORES`' fields.
_FIELD_NAMES = {"tags": "tags.text"}


def _source(entry: CatalogEntry) -> dict[str, Any]:
    doc = entry.get("document")
    if not entry["listed"] or doc is None:
        return {"id": entry["course_id"], "listed": False}
    published = doc.get("published_at") or doc["created_at"]
    return {
        **doc,
        "published_at": published,
        "created_key": doc["created_at"],
        "published_key": published,
    }


def _actions(entries: Sequence[CatalogEntry], index: str) -> list[dict[str, Any]]:
    return [
        {
            "_op_type": "index",
            "_index": index,
            "_id": entry["course_id"],
            "version": entry["catalog_version"],
            "version_type": "external",
            "_source": _source(entry),
        }
        for entry in entries
    ]


async def write_catalog_entries(
    es: AsyncElasticsearch,
    entries: Sequence[CatalogEntry],
    index: str = ALIAS,
    refresh: Any = "wait_for",
) -> int:
    """Index a batch with external versions; an older entry than the document is skipped.

    Returns how many documents changed. Raises on anything but a version conflict.
    """
    if not entries:
        return 0
    ok, errors = await async_bulk(
        es, _actions(entries, index), refresh=refresh, raise_on_error=False, stats_only=False
    )
    failures = [e for e in errors if _status(e) != 409]  # type: ignore[union-attr]
    if failures:
        raise RuntimeError(f"search index refused {len(failures)} documents: {failures[:3]}")
    return int(ok)


def _status(error: Any) -> int:
    for value in error.values():
        return int(value.get("status", 0))
    return 0


class EsCatalog:
    """`search(CatalogQuery) -> CatalogPage` over the index."""

    backend = "elasticsearch"

    def __init__(self, es: AsyncElasticsearch, index: str = ALIAS) -> None:
        self.es = es
        self.index = index

    async def applied_version(self, course_id: str) -> int | None:
        """The catalog version of the course that searches see now (a search, not a get:
        a get is real time, a search only sees what the last refresh made visible)."""
        result = await self.es.search(
            index=self.index,
            query={"ids": {"values": [course_id]}},
            version=True,
            size=1,
            source=False,
        )
        hits = result["hits"]["hits"]
        return int(hits[0]["_version"]) if hits else None

    async def search(self, query: CatalogQuery) -> CatalogPage:
        filters: list[dict[str, Any]] = [{"term": {"listed": True}}]
        for name, value in query.filters.items():
            filters.append({"term": {"tags" if name == "tag" else name: value}})
        musts = [_word(term) for term in query.terms]
        body: dict[str, Any] = {
            "size": query.limit + 1,
            "query": {"bool": {"filter": filters, "must": musts}},
            "sort": _SORTS[query.sort],
            "track_total_hits": False,
            "_source": ["course", "enrollment_count"],
            "aggs": {name: {"terms": {"field": name, "size": 200}} for name in FACETS},
        }
        if query.after is not None:
            body["search_after"] = list(query.after)
        result = await self.es.search(index=self.index, **body)
        hits = result["hits"]["hits"]
        items = [_course(hit) for hit in hits[: query.limit]]
        next_after = None
        if len(hits) > query.limit:
            values = hits[query.limit - 1]["sort"]
            next_after = tuple(
                float(values[0]) if i == 0 and query.sort in (Sort.relevance, Sort.rating) else v
                for i, v in enumerate(values)
            )
        facets = {
            name: {b["key"]: int(b["doc_count"]) for b in result["aggregations"][name]["buckets"]}
            for name in FACETS
        }
        facets = {
            name: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0])))
            for name, v in facets.items()
        }
        return CatalogPage(items, next_after, facets)


def _word(term: str) -> dict[str, Any]:
    options = []
    for name, exact, fuzzy in WORD_SCORES:
        field = _FIELD_NAMES.get(name, name)
        options.append(
            {"constant_score": {"filter": {"match": {field: {"query": term}}}, "boost": exact}}
        )
        options.append(
            {
                "constant_score": {
                    "filter": {
                        "match": {
                            field: {
                                "query": term,
                                "fuzziness": "AUTO",
                                "prefix_length": 1,
                                "max_expansions": 20,
                            }
                        }
                    },
                    "boost": fuzzy,
                }
            }
        )
    return {"dis_max": {"queries": options}}


def _course(hit: dict[str, Any]) -> dict[str, Any]:
    source = hit["_source"]
    course: dict[str, Any] = {**source["course"], "enrollment_count": source["enrollment_count"]}
    return course


# -- index lifecycle --------------------------------------------------------------------------


def new_index_name(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S%f")
    return f"{ALIAS}-{stamp}"


async def current_index(es: AsyncElasticsearch) -> str | None:
    try:
        aliases = await es.indices.get_alias(name=ALIAS)
    except NotFoundError:
        return None
    names = sorted(aliases.body)
    return names[-1] if names else None


async def index_revision(es: AsyncElasticsearch, index: str) -> int:
    mapping = await es.indices.get_mapping(index=index)
    meta = mapping[index]["mappings"].get("_meta") or {}
    return int(meta.get("revision", 0))


async def create_index(es: AsyncElasticsearch, name: str) -> None:
    await es.indices.create(index=name, **INDEX_BODY)


async def swap_alias(es: AsyncElasticsearch, new: str, old: str | None) -> None:
    """Point the alias at `new` in one atomic step."""
    actions: list[dict[str, Any]] = [{"add": {"index": new, "alias": ALIAS}}]
    if old:
        actions.insert(0, {"remove": {"index": old, "alias": ALIAS}})
    await es.indices.update_aliases(actions=actions)


async def rebuild_index(
    es: AsyncElasticsearch,
    batches: Any,
    total: int,
    catch_up: Callable[[str], Any],
    on_progress: Callable[[int], None] = lambda n: None,
) -> tuple[str, str | None]:
    """Build a new index from `batches` of catalog entries, swap the alias, catch up.

    Reads go on against the old index until the swap; `catch_up(new_index)` then writes
    whatever changed meanwhile (external versions make repeats harmless). Returns
    (new index, old index); the old index is deleted.
    """
    old = await current_index(es)
    new = new_index_name()
    await create_index(es, new)
    await es.indices.put_settings(index=new, settings={"refresh_interval": "-1"})
    written = 0
    async for batch in batches:
        await write_catalog_entries(es, batch, index=new, refresh=False)
        written += len(batch)
        on_progress(len(batch))
    await es.indices.put_settings(index=new, settings={"refresh_interval": "1s"})
    await es.indices.refresh(index=new)
    await swap_alias(es, new, old)
    await catch_up(new)
    if old and old != new:
        await es.indices.delete(index=old)
    log.info(
        "search index rebuilt",
        extra={"index": new, "previous": old, "documents": written, "total": total},
    )
    return new, old
