"""The catalog feed: what the course agent publishes for the catalog (its topic's records).

With every change the catalog shows (a course event, a rating, a seat taken or freed)
the course agent publishes one `CatalogEntry` (`catalog_record`) on the compacted
internal topic, keyed by course id, with a `catalog_version` that only grows. The sinks
(catalog/sinks.py) copy it into the PostgreSQL catalog and the search index; both apply
an entry only when it is newer than what they hold, so replays change nothing.
"""

from __future__ import annotations

import json
from typing import Any

from course_management.catalog.query import catalog_document, catalog_version
from course_management.domain.records import CourseRecord, SeatsRecord
from course_management.topology import COURSE_CATALOG, spec

SUBJECT = spec(COURSE_CATALOG).subject


def catalog_entry(
    course_id: str, record: CourseRecord | None, seats: SeatsRecord
) -> dict[str, Any] | None:
    """The entry for a course's table record and seats record (None: nothing to show)."""
    course = (record or {}).get("course")
    if course is None:
        return None
    version = catalog_version(course["version"], int(seats["seq"]))
    if (record or {}).get("deleted"):
        return {
            "course_id": course_id,
            "catalog_version": version,
            "listed": False,
            "document": None,
        }
    document = catalog_document(course, int(seats["count"]))
    return {
        "course_id": course_id,
        "catalog_version": version,
        "listed": document["listed"],
        "document": document,
    }


def catalog_record(entry: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    """(topic, key, subject, value) of an entry, for `Publisher.send_all`."""
    document = entry["document"]
    return (
        COURSE_CATALOG,
        entry["course_id"],
        SUBJECT,
        {
            "course_id": entry["course_id"],
            "catalog_version": entry["catalog_version"],
            "listed": entry["listed"],
            "document_json": json.dumps(document) if document is not None else None,
        },
    )


def entry_of_value(value: dict[str, Any]) -> dict[str, Any]:
    """A decoded CatalogEntry record as the writers take it."""
    raw = value["document_json"]
    return {
        "course_id": value["course_id"],
        "catalog_version": value["catalog_version"],
        "listed": value["listed"],
        "document": json.loads(raw) if raw else None,
    }
