"""`course-management ops check`: do the tables, the mirror and the catalog agree with the
topics they are derived from?

The topics are the truth: `course-events` and `enrollment-events` (every change, in
order), the compacted catalog feed, and the tables' changelogs. The check reads the
stores first and the topics after, so a store can only be behind a topic by what arrived
in between (run it on a quiet system, or run it again), never ahead unless it is wrong.

Compared, per course and per enrollment:
- the `courses` table (its changelog): version and deleted, against the last course event;
- the mirror's `courses` rows: version and deleted, against the last course event;
- the mirror's `enrollments` rows: version and status, against the last enrollment event;
- the catalog backend (PostgreSQL's `catalog_courses` or the Elasticsearch index):
  catalog version and listed, against the last catalog entry;
- the mirror's `enrollment_transitions` (each enrolment's history): how many status
  changes, against the distinct status-changing events of `enrollment-events`;
- the mirror's `course_ratings`: the course version, seq and stars, against the last entry of
  each student's rating on the ratings topic;
- each course's learning path (domain.path_rules.path_fingerprint) in the table and the mirror,
  against its last event;
- the completions topic (every worker's completions index reads it: decision 57): one
  entry per `course_completed` of enrollment-events (`ops completions backfill` adds what
  is missing);
- the timer: a time lock still pending more than a minute after its moment.

Each difference is one `Difference`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_scan

from course_management.catalog import elastic
from course_management.catalog.postgres import TABLE as CATALOG_TABLE
from course_management.config import Settings
from course_management.domain.path_rules import path_fingerprint
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.kafka import read_to_end
from course_management.ops.history import differences as history_differences
from course_management.ops.paths import completions, pending_timers
from course_management.ops.progress import Quiet, Steps
from course_management.ops.provisioning import register_schemas
from course_management.ops.queues import differences as queue_differences
from course_management.tables.keys import is_course_key
from course_management.tables.units import is_placed
from course_management.topology import (
    COURSE_CATALOG,
    COURSE_EVENTS,
    COURSE_RATINGS,
    ENROLLMENT_EVENTS,
    STATE_TABLE,
    changelog,
    spec,
)


@dataclass(frozen=True)
class Difference:
    store: str  # tables | mirror | catalog
    entity: str  # course | enrollment
    id: str  # a course id, or "<course id>:<user id>"
    expected: dict[str, Any] | None  # what the topic says (None: nothing)
    found: dict[str, Any] | None  # what the store holds (None: nothing)

    def shown(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    store: str,
    entity: str,
    expected: dict[str, dict[str, Any]],
    found: dict[str, dict[str, Any]],
) -> list[Difference]:
    """Every id whose state differs between the topic's view and the store's."""
    return [
        Difference(store, entity, key, expected.get(key), found.get(key))
        for key in sorted(set(expected) | set(found))
        if expected.get(key) != found.get(key)
    ]


async def check(settings: Settings, steps: Steps | None = None) -> list[Difference]:
    steps = steps or Quiet()
    steps.step("reading the mirror")
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        mirror_courses = {
            r["id"]: {
                "version": r["version"],
                "deleted": r["deleted_at"] is not None,
                "path": None if r["deleted_at"] else path_fingerprint(json.loads(r["snapshot"])),
            }
            for r in await pool.fetch("SELECT id, version, deleted_at, snapshot FROM courses")
        }
        mirror_enrollments = {
            f"{r['course_id']}:{r['user_id']}": {"version": r["version"], "status": r["status"]}
            for r in await pool.fetch("SELECT course_id, user_id, version, status FROM enrollments")
        }
        mirror_histories = {
            f"{r['course_id']}:{r['user_id']}": {"transitions": r["n"]}
            for r in await pool.fetch(
                "SELECT course_id, user_id, count(*) AS n FROM enrollment_transitions"
                " GROUP BY course_id, user_id"
            )
        }
        mirror_ratings = {
            f"{r['course_id']}:{r['user_id']}": {
                "version": r["course_version"],
                "seq": r["seq"],
                "stars": r["stars"],
            }
            for r in await pool.fetch(
                "SELECT course_id, user_id, course_version, seq, stars FROM course_ratings"
            )
        }
        steps.step("reading the catalog")
        catalog = (
            await _search_catalog(settings.search_url)
            if settings.search_url
            else {
                r["id"]: {"catalog_version": r["catalog_version"], "listed": r["listed"]}
                for r in await pool.fetch(
                    f"SELECT id, catalog_version, listed FROM {CATALOG_TABLE}"  # noqa: S608
                )
            }
        )
    finally:
        await pool.close()
    steps.step("reading the courses table's changelog")
    tables = await _courses_table(settings.kafka_bootstrap_servers, steps)
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    steps.step("reading course-events")
    courses = await _last(settings, codec, COURSE_EVENTS, _course_state, steps)
    steps.step("reading enrollment-events")
    enrollments = await _last(settings, codec, ENROLLMENT_EVENTS, _enrollment_state, steps)
    steps.step("reading the catalog feed")
    entries = await _last(settings, codec, COURSE_CATALOG, _catalog_state, steps)
    steps.step("reading enrollment-events for the histories")
    histories = await _histories(settings, codec, steps)
    steps.step("reading the ratings")
    ratings = await _last(settings, codec, COURSE_RATINGS, _rating_state, steps)
    steps.step("reading the completions")
    said, held = await completions(settings, codec)
    steps.step("reading the pending time locks")
    late = [t for t in await pending_timers(settings) if t["late_s"] > TIMER_LATE_S]
    steps.step("reading the waitlists and the bulk jobs")
    queues = [Difference(*d) for d in await queue_differences(settings, codec)]
    steps.step("reading the course versions and the learners' histories")
    history = [Difference(*d) for d in await history_differences(settings, codec)]
    return [
        *queues,
        *history,
        *compare("completions", "completion", _present(said), _present(held)),
        *(Difference("timer", "time lock", _due_id(t), None, t) for t in late),
        *compare("tables", "course", courses, tables),
        *compare("mirror", "course", courses, mirror_courses),
        *compare("mirror", "enrollment", enrollments, mirror_enrollments),
        *compare("catalog", "course", entries, catalog),
        *compare("mirror", "enrollment history", histories, mirror_histories),
        *compare("mirror", "rating", ratings, mirror_ratings),
    ]


def _course_state(value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    deleted = value["event_type"] == "course_deleted" or value.get("course") is None
    path = None if deleted else path_fingerprint(value["course"])
    return value["course_id"], {"version": value["version"], "deleted": deleted, "path": path}


TIMER_LATE_S = 60.0  # a time lock opens within a minute of its moment (CONTRACT §5.1)


def _present(keys: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {key: {"present": True} for key in keys}


def _due_id(due: dict[str, Any]) -> str:
    learner = f":{due['user_id']}" if due.get("user_id") else ""
    return f"{due['course_id']}:{due['module_id']}{learner}@{due['moment']}"


def _enrollment_state(value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    status = (value.get("enrollment") or {}).get("status")
    key = f"{value['course_id']}:{value['user_id']}"
    return key, {"version": value["version"], "status": status}


def _rating_state(value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = f"{value['course_id']}:{value['user_id']}"
    return key, {
        "version": value["course_version"],
        "seq": value.get("seq", 0),
        "stars": value["stars"],
    }


# The enrollment events that change an enrolment's status: each is one row of its history
# in the mirror (infra/enrollment_mirror.py).
STATUS_CHANGES = ("enrollment_created", "enrollment_cancelled", "course_completed")


async def _histories(
    settings: Settings, codec: AvroCodec, steps: Steps
) -> dict[str, dict[str, Any]]:
    """Each enrolment's count of distinct status-changing events (a repeat after a crash is
    the same event id, and the same row of the mirror)."""
    subject = spec(ENROLLMENT_EVENTS).subject
    seen: dict[str, set[str]] = {}

    async def count(records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                value = await codec.decode(subject, record.value)
            except AvroDecodeError:
                continue
            if value["event_type"] in STATUS_CHANGES:
                key = f"{value['course_id']}:{value['user_id']}"
                seen.setdefault(key, set()).add(str(value["event_id"]))

    await read_to_end(
        settings.kafka_bootstrap_servers, [ENROLLMENT_EVENTS], count, on_read=steps.read
    )
    return {key: {"transitions": len(ids)} for key, ids in seen.items()}


def _catalog_state(value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return value["course_id"], {
        "catalog_version": value["catalog_version"],
        "listed": value["listed"],
    }


async def _last(
    settings: Settings,
    codec: AvroCodec,
    topic: str,
    state: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]],
    steps: Steps,
) -> dict[str, dict[str, Any]]:
    """The state of each id after the topic's records, the highest version winning (a
    topic is in order per key, so that is also its last record)."""
    subject = spec(topic).subject
    last: dict[str, dict[str, Any]] = {}

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                key, value = state(await codec.decode(subject, record.value))
            except AvroDecodeError:  # the sinks dead-lettered it: not a state
                continue
            seen = last.get(key)
            versioned = "version" if "version" in value else "catalog_version"
            if seen is None or seen[versioned] <= value[versioned]:
                last[key] = value

    await read_to_end(settings.kafka_bootstrap_servers, [topic], keep, on_read=steps.read)
    return last


async def _courses_table(bootstrap: str, steps: Steps) -> dict[str, dict[str, Any]]:
    """The courses of the `course-state` table as its changelog leaves it (placed records
    only, tables/units.py): course id -> version, deleted."""
    table: dict[str, dict[str, Any]] = {}

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            key = _table_key(record.key)
            if not is_course_key(key) or not is_placed(record.offset, record.headers):
                continue
            if record.value is None:
                table.pop(key, None)
                continue
            value = json.loads(record.value)
            course = value.get("course") or {}
            if "version" in course:
                deleted = bool(value.get("deleted"))
                path = None if deleted else path_fingerprint(course)
                table[key] = {"version": course["version"], "deleted": deleted, "path": path}

    await read_to_end(bootstrap, [changelog(STATE_TABLE)], keep, on_read=steps.read)
    return table


def _table_key(raw: bytes | None) -> str:
    text = (raw or b"").decode()
    return str(json.loads(text)) if text.startswith('"') else text


async def _search_catalog(url: str) -> dict[str, dict[str, Any]]:
    es = AsyncElasticsearch(url, request_timeout=60)
    found: dict[str, dict[str, Any]] = {}
    try:
        async for hit in async_scan(
            es, index=elastic.ALIAS, query={"query": {"match_all": {}}}, version=True,
            _source=["listed"],
        ):  # fmt: skip
            found[hit["_id"]] = {
                "catalog_version": hit["_version"],
                "listed": hit["_source"]["listed"],
            }
    finally:
        await es.close()
    return found
