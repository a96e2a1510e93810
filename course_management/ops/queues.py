"""`ops check` and `ops mirror rebuild` for the mirror tables of issue 26: the waitlists
(`course_waitlist`, from the `waitlisted` / `waitlist_left` milestones) and the bulk jobs
(`enrollment_jobs` and `enrollment_job_rows`, from the job progress topic).

The topics are the truth: each table's rows are what its topic's records make of them
through the sink's own writers (infra/waitlist_mirror.py, infra/job_mirror.py). A row
that differs is written again from them; a waitlist row no milestone made is removed. A
job older than the progress topic's retention is only in the mirror, and left alone.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from course_management.config import Settings
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.job_mirror import mirror_job_progress
from course_management.infra.kafka import read_to_end
from course_management.infra.waitlist_mirror import mirror_waitlist, queue_changes
from course_management.messages import job_progress, learner_milestone

Said = dict[str, dict[str, Any]]


async def _read(
    settings: Settings, codec: AvroCodec, topic: str, subject: str
) -> list[tuple[int, dict[str, Any]]]:
    found: list[tuple[int, dict[str, Any]]] = []

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                found.append((record.offset, await codec.decode(subject, record.value)))
            except (AvroDecodeError, KeyError, ValueError):
                continue

    await read_to_end(settings.kafka_bootstrap_servers, [topic], keep)
    return found


async def milestones(settings: Settings, codec: AvroCodec) -> list[tuple[int, Any]]:
    records = await _read(settings, codec, learner_milestone.TOPIC, learner_milestone.SUBJECT)
    return [(offset, learner_milestone.decode(value)) for offset, value in records]


async def job_records(settings: Settings, codec: AvroCodec) -> list[dict[str, Any]]:
    records = await _read(settings, codec, job_progress.TOPIC, job_progress.SUBJECT)
    return [job_progress.decode(value) for _, value in records]


def waitlists_said(said: list[tuple[int, Any]]) -> Said:
    """Each learner's row as the milestones make it: "<course>:<user>" -> the offsets."""
    return {
        f"{course}:{user}": {"joined": joined, "left": left}
        for course, user, joined, _, left, _, _ in queue_changes(said)
    }


def jobs_said(records: list[dict[str, Any]]) -> Said:
    """Each job's newest counts and how many rows have an outcome."""
    jobs: Said = {}
    rows: dict[str, set[int]] = {}
    for r in records:
        rows.setdefault(r["job_id"], set()).update(row["row"] for row in r["rows"])
        if r["job_id"] not in jobs or jobs[r["job_id"]]["next_row"] < r["next_row"]:
            jobs[r["job_id"]] = {"next_row": r["next_row"], "counts": dict(r["counts"])}
    return {job: {**state, "rows": len(rows[job])} for job, state in jobs.items()}


async def waitlists_held(pool: asyncpg.Pool) -> Said:
    return {
        f"{r['course_id']}:{r['user_id']}": {"joined": r["joined_seq"], "left": r["left_seq"]}
        for r in await pool.fetch(
            "SELECT course_id, user_id, joined_seq, left_seq FROM course_waitlist"
        )
    }


async def jobs_held(pool: asyncpg.Pool, ids: set[str]) -> Said:
    rows = await pool.fetch(
        "SELECT j.id, j.next_row, j.counts::text AS counts,"
        " (SELECT count(*) FROM enrollment_job_rows r WHERE r.job_id = j.id) AS n"
        " FROM enrollment_jobs j WHERE j.id = ANY($1::text[])",
        sorted(ids),
    )
    return {
        r["id"]: {"next_row": r["next_row"], "counts": json.loads(r["counts"]), "rows": r["n"]}
        for r in rows
    }


async def repair(settings: Settings, codec: AvroCodec, pool: asyncpg.Pool) -> dict[str, Any]:
    """The waitlists and jobs written again from their topics where they differ."""
    said = await milestones(settings, codec)
    expected, held = waitlists_said(said), await waitlists_held(pool)
    wrong = {k for k in set(expected) | set(held) if expected.get(k) != held.get(k)}
    for key in wrong:
        course_id, user_id = key.split(":", 1)
        await pool.execute(
            "DELETE FROM course_waitlist WHERE course_id = $1 AND user_id = $2", course_id, user_id
        )
    await mirror_waitlist(
        pool, [(o, m) for o, m in said if f"{m['course_id']}:{m['user_id']}" in wrong]
    )
    records = await job_records(settings, codec)
    jobs = jobs_said(records)
    found = await jobs_held(pool, set(jobs))
    broken = {job for job in jobs if jobs[job] != found.get(job)}
    for job in broken:
        await pool.execute("DELETE FROM enrollment_job_rows WHERE job_id = $1", job)
        await pool.execute("DELETE FROM enrollment_jobs WHERE id = $1", job)
    await mirror_job_progress(pool, [r for r in records if r["job_id"] in broken])
    return {"waitlist rows": len(wrong), "jobs": len(broken)}


async def differences(settings: Settings, codec: AvroCodec) -> list[tuple[str, str, str, Any, Any]]:
    """(store, entity, key, expected, found) of every waitlist row and job that differs."""
    said = await milestones(settings, codec)
    jobs = jobs_said(await job_records(settings, codec))
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        held, found = await waitlists_held(pool), await jobs_held(pool, set(jobs))
    finally:
        await pool.close()
    expected = waitlists_said(said)
    return [
        *(
            ("mirror", "waitlist", key, expected.get(key), held.get(key))
            for key in sorted(set(expected) | set(held))
            if expected.get(key) != held.get(key)
        ),
        *(
            ("mirror", "job", job, jobs[job], found.get(job))
            for job in sorted(jobs)
            if jobs[job] != found.get(job)
        ),
    ]
