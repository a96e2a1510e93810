"""`course-management ops mirror rebuild`: the PostgreSQL mirror's courses and enrollments
made what their event topics say again, in place.

1. Read the mirror's rows (id, version, deleted), then `course-events` and
   `enrollment-events` to their ends: the last event of each course and enrollment, and
   each course's last full snapshot (a deletion carries none).
2. Every row that differs from its last event (missing, older, newer, deleted or not) is
   written again from the events: the row is deleted (with its modules and items), then
   the last snapshot is applied, and the deletion after it if there was one, through the
   sink's own writers (infra/database.py, infra/enrollment_mirror.py). A row with no
   event at all is deleted.
3. A course or enrollment that received an event after step 1 read its topic is left to
   the live sink, which applies it by version anyway: the repair never writes over a
   newer state.
4. Each enrolment's history (`enrollment_transitions`) whose status changes differ from
   the distinct status-changing events of `enrollment-events` is written again from them,
   and each rating (`course_ratings`) that differs from its last entry on the ratings
   topic is written again from it (a row with no entry is deleted).
5. The waitlists and the bulk jobs (ops/queues.py): from `learner-milestones` and the
   job progress topic.
6. The course versions and the learners' histories (ops/history.py): from
   `course-events`, `enrollment-events` and `learner-milestones`.
Rows that agree are not touched.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from course_management.config import Settings
from course_management.domain.path_rules import path_fingerprint
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.database import mirror_course_event
from course_management.infra.enrollment_mirror import mirror_enrollment_events, mirror_ratings
from course_management.infra.kafka import Offsets, read_to_end
from course_management.messages import rating_entry
from course_management.messages.rating_entry import RatingEntry
from course_management.ops.check import STATUS_CHANGES
from course_management.ops.history import repair as repair_history
from course_management.ops.progress import Quiet, Steps
from course_management.ops.provisioning import register_schemas
from course_management.ops.queues import repair as repair_queues
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS, spec

Events = dict[str, list[dict[str, Any]]]  # id -> the events that rebuild it, in order


async def rebuild_mirror(settings: Settings, steps: Steps | None = None) -> dict[str, Any]:
    steps = steps or Quiet()
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        steps.step("reading the mirror")
        courses_found = {
            r["id"]: (
                r["version"],
                r["deleted_at"] is not None,
                None if r["deleted_at"] else path_fingerprint(json.loads(r["snapshot"])),
            )
            for r in await pool.fetch("SELECT id, version, deleted_at, snapshot FROM courses")
        }
        enrollments_found = {
            f"{r['course_id']}:{r['user_id']}": (r["version"], r["status"])
            for r in await pool.fetch("SELECT course_id, user_id, version, status FROM enrollments")
        }
        steps.step("reading course-events")
        courses, course_ends = await _events(settings, codec, COURSE_EVENTS, _course_key, steps)
        steps.step("reading enrollment-events")
        enrollments, enrollment_ends = await _events(
            settings, codec, ENROLLMENT_EVENTS, _enrollment_key, steps
        )
        steps.step("reading what arrived meanwhile")
        newer, _ = await _events(
            settings, codec, COURSE_EVENTS, _course_key, steps, start=course_ends
        )
        newer_enrollments, _ = await _events(
            settings, codec, ENROLLMENT_EVENTS, _enrollment_key, steps, start=enrollment_ends
        )
        moved = set(newer) | set(newer_enrollments)
        steps.step("repairing")
        repaired_courses = await _repair(
            pool, courses, courses_found, moved, _course_row, _rewrite_course, _remove_course
        )
        repaired_enrollments = await _repair(
            pool,
            enrollments,
            enrollments_found,
            moved,
            _enrollment_row,
            _rewrite_enrollment,
            _remove_enrollment,
        )
        steps.step("repairing the histories and the ratings")
        histories = await _repair_histories(settings, codec, pool, moved, steps)
        ratings = await _repair_ratings(settings, codec, pool, steps)
        steps.step("repairing the waitlists and the bulk jobs")
        queues = await repair_queues(settings, codec, pool)
        steps.step("repairing the course versions and the learners' histories")
        history = await repair_history(settings, codec, pool)
    finally:
        await pool.close()
    return {
        "courses": {"events": len(courses), "rows": len(courses_found), **repaired_courses},
        "enrollments": {
            "events": len(enrollments),
            "rows": len(enrollments_found),
            **repaired_enrollments,
        },
        "histories": histories,
        "ratings": ratings,
        "queues": queues,
        "history": history,
        "left_to_the_sink": len(moved),
    }


async def _repair_histories(
    settings: Settings, codec: AvroCodec, pool: asyncpg.Pool, moved: set[str], steps: Steps
) -> dict[str, int]:
    subject = spec(ENROLLMENT_EVENTS).subject
    changes: dict[str, dict[str, dict[str, Any]]] = {}  # enrolment -> event id -> event

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                value = await codec.decode(subject, record.value)
            except AvroDecodeError:
                continue
            if value["event_type"] in STATUS_CHANGES:
                changes.setdefault(_enrollment_key(value), {})[str(value["event_id"])] = value

    await read_to_end(
        settings.kafka_bootstrap_servers, [ENROLLMENT_EVENTS], keep, on_read=steps.read
    )
    found = {
        f"{r['course_id']}:{r['user_id']}": r["n"]
        for r in await pool.fetch(
            "SELECT course_id, user_id, count(*) AS n FROM enrollment_transitions"
            " GROUP BY course_id, user_id"
        )
    }
    rewritten = 0
    for key, events in changes.items():
        if key in moved or found.get(key) == len(events):
            continue
        course_id, user_id = key.split(":", 1)
        await pool.execute(
            "DELETE FROM enrollment_transitions WHERE course_id = $1 AND user_id = $2",
            course_id,
            user_id,
        )
        await mirror_enrollment_events(pool, sorted(events.values(), key=lambda e: e["version"]))
        rewritten += 1
    return {"enrollments": len(changes), "rewritten": rewritten}


async def _repair_ratings(
    settings: Settings, codec: AvroCodec, pool: asyncpg.Pool, steps: Steps
) -> dict[str, int]:
    last: dict[str, RatingEntry] = {}

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                entry = rating_entry.decode(await codec.decode(rating_entry.SUBJECT, record.value))
            except (AvroDecodeError, KeyError, ValueError):
                continue
            seen = last.get(entry.key)
            if seen is None or seen.order <= entry.order:
                last[entry.key] = entry

    await read_to_end(
        settings.kafka_bootstrap_servers, [rating_entry.TOPIC], keep, on_read=steps.read
    )
    rows = {
        f"{r['course_id']}:{r['user_id']}": (r["course_version"], r["seq"], r["stars"])
        for r in await pool.fetch(
            "SELECT course_id, user_id, course_version, seq, stars FROM course_ratings"
        )
    }
    rewritten = removed = 0
    for key, entry in last.items():
        if rows.get(key) == (*entry.order, entry.stars):
            continue
        await _delete_rating(pool, key)
        await mirror_ratings(pool, [entry])
        rewritten += 1
    for key in set(rows) - set(last):
        await _delete_rating(pool, key)
        removed += 1
    return {"entries": len(last), "rewritten": rewritten, "removed": removed}


async def _delete_rating(pool: asyncpg.Pool, key: str) -> None:
    course_id, user_id = key.split(":", 1)
    await pool.execute(
        "DELETE FROM course_ratings WHERE course_id = $1 AND user_id = $2", course_id, user_id
    )


def _course_key(value: dict[str, Any]) -> str:
    return str(value["course_id"])


def _enrollment_key(value: dict[str, Any]) -> str:
    return f"{value['course_id']}:{value['user_id']}"


def _course_row(event: dict[str, Any]) -> tuple[Any, ...]:
    """What the mirror's row must hold after the event: (version, deleted, its learning
    path's rules)."""
    deleting = _deleting(event)
    path = None if deleting else path_fingerprint(event["course"])
    return event["version"], deleting, path


