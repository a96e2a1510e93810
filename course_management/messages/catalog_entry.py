"""`CatalogEntry` on the compacted course-management-catalog (schemas/catalog_entry.avsc):
a course's catalog document after every change the catalog shows, keyed by course id,
with a `catalog_version` that only grows (catalog/feed.py builds it)."""

from __future__ import annotations

import json
from typing import Any, TypedDict

from course_management.topology import COURSE_CATALOG, spec

TOPIC = COURSE_CATALOG
SUBJECT = spec(TOPIC).subject


class CatalogEntry(TypedDict):
    course_id: str
    catalog_version: int
    listed: bool
    document: dict[str, Any] | None  # None: the course left the catalog (deleted)


def encode(entry: CatalogEntry) -> dict[str, Any]:
    document = entry["document"]
    return {
        "course_id": entry["course_id"],
        "catalog_version": entry["catalog_version"],
        "listed": entry["listed"],
        "document_json": json.dumps(document) if document is not None else None,
    }


def decode(value: dict[str, Any]) -> CatalogEntry:
    raw = value["document_json"]
    return {
        "course_id": value["course_id"],
        "catalog_version": value["catalog_version"],
        "listed": value["listed"],
        "document": json.loads(raw) if raw else None,
    }
