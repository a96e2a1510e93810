"""The catalog feed: what the course agent publishes for the catalog (its topic's records).

With every change the catalog shows (a course event, a rating, a seat taken or freed)
the course agent publishes one `CatalogEntry` (`entry_of`; its wire form:
messages/catalog_entry.py) on the compacted internal topic, keyed by course id, with a
`catalog_version` that only grows. The sinks
(sinks/catalog.py) copy it into the PostgreSQL catalog and the search index; both apply
an entry only when it is newer than what they hold, so replays change nothing.
"""

from __future__ import annotations

from course_management.catalog.query import catalog_document, catalog_version
from course_management.domain.ratings import as_read
from course_management.domain.records import CourseRecord, SeatsRecord
from course_management.messages.catalog_entry import CatalogEntry


def entry_of(
    course_id: str, record: CourseRecord | None, seats: SeatsRecord
) -> CatalogEntry | None:
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
    document = catalog_document(as_read(course, record, seats))
    return {
        "course_id": course_id,
        "catalog_version": version,
        "listed": document["listed"],
        "document": document,
    }
