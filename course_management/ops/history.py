"""`ops check` and `ops mirror rebuild` for history (issue 27, CONTRACT §5.3): the course
versions (`course_versions`, from `course-events`) and the learners' histories
(`learner_history`, from `enrollment-events` and `learner-milestones`).

The topics are the truth: a course's versions are one per event, a learner's history one
row per event and milestone (by event id). A course or learner whose rows differ (a row
missing, one too many, another event at a version) is written again whole from its
records, through the sink's own writers (infra/history_mirror.py), so the changes of
each version are computed as the live sink computes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from course_management.config import Settings
from course_management.domain.history import course_entry
from course_management.domain.learner_history import enrollment_row, learner_entry, milestone_row
from course_management.infra import history_mirror
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.history_mirror import mirror_course_versions, mirror_learner_history
from course_management.infra.kafka import read_to_end, request_id
from course_management.messages import course_event, enrollment_event, learner_milestone
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS, spec

Versions = dict[str, list[tuple[dict[str, Any], str | None]]]  # course -> (event, request id)
Rows = dict[str, dict[str, dict[str, Any]]]  # "<course>:<user>" -> event id -> row


class Said:
    """What the topics say: each course's events and each learner's rows, in order."""

    def __init__(self) -> None:
        self.versions: Versions = {}
        self.rows: Rows = {}

    def course_state(self) -> dict[str, dict[int, str]]:
        return {
            course: {event["version"]: str(event["event_id"]) for event, _ in events}
            for course, events in self.versions.items()
        }

    def learner_state(self) -> dict[str, set[str]]:
        return {key: set(rows) for key, rows in self.rows.items()}


async def read_said(settings: Settings, codec: AvroCodec) -> Said:
    said = Said()
    parse = {
        COURSE_EVENTS: course_event.decode,
        ENROLLMENT_EVENTS: enrollment_event.decode,
        learner_milestone.TOPIC: learner_milestone.decode,
    }

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                raw = await codec.decode(spec(record.topic).subject, record.value)
                value: Any = parse[record.topic](raw)
            except (AvroDecodeError, KeyError, ValueError):
                continue  # dead-lettered by the sink
            if record.topic == COURSE_EVENTS:
                events = said.versions.setdefault(value["course_id"], [])
                if all(e["version"] != value["version"] for e, _ in events):
                    events.append((value, request_id(record)))
                continue
            row = (enrollment_row if record.topic == ENROLLMENT_EVENTS else milestone_row)(value)
            row = {**row, "source_offset": record.offset, "request_id": request_id(record)}
            rows = said.rows.setdefault(f"{row['course_id']}:{row['user_id']}", {})
            rows.setdefault(row["event_id"], row)  # a republished event: its first offset

    topics = [COURSE_EVENTS, ENROLLMENT_EVENTS, learner_milestone.TOPIC]
    await read_to_end(settings.kafka_bootstrap_servers, topics, keep)
    return said


async def held_courses(pool: asyncpg.Pool) -> dict[str, dict[int, str]]:
    held: dict[str, dict[int, str]] = {}
    for r in await pool.fetch("SELECT course_id, version, event_id FROM course_versions"):
        held.setdefault(r["course_id"], {})[r["version"]] = r["event_id"]
    return held


async def held_learners(pool: asyncpg.Pool) -> dict[str, set[str]]:
    held: dict[str, set[str]] = {}
    for r in await pool.fetch("SELECT course_id, user_id, event_id FROM learner_history"):
        held.setdefault(f"{r['course_id']}:{r['user_id']}", set()).add(r["event_id"])
    return held


def _wrong(expected: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))


async def repair(settings: Settings, codec: AvroCodec, pool: asyncpg.Pool) -> dict[str, int]:
    """Every course and learner whose history differs from the topics, written again."""
    said = await read_said(settings, codec)
    courses = _wrong(said.course_state(), await held_courses(pool))
    for course_id in courses:
        await pool.execute("DELETE FROM course_versions WHERE course_id = $1", course_id)
        events = sorted(said.versions.get(course_id, []), key=lambda e: e[0]["version"])
        await mirror_course_versions(pool, events)
    learners = _wrong(said.learner_state(), await held_learners(pool))
    for key in learners:
        course_id, user_id = key.split(":", 1)
        await pool.execute(
            "DELETE FROM learner_history WHERE course_id = $1 AND user_id = $2", course_id, user_id
        )
        await mirror_learner_history(pool, list(said.rows.get(key, {}).values()))
    return {"course histories": len(courses), "learner histories": len(learners)}


async def differences(settings: Settings, codec: AvroCodec) -> list[tuple[str, str, str, Any, Any]]:
    """(store, entity, key, expected, found) of every course and learner history that
    differs from the topics (the versions' event ids; the learners' row count)."""
    said = await read_said(settings, codec)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        courses, learners = await held_courses(pool), await held_learners(pool)
    finally:
        await pool.close()
    expected_courses, expected_learners = said.course_state(), said.learner_state()
    return [
        *(
            ("mirror", "course history", key, expected_courses.get(key), courses.get(key))
            for key in _wrong(expected_courses, courses)
        ),
        *(
            (
                "mirror",
                "learner history",
                key,
                len(expected_learners.get(key, ())),
                len(learners.get(key, ())),
            )
            for key in _wrong(expected_learners, learners)
        ),
    ]


async def print_history(
    settings: Settings, course_id: str, user_id: str | None = None
) -> list[dict[str, Any]]:
    """`course-management history`: every entry of a course's history (newest first) or
    of a learner's (oldest first), as the history routes show them, from the mirror."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        if user_id is None:
            rows = await history_mirror.course_history(pool, course_id, None, 2**31 - 1)
            return [course_entry(r) for r in rows]
        found = await history_mirror.learner_history(pool, course_id, user_id, None, 2**31 - 1)
        return [learner_entry(r) for r in found]
    finally:
        await pool.close()