def _enrollment_row(event: dict[str, Any]) -> tuple[Any, ...]:
    """(version, status)."""
    return event["version"], (event.get("enrollment") or {}).get("status")


def _deleting(event: dict[str, Any]) -> bool:
    return event["event_type"] == "course_deleted" or (
        "course" in event and event.get("course") is None
    )


async def _events(
    settings: Settings,
    codec: AvroCodec,
    topic: str,
    key_of: Callable[[dict[str, Any]], str],
    steps: Steps,
    start: Offsets | None = None,
) -> tuple[Events, Offsets]:
    """Per id: its last snapshot event, then its deletion if one came after it (from
    `start`, default the topic's beginning, to its end now)."""
    subject = spec(topic).subject
    events: Events = {}

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                value = await codec.decode(subject, record.value)
            except AvroDecodeError:  # the sink dead-lettered it: not a state
                continue
            key = key_of(value)
            kept = events.get(key, [])
            if kept and kept[-1]["version"] >= value["version"]:
                continue  # a repeat (at least once) or an older one
            events[key] = [kept[0], value] if _deleting(value) and kept else [value]

    _, ends = await read_to_end(
        settings.kafka_bootstrap_servers, [topic], keep, start=start, on_read=steps.read
    )
    return events, ends


async def _repair(
    pool: asyncpg.Pool,
    events: Events,
    found: dict[str, tuple[Any, ...]],
    moved: set[str],
    row_of: Callable[[dict[str, Any]], tuple[Any, ...]],
    rewrite: Callable[[asyncpg.Pool, str, list[dict[str, Any]]], Awaitable[None]],
    remove: Callable[[asyncpg.Pool, str], Awaitable[None]],
) -> dict[str, int]:
    rewritten = removed = 0
    for key, chain in events.items():
        last = chain[-1]
        if key in moved or found.get(key) == row_of(last):
            continue
        await rewrite(pool, key, chain)
        rewritten += 1
    for key in set(found) - set(events) - moved:  # a row no event made
        await remove(pool, key)
        removed += 1
    return {"rewritten": rewritten, "removed": removed}


async def _remove_course(pool: asyncpg.Pool, course_id: str) -> None:
    await pool.execute("DELETE FROM courses WHERE id = $1", course_id)  # modules, items too


async def _remove_enrollment(pool: asyncpg.Pool, key: str) -> None:
    course_id, user_id = key.split(":", 1)
    await pool.execute(
        "DELETE FROM enrollments WHERE course_id = $1 AND user_id = $2", course_id, user_id
    )


async def _rewrite_course(pool: asyncpg.Pool, course_id: str, chain: list[dict[str, Any]]) -> None:
    await _remove_course(pool, course_id)
    for event in chain:
        await mirror_course_event(pool, event)


async def _rewrite_enrollment(pool: asyncpg.Pool, key: str, chain: list[dict[str, Any]]) -> None:
    await _remove_enrollment(pool, key)
    await mirror_enrollment_events(pool, chain[-1:])
