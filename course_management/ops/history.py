"""`ops check` and `ops mirror rebuild` for history (issue 27, CONTRACT §5.3): the course
versions (`course_versions`, from `course-events`) and the learners' histories
(`learner_history`, from `enrollment-events` and `learner-milestones`).

The topics are the truth: a course's versions are one per event, a learner's history one
row per event and milestone (by event id). A course or learner whose rows differ (a row
missing, one too many, another event at a version) is written again from its records,
through the sink's own writers (infra/history_mirror.py), so the changes of each version
are computed as the live sink computes them. The check holds event ids only; the repair
reads whole records again for the keys that differ.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from course_management.config import Settings
from course_management.domain.history import course_entry
from course_management.domain.learner_history import enrollment_row, learner_entry, milestone_row
from course_management.infra import history_mirror
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.history_mirror import mirror_learner_history, write_course_versions
from course_management.infra.kafka import read_to_end, request_id
from course_management.messages import course_event, enrollment_event, learner_milestone
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS, spec

Versions = dict[str, list[tuple[dict[str, Any], str | None]]]  # course -> (event, request id)
Rows = dict[str, dict[str, dict[str, Any]]]  # "<course>:<user>" -> event id -> row
CourseIds = dict[str, dict[int, str]]  # course -> version -> event id
LearnerIds = dict[str, set[str]]  # "<course>:<user>" -> event ids


class Said:
    """What the topics say: each course's versions and each learner's rows by event id;
    whole records only for the keys in `keep` (a check holds ids, never every snapshot)."""

    def __init__(self, keep: set[str] | None) -> None:
        self.keep = keep
        self.courses: CourseIds = {}
        self.learners: LearnerIds = {}
        self.versions: Versions = {}
        self.rows: Rows = {}


async def read_said(settings: Settings, codec: AvroCodec, keep: set[str] | None = None) -> Said:
    said = Said(keep)
    parse = {
        COURSE_EVENTS: course_event.decode,
        ENROLLMENT_EVENTS: enrollment_event.decode,
        learner_milestone.TOPIC: learner_milestone.decode,
    }

    async def take(records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                raw = await codec.decode(spec(record.topic).subject, record.value)
                value: Any = parse[record.topic](raw)
            except (AvroDecodeError, KeyError, ValueError):
                continue  # dead-lettered by the sink
            if record.topic == COURSE_EVENTS:
                course_id = value["course_id"]
                ids = said.courses.setdefault(course_id, {})
                if value["version"] not in ids:
                    ids[value["version"]] = str(value["event_id"])
                    if keep is not None and course_id in keep:
                        said.versions.setdefault(course_id, []).append((value, request_id(record)))
                continue
            row = (enrollment_row if record.topic == ENROLLMENT_EVENTS else milestone_row)(value)
            key = f"{row['course_id']}:{row['user_id']}"
            said.learners.setdefault(key, set()).add(row["event_id"])
            if keep is not None and key in keep:
                row = {**row, "source_offset": record.offset, "request_id": request_id(record)}
                said.rows.setdefault(key, {}).setdefault(row["event_id"], row)  # the first copy

    topics = [COURSE_EVENTS, ENROLLMENT_EVENTS, learner_milestone.TOPIC]
    await read_to_end(settings.kafka_bootstrap_servers, topics, take)
    return said


async def held_courses(pool: asyncpg.Pool) -> CourseIds:
    held: CourseIds = {}
    for r in await pool.fetch("SELECT course_id, version, event_id FROM course_versions"):
        held.setdefault(r["course_id"], {})[r["version"]] = r["event_id"]
    return held


async def held_learners(pool: asyncpg.Pool) -> LearnerIds:
    held: LearnerIds = {}
    for r in await pool.fetch("SELECT course_id, user_id, event_id FROM learner_history"):
        held.setdefault(f"{r['course_id']}:{r['user_id']}", set()).add(r["event_id"])
    return held


def _wrong_courses(said: CourseIds, held: CourseIds) -> list[str]:
    """Courses with a version missing or another event at a version the topic has (a
    version past the topic's newest is the live sink's, written after the read)."""
    return sorted(
        course
        for course in set(said) | set(held)
        if any(
            said.get(course, {}).get(v) != e
            for v, e in held.get(course, {}).items()
            if v <= max(said.get(course, {}), default=0)
        )
        or any(held.get(course, {}).get(v) != e for v, e in said.get(course, {}).items())
    )


def _wrong_learners(said: LearnerIds, held: LearnerIds) -> list[str]:
    """Learners with a row missing, or one the topics never had."""
    return sorted(k for k in set(said) | set(held) if said.get(k, set()) != held.get(k, set()))


async def repair(settings: Settings, codec: AvroCodec, pool: asyncpg.Pool) -> dict[str, int]:
    """Every course and learner whose history differs from the topics, written again.

    Safe beside the live sink: the tables are read before the topics, so a row the sink
    wrote meanwhile is in what the topics say; a course's versions are rewritten from the
    first wrong one up to the topic's newest only (those after are the sink's), and a
    learner's missing rows are added (the sink's own inserts skip a row already there),
    one course or learner per transaction. A learner row no topic has is removed only
    below the learner's newest version the topics had."""
    held_c, held_l = await held_courses(pool), await held_learners(pool)
    ids = await read_said(settings, codec)
    courses = _wrong_courses(ids.courses, held_c)
    learners = _wrong_learners(ids.learners, held_l)
    if not courses and not learners:
        return {"course histories": 0, "learner histories": 0}
    said = await read_said(settings, codec, keep={*courses, *learners})
    for course_id in courses:
        events = sorted(said.versions.get(course_id, []), key=lambda e: e[0]["version"])
        have, held = said.courses.get(course_id, {}), held_c.get(course_id, {})
        first = min(
            [v for v, e in have.items() if held.get(v) != e]
            + [v for v, e in held.items() if v <= max(have, default=0) and have.get(v) != e]
        )
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM course_versions WHERE course_id = $1 AND version >= $2"
                " AND version <= $3",
                course_id,
                first,
                max(have, default=0),
            )
            await write_course_versions(conn, [e for e in events if e[0]["version"] >= first])
    for key in learners:
        course_id, user_id = key.split(":", 1)
        rows = said.rows.get(key, {})
        newest = max((r["version"] for r in rows.values()), default=0)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM learner_history WHERE course_id = $1 AND user_id = $2"
                " AND version < $3 AND NOT (event_id = ANY($4::text[]))",
                course_id,
                user_id,
                newest,
                list(rows),
            )
            await mirror_learner_history(conn, list(rows.values()))
    return {"course histories": len(courses), "learner histories": len(learners)}


async def differences(settings: Settings, codec: AvroCodec) -> list[tuple[str, str, str, Any, Any]]:
    """(store, entity, key, expected, found) of every course and learner history that
    differs from the topics (the versions' event ids; the learners' row count)."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        courses, learners = await held_courses(pool), await held_learners(pool)
    finally:
        await pool.close()
    said = await read_said(settings, codec)
    return [
        *(
            ("mirror", "course history", key, said.courses.get(key), courses.get(key))
            for key in _wrong_courses(said.courses, courses)
        ),
        *(
            (
                "mirror",
                "learner history",
                key,
                len(said.learners.get(key, ())),
                len(learners.get(key, ())),
            )
            for key in _wrong_learners(said.learners, learners)
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
