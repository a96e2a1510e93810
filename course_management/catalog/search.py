"""Catalog pages: the configured backend (Elasticsearch, or PostgreSQL full text) behind
the Redis page cache.

Pages are keyed by the query and the catalog's generation, which the catalog sinks bump
after every batch they apply, so a page cached before a change is never served after it.
While Redis is unreachable pages are computed every time (infra.cache.ReadBypass).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from course_management.catalog.elastic import UNAVAILABLE as SEARCH_UNAVAILABLE
from course_management.catalog.elastic import EsCatalog
from course_management.catalog.postgres import PgCatalog
from course_management.catalog.query import CatalogQuery, catalog_summary, encode_cursor
from course_management.infra.cache import CatalogCache, ReadBypass
from course_management.infra.database import UNAVAILABLE as DATABASE_UNAVAILABLE
from course_management.infra.metrics import CATALOG_READS

# The catalog's backend (Elasticsearch, or PostgreSQL without SEARCH_URL) cannot answer.
UNAVAILABLE: tuple[type[BaseException], ...] = (*SEARCH_UNAVAILABLE, *DATABASE_UNAVAILABLE)


class CatalogSearch:
    def __init__(self, backend: PgCatalog | EsCatalog, pages: CatalogCache, bypass: ReadBypass):
        self._backend = backend
        self._pages = pages
        self._bypass = bypass

    async def applied_version(self, course_id: str) -> int | None:
        """The catalog version of a course that the backend's searches see now."""
        return await self._backend.applied_version(course_id)

    async def search(self, query: CatalogQuery, *, cached: bool = True) -> dict[str, Any]:
        """A page body `{"items", "next_cursor", "facets"}`; raises one of UNAVAILABLE.
        `cached=False` computes it from the backend (a read that waited for a write: a
        page cached under the generation before that write's is not served)."""
        backend = self._backend.backend
        key = hashlib.blake2b(
            json.dumps([backend, query.signature, query.limit, query.raw_cursor]).encode(),
            digest_size=16,
        ).hexdigest()
        from_cache = await self._bypass.call(lambda: self._pages.get(key)) if cached else None
        page_key, hit = from_cache or (None, None)
        if hit is not None:
            CATALOG_READS.labels(backend, "hit").inc()
            return hit
        page = await self._backend.search(query)
        body = {
            "items": [catalog_summary(course) for course in page.items],
            "next_cursor": encode_cursor(query, page.next_after, page.pit)
            if page.next_after is not None
            else None,
            "facets": page.facets,
        }
        if page_key is not None:
            cache_key = page_key
            await self._bypass.call(lambda: self._pages.put(cache_key, body))
        CATALOG_READS.labels(backend, "miss").inc()
        return body
