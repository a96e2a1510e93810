"""The catalog feed and its sinks.

The course agent publishes, with every change the catalog shows (a course event, a
rating, a seat taken or freed), one `CatalogEntry` (`catalog_record`) on the compacted
internal topic, keyed by course id, with a `catalog_version` that only grows.

Two sinks read it in batches: the PostgreSQL catalog (always: it is the search backend
without Elasticsearch, and the source of a rebuild) and, when `SEARCH_URL` is set, the
Elasticsearch index. Both apply an entry only when it is newer than what they hold, so
replays change nothing. While a sink's store is down the sink waits and retries; when
it is back the sink catches up from its committed offset. After each applied batch the
Redis catalog pages are invalidated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import faust
from tenacity import AsyncRetrying, before_sleep_log, retry_if_exception_type, wait_exponential

from course_management.domain.catalog import catalog_document, catalog_version
from course_management.infra import catalog_es, catalog_pg
from course_management.infra.avro import AvroDecodeError
from course_management.infra.metrics import CATALOG_ENTRIES
from course_management.topology import COURSE_CATALOG

if TYPE_CHECKING:
    from course_management.runtime import Runtime

log = logging.getLogger(__name__)
SUBJECT = f"{COURSE_CATALOG}-value"
BATCH = 500
BATCH_WAIT_S = 0.05


def catalog_entry(
    course_id: str, record: dict[str, Any] | None, seats: dict[str, Any]
) -> dict[str, Any] | None:
    """The entry for a course's table record and seats record (None: nothing to show)."""
    course = (record or {}).get("course")
    if course is None:
        return None
    version = catalog_version(course["version"], int(seats.get("seq", 0)))
    if (record or {}).get("deleted"):
        return {
            "course_id": course_id,
            "catalog_version": version,
            "listed": False,
            "document": None,
        }
    document = catalog_document(course, int(seats.get("count", 0)))
    return {
        "course_id": course_id,
        "catalog_version": version,
        "listed": document["listed"],
        "document": document,
    }


def catalog_record(entry: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    """(topic, key, subject, value) of an entry, for `Runtime.publish_all`."""
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


Writer = Callable[[list[dict[str, Any]]], Awaitable[int]]


def register_catalog_sinks(app: faust.App, runtime: Runtime) -> list[Any]:
    topic = app.topic(
        COURSE_CATALOG,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def to_postgres(entries: list[dict[str, Any]]) -> int:
        assert runtime.pool is not None
        return await catalog_pg.write_catalog_entries(runtime.pool, entries)

    sinks = [
        _sink(
            app, runtime, topic, "postgres", to_postgres, (OSError, asyncpg.PostgresConnectionError)
        )
    ]
    if runtime.settings.search_url:

        async def to_search(entries: list[dict[str, Any]]) -> int:
            assert runtime.search is not None
            return await catalog_es.write_catalog_entries(runtime.search, entries)

        sinks.append(
            _sink(
                app, runtime, topic, "elasticsearch", to_search, (*catalog_es.UNAVAILABLE, OSError)
            )
        )
    return sinks


def _sink(
    app: faust.App,
    runtime: Runtime,
    topic: Any,
    store: str,
    write: Writer,
    unavailable: tuple[type[BaseException], ...],
) -> Any:
    async def sink(stream: Any) -> None:
        async for events in stream.take_events(BATCH, within=BATCH_WAIT_S):
            entries = []
            for event in events:
                try:
                    value = await runtime.codec.decode(SUBJECT, event.value)
                except AvroDecodeError as exc:
                    await runtime.dead_letter(COURSE_CATALOG, event.key, event.value, str(exc))
                    continue
                entries.append(entry_of_value(value))
            if not entries:
                continue
            async for attempt in AsyncRetrying(  # the stream waits for the store; nothing skipped
                retry=retry_if_exception_type(unavailable),
                wait=wait_exponential(multiplier=0.2, max=5),
                before_sleep=before_sleep_log(log, logging.WARNING),
                reraise=True,
            ):
                with attempt:
                    written = await write(entries)
            CATALOG_ENTRIES.labels(store).inc(written)
            await runtime.catalog_cache.invalidate()

    sink.__name__ = f"catalog_to_{store}"
    return app.agent(topic, name=f"catalog-{store}", concurrency=1)(sink)
